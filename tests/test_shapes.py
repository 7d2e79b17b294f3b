"""The symbolic dimension algebra: equalities learned from shape arithmetic."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from onnxfix import context
from onnxfix.shapes import broadcast, d_add, d_floordiv, d_mul, named
from tests.models import IR

B, T = named("B"), named("T")


def test_arithmetic_simplifies() -> None:
    assert d_add(T, 0) == T and d_add(d_add(T, 3), -3) == T
    assert d_mul(d_mul(T, 19), 48) == d_mul(T, 912)
    assert d_floordiv(d_mul(T, 912), d_mul(T, 48)) == 19
    assert d_floordiv(d_mul(B, T), T) == B
    assert d_add(T, d_mul(-1, T)) == 0


def test_broadcast_classifies_conflicts() -> None:
    assert broadcast([(B, T, 8), (8,)]).ok
    c = broadcast([(B, T), (B, T, 8)])
    assert not c.ok and not c.concrete
    assert broadcast([(2, 3), (4,)]).concrete


def _ctx(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return context.build(
        helper.make_model(g, ir_version=IR, opset_imports=[helper.make_opsetid("", 17)])
    )


def test_reshape_with_shape_arithmetic_keeps_symbols() -> None:
    """view(B, x.size(1), -1) of a [B, L] tensor sliced to a multiple: B and T survive."""

    def c(name, v):
        return numpy_helper.from_array(np.array(v, np.int64), name)

    ctx = _ctx(
        [
            helper.make_node("Shape", ["m"], ["ms"]),
            helper.make_node("Shape", ["x"], ["xs"]),
            helper.make_node("Gather", ["ms", "i0"], ["b"], axis=0),
            helper.make_node("Gather", ["xs", "i1"], ["t"], axis=0),
            helper.make_node("Unsqueeze", ["b", "a0"], ["b1"]),
            helper.make_node("Unsqueeze", ["t", "a0"], ["t1"]),
            helper.make_node("Concat", ["b1", "t1", "neg1"], ["target"], axis=0),
            helper.make_node("Reshape", ["m", "target"], ["r"]),
            helper.make_node("ReduceMin", ["r", "axm1"], ["red"], keepdims=0),
            helper.make_node("ConstantOfShape", ["xs"], ["zeros"]),
            helper.make_node("Range", ["zero", "t", "one"], ["rng"]),
        ],
        [
            helper.make_tensor_value_info("m", TensorProto.FLOAT, ["B", "L"]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", 8]),
        ],
        [helper.make_tensor_value_info("red", TensorProto.FLOAT, None)],
        [
            c("i0", 0),
            c("i1", 1),
            c("a0", [0]),
            c("neg1", [-1]),
            c("axm1", [-1]),
            c("zero", 0),
            c("one", 1),
        ],
    )
    g = ctx.main
    assert g.shape("red") == (B, T)
    assert g.shape("zeros") == (B, T, 8)
    assert g.shape("rng") == (T,)
    assert g.value("target") == (B, T, -1)


def test_stored_tensors_read_as_onnx_reads_them() -> None:
    """``tensor_value`` reads plain raw bytes itself (4 µs -> 1 µs a Constant): the same
    dtype, shape, values and read-only flag as ``numpy_helper.to_array``, for raw and typed
    storage; a size that does not match its dims is no value.  Float constants that are
    whole numbers are shape values, inf, nan and 2.5 are not."""
    from onnxfix.shapes.propagate import _RAW, Propagator, tensor_value

    arrays = [
        np.array(3, np.int64),
        np.array([1, -1, 4], np.int64),
        np.array([2, 3], np.int32),
        np.array([[1.5, 2.0]], np.float32),
        np.array([7.0], np.float64),
        np.array([True, False]),
        np.array([5, 250], np.uint8),
        np.array([-3], np.int8),
        np.array([1.0, 2.0], np.float16),  # not read by the fast path
        np.zeros((0, 4), np.float32),
    ]
    for arr in arrays:
        raw = numpy_helper.from_array(arr, "t")
        typed = helper.make_tensor("t", raw.data_type, arr.shape, arr.reshape(-1).tolist())
        for t in (raw, typed):
            got, want = tensor_value(t), numpy_helper.to_array(t)
            assert got is not None and got.dtype == want.dtype and got.shape == want.shape
            assert np.array_equal(got, want) and got.flags.writeable == want.flags.writeable
    bad = numpy_helper.from_array(np.array([1, 2, 3], np.int64), "t")
    bad.dims[:] = [4]
    assert tensor_value(bad) is None
    g = helper.make_graph([], "g", [], [])
    p = Propagator(g, {})
    for name, arr in {
        "two": np.array(2.0, np.float32),
        "neg": np.array([-0.0, -4.0], np.float64),
        "half": np.array([2.5], np.float32),
        "inf": np.array([np.inf], np.float32),
        "nan": np.array(np.nan, np.float32),
    }.items():
        p.set_const(name, arr)
    assert p.values == {"two": (2,), "neg": (0, -4)} and p.scalar == {"two"}
    assert TensorProto.FLOAT16 not in _RAW  # read by to_array
