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
        assert rep.returncode in (1, 2) and not fixed.exists()
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
    assert "id: onnxfix-check" in text and "entry: onnxfix check" in text


def test_execution_providers(cli) -> None:
    model = FIXTURES / "where_broadcast/masked_fill_unsqueezed_op17.onnx"
    assert cli("check", str(model), "--provider", "CPUExecutionProvider").returncode == 0
    res = cli("check", str(model), "--provider", "NoSuchExecutionProvider")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "not available" in res.stderr and "CPUExecutionProvider" in res.stderr


# --- a gate CI can trust (real exporter output, bounded, honest about made-up values) ----------


def _check_exit(cli, model: Path, *args: str) -> tuple[int, dict]:
    res = cli("check", str(model), "--format", "json", *args)
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else {}


@pytest.mark.parametrize("entry", fixture_ids("negative"), ids=lambda e: e["name"])
def test_check_never_fails_a_valid_model(entry: dict, cli) -> None:
    """Without --reference, a valid model passes, or (stateful: caches, offsets the probe
    cannot invent) is 'could not verify' — never FAIL."""
    code, doc = _check_exit(cli, FIXTURES / entry["model"])
    assert code in (0, 2), doc
    if code == 2:
        assert doc["inconclusive"] and "could not verify" in doc["inconclusive"]


@pytest.mark.parametrize(
    "name",
    [
        "hf_wav2vec2_attention_mask_ts_op17",
        "hf_wav2vec2_attention_mask_dynamo_op18",
        "hf_hubert_attention_mask_ts_op17",
        "hf_hubert_attention_mask_dynamo_op18",
        "ta_wav2vec2_lengths_dynamo_op18",
    ],
)
def test_check_passes_real_exports_with_mask_and_length_inputs(name: str, cli) -> None:
    """Random 0..3 masks and lengths longer than the axis made these fail; roles fix that."""
    code, doc = _check_exit(cli, FIXTURES / "library" / f"{name}.onnx")
    assert code == 0 and doc["passed"], doc
    assert all(1 not in r["setting"].values() for r in doc["runs"])


def test_check_fails_torchaudio_wav2vec2_torchscript_naming_wb102(cli) -> None:
    code, doc = _check_exit(cli, FIXTURES / "library/ta_wav2vec2_lengths_ts_op17.onnx")
    assert code == 1 and not doc["passed"]
    failed = [r for r in doc["runs"] if not r["ok"]]
    assert failed and failed[0]["explained_by"] == "WB102" and not failed[0]["doubtful"]
    assert min(failed[0]["derived"].values()) >= 2, "the frame axis must be >= 2 where it fails"


def test_check_dims_keeps_planned_values_for_other_dims(cli) -> None:
    model = FIXTURES / "where_broadcast/hubert_features_only_op17.onnx"
    code, doc = _check_exit(cli, model, "--dims", "B=2,3")
    assert code == 0, doc
    assert sorted(r["setting"]["B"] for r in doc["runs"]) == [2, 3]
    assert all(r["setting"]["L"] > 1 for r in doc["runs"])


def test_check_dims_unknown_name_is_a_usage_error(cli) -> None:
    res = cli("check", str(HUBERT), "--dims", "X=3")
    assert res.returncode == 2
    assert "X" in res.stderr and "B, L" in res.stderr and len(res.stderr.splitlines()) == 1


def _save(tmp_path: Path, name: str, text: str) -> Path:
    import onnx

    path = tmp_path / name
    onnx.save(onnx.parser.parse_model(text), str(path))
    return path


