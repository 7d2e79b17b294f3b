"""Hostile and broken inputs: one line naming the file and exit 2, or a finding; never a
traceback, never a hang, nothing partial left behind, the input unchanged."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import FIXTURES
from tests.models import IR, mask_where

MASK = FIXTURES / "where_broadcast/mask_rank1_op12.onnx"


def _limited(*args: str, mem_gb: int = 3, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI with an address-space limit: a model must not make it allocate gigabytes."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem_gb << 30, mem_gb << 30))

    return subprocess.run(
        [sys.executable, "-m", "onnxfix", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
    )


def _one_line_exit_2(res: subprocess.CompletedProcess, path: Path) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    _one_line_exit_2(_limited("lint", str(fifo), timeout=30), fifo)


def test_dev_null(tmp_path: Path) -> None:
    _one_line_exit_2(_limited("lint", "/dev/null", timeout=30), Path("/dev/null"))


def test_missing_external_data(tmp_path: Path) -> None:
    m = mask_where(["B", "T", 16], 2, 17)
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((64, 16), np.float32), "w"))
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path), save_as_external_data=True, location="w.data", size_threshold=0)
    (tmp_path / "w.data").unlink()
    res = _limited("lint", str(path))
    _one_line_exit_2(res, path)
    assert "w.data" in res.stderr and "not found" in res.stderr


def test_huge_declared_shapes_bounded(tmp_path: Path) -> None:
    """100 bytes declaring float[2147483647] and a ConstantOfShape of 2**31 elements."""
    g = helper.make_graph(
        [
            helper.make_node(
                "Constant",
                [],
                ["s"],
                value=helper.make_tensor("v", TensorProto.INT64, [1], [2**31 - 1]),
            ),
            helper.make_node("ConstantOfShape", ["s"], ["big"]),
            helper.make_node("Shape", ["big"], ["sh"]),
            helper.make_node("Add", ["x", "x"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2**31 - 1])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("sh", TensorProto.INT64, None),
        ],
    )
    path = tmp_path / "huge.onnx"
    onnx.save(
        helper.make_model(g, ir_version=IR, opset_imports=[helper.make_opsetid("", 17)]), str(path)
    )
    res = _limited("lint", str(path), "--format", "json", mem_gb=1)
    assert res.returncode == 0, res.stderr  # TG103 on 'sh' is a warning
    assert "TG103" in res.stdout


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand."""
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _nested_ifs_bytes(depth: int) -> bytes:
    """A model with ``depth`` Ifs nested in then-branches, encoded by hand: protobuf's own
    Python runtime refuses to build messages that deep, but a file can still say it."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y0"], name="/leaf")],
        "leaf",
        [],
        [helper.make_tensor_value_info("y0", TensorProto.FLOAT, None)],
    )
    raw = graph.SerializeToString()
    for i in range(1, depth + 1):
        else_g = helper.make_graph(
            [helper.make_node("Identity", ["x"], [f"e{i}"])],
            f"e{i}",
            [],
            [helper.make_tensor_value_info(f"e{i}", TensorProto.FLOAT, None)],
        )
        node = helper.make_node("If", ["c"], [f"y{i}"], name=f"/if{i}", else_branch=else_g)
        then = _field(1, b"then_branch") + _field(6, raw) + _varint(20 << 3) + _varint(5)
        node_raw = node.SerializeToString() + _field(5, then)
        out = helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None)
        raw = (
            _field(1, node_raw) + _field(2, f"g{i}".encode()) + _field(12, out.SerializeToString())
        )
    inputs = b"".join(
        _field(11, helper.make_tensor_value_info(n, t, s).SerializeToString())
        for n, t, s in (("x", TensorProto.FLOAT, ["N"]), ("c", TensorProto.BOOL, []))
    )
    model = helper.make_model(
        helper.make_graph([], "m", [], []),
        ir_version=IR,
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ClearField("graph")
    return model.SerializeToString() + _field(7, raw + inputs)


@pytest.mark.parametrize("depth", [20, 200])
def test_nested_ifs(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.onnx"
    path.write_bytes(_nested_ifs_bytes(depth))
    res = _limited("lint", str(path))
    if depth == 20:  # parses: analysed like any model, subgraphs included
        assert res.returncode in (0, 1) and "Traceback" not in res.stderr, res.stderr
    else:  # deeper than protobuf parses: a clear refusal
        _one_line_exit_2(res, path)


def test_custom_domain_ops_are_left_alone(tmp_path: Path) -> None:
    g = helper.make_graph(
        [
            helper.make_node("FancyAttention", ["x"], ["y"], name="/custom", domain="com.example"),
            helper.make_node("Relu", ["y"], ["z"], name="/relu"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4])],
    )
    m = helper.make_model(
        g,
        ir_version=IR,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )
    path = tmp_path / "custom.onnx"
    onnx.save(m, str(path))
    assert _limited("lint", str(path)).returncode == 0
    out = tmp_path / "out.onnx"
    res = _limited("repair", str(path), str(out))
    assert res.returncode == 0 and "nothing to fix" in res.stdout
    assert not out.exists(), "a repair that fixed nothing writes nothing"


def test_ir_version_newer_than_onnxruntime(tmp_path: Path) -> None:
    m = mask_where(["B", "T", 4], 2, 17)
    m.ir_version = 99
    path = tmp_path / "future.onnx"
    onnx.save(m, str(path))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    lint = _limited("lint", str(path))
    assert lint.returncode == 1 and "WB102" in lint.stdout
    res = _limited("repair", str(path), str(tmp_path / "out.onnx"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "verification failed" in res.stderr
    assert sorted(os.listdir(tmp_path)) == ["future.onnx"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_interrupted_repair_leaves_nothing(tmp_path: Path) -> None:
    """SIGTERM while verification runs: no output, no temporary file, input unchanged."""
    src = FIXTURES / "where_broadcast/hubert_extract_features_op17_fp32.onnx"
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / "o.onnx"
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxfix", "repair", str(src), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.startswith(".onnxfix-") for p in tmp_path.iterdir()):
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # finished before the signal landed: then it must be whole
        assert out.exists()
        pytest.skip("repair finished before SIGTERM could be sent")
    assert proc.returncode == 2 and "interrupted" in err, err
    assert os.listdir(tmp_path) == []
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
