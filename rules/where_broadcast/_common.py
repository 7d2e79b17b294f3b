"""What the broadcast rules share: operand shapes and the mask-indexing signature."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from onnxfix.context import Context, GraphCtx
from onnxfix.rule import Match, fail, ok
from onnxfix.shapes import BroadcastCheck, Shape, Sym, broadcast

FAMILY = "where-broadcast"


def operands(g: GraphCtx, node: onnx.NodeProto) -> Match[tuple[list[str], list[Shape]]]:
    names = [i for i in g.inputs_of(node) if i]
    if len(names) < 2:
        return fail("fewer than two operands", node)
    shapes = [g.shape(i) for i in names]
    missing = [n for n, s in zip(names, shapes) if s is None]
    if missing:
        return fail(f"the shape of '{missing[0]}' is unknown", node)
    return ok((names, shapes))  # type: ignore[arg-type]


@dataclass(frozen=True)
class MaskEvidence:
    names: list[str]
    shapes: list[Shape]
    data: int  # 1 = X, 2 = Y
    axes: list[int]
    check: BroadcastCheck


def mask_indexing(g: GraphCtx, node: onnx.NodeProto) -> Match[MaskEvidence]:
    """The Where is PyTorch's ``x[mask] = v``: the condition equals the data's leading dims,
    the shapes do not broadcast from the right, and do once the condition is unsqueezed."""
    got = operands(g, node)
    if not got:
        return got  # type: ignore[return-value]
    names, shapes = got.get()
    if len(shapes) != 3:
        return fail("not a three-operand Where", node, 1)
    check = broadcast(shapes)
    if check.ok:
        return fail("the operands broadcast (aligned from the right)", node, 1)
    r1, r2 = len(shapes[1]), len(shapes[2])
    di = 1 if r1 >= r2 else 2
    cond, data = tuple(shapes[0]), tuple(shapes[di])
    rc = len(cond)
    if rc == 0 or rc >= len(data):
        return fail(f"the condition's rank {rc} is not below the data's rank {len(data)}", node, 2)
    if not all(c == d or c == 1 for c, d in zip(cond, data[:rc])):
        return fail(
            f"the condition {list(map(str, cond))} is not the data's leading dims "
            f"{list(map(str, data[:rc]))}",
            node,
            3,
        )
    axes = list(range(rc, len(data)))
    after = broadcast([cond + (1,) * len(axes), shapes[1], shapes[2]])
    if not after.ok:
        return fail("the operands would not broadcast even with the condition unsqueezed", node, 4)
    return ok(MaskEvidence(names, shapes, di, axes, check))


def conditional_terms(ctx: Context, check: BroadcastCheck) -> list[str]:
    """Human-readable conditions under which the conflicting axes would broadcast."""
    terms = []
    for _axis, dims in check.conflicts:
        syms = [d for d in dims if isinstance(d, Sym)]
        ints = [d for d in dims if isinstance(d, int)]
        for s in syms:
            if ints:
                terms.append(f"{ctx.fmt_dim(s)} == {ints[0]} or {ctx.fmt_dim(s)} == 1")
            else:
                others = [ctx.fmt_dim(o) for o in dims if o != s]
                terms.append(f"{ctx.fmt_dim(s)} == {' == '.join(others)} (or one is 1)")
                break
    return terms
