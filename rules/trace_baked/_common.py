"""What the trace-baked rules share: which conditions pin an input dim, and how to say so."""

from __future__ import annotations

from collections.abc import Iterator

from onnxfix.context import Context, GraphCtx
from onnxfix.shapes import Sym
from onnxfix.shapes.conditions import Condition, Verdict
from onnxfix.shapes.propagate import input_dim_key

FAMILY = "trace-baked"

ADVICE = (
    "keep sizes as tensors while tracing: x.size(1) instead of int(x.size(1)), torch.arange "
    "instead of numpy.arange, view(b, -1, c) instead of a computed Python int, no Python `if` "
    "on a size (or export with dynamo=True and torch.export.Dim hints)"
)


def pinning(ctx: Context, ops: frozenset[str]) -> Iterator[tuple[Condition, Verdict]]:
    """Conditions of nodes of ``ops`` that pin an input dim, upstream first, consequences
    left out (:attr:`onnxfix.context.Context.pinning`)."""
    for cond, verdict in ctx.pinning:
        if cond.node.op_type in ops:
            yield cond, verdict


def where_from(ctx: Context, symbol: str) -> str:
    """Which input axis carries ``symbol`` ("axis 1 of input 'x'")."""
    for vi in ctx.model.graph.input:
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if input_dim_key(vi.name, i, d) == symbol:
                return f"axis {i} of input '{vi.name}'"
    return "an input dim"


def pinned_fields(ctx: Context, cond: Condition, v: Verdict) -> dict[str, str]:
    """The message fields every pinned-size finding shares: the sizes it runs at
    (``works``), the symbol (``sym``), the input axis carrying it (``where``) and the
    likely cause."""
    return {
        "works": works_at(ctx, cond, v),
        "sym": v.symbol or ", ".join(v.syms),
        "where": where_from(ctx, v.symbol or v.syms[0]),
        "cause": cause(cond.graph, cond, v),
    }


def works_at(ctx: Context, cond: Condition, v: Verdict) -> str:
    """The sizes at which the node runs, in words."""
    s = v.symbol
    if v.status == "never":
        return "at no size"
    if v.status == "finite":
        combos = ", ".join("(" + ", ".join(map(str, c)) + ")" for c in v.combos)
        return f"only when ({', '.join(v.syms)}) is one of {combos}, ..."
    if v.status == "residue":
        shown = ", ".join(map(str, v.values[:3]))
        rem = f" == {v.remainder}" if v.remainder else " == 0"
        return f"only when {s} % {v.modulus}{rem} ({s} = {shown}, ...)"
    values = list(v.values)
    if len(values) == 1:
        text = f"only when {s} == {values[0]}"
    elif v.interval or values == list(range(values[0], values[-1] + 1)):
        text = f"only when {s} is {values[0]}..{values[-1]}"
    else:
        text = f"only when {s} is one of {values}"
    derived = [d for d in (cond.lhs, cond.rhs) if isinstance(d, Sym) and d.kind != "sym"]
    if derived and any(isinstance(d, int) for d in (cond.lhs, cond.rhs)):
        const = next(d for d in (cond.lhs, cond.rhs) if isinstance(d, int))
        text += f" (where {ctx.fmt_dim(derived[0])} == {const})"
    return text


def cause(g: GraphCtx, cond: Condition, v: Verdict) -> str:
    """The likely cause, read from where the fixed size comes from."""
    if v.status == "residue":
        return (
            "a Python branch on a size, decided at trace time (a padding chosen by an "
            "`if`), leaves a graph that only fits sizes like the traced one"
        )
    node = cond.node
    if node.op_type == "Split":
        return "split sizes computed in Python at trace time (x.split([int(T) - 3, 3]))"
    if node.op_type == "Reshape":
        return (
            "a size turned into a Python number during tracing (int(x.size(1)), or a "
            "size read from .shape inside a traced function) baked into the Reshape target"
        )
    for name in node.input:
        origin = _origin(g, name)
        if origin:
            return origin
    return "a size turned into a Python number during tracing"


def _origin(g: GraphCtx, name: str, depth: int = 0) -> str | None:
    p = g.producer(name)
    if depth > 12:
        return None
    if p is None:
        init = any(t.name == name for t in g.graph.initializer)
        return (
            (
                "a table of the traced size stored as a constant (numpy.arange(T), a mask "
                "built with Python loops)"
            )
            if init
            else None
        )
    if p.op_type == "Slice" and len(p.input) > 2 and g.ints(p.input[2]) is not None:
        return "a buffer sliced with a Python int (self.pe[:, :int(T)])"
    if p.op_type == "Range" and all(g.ints(i) is not None for i in p.input[:3]):
        return "a range of the traced length (torch.arange(int(T)) or numpy.arange(T))"
    if p.op_type == "Constant":
        return (
            "a table of the traced size stored as a constant (numpy.arange(T), a mask "
            "built with Python loops)"
        )
    if p.op_type in (
        "Cast",
        "Unsqueeze",
        "Squeeze",
        "Reshape",
        "Transpose",
        "Expand",
        "Not",
        "Equal",
        "Less",
        "Greater",
        "Identity",
    ):
        return _origin(g, p.input[0], depth + 1)
    return None
