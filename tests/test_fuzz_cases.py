"""Crashes the fuzz benchmark found (``python benchmarks/fuzz.py``), each kept as a small
model of the same kind: every one must give one clear line and exit 2, never a traceback
or an abort.  The comment names the fuzz case that found it (seed-index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def _relu(shape_out: list) -> onnx.ModelProto:
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="r")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape_out)],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _nul_location(folder: Path) -> Path:
    """fuzz 1-166: an external-data location with a NUL byte (os calls raise ValueError)."""
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    (folder / "w.data").write_bytes(w.raw_data)
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "w.data\x00x"), ("offset", "0"), ("length", "64")):
        e = w.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", 4])],
        [w],
    )
    path = folder / "model.onnx"
    path.write_bytes(helper.make_model(g).SerializeToString())
    return path


def _negative_dim(folder: Path) -> Path:
    """fuzz 1-1857: a declared output dim of -5 makes ONNX's shape inference abort the
    process (a C++ assertion in std::clamp): lint exited 134."""
    m = _relu(["T", 4])
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_value = -5
    # the abort needs a Slice-like consumer of the merged dim: HuBERT's had one; a plain
    # graph must still be refused before inference ever sees the dim
    path = folder / "model.onnx"
    path.write_bytes(m.SerializeToString())
    return path


CASES = {"nul_location": _nul_location, "negative_dim": _negative_dim}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("command", ["lint", "repair", "check"])
def test_fuzz_finding_is_one_line_exit_2(cli, tmp_path: Path, name: str, command: str) -> None:
    path = CASES[name](tmp_path)
    args = [command, str(path)] + ([str(tmp_path / "out.onnx")] if command == "repair" else [])
    res = cli(*args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"onnxfix: {path}"), res.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_a_size_past_int64_is_not_computable() -> None:
    """fuzz 1-5353: a dim of 2**62 times a constant overflowed numpy's int64 when the
    conditions of a ConvTasNet Reshape were scanned (OverflowError in lint)."""
    from onnxfix.shapes.dims import evaluate_array

    assert evaluate_array(2**70, {}, 3) is None
    assert list(evaluate_array(7, {}, 2)) == [7, 7]  # type: ignore[arg-type]


def test_an_axis_outside_the_rank_matches_no_repeat_pattern() -> None:
    """fuzz 1-5536: a rewired repeat Loop whose split axis fell outside the rank of the
    tensor indexed past the end of its shape (IndexError in RP102)."""
    from onnxfix.rules.repeat_pattern._common import axis_of

    node = helper.make_node("SplitToSequence", ["x"], ["s"], axis=3)
    assert axis_of(node, 3) is None
    assert axis_of(helper.make_node("Concat", ["a"], ["b"], axis=-1), 3) == 2
    assert axis_of(helper.make_node("Concat", ["a"], ["b"], axis=-4), 3) is None


def test_a_huge_slice_count_lists_no_repeat_counts(cli, tmp_path: Path) -> None:
    """fuzz 16-234: the repeated axis of a repeat Loop declared 2**62 long; the match
    listed one repeat count per slice and ran out of memory (MemoryError in RP102, lint
    and repair).  Counts are listed for a modest slice count only; a uniform repeat is
    described as such."""
    from tests.conftest import FIXTURES

    m = onnx.load(str(FIXTURES / "repeat_pattern/repeat_size_last_axis_op13.onnx"))
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2**62
    path = tmp_path / "huge.onnx"
    onnx.save(m, str(path))
    res = cli("lint", str(path))
    assert res.returncode in (0, 1) and "internal error" not in res.stderr, res.stderr
    assert "each slice repeated 3 times" in res.stdout
    small = cli("lint", str(FIXTURES / "repeat_pattern/repeat_size_last_axis_op13.onnx"))
    assert "repeats [3, 3, 3]" in small.stdout  # a slice count of 3 is still listed
