"""One small handler per ONNX op: output shapes, dtypes and shape values.

The table is :data:`HANDLERS` (op type -> handler), the way onnxruntime's
``symbolic_shape_infer`` dispatches.  A handler reads its inputs from the
propagator and records its outputs with :meth:`Propagator.set`; an op with no
handler takes what ONNX shape inference said (:func:`unknown`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import onnx

from onnxfix.shapes.broadcast import broadcast
from onnxfix.shapes.dims import (
    Dim,
    Sym,
    d_add,
    d_floordiv,
    d_mod,
    d_mul,
    d_sub,
)
from onnxfix.shapes.propagate import MAX_VALUE, OpCall, Propagator

Handler = Callable[[Propagator, OpCall], None]
HANDLERS: dict[str, Handler] = {}

T = onnx.TensorProto


def handles(*ops: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for op in ops:
            HANDLERS[op] = fn
        return fn

    return register


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _dt0(p: Propagator, c: OpCall) -> int:
    return p.dtype(c.ins[0]) if c.ins and c.ins[0] else 0


def unknown(p: Propagator, c: OpCall) -> None:
    """No rule for this op (or a custom domain): ONNX's inferred shapes, if any."""
    for o in c.outs:
        p.set(o, None)


def _axis(value: object, rank: int) -> int:
    a = int(value)  # type: ignore[call-overload]
    return a + rank if a < 0 else a


@handles("Constant")
def _constant(p: Propagator, c: OpCall) -> None:
    t = attr(c.node, "value")
    if isinstance(t, onnx.TensorProto):
        p.set(c.out, tuple(int(d) for d in t.dims), None, len(t.dims) == 0, t.data_type)
        p.stored[c.out] = t
        if len(t.dims) <= 1 and math.prod(t.dims) <= MAX_VALUE:
            p.const(c.out)  # small 1-D ints are shape values (Reshape targets)
        return
    ints = attr(c.node, "value_ints")
    if ints is not None:
        p.set(c.out, (len(ints),), list(ints), dtype=T.INT64)
        return
    iv = attr(c.node, "value_int")
    if iv is not None:
        p.set(c.out, (), [int(iv)], True, dtype=T.INT64)
        return
    p.set(c.out, None)


SAME_SHAPE = {
    "Identity",
    "Cast",
    "CastLike",
    "Not",
    "Neg",
    "Abs",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Erf",
    "Sqrt",
    "Exp",
    "Log",
    "Reciprocal",
    "Softmax",
    "LogSoftmax",
    "Dropout",
    "Gelu",
    "IsNaN",
    "IsInf",
    "Sign",
    "Floor",
    "Ceil",
    "Round",
    "LeakyRelu",
    "Elu",
    "Selu",
    "HardSigmoid",
    "HardSwish",
    "Clip",
    "BatchNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "LayerNormalization",
    "Softplus",
    "Softsign",
    "Mish",
    "CumSum",
    "Trilu",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Celu",
    "ThresholdedRelu",
    "LpNormalization",
    "MeanVarianceNormalization",
    "Hardmax",
    "Shrink",
    "BitwiseNot",
    "SimplifiedLayerNormalization",
    "SkipLayerNormalization",
    "FastGelu",
    "QuickGelu",
    "BiasGelu",
    "Swish",
}


@handles(*SAME_SHAPE)
def _same_shape(p: Propagator, c: OpCall) -> None:
    op = c.op
    v = p.value(c.ins[0]) if op in ("Identity", "Cast", "CastLike", "Neg") else None
    if op == "Neg" and v is not None:
        v = tuple(d_mul(-1, x) for x in v)
    dtype = _dt0(p, c)
    if op == "Cast":
        dtype = int(attr(c.node, "to", 0))
    elif op == "CastLike":
        dtype = p.dtype(c.ins[1])
    p.set(c.out, c.s0, v, p.is_scalar(c.ins[0]), dtype)
    for extra in c.outs[1:]:
        p.set(extra, None)


BROADCAST_OPS = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Mod",
    "And",
    "Or",
    "Xor",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "Where",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "BitShift",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
}
_VALUE_ARITH: dict[str, Callable[[Dim, Dim], Dim]] = {
    "Add": d_add,
    "Sub": d_sub,
    "Mul": d_mul,
    "Div": d_floordiv,
    "Mod": d_mod,
}
_BOOL_OUT = {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor"}


def _elementwise(vals: Sequence[tuple[Dim, ...] | None]) -> list[tuple[Dim, ...]] | None:
    """Values broadcast to one length (each a scalar or of the common length)."""
    known = [v for v in vals if v is not None]
    if len(known) != len(vals):
        return None
    n = max(len(v) for v in known)
    if any(len(v) not in (1, n) for v in known):
        return None
    return [v * n if len(v) == 1 else v for v in known]


@handles(*BROADCAST_OPS)
def _broadcasting(p: Propagator, c: OpCall) -> None:
    op = c.op
    known = [s for s in c.shapes if s is not None]
    res = broadcast(known).shape if len(known) == len([i for i in c.ins if i]) else None
    value: list[Dim] | None = None
    fn = _VALUE_ARITH.get(op)
    if fn is not None and len(c.ins) == 2:
        full = _elementwise([p.value(c.ins[0]), p.value(c.ins[1])])
        if full is not None:
            value = [fn(x, y) for x, y in zip(*full)]
    if op in ("Equal", "Where") and value is None:
        value = _select_value(p, op, c.ins)
    dtype = T.BOOL if op in _BOOL_OUT else (p.dtype(c.ins[1]) if op == "Where" else _dt0(p, c))
    p.set(c.out, res, value, all(p.is_scalar(i) for i in c.ins if i), dtype)


def _select_value(p: Propagator, op: str, ins: list[str]) -> list[Dim] | None:
    """Values of Equal/Where on small shape tensors (the exporter's ``-1 -> 1`` idiom)."""
    full = _elementwise([p.value(i) for i in ins])
    if full is None:
        return None
    if op == "Equal":
        out: list[Dim] = []
        for a, b in zip(*full):
            if a == b:
                out.append(1)
            elif isinstance(a, int) and isinstance(b, int):
                out.append(0)
            elif (isinstance(a, Sym) and a.varies and b == -1) or (
                isinstance(b, Sym) and b.varies and a == -1
            ):
                out.append(0)  # a size is never -1
            else:
                return None
        return out
    cond, x, y = full
    if not all(isinstance(k, int) for k in cond):
        return None
    return [a if k else b for k, a, b in zip(cond, x, y)]


def _axes_input(p: Propagator, c: OpCall) -> list[int] | None:
    axes = attr(c.node, "axes", None)
    if axes is None and len(c.ins) > 1 and c.ins[1]:
        return p.const_ints(c.ins[1])
    return list(axes) if axes is not None else None


# the other handlers register themselves into HANDLERS when their modules are imported
from onnxfix.shapes import ops_nn, ops_shape  # noqa: E402, F401
