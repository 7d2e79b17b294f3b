"""Handlers of the ops that move and reshape data: shape values flow through them.

Registered into :data:`onnxfix.shapes.ops.HANDLERS` on import.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    d_mul,
    d_prod,
    derived,
    fresh,
)
from onnxfix.shapes.ops import T, _axes_input, _axis, _dt0, attr, handles
from onnxfix.shapes.propagate import MAX_VALUE, OpCall, Propagator


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
