"""What the trace-baked rules share: which conditions pin an input dim, and how to say so."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx

from onnxfix.context import Context, GraphCtx
from onnxfix.edit import RuleEditor
from onnxfix.rule import Fix
from onnxfix.shapes import Sym, named
from onnxfix.shapes.conditions import Condition, Verdict
from onnxfix.shapes.ops import BROADCAST_OPS
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


def input_axis(ctx: Context, symbol: str) -> tuple[str, int] | None:
    """The model input and axis whose dynamic dim is ``symbol`` (the first, in graph order)."""
    for vi in ctx.model.graph.input:
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if input_dim_key(vi.name, i, d) == symbol:
                return vi.name, i
    return None


def where_from(ctx: Context, symbol: str) -> str:
    """Which input axis carries ``symbol`` ("axis 1 of input 'x'")."""
    found = input_axis(ctx, symbol)
    return f"axis {found[1]} of input '{found[0]}'" if found else "an input dim"


# --- a range of the traced length, rebuilt from the input's size --------------------------


#: ops whose output axis (counted from the right) is the same axis of each operand that
#: has it: elementwise and broadcasting ops
_ALIGNED = frozenset(BROADCAST_OPS) | {
    "Cast",
    "Not",
    "Neg",
    "Abs",
    "Sign",
    "Identity",
    "Relu",
    "Sqrt",
    "Exp",
    "Log",
    "IsNaN",
    "CastLike",
}


@dataclass(frozen=True)
class RangeRebuild:
    """``torch.arange(int(T))`` (or numpy's) baked as a constant ``[0, 1, ..., N-1]`` at
    the traced size N: each place that reads it gets ``Range(0, T)`` instead, with T read
    from the input axis that carries it, and each ``Expand`` on the way keeps the axis
    (its baked target entry N becomes 1, which broadcasting turns into the axis's size:
    N at the traced size, T at every other)."""

    #: (output of the node that reads the constant, input index, the constant's name,
    #: dtype, and shape with -1 on the range's axis; () for a 1-D range)
    reads: tuple[tuple[str, int, str, int, tuple[int, ...]], ...]
    #: (output of an Expand, its target's name, index of the target entry that becomes 1,
    #: target length)
    expands: tuple[tuple[str, str, int, int], ...]
    #: the model input and axis whose size the range counts to
    source: tuple[str, int]
    size: int


def range_fix(
    ctx: Context, g: GraphCtx, value: str, axis: int, size: int, symbol: str
) -> Fix[RangeRebuild] | None:
    """The fix that rebuilds the baked range giving axis ``axis`` of ``value`` its traced
    ``size`` (about ``symbol``, the input dim it stood for), when it comes through
    elementwise ops, Expands and ``ConstantOfShape(Shape(.))`` from constants that hold
    exactly ``arange(size)``; None if any path that carries the axis comes from elsewhere
    (a table that is not a range, a graph input, a reshape)."""
    source = input_axis(ctx, symbol)
    shape = g.shape(value)
    if source is None or shape is None or not 0 <= axis < len(shape) or g.depth:
        return None
    walk = _RangeWalk(g, size)
    if not walk.value(value, len(shape) - 1 - axis) or not walk.reads:
        return None
    plan = RangeRebuild(
        tuple((o, i, c, t, s) for (o, i), (c, t, s) in walk.reads.items()),
        tuple((o, t, k, n) for o, (t, k, n) in walk.expands.items()),
        source,
        size,
    )
    return Fix(_title(plan, symbol), plan, about=(named(symbol),))


class _RangeWalk:
    """Upstream from a value, along one axis (counted from the right, as broadcasting
    aligns it) that has the traced ``size``: every path carrying it must end at a range."""

    def __init__(self, g: GraphCtx, size: int) -> None:
        self.g, self.size = g, size
        self.reads: dict[tuple[str, int], tuple[str, int, tuple[int, ...]]] = {}
        self.expands: dict[str, tuple[str, int, int]] = {}
        self.seen: set[tuple[str, int]] = set()

    def carries(self, name: str, right: int) -> bool:
        s = self.g.shape(name)
        return s is not None and len(s) > right and s[len(s) - 1 - right] == self.size

    def value(self, name: str, right: int) -> bool:
        if (name, right) in self.seen:
            return True
        self.seen.add((name, right))
        g = self.g
        node = g.producer(name)
        if node is None or len(node.output) != 1:
            return False
        if node.op_type == "ConstantOfShape":
            shape_of = g.producer(node.input[0]) if node.input else None
            if shape_of is None or shape_of.op_type != "Shape" or shape_of.attribute:
                return False
            return self.value(shape_of.input[0], right)  # the same dims: it follows
        if node.op_type == "Expand":
            return self.expand(node, right)
        if node.op_type == "Unsqueeze":
            return self.unsqueeze(node, right)
        if node.op_type not in _ALIGNED:
            return False
        return all(
            self.operand(node, i, right) for i, x in enumerate(node.input) if self.carries(x, right)
        )

    def expand(self, node: onnx.NodeProto, right: int) -> bool:
        target = self.g.value(node.input[1])
        if target is None or len(target) <= right or not self.carries(node.input[0], right):
            return False  # no target, or the size is in the target alone
        k = len(target) - 1 - right
        if target[k] == self.size:
            self.expands[node.output[0]] = (node.input[1], k, len(target))
        elif target[k] != 1:
            return False
        return self.operand(node, 0, right)

    def unsqueeze(self, node: onnx.NodeProto, right: int) -> bool:
        """``arange(N).unsqueeze(0).expand(b, N)`` (ESPnet's and WeNet's make_pad_mask):
        the axis keeps its place from the right unless new axes come after it."""
        out = self.g.shape(node.output[0])
        axes = self.g.axes(node)
        if out is None or axes is None:
            return False
        axes = [a + len(out) if a < 0 else a for a in axes]
        at = len(out) - 1 - right
        if at in axes:
            return False
        return self.operand(node, 0, right - sum(1 for a in axes if a > at))

    def range_along(
        self, c: np.ndarray, right: int, reader: onnx.NodeProto, index: int
    ) -> tuple[int, ...] | None:
        """The shape to give ``Range(0, T)`` (-1 on the axis, 1 on the others; () if 1-D)
        when ``c`` is ``arange(N)`` along axis ``right`` (from the right), repeated along
        any other axis.  A repeated axis is dropped to 1 only where ``reader`` broadcasts
        and another of its operands gives that axis its size: SpeechBrain's
        ``arange(max_len).expand(len(length), max_len) < length.unsqueeze(1)`` bakes the
        batch too, into one ``[2, N]`` constant; compared with ``[B, 1]`` lengths, a
        ``[1, T]`` range gives the same mask at every B."""
        at = c.ndim - 1 - right
        if at < 0 or c.shape[at] != self.size or not _arange_along(c, at):
            return None
        for axis in (i for i in range(c.ndim) if i != at and c.shape[i] != 1):
            if reader.op_type not in BROADCAST_OPS or not self._sized_by_another(
                reader, index, c.ndim - 1 - axis
            ):
                return None
        return () if c.ndim == 1 else tuple(-1 if i == at else 1 for i in range(c.ndim))

    def _sized_by_another(self, reader: onnx.NodeProto, index: int, right: int) -> bool:
        for i, x in enumerate(reader.input):
            s = self.g.shape(x) if i != index and x else None
            if s is not None and len(s) > right and s[len(s) - 1 - right] != 1:
                return True
        return False

    def operand(self, node: onnx.NodeProto, index: int, right: int) -> bool:
        name, g = node.input[index], self.g
        c = g.const(name)
        if c is None:
            return self.value(name, right)
        shape = self.range_along(c, right, node, index)
        if shape is not None:
            self.reads[(node.output[0], index)] = (name, g.dtype(name), shape)
            return True
        producer = g.producer(name)
        if producer is None or producer.op_type == "Constant":
            return False  # a constant table of the traced size, not a range
        return self.value(name, right)  # computed from constants: a range further up?


def _arange_along(c: np.ndarray, at: int) -> bool:
    """Whether ``c`` counts 0, 1, ... along axis ``at`` and repeats along the others."""
    line = np.arange(c.shape[at]).reshape([-1 if i == at else 1 for i in range(c.ndim)])
    return bool(np.array_equal(c, np.broadcast_to(line, c.shape)))


def _title(plan: RangeRebuild, symbol: str) -> str:
    """The fix's title, the same for every rule that offers it."""
    name, at = plan.source
    expands = f", and let {len(plan.expands)} Expand(s) keep that axis" if plan.expands else ""
    return (
        f"Rebuild the baked range of {plan.size} ({len(plan.reads)} constant(s) "
        f"[0, ..., {plan.size - 1}]) as Range(0, {symbol}) from axis {at} of input '{name}'"
        f"{expands}"
    )


def rebuild_range(editor: RuleEditor, g: GraphCtx, plan: RangeRebuild) -> None:
    """Apply a :class:`RangeRebuild`: ``Range(0, Shape(input)[axis], 1)`` (cast to the
    constant's dtype) where the constant was read; Expand target entries set to 1.  A
    place another fix of this round already rebuilt (one padding mask read by every
    layer's attention: each layer's finding has this plan) is left as it is."""
    name, axis = plan.source
    for out, index, const, dtype, shape in plan.reads:
        reader = g.producer(out)
        assert reader is not None
        if reader.input[index] != const:
            continue
        size = editor.make("Shape", [name], "size_of_input")
        at = editor.const(np.asarray(axis, dtype=np.int64), "axis")
        limit = editor.make("Gather", [size.output[0], at.output[0]], "traced_length", axis=0)
        zero = editor.const(np.asarray(0, dtype=np.int64), "range_start")
        one = editor.const(np.asarray(1, dtype=np.int64), "range_delta")
        rng = editor.make("Range", [zero.output[0], limit.output[0], one.output[0]], "range")
        nodes = [size, at, limit, zero, one, rng]
        if shape:
            to = editor.const(np.asarray(shape, dtype=np.int64), "range_shape")
            nodes += [to, editor.make("Reshape", [rng.output[0], to.output[0]], "range_shaped")]
        if dtype != onnx.TensorProto.INT64:
            nodes.append(editor.make("Cast", [nodes[-1].output[0]], "range_cast", to=dtype))
        editor.insert_before(reader, nodes)
        editor.set_input(reader, index, nodes[-1].output[0])
    for out, target, k, n in plan.expands:
        expand = g.producer(out)
        assert expand is not None
        if expand.input[1] != target:
            continue
        keep = np.ones(n, dtype=np.int64)
        keep[k] = 0
        mul = editor.const(keep, "keep_axis")
        add = editor.const(1 - keep, "axis_one")
        times = editor.make("Mul", [expand.input[1], mul.output[0]], "target_keep")
        plus = editor.make("Add", [times.output[0], add.output[0]], "target_one")
        editor.insert_before(expand, [mul, add, times, plus])
        editor.set_input(expand, 1, plus.output[0])


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
    if node.op_type == "Reshape" and v.values and v.values[0] in (g.value(node.input[1]) or ()):
        return (
            "a size turned into a Python number during tracing (int(x.size(1)), or a "
            "size read from .shape inside a traced function) baked into the Reshape target"
        )
    for name in node.input:
        origin = _origin(g, name)
        if origin:
            return origin
    return "a size turned into a Python number during tracing"


_RANGE = "a range of the traced length (torch.arange(int(T)) or numpy.arange(T))"
_TABLE = (
    "a table of the traced size stored as a constant (numpy.arange(T), a mask built with "
    "Python loops)"
)


def _table(g: GraphCtx, name: str) -> str | None:
    """What a constant that gives a traced size is; None for a scalar (a fill value, an
    epsilon), which carries no size."""
    c = g.const(name)
    if c is not None and c.size < 2:
        return None
    if c is not None and any(
        c.shape[at] == c.size and _arange_along(c, at) for at in range(c.ndim)
    ):
        return _RANGE  # a range along one axis, 1 on the others
    return _TABLE


#: ops the search for a size's origin passes through: by their first input (the data)
_THROUGH_FIRST = frozenset(
    {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Expand", "Not", "Identity"}
)
#: ... and by each input (a mask combined with another, a comparison with a range, a
#: mask put together from blocks)
_THROUGH_EACH = frozenset(
    {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Where"}
    | {"Add", "Sub", "Mul", "Div", "And", "Or", "Xor", "Concat"}
)


def _origin(g: GraphCtx, name: str, depth: int = 0, seen: set[str] | None = None) -> str | None:
    seen = set() if seen is None else seen
    if depth > 12 or name in seen:
        return None
    seen.add(name)
    p = g.producer(name)
    if p is None:
        init = any(t.name == name for t in g.graph.initializer)
        return _table(g, name) if init else None
    if p.op_type == "Slice" and len(p.input) > 2 and g.ints(p.input[2]) is not None:
        return "a buffer sliced with a Python int (self.pe[:, :int(T)])"
    if p.op_type == "Range" and all(g.ints(i) is not None for i in p.input[:3]):
        return _RANGE
    if p.op_type == "Constant":
        return _table(g, name)
    if p.op_type in _THROUGH_FIRST and p.input:
        return _origin(g, p.input[0], depth + 1, seen)
    if p.op_type in _THROUGH_EACH:
        for x in p.input:
            found = _origin(g, x, depth + 1, seen)
            if found:
                return found
    return None
