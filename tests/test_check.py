"""Pre-deployment checks and CI integration: `onnxfix check`, SARIF and GitHub output,
[tool.onnxfix] configuration, and the README's workflow and API examples."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from onnxfix import api
from tests.conftest import FIXTURES, ROOT, corpus_findings, fixture_ids

HUBERT = FIXTURES / "where_broadcast/hubert_extract_features_op17_fp32.onnx"


def _errors(entry: dict) -> list[dict]:
    return [f for f in corpus_findings(entry) if f["severity"] == "error" and f["rule"] != "TG201"]


BROKEN = [e for e in fixture_ids("positive") if _errors(e)]


@pytest.mark.parametrize("entry", BROKEN, ids=lambda e: e["name"])
def test_check_fails_broken_and_passes_repaired(entry: dict, cli, tmp_path: Path) -> None:
    """The README's workflow: check fails naming the node; the repaired model passes."""
    model, npz = FIXTURES / entry["model"], FIXTURES / entry["reference"]
    res = cli("check", str(model), "--reference", str(npz), "--format", "json")
    assert res.returncode == 1, res.stderr
    doc = json.loads(res.stdout)
    assert doc["passed"] is False
    named = {f["node"] for f in doc["findings"]} | {r["node"] for r in doc["runs"] if r["node"]}
    assert {f["node"] for f in _errors(entry)} <= named
    fixed = tmp_path / "fixed.onnx"
    rep = cli("repair", str(model), str(fixed), "--reference", str(npz), "--unsafe-fixes")
    if rep.returncode != 0:  # a stripped weight cannot be repaired: nothing to check
        assert rep.returncode == 2 and not fixed.exists()
        return
    # a repair that removed a dangling output (TG101) no longer has what the reference has
    ref = [] if any(f["rule"] == "TG101" for f in _errors(entry)) else ["--reference", str(npz)]
    ok = cli("check", str(fixed), *ref)
    assert ok.returncode == 0 and "PASS" in ok.stdout, ok.stdout + ok.stderr


def test_check_maps_runtime_failure_to_node_scope_and_rule() -> None:
    result = api.check(HUBERT)
    assert not result.passed
    failed = [r for r in result.runs if not r.ok]
    assert failed and all(
        r.node == "/encoder/Where" and r.scope == "encoder" and r.explained_by == "WB102"
        for r in failed
    )
    assert all(1 not in r.setting.values() for r in failed)


def test_check_dims_every_combination(cli) -> None:
    model = FIXTURES / "where_broadcast/hubert_features_only_op17.onnx"
    res = cli("check", str(model), "--dims", "B=1,3", "L=400,1000", "--format", "json")
    doc = json.loads(res.stdout)
    assert res.returncode == 0 and doc["passed"]
    assert [r["setting"] for r in doc["runs"]] == [
        {"B": 1, "L": 400},
        {"B": 1, "L": 1000},
        {"B": 3, "L": 400},
        {"B": 3, "L": 1000},
    ]
    assert cli("check", str(model), "--dims", "B=x").returncode == 2


def test_reference_catches_a_baked_constant(cli) -> None:
    model = FIXTURES / "truncated_graph/baked_length_op17.onnx"
    res = cli(
        "check", str(model), "--reference", str(model.with_suffix(".npz")), "--format", "json"
    )
    doc = json.loads(res.stdout)
    assert res.returncode == 1 and any("differs" in (r["error"] or "") for r in doc["runs"])


