"""Hand-built models of the bug class that no exporter fixture covers (for unseen-case tests)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR = 8  # onnx 1.23's default IR 14 is newer than onnxruntime accepts


def _model(nodes, inputs, outputs, opset: int, inits=()) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, ir_version=IR, opset_imports=[helper.make_opsetid("", opset)])


def mismatched_add(opset: int = 17) -> onnx.ModelProto:
    """Add of [2, 3] and [4]: WB101 (no fix), and strict inference refuses it."""
    return _model(
        [helper.make_node("Add", ["a", "b"], ["y"], name="/Add")],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        opset,
    )


def mask_where(
    data_shape: list, mask_rank: int, opset: int, x_first: bool = False
) -> onnx.ModelProto:
    """y = Where(mask, 0, x) with mask = x's leading ``mask_rank`` dims (x[mask] = 0)."""
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    ins = ["mask", "x", "zero"] if x_first else ["mask", "zero", "x"]
    return _model(
        [helper.make_node("Where", ins, ["y"], name="/model/enc/Where_7")],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, data_shape),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, data_shape[:mask_rank]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, data_shape)],
        opset,
        [zero],
    )


def lengths_mask(opset: int) -> onnx.ModelProto:
    """The mask is computed in the graph: Range(Shape(x)[1]) >= lengths[:, None]."""

    def c(name, arr):
        return numpy_helper.from_array(np.array(arr, np.int64), name)

    inits = [c("one", 1), c("zero_i", 0), c("ax1", [1]), c("i1", 1)]
    zero_f = numpy_helper.from_array(np.array(0.0, np.float32), "zero_f")
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="/Shape"),
        helper.make_node("Gather", ["shape", "i1"], ["t"], name="/Gather", axis=0),
        helper.make_node("Range", ["zero_i", "t", "one"], ["r"], name="/Range"),
        helper.make_node("Unsqueeze", ["lengths", "ax1"], ["len2"], name="/Unsqueeze"),
        helper.make_node("GreaterOrEqual", ["r", "len2"], ["pad"], name="/GreaterOrEqual"),
        helper.make_node("Where", ["pad", "zero_f", "x"], ["y"], name="/encoder/Where"),
    ]
    return _model(
        nodes,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", 6]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["N"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", 6])],
        opset,
        [*inits, zero_f],
    )


def where_in_if(opset: int) -> onnx.ModelProto:
    """The buggy Where sits in the then-branch of an If; the else-branch is fine."""
    zero = helper.make_tensor("z", TensorProto.FLOAT, [], [0.0])
    then_g = helper.make_graph(
        [
            helper.make_node("Constant", [], ["zc"], name="/then/Constant", value=zero),
            helper.make_node("Where", ["mask", "zc", "x"], ["ty"], name="/then/Where"),
        ],
        "then",
        [],
        [helper.make_tensor_value_info("ty", TensorProto.FLOAT, None)],
    )
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["ey"], name="/else/Identity")],
        "else",
        [],
        [helper.make_tensor_value_info("ey", TensorProto.FLOAT, None)],
    )
    return _model(
        [
            helper.make_node(
                "If", ["flag"], ["y"], name="/If", then_branch=then_g, else_branch=else_g
            )
        ],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", 5]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["B", "T"]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", 5])],
        opset,
    )
