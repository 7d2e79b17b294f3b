"""The README's first commands are what CI runs."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text)


def test_ci_runs_the_readme_test_command() -> None:
    main_job, test_cmd = _commands()[:2]
    assert "pytest" in test_cmd and "onnxfix repair" in main_job
    ci = (ROOT / ".ci/run").read_text().splitlines()
    assert test_cmd in ci


def test_readme_main_job_uses_shipped_fixtures() -> None:
    main_job = _commands()[0]
    for path in re.findall(r"fixtures/\S+\.(?:onnx|npz)", main_job):
        assert list(ROOT.glob(path)), path


def rules_table() -> str:
    from onnxfix import registry

    rows = ["| code | name | severity | fix | what |", "|---|---|---|---|---|"]
    for r in registry.all_rules():
        rows.append(
            f"| {r.code} | {r.name} | {r.severity.value} | "
            f"{r.fixable.value if r.fixable else '–'} | {r.summary} |"
        )
    return "\n".join(rows)


def test_readme_rules_table_is_the_registry(request) -> None:
    """The README's rule table is generated from the registry; --snapshot-update rewrites it."""
    path = ROOT / "README.md"
    text = path.read_text()
    m = re.search(r"(<!-- rules-table:[^\n]*-->\n)(.*?)(\n<!-- /rules-table -->)", text, re.S)
    assert m, "the README has no generated rules table"
    if request.config.getoption("--snapshot-update"):
        path.write_text(text[: m.start(2)] + rules_table() + text[m.end(2) :])
        return
    assert m.group(2) == rules_table(), "run `pytest --snapshot-update` and review the README diff"