def test_sarif_carries_rule_docs(cli) -> None:
    res = cli("lint", str(HUBERT), "--format", "sarif", "--select", "WB")
    doc = json.loads(res.stdout)
    assert doc["version"] == "2.1.0"
    run = doc["runs"][0]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    assert "## Why is this bad?" in rules["WB102"]["help"]["markdown"]
    (result,) = run["results"]
    assert result["ruleId"] == "WB102" and result["level"] == "error"
    assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == "WB102"
    names = [loc["name"] for loc in result["locations"][0]["logicalLocations"]]
    assert names == ["/encoder/Where", "encoder"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == str(HUBERT)
    chk = json.loads(cli("check", str(HUBERT), "--format", "sarif").stdout)
    assert any(r["properties"].get("source") == "onnxruntime" for r in chk["runs"][0]["results"])


def test_github_annotations_parse(cli) -> None:
    res = cli("lint", str(HUBERT), "--format", "github", "--select", "WB")
    lines = res.stdout.strip().splitlines()
    pat = re.compile(r"^::(error|warning|notice) file=([^,]+),title=([^:]+)::(.+)$")
    m = pat.match(lines[0])
    assert m and m.group(1) == "error" and m.group(2) == str(HUBERT)
    assert m.group(3) == "WB102 where-mask-left-aligned" and "/encoder/Where" in m.group(4)
    assert "%0AIn PyTorch:" in m.group(4)


def _project(tmp_path: Path, config: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(config))
    models = tmp_path / "models" / "legacy"
    models.mkdir(parents=True)
    for name in ("hubert.onnx", "legacy/hubert.onnx"):
        (tmp_path / "models" / name).write_bytes(HUBERT.read_bytes())
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    return sub


def _codes(res: subprocess.CompletedProcess) -> dict[str, list[tuple[str, str]]]:
    """Per file, the broadcast-family findings (the configuration under test is about them)."""
    doc = json.loads(res.stdout)
    return {
        Path(f["path"]).name + ("@legacy" if "legacy" in f["path"] else ""): [
            (x["rule"], x["severity"]) for x in f["findings"] if x["rule"].startswith("WB")
        ]
        for f in doc["files"]
    }


def test_config_found_upward_and_flags_win(cli, tmp_path: Path) -> None:
    cwd = _project(
        tmp_path,
        """
        [tool.onnxfix]
        ignore = ["WB102"]
    """,
    )
    args = ["lint", "../../models/hubert.onnx", "--format", "json"]
    res = cli(*args, cwd=cwd)
    assert res.returncode == 0 and _codes(res) == {"hubert.onnx": []}
    res = cli(*args, "--ignore", "TG", cwd=cwd)  # the flag replaces the config's ignore
    assert res.returncode == 1 and _codes(res)["hubert.onnx"] == [("WB102", "error")]


def test_config_per_file_ignores_and_severity(cli, tmp_path: Path) -> None:
    cwd = _project(
        tmp_path,
        """
        [tool.onnxfix]
        severity = { WB102 = "warning" }

        [tool.onnxfix.per-file-ignores]
        "models/legacy/*.onnx" = ["WB"]
    """,
    )
    res = cli(
        "lint",
        "../../models/hubert.onnx",
        "../../models/legacy/hubert.onnx",
        "--format",
        "json",
        cwd=cwd,
    )
    assert _codes(res) == {"hubert.onnx": [("WB102", "warning")], "hubert.onnx@legacy": []}
    assert res.returncode == 0  # a warning does not fail the build


def test_bad_config_is_exit_2(cli, tmp_path: Path) -> None:
    cwd = _project(
        tmp_path,
        """
        [tool.onnxfix]
        colour = "blue"
    """,
    )
    res = cli("lint", "../../models/hubert.onnx", cwd=cwd)
    assert res.returncode == 2 and "unknown [tool.onnxfix] keys" in res.stderr


def test_readme_python_examples_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.+?)\n```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "the README documents the Python API"
    for block in blocks:
        subprocess.run(
            [sys.executable, "-c", block],
            cwd=ROOT,
            check=True,
            timeout=300,
            env={"TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )


def test_pre_commit_hook_declared() -> None:
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "entry: onnxfix lint" in text and r"files: \.onnx$" in text


def test_execution_providers(cli) -> None:
    model = FIXTURES / "where_broadcast/masked_fill_unsqueezed_op17.onnx"
    assert cli("check", str(model), "--provider", "CPUExecutionProvider").returncode == 0
    res = cli("check", str(model), "--provider", "NoSuchExecutionProvider")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "not available" in res.stderr and "CPUExecutionProvider" in res.stderr
