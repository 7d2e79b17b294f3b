"""Handlers of the network ops: MatMul, Gemm, convolutions and pooling, Pad, reductions.

Registered into :data:`onnxfix.shapes.ops.HANDLERS` on import.
"""

from __future__ import annotations

from onnxfix.shapes.broadcast import broadcast
from onnxfix.shapes.dims import Dim, Shape, d_add, d_floordiv, d_mul, derived
from onnxfix.shapes.ops import T, _axes_input, _dt0, attr, handles
from onnxfix.shapes.propagate import OpCall, Propagator


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
    s0, op = c.s0, c.op
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