def test_check_dims_declared_minus_one_are_dynamic(cli, tmp_path: Path) -> None:
    """Paddle2ONNX declares dynamic dims as -1; 0 is an empty axis onnxruntime enforces."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="/Relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 0, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 0, 4])],
    )
    path = tmp_path / "paddle.onnx"
    onnx.save(
        helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]), str(path)
    )
    code, doc = _check_exit(cli, path)
    assert code == 0, doc
    assert [sorted(r["setting"]) for r in doc["runs"]] == [["x:0"], ["x:0"]]
    assert min(r["setting"]["x:0"] for r in doc["runs"]) >= 2


def test_check_made_up_shape_input_is_inconclusive(cli, tmp_path: Path) -> None:
    """A failure that the probe's own invented shape values may cause is not the model's."""
    path = _save(
        tmp_path,
        "shape_input.onnx",
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x, int64[2] shape) => (float[M, K] y) { y = Reshape(x, shape) }""",
    )
    code, doc = _check_exit(cli, path)
    assert code == 2, doc
    assert "could not verify without --reference" in doc["inconclusive"]
    assert "'shape'" in doc["inconclusive"]


def test_check_memory_is_bounded(cli, tmp_path: Path) -> None:
    """A model that allocates 14 GB is stopped at the probe's memory budget, quickly."""
    import time

    path = _save(
        tmp_path,
        "huge.onnx",
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[N] x) => (float[N] y) {
            s = Constant<value = int64[2] {60000, 60000}>()
            big = ConstantOfShape<value = float[1] {1.0}>(s)
            total = ReduceSum<keepdims = 0>(big)
            y = Add(x, total) }""",
    )
    start = time.monotonic()
    code, doc = _check_exit(cli, path)
    assert time.monotonic() - start < 60
    assert code == 2 and "MB" in doc["inconclusive"], doc


def test_check_stops_within_two_seconds_of_sigterm(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    path = _save(
        tmp_path,
        "forever.onnx",
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[N] x) => (float[N] y) {
            n = Constant<value = int64 {1000000000000}>()
            c = Constant<value = bool {1}>()
            y = Loop(n, c, x) <body = body (int64 i, bool ci, float[N] xi)
                                         => (bool co, float[N] xo) {
                co = Identity(ci)
                xo = Sin(xi)
            }> }""",
    )
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxfix", "check", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    time.sleep(4)
    assert proc.poll() is None, "the probe should still be running"
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    assert time.monotonic() - sent < 2
    assert proc.returncode == 2
    # no probe process is left behind
    time.sleep(0.5)
    alive = subprocess.run(["pgrep", "-f", str(path)], capture_output=True, text=True)
    assert alive.stdout.strip() == ""


def test_probes_work_from_a_script_without_a_main_guard(tmp_path: Path) -> None:
    """A caller that imported onnxruntime first (no fork) and has no __main__ guard, or runs
    from stdin: the probe child must not re-import the caller's main module."""
    model = FIXTURES / "where_broadcast/mask_rank1_op12.onnx"
    code = (
        "import onnxruntime\nfrom onnxfix import api\n"
        f"r = api.repair({str(model)!r}, {str(tmp_path / 'out.onnx')!r})\n"
        "print(r.exit_code, r.error)\n"
    )
    script = tmp_path / "script.py"
    script.write_text(code)
    for args in ([str(script)], ["-"]):
        res = subprocess.run(
            [sys.executable, *args],
            input=code if args == ["-"] else None,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert res.stdout.strip() == "0 None", res.stdout + res.stderr


def test_dims_too_large_to_probe_cannot_verify(cli) -> None:
    """--dims asking for inputs past the probe's size budget is a limit, like memory and
    time: COULD NOT VERIFY (exit 2) saying why and what to pass, where it was an internal
    error ('RuntimeError: inputs too large to probe')."""
    model = FIXTURES / "where_broadcast/where_broadcastable_op17.onnx"
    res = cli("check", str(model), "--dims", "T=900000000")
    assert res.returncode == 2 and "internal error" not in res.stderr, res.stderr
    assert "no result with B=2, T=900000000: its inputs would hold more than" in res.stdout
    assert "could not verify" in res.stdout and "pass --dims with smaller values" in res.stdout
