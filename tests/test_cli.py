"""The command as a user runs it: exit codes, JSON contract, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES

HUBERT = FIXTURES / "where_broadcast/hubert_extract_features_op17_fp32.onnx"
NEGATIVE = FIXTURES / "where_broadcast/masked_fill_unsqueezed_op17.onnx"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_lint_json_contract(cli) -> None:
    res = cli("lint", str(HUBERT), str(NEGATIVE), "--format", "json")
    assert res.returncode == 1, res.stderr
    doc = json.loads(res.stdout)
    assert doc["version"] == "1"
    first, second = doc["files"]
    assert first["path"] == str(HUBERT)
    assert not [x for x in second["findings"] if x["severity"] == "error"]
    (f,) = [x for x in first["findings"] if x["rule"].startswith("WB")]
    assert f["rule"] == "WB102" and f["name"] == "where-mask-left-aligned"
    assert f["severity"] == "error" and f["node"] == "/encoder/Where"
    assert f["op_type"] == "Where" and f["graph"] == "main" and f["scope"] == "encoder"
    assert f["fix"] == {"title": "Unsqueeze the condition on axes [2]", "applicability": "safe"}
    assert "[B, T]" in f["message"] and "[B, T, 48]" in f["message"]
    assert {"name", "shape"} <= set(f["inputs"][0])


def test_lint_text_names_node_scope_and_fix(cli) -> None:
    res = cli("lint", str(HUBERT))
    assert res.returncode == 1
    out = res.stdout
    assert "/encoder/Where" in out and "WB102" in out and "PyTorch scope: encoder" in out
    assert "fix (safe)" in out and "1 error(s)" in out


def test_lint_clean_exits_zero(cli) -> None:
    res = cli("lint", str(NEGATIVE))
    assert res.returncode == 0
    assert "no problems found" in res.stdout or " 0 error(s)" in res.stdout


def test_select_and_ignore(cli) -> None:
    assert cli("lint", str(HUBERT), "--ignore", "WB102").returncode == 0
    assert cli("lint", str(HUBERT), "--select", "WB101,WB103").returncode == 0
    assert cli("lint", str(HUBERT), "--select", "WB").returncode == 1


def test_repair_writes_verified_model(cli, tmp_path: Path) -> None:
    out = tmp_path / "fixed.onnx"
    before = _sha(HUBERT)
    res = cli(
        "repair",
        str(HUBERT),
        str(out),
        "--reference",
        str(HUBERT.with_suffix(".npz")),
        "--format",
        "json",
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["written"] and "WB102" in [f["rule"] for f in doc["fixed"]]
    assert not [f for f in doc["remaining"] if f["severity"] == "error"]
    steps = [s["name"] for s in doc["verification"]["steps"]]
    assert steps == [
        "checker",
        "shape inference",
        "interface",
        "onnxruntime load",
        "probe",
        "exercised",
    ]
    # the fixed Where ran with its frame axis T at two values, neither of them 1
    (exercised,) = [s["detail"] for s in doc["verification"]["steps"] if s["name"] == "exercised"]
    assert "WB102 at /encoder/Where: ran with" in exercised and "NOT" not in exercised
    settings = doc["verification"]["settings"]
    assert all(1 not in s.values() for s in settings)
    assert len({s["B"] for s in settings}) >= 2 and len({s["L"] for s in settings}) >= 2
    assert _sha(HUBERT) == before
    assert cli("lint", str(out)).returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["fixed.onnx"], "no temporary files left behind"


def test_repair_dry_run_writes_nothing(cli, tmp_path: Path) -> None:
    out = tmp_path / "fixed.onnx"
    res = cli("repair", str(HUBERT), str(out), "--dry-run")
    assert res.returncode == 1 and "would fix WB102" in res.stdout  # something would change
    assert not out.exists()


def test_repair_in_place_is_safe(cli, tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(HUBERT, model)
    res = cli("repair", str(model), str(model))
    assert res.returncode == 0, res.stderr
    assert cli("lint", str(model)).returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def test_repair_idempotent(cli, tmp_path: Path) -> None:
    """Repairing a repaired model finds nothing to fix and writes nothing."""
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert cli("repair", str(HUBERT), str(a)).returncode == 0
    res = cli("repair", str(a), str(b))
    assert res.returncode == 0 and "nothing to fix" in res.stdout
    assert not b.exists()


def test_repair_exit_1_when_errors_remain(cli, tmp_path: Path) -> None:
    """An error without a fix: nothing written, exit 1, and the rule's reason."""
    import onnx

    from tests.models import mismatched_add

    src = tmp_path / "add.onnx"
    onnx.save(mismatched_add(), str(src))
    res = cli("lint", str(src), "--format", "json")
    assert res.returncode == 1
    assert json.loads(res.stdout)["files"][0]["findings"][0]["rule"] == "WB101"
    rep = cli("repair", str(src), str(tmp_path / "out.onnx"))
    assert rep.returncode == 1 and not (tmp_path / "out.onnx").exists()
    assert "not fixed: WB101 has no fix" in rep.stdout


