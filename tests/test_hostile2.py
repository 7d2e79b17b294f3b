"""Hostile models and faults, round two: output injection, invalid graphs, file modes,
leftovers after a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import FIXTURES

EVIL = "/enc/Where\n::error file=x::pwned\x1b[2K\x1b[1A"
HUBERT = FIXTURES / "where_broadcast/hubert_extract_features_op17_fp32.onnx"


def _evil_model(folder: Path) -> Path:
    """A broken Where whose node name, a value name and a dim name carry a GitHub workflow
    command and ANSI escapes, saved under a file name that carries them too."""
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    dim = "T\x1b[2K\n::warning::x"
    g = helper.make_graph(
        [helper.make_node("Where", ["mask\x1b[1A", "zero", "x"], ["y"], name=EVIL)],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", dim, 4]),
            helper.make_tensor_value_info("mask\x1b[1A", TensorProto.BOOL, ["B", dim]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", dim, 4])],
        [zero],
    )
    path = folder / "model\x1b[2K\n::error::name.onnx"
    onnx.save(
        helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]), str(path)
    )
    return path


def test_model_controlled_text_cannot_inject_commands_or_escapes(cli, tmp_path: Path) -> None:
    path = _evil_model(tmp_path)
    for fmt in ("text", "github"):
        res = cli("lint", str(path), "--format", fmt)
        assert res.returncode == 1, res.stderr
        out = res.stdout + res.stderr
        assert "\x1b" not in out and "WB102" in out
        for line in out.splitlines():
            if line.startswith("::"):  # only our own annotations and the summary
                assert fmt == "github"
                assert line.startswith(("::error file=", "::notice title=onnxfix summary::"))
                assert "::error file=x" not in line.split("::", 2)[1]
    # machine formats keep the exact names (JSON escapes them)
    doc = json.loads(cli("lint", str(path), "--format", "json").stdout)
    (finding,) = [f for f in doc["files"][0]["findings"] if f["rule"] == "WB102"]
    assert finding["node"] == EVIL and doc["files"][0]["path"] == str(path)
    sarif = json.loads(cli("lint", str(path), "--format", "sarif").stdout)
    names = [
        loc["name"]
        for r in sarif["runs"][0]["results"]
        for loc in r["locations"][0]["logicalLocations"]
    ]
    assert EVIL in names


def test_a_cycle_is_an_error(cli, tmp_path: Path) -> None:
    m = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N] x) => (float[N] y) {
            a = Add(x, y)
            y = Relu(a) }""")
    path = tmp_path / "cycle.onnx"
    onnx.save(m, str(path))
    res = cli("lint", str(path), "--format", "json")
    assert res.returncode == 1
    rules = [f["rule"] for f in json.loads(res.stdout)["files"][0]["findings"]]
    assert "VA102" in rules


