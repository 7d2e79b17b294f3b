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
from onnx import numpy_helper

from onnxfix.shapes.broadcast import broadcast
from onnxfix.shapes.dims import (
    INT_MAX,
    Dim,
    Shape,
    Sym,
    d_add,
    d_floordiv,
    d_mod,
    d_mul,
    d_prod,
    d_sub,
    derived,
    fresh,
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
    for o in c.node.output:
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
    op = c.node.op_type
    v = p.value(c.ins[0]) if op in ("Identity", "Cast", "CastLike", "Neg") else None
    if op == "Neg" and v is not None:
        v = tuple(d_mul(-1, x) for x in v)
    dtype = _dt0(p, c)
    if op == "Cast":
        dtype = int(attr(c.node, "to", 0))
    elif op == "CastLike":
        dtype = p.dtype(c.ins[1])
    p.set(c.out, c.s0, v, p.is_scalar(c.ins[0]), dtype)
    for extra in c.node.output[1:]:
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
    op = c.node.op_type
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


@handles("Shape")
def _shape(p: Propagator, c: OpCall) -> None:
    if c.s0 is None:
        p.set(c.out, None)
        return
    r = len(c.s0)
    start = int(attr(c.node, "start", 0))
    end = attr(c.node, "end", None)
    start = max(0, start + r if start < 0 else start)
    stop = r if end is None else int(end)
    stop = min(r, stop + r if stop < 0 else stop)
    v = list(c.s0[start:stop])
    p.set(c.out, (len(v),), v, dtype=T.INT64)


@handles("Size")
def _size(p: Propagator, c: OpCall) -> None:
    p.set(c.out, (), [d_prod(c.s0)] if c.s0 is not None else None, True, T.INT64)


@handles("Gather")
def _gather(p: Propagator, c: OpCall) -> None:
    s0, si = c.s0, c.shapes[1]
    if s0 is None or si is None:
        p.set(c.out, None)
        return
    axis = _axis(attr(c.node, "axis", 0), len(s0))
    res = tuple(s0[:axis]) + tuple(si) + tuple(s0[axis + 1 :])
    value = None
    v = p.value(c.ins[0])
    idx = p.const_ints(c.ins[1])
    if v is not None and idx is not None and len(s0) == 1:
        try:
            value = [v[i] for i in idx]
        except IndexError:
            value = None
    p.set(c.out, res, value, len(si) == 0, _dt0(p, c))


def _axes_input(p: Propagator, c: OpCall) -> list[int] | None:
    axes = attr(c.node, "axes", None)
    if axes is None and len(c.ins) > 1 and c.ins[1]:
        return p.const_ints(c.ins[1])
    return list(axes) if axes is not None else None


@handles("Unsqueeze")
def _unsqueeze(p: Propagator, c: OpCall) -> None:
    axes = _axes_input(p, c)
    if c.s0 is None or axes is None:
        p.set(c.out, None)
        return
    r = len(c.s0) + len(axes)
    res = list(c.s0)
    for a in sorted(a + r if a < 0 else a for a in axes):
        res.insert(a, 1)
    p.set(c.out, tuple(res), p.value(c.ins[0]), False, _dt0(p, c))


@handles("Squeeze")
def _squeeze(p: Propagator, c: OpCall) -> None:
    axes = _axes_input(p, c)
    if c.s0 is None:
        p.set(c.out, None)
        return
    r = len(c.s0)
    ax = (
        {i for i, d in enumerate(c.s0) if d == 1}
        if axes is None
        else {a + r if a < 0 else a for a in axes}
    )
    res = [d for i, d in enumerate(c.s0) if i not in ax]
    p.set(c.out, tuple(res), p.value(c.ins[0]), len(res) == 0, _dt0(p, c))


@handles("Concat")
def _concat(p: Propagator, c: OpCall) -> None:
    if any(s is None for s in c.shapes):
        p.set(c.out, None)
        return
    first: Shape = c.shapes[0]  # type: ignore[assignment]
    axis = _axis(attr(c.node, "axis", 0), len(first))
    res = list(first)
    total: Dim = 0
    for s in c.shapes:
        total = d_add(total, s[axis])  # type: ignore[index]
    res[axis] = total
    vals = [p.value(i) for i in c.ins]
    value = None
    if len(first) == 1 and all(v is not None for v in vals):
        value = [x for v in vals for x in v]  # type: ignore[union-attr]
    p.set(c.out, tuple(res), value, False, _dt0(p, c))


@handles("Slice")
def _slice(p: Propagator, c: OpCall) -> None:
    s0, ins, dt0 = c.s0, c.ins, _dt0(p, c)
    if s0 is None:
        p.set(c.out, None)
        return
    axes: list[int] | None
    steps: list[int] | None
    if len(ins) == 1:  # opset < 10: attributes
        starts_v: Sequence[Dim] | None = list(attr(c.node, "starts", []))
        ends_v: Sequence[Dim] | None = list(attr(c.node, "ends", []))
        a = attr(c.node, "axes", None)
        axes = list(a) if a is not None else None
        steps = None
    else:
        starts_v = p.value(ins[1])
        ends_v = p.value(ins[2])
        axes = p.const_ints(ins[3]) if len(ins) > 3 and ins[3] else None
        steps = p.const_ints(ins[4]) if len(ins) > 4 and ins[4] else None
    r = len(s0)
    res = list(s0)
    if starts_v is None or ends_v is None:
        # Bounds computed at run time: untouched axes keep their dims, sliced ones get
        # a dim that is equal for equal slices (same input, same bound tensors).
        for ax in axes if axes is not None else range(r):
            ax = ax + r if ax < 0 else ax
            res[ax] = derived("slice", s0[ax], *ins[1:])
        p.set(c.out, tuple(res), None, False, dt0)
        return
    axes = axes if axes is not None else list(range(len(starts_v)))
    steps = steps if steps is not None else [1] * len(axes)
    for st, en, ax, sp in zip(starts_v, ends_v, axes, steps):
        ax = ax + r if ax < 0 else ax
        res[ax] = slice_len(s0[ax], st, en, sp)
    value = None
    v = p.value(ins[0])
    st0, en0 = starts_v[0] if starts_v else 0, ends_v[0] if ends_v else 0
    if v is not None and r == 1 and isinstance(st0, int) and isinstance(en0, int):
        value = list(v[slice(st0, en0, steps[0])])
    p.set(c.out, tuple(res), value, False, dt0)


def slice_len(d: Dim, st: Dim, en: Dim, sp: Dim) -> Dim:
    if all(isinstance(x, int) for x in (d, st, en, sp)):
        return len(range(*slice(st, en, sp).indices(d)))  # type: ignore[arg-type]
    if sp == 1 and isinstance(st, int) and isinstance(en, int):
        if st >= 0 and en >= INT_MAX // 4:
            return d_add(d, -st)
        if st >= 0 and en < 0:
            return d_add(d, -(st - en))
    if sp == 1 and st == 0 and isinstance(en, Sym):
        return derived("slice", d, en)
    return derived("slice", d, st, en, sp)


@handles("Reshape")
def _reshape(p: Propagator, c: OpCall) -> None:
    s0 = c.s0
    target = p.value(c.ins[1]) if len(c.ins) > 1 else None
    if s0 is None or target is None:
        p.set(c.out, None)
        return
    allowzero = int(attr(c.node, "allowzero", 0))
    res: list[Dim | None] = []
    for i, t in enumerate(target):
        if t == 0 and not allowzero:
            res.append(s0[i] if i < len(s0) else fresh())
        else:
            res.append(None if t == -1 else t)
    if None in res:
        known = [d for d in res if d is not None]
        res[res.index(None)] = quotient(list(s0), known)
    p.set(c.out, tuple(res), p.value(c.ins[0]), False, _dt0(p, c))  # type: ignore[arg-type]


def quotient(numer: list[Dim], known: list[Dim]) -> Dim:
    """numel(numer) / prod(known), cancelling common factors first."""
    rest = list(numer)
    den: list[Dim] = []
    for k in known:
        if k in rest:
            rest.remove(k)
        else:
            den.append(k)
    num = d_prod(rest)
    dd = d_prod(den)
    if isinstance(num, int) and isinstance(dd, int) and dd and num % dd == 0:
        return num // dd
    return d_floordiv(num, dd)


@handles("Expand")
def _expand(p: Propagator, c: OpCall) -> None:
    target = p.value(c.ins[1])
    if c.s0 is None or target is None:
        p.set(c.out, None)
        return
    shape = broadcast([c.s0, target]).shape
    value = None
    v = p.value(c.ins[0])
    if v is not None and shape is not None and len(shape) <= 1:
        n = shape[0] if shape else 1
        if isinstance(n, int) and n <= MAX_VALUE and len(v) in (1, n):
            value = list(v) * n if len(v) == 1 else list(v)
    p.set(c.out, shape, value, False, _dt0(p, c))


@handles("ConstantOfShape")
def _constant_of_shape(p: Propagator, c: OpCall) -> None:
    target = p.value(c.ins[0])
    t = attr(c.node, "value")
    dtype = t.data_type if isinstance(t, onnx.TensorProto) else T.FLOAT
    value = None
    if (
        target is not None
        and len(target) == 1
        and isinstance(target[0], int)
        and 0 <= target[0] <= MAX_VALUE
    ):
        fill = numpy_helper.to_array(t).reshape(-1)[0] if isinstance(t, onnx.TensorProto) else 0
        if float(fill).is_integer():
            value = [int(fill)] * target[0]
    p.set(c.out, tuple(target) if target is not None else None, value, False, dtype)


@handles("Range")
def _range(p: Propagator, c: OpCall) -> None:
    start, limit, delta = (p.value(i) for i in c.ins[:3])
    n: Dim | None = None
    if start is not None and limit is not None and delta is not None:
        if start == (0,) and delta == (1,):
            n = limit[0]
        elif all(isinstance(x, int) for x in (*start, *limit, *delta)) and delta[0]:
            n = max(0, -(-(limit[0] - start[0]) // delta[0]))  # type: ignore[operator]
        else:
            n = derived("range", start[0], limit[0], delta[0])
    p.set(c.out, (n if n is not None else fresh("range"),), None, False, _dt0(p, c))


@handles("Transpose")
def _transpose(p: Propagator, c: OpCall) -> None:
    if c.s0 is None:
        p.set(c.out, None)
        return
    perm = attr(c.node, "perm", None) or list(reversed(range(len(c.s0))))
    p.set(c.out, tuple(c.s0[i] for i in perm), None, False, _dt0(p, c))


@handles("MatMul")
def _matmul(p: Propagator, c: OpCall) -> None:
    a, b = c.shapes[0], c.shapes[1]
    if a is None or b is None:
        p.set(c.out, None)
        return
    a2 = (1, *a) if len(a) == 1 else tuple(a)
    b2 = (*b, 1) if len(b) == 1 else tuple(b)
    batch = broadcast([a2[:-2], b2[:-2]]).shape or ()
    res: Shape = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        res = res[:-2] + res[-1:]
    if len(b) == 1:
        res = res[:-1]
    p.set(c.out, tuple(res), None, False, _dt0(p, c))


@handles("Gemm")
def _gemm(p: Propagator, c: OpCall) -> None:
    a, b = c.shapes[0], c.shapes[1]
    if a is None or b is None:
        p.set(c.out, None)
        return
    m = a[1] if attr(c.node, "transA", 0) else a[0]
    n = b[0] if attr(c.node, "transB", 0) else b[1]
    p.set(c.out, (m, n), None, False, _dt0(p, c))


@handles("Conv", "MaxPool", "AveragePool", "LpPool")
def _conv(p: Propagator, c: OpCall) -> None:
    node, x = c.node, c.s0
    if x is None:
        p.set(c.out, None)
        return
    nsp = len(x) - 2
    if node.op_type == "Conv":
        w = c.shapes[1]
        if w is None:
            p.set(c.out, None)
            return
        kernel: list[Dim] = list(w[2:])
        channels: Dim = w[0]
    else:
        kernel = list(attr(node, "kernel_shape", []))
        channels = x[1]
    strides = list(attr(node, "strides", None) or [1] * nsp)
    dil = list(attr(node, "dilations", None) or [1] * nsp)
    pads = list(attr(node, "pads", None) or [0] * (2 * nsp))
    auto_pad = attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    ceil = int(attr(node, "ceil_mode", 0))
    spatial: list[Dim] = []
    for i in range(nsp):
        d, k = x[2 + i], kernel[i]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            spatial.append(d if strides[i] == 1 else derived("ceildiv", d, strides[i]))
        elif isinstance(k, int) and not ceil:
            # floor((d + pads - eff) / s) + 1, kept exact so that equal sizes compare
            # equal: a causal conv over (cache + x) gives x back
            eff = dil[i] * (k - 1) + 1
            inner = d_add(d, pads[i] + pads[i + nsp] - eff)
            spatial.append(d_add(d_floordiv(inner, strides[i]), 1))
        else:
            spatial.append(derived("conv", d, k, strides[i], dil[i], pads[i] + pads[i + nsp], ceil))
    p.set(c.out, (x[0], channels, *spatial), None, False, _dt0(p, c))
    for extra in node.output[1:]:
        p.set(extra, None)


@handles("Pad")
def _pad(p: Propagator, c: OpCall) -> None:
    """Each axis grows by its begin and end pads (``pads`` input, or attribute before 11)."""
    s0 = c.s0
    pads = attr(c.node, "pads", None)
    if pads is None and len(c.ins) > 1 and c.ins[1]:
        pads = p.value(c.ins[1])
    if s0 is None or pads is None:
        p.set(c.out, None)
        return
    axes = list(range(len(s0)))
    if len(c.ins) > 3 and c.ins[3]:
        given = p.const_ints(c.ins[3])
        if given is None:
            p.set(c.out, None)
            return
        axes = [a + len(s0) if a < 0 else a for a in given]
    if len(pads) != 2 * len(axes):
        p.set(c.out, None)
        return
    res = list(s0)
    for k, a in enumerate(axes):
        res[a] = d_add(d_add(res[a], pads[k]), pads[k + len(axes)])
    p.set(c.out, tuple(res), None, False, _dt0(p, c))


@handles("ConvTranspose")
def _conv_transpose(p: Propagator, c: OpCall) -> None:
    """(in - 1) * stride - pads + dilation * (k - 1) + output_padding + 1 per spatial axis."""
    node, x, w = c.node, c.s0, c.shapes[1] if len(c.shapes) > 1 else None
    if x is None or w is None or attr(node, "output_shape") is not None:
        p.set(c.out, None)
        return
    nsp = len(x) - 2
    group = int(attr(node, "group", 1))
    strides = list(attr(node, "strides", None) or [1] * nsp)
    dil = list(attr(node, "dilations", None) or [1] * nsp)
    pads = list(attr(node, "pads", None) or [0] * (2 * nsp))
    outpad = list(attr(node, "output_padding", None) or [0] * nsp)
    auto_pad = attr(node, "auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) not in ("NOTSET", ""):
        p.set(c.out, None)
        return
    spatial: list[Dim] = []
    for i in range(nsp):
        k = w[2 + i]
        if not isinstance(k, int):
            p.set(c.out, None)
            return
        grown = d_mul(d_add(x[2 + i], -1), strides[i])
        spatial.append(d_add(grown, dil[i] * (k - 1) + outpad[i] + 1 - pads[i] - pads[i + nsp]))
    p.set(c.out, (x[0], d_mul(w[1], group), *spatial), None, False, _dt0(p, c))


@handles(
    "ReduceMax",
    "ReduceMin",
    "ReduceMean",
    "ReduceSum",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "ArgMax",
    "ArgMin",
)
def _reduce(p: Propagator, c: OpCall) -> None:
    s0, op = c.s0, c.node.op_type
    if s0 is None:
        p.set(c.out, None)
        return
    r = len(s0)
    if op in ("ArgMax", "ArgMin"):
        axes: list[int] | None = [int(attr(c.node, "axis", 0))]
    else:
        axes = _axes_input(p, c)
        if axes is None and len(c.ins) > 1 and c.ins[1]:
            p.set(c.out, None)
            return
    keep = int(attr(c.node, "keepdims", 1))
    if not axes:
        if attr(c.node, "noop_with_empty_axes", 0):
            p.set(c.out, s0, None, False, _dt0(p, c))
            return
        axes = list(range(r))
    ax = {a + r if a < 0 else a for a in axes}
    res = (
        tuple(1 if i in ax else d for i, d in enumerate(s0))
        if keep
        else tuple(d for i, d in enumerate(s0) if i not in ax)
    )
    dtype = T.INT64 if op in ("ArgMax", "ArgMin") else _dt0(p, c)
    p.set(c.out, res, None, len(res) == 0, dtype)


@handles("Split")
def _split(p: Propagator, c: OpCall) -> None:
    node, s0 = c.node, c.s0
    n = len(node.output)
    if s0 is None:
        for o in node.output:
            p.set(o, None)
        return
    axis = _axis(attr(node, "axis", 0), len(s0))
    sizes: Sequence[Dim] | None = attr(node, "split", None)
    if sizes is None and len(c.ins) > 1 and c.ins[1]:
        sizes = p.value(c.ins[1])
    if sizes is None:
        d = s0[axis]
        if isinstance(d, int) and d % n == 0:
            sizes = [d // n] * n
        else:
            sizes = [derived("split", d, n, i) for i in range(n)]
    v = p.value(c.ins[0])
    start: Dim = 0
    for o, sz in zip(node.output, sizes):
        res = list(s0)
        res[axis] = sz
        value = None
        if v is not None and len(s0) == 1 and isinstance(sz, int) and isinstance(start, int):
            value = list(v[start : start + sz])
        start = d_add(start, sz)
        p.set(o, tuple(res), value, False, _dt0(p, c))


@handles("Tile")
def _tile(p: Propagator, c: OpCall) -> None:
    reps = p.value(c.ins[1])
    if c.s0 is None or reps is None or len(reps) != len(c.s0):
        p.set(c.out, None)
        return
    p.set(c.out, tuple(d_mul(a, b) for a, b in zip(c.s0, reps)), None, False, _dt0(p, c))


@handles("Flatten")
def _flatten(p: Propagator, c: OpCall) -> None:
    if c.s0 is None:
        p.set(c.out, None)
        return
    axis = _axis(attr(c.node, "axis", 1), len(c.s0))
    p.set(c.out, (d_prod(c.s0[:axis]), d_prod(c.s0[axis:])), None, False, _dt0(p, c))


@handles("NonZero")
def _nonzero(p: Propagator, c: OpCall) -> None:
    r: Dim = len(c.s0) if c.s0 is not None else fresh()
    p.set(c.out, (r, fresh("nonzero")), None, False, T.INT64)