def test_a_rule_that_fixes_some_cases_says_which_when_it_leaves_one(cli, tmp_path: Path) -> None:
    """WB103 rebuilds a baked range; the numpy causal mask is a table, not a range: the
    repair says what WB103 fixes and what to do instead of "not recognised"."""
    from onnxfix.rules.where_broadcast.wb103_broadcast_conditional import BroadcastConditional

    src = FIXTURES / "trace_baked/baked_numpy_mask_op17.onnx"
    rep = cli("repair", str(src), str(tmp_path / "out.onnx"), "--unsafe-fixes")
    assert rep.returncode == 1 and not (tmp_path / "out.onnx").exists()
    assert f"not fixed: WB103 has no fix here: {BroadcastConditional.no_fix}" in rep.stdout


BAD_INPUTS = {
    "empty": b"",
    "text": b"this is not a model\n",
    "random": bytes(range(256)) * 40,
    "truncated": None,  # filled from a real fixture
}


@pytest.mark.parametrize("kind", [*BAD_INPUTS, "directory", "missing"])
def test_bad_input_one_line_exit_2(cli, tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.onnx"
    if kind == "directory":
        path.mkdir()
    elif kind == "truncated":
        path.write_bytes(HUBERT.read_bytes()[:5000])
    elif kind != "missing":
        path.write_bytes(BAD_INPUTS[kind])
    for args in (["lint", str(path)], ["repair", str(path), str(tmp_path / "out.onnx")]):
        res = cli(*args)
        assert res.returncode == 2, (kind, args, res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0], res.stderr
        assert "Traceback" not in res.stderr + res.stdout
    assert not (tmp_path / "out.onnx").exists()


def test_rules_and_rule_docs(cli) -> None:
    res = cli("rules", "--format", "json")
    rules = json.loads(res.stdout)["rules"]
    codes = [r["code"] for r in rules]
    assert {"WB101", "WB102", "WB103", "WB104"} <= set(codes)
    for r in rules:
        for section in ("## What it does", "## Why is this bad?", "## Example", "## Fix safety"):
            assert section in r["docs"], (r["code"], section)
    doc = cli("rule", "WB102")
    assert doc.returncode == 0 and "x[mask] = v" in doc.stdout
    assert cli("rule", "NOPE").returncode == 2
    piped = cli("rules")  # not a terminal: one line per rule, the summary whole
    assert piped.returncode == 0
    lines = piped.stdout.splitlines()
    assert lines[0].split() == ["code", "name", "severity", "fix", "summary"]
    for r, line in zip(rules, lines[1:], strict=True):
        assert line.split()[:2] == [r["code"], r["name"]] and line.endswith(r["summary"])


def test_usage_error_is_exit_2(cli) -> None:
    assert cli("lint").returncode == 2
    assert cli("frobnicate").returncode == 2