def test_repaired_files_get_the_mode_of_a_new_file(tmp_path: Path) -> None:
    out = tmp_path / "fixed.onnx"
    env = dict(os.environ)
    res = subprocess.run(
        ["sh", "-c", f"umask 022 && {sys.executable} -m onnxfix repair '{HUBERT}' '{out}'"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    out.chmod(0o640)  # a file that is replaced keeps its mode
    res = subprocess.run(
        [sys.executable, "-m", "onnxfix", "repair", str(HUBERT), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0 and stat.S_IMODE(out.stat().st_mode) == 0o640


def _external_model(folder: Path) -> Path:
    """The HuBERT fixture (a WB102 error) with its weights in a data file."""
    m = onnx.load(str(HUBERT))
    src = folder / "src"
    src.mkdir()
    path = src / "model.onnx"
    onnx.save(
        m, str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=0
    )
    return path


def test_a_sigkilled_repair_leaves_nothing_after_the_next_run(tmp_path: Path) -> None:
    model = _external_model(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "fixed.onnx"
    killed = False
    for _ in range(20):  # kill it while its temporary files exist (copy or verification)
        proc = subprocess.Popen(
            [sys.executable, "-m", "onnxfix", "repair", str(model), str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.name.startswith(".onnxfix-") for p in out_dir.iterdir()):
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.002)
        proc.wait(timeout=30)
        if killed:
            break
    assert killed, "the repair finished before its temporary files could be seen"
    leftovers = [p for p in out_dir.iterdir() if p.name.startswith(".onnxfix-")]
    assert leftovers, "SIGKILL cannot be handled: the files stay until the next run"
    res = subprocess.run(
        [sys.executable, "-m", "onnxfix", "repair", str(model), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "removed" in res.stderr and "interrupted onnxfix left" in res.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["fixed.onnx", "fixed.onnx.data"]


def test_a_declared_shape_onnxruntime_tolerates_is_a_warning(cli, tmp_path: Path) -> None:
    """onnxruntime 1.32 merges a wrong declared output shape leniently and runs the model
    (as onnxruntime's node_output_not_used test model shows): not 'refuses at load'."""
    g = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["y"], name="/T")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    path = tmp_path / "declared.onnx"
    onnx.save(
        helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]), str(path)
    )
    res = cli("lint", str(path), "--format", "json")
    (f,) = json.loads(res.stdout)["files"][0]["findings"]
    assert f["rule"] == "VA101" and f["severity"] == "warning" and res.returncode == 0
    assert "runs (measured)" in f["message"] and "refuses" not in f["message"]
    # it loads and runs; check still fails it, because the output contradicts its declaration
    res = cli("check", str(path))
    assert res.returncode == 1 and "onnxruntime load: ok" in res.stdout and "declared" in res.stdout


# --- failed verification: the cause in our words, then the runtime's text, shortened ------

ORT_SIGNATURE_TEXT = (
    "[ONNXRuntimeError] : 1 : FAIL : Exception during initialization: "
    "/onnxruntime_src/onnxruntime/core/framework/session_state_utils.cc:294 "
    "onnxruntime::common::Status onnxruntime::session_state_utils::SaveInitializedTensors("
    "const onnxruntime::Env&, const std::__cxx11::basic_string<char>&, const "
    "onnxruntime::GraphViewer&, const std::vector<int>&, onnxruntime::ITensorAllocator&) "
    "ort_value_name_idx_map.MaxIdx() > -1 was false. OrtValue indexes should have been populated."
)


def test_runtime_text_loses_its_prefix_paths_and_signatures() -> None:
    from onnxfix.diagnose import shorten

    short = shorten(ORT_SIGNATURE_TEXT)
    assert short == (
        "Exception during initialization: ort_value_name_idx_map.MaxIdx() > -1 was false. "
        "OrtValue indexes should have been populated."
    )
    assert len(shorten("x " * 1000)) <= 300


def test_structural_causes_are_named() -> None:
    from onnxfix.diagnose import structural_cause

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    a = helper.make_node("Relu", ["x"], ["a"], name="first")
    b = helper.make_node("Neg", ["a"], ["y"], name="second")

    def model(nodes: list, outputs: list) -> onnx.ModelProto:
        return helper.make_model(helper.make_graph(nodes, "g", [x], outputs))

    assert structural_cause(model([], [])) == "the graph has no outputs and no nodes left"
    assert structural_cause(model([a], [])) == "the graph has no outputs left"
    assert structural_cause(model([b, a], [y])) == (
        "node 'second' (Neg) reads 'a' before the node that makes it (nodes out of order)"
    )
    assert (
        structural_cause(model([b], [y])) == "node 'second' (Neg) reads 'a', which nothing defines"
    )
    assert (
        structural_cause(model([a], [y])) == "output 'y' is made by no node, input or initializer"
    )
    assert structural_cause(model([a, b], [y])) is None


def test_a_failed_verification_leads_with_the_cause(cli, tmp_path: Path) -> None:
    """The issue's case: half the nodes gone, the unsafe fixes remove the dangling output and
    the dead nodes, and nothing is left for onnxruntime to load."""
    m = onnx.load(str(FIXTURES / "where_broadcast/mask_rank1_op12.onnx"))
    keep = list(m.graph.node)[: len(m.graph.node) // 2]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    src, out = tmp_path / "half.onnx", tmp_path / "out.onnx"
    onnx.save(m, str(src))
    res = cli("repair", str(src), str(out), "--unsafe-fixes")
    assert res.returncode == 2 and not out.exists()
    line = res.stderr.strip().splitlines()[-1]
    assert (
        "verification failed at onnxruntime load: the graph has no outputs and no nodes left;"
        in line
    )
    assert "onnxruntime says: Exception during initialization" in line
    assert "onnxruntime::" not in line and ".cc:" not in line
    assert len(line) < 400
    assert list(tmp_path.iterdir()) == [src]


def test_a_run_time_failure_names_its_node() -> None:
    from onnxfix.verify import VerificationError

    exc = VerificationError(
        "probe",
        "B=2, T=5: [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code returned "
        "while running Where node. Name:'/encoder/Where' Status Message: "
        "/onnxruntime_src/onnxruntime/core/providers/cpu/math/element_wise_ops.h:666 void "
        "onnxruntime::BroadcastIterator::Append(ptrdiff_t, ptrdiff_t) axis == 1 || axis == "
        "largest was false. Attempting to broadcast an axis by a dimension other than 1. 5 by 48",
    ).explained(None)
    assert str(exc).startswith(
        "verification failed at probe: node '/encoder/Where' (Where) fails at run time; "
        "onnxruntime says: B=2, T=5: Non-zero status code"
    )
    assert "Attempting to broadcast an axis by a dimension other than 1. 5 by 48" in str(exc)
    assert "onnxruntime::" not in str(exc)


def _relu_model(folder: Path) -> Path:
    """The smallest model a probe can run: y = Relu(x), x of dynamic length N."""
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
    )
    model = folder / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    return model


def test_a_probe_child_does_not_hold_the_callers_output(tmp_path: Path) -> None:
    """A forked probe child keeps none of the caller's stdout and stderr: a pipe reading
    them (``onnxfix repair ... | tee``, a CI step) would stay open until the child had
    freed its session, which took 1-2 s for a 1.2 GB model."""
    model = _relu_model(tmp_path)
    # A fresh interpreter that never imported onnxruntime forks its probe child (as the CLI
    # does); thousands of runs keep the child alive while its descriptors are read.
    script = f"""
import os
from onnxfix import runner
job = runner.Job({str(model)!r}, tuple(runner.Run({{"N": 3}}, seed=i) for i in range(20000)))
channel = runner._Channel(job)
assert channel.forked
first = channel.get(30)
assert first is not None and first is not EOFError and first.ok, first
held = [os.readlink(f"/proc/{{channel.pid}}/fd/{{fd}}") for fd in (1, 2)]
channel.stop()
print(held)
"""
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str([os.devnull, os.devnull])


def test_a_finished_probe_child_is_reaped_without_being_waited_for(tmp_path: Path) -> None:
    """The parent stops a child that said everything without waiting for it to free its
    session; it must still be reaped (no zombie) and leave no unclosed pipe, whether it
    was forked (the CLI) or started as a worker (a caller that imported onnxruntime)."""
    model = _relu_model(tmp_path)
    for prelude in ("", "import onnxruntime"):
        script = f"""{prelude}
import gc, os, subprocess, time
from onnxfix import runner
job = runner.Job({str(model)!r}, (runner.Run({{"N": 3}}),))
outs = [runner.execute(job, runner.Limits(2000, 60)) for _ in range(3)]
assert all(len(o) == 1 and o[0].ok for o in outs), outs
deadline = time.monotonic() + 10
while True:
    gc.collect()
    ps = subprocess.run(["ps", "--ppid", str(os.getpid()), "-o", "pid=,comm="],
                        capture_output=True, text=True).stdout
    left = [line for line in ps.splitlines() if line.split()[-1] != "ps"]
    if not left or time.monotonic() > deadline:
        break
    time.sleep(0.1)
print(left)
"""
        r = subprocess.run(
            [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "[]", (prelude, r.stdout)
        assert "Warning" not in r.stderr, (prelude, r.stderr)
