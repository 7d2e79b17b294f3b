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


def test_readme_rules_table_matches_the_registry() -> None:
    """The README's rule table says what the registry says (codes, names, severity, fix)."""
    from onnxfix import registry

    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| ([A-Z]{2}\d{3}) \| ([a-z0-9-]+) \| (\w+) \| ([a-z–-]+) \|", text, re.M)
    table = {code: (name, sev, fix) for code, name, sev, fix in rows}
    want = {r.code: (r.name, r.severity.value, r.fixable.value if r.fixable else "–")
            for r in registry.all_rules()}
    assert table == want
