"""What the repeat rules share: what a lowering means, and the one rewrite."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from onnxfix import semantics
from onnxfix.context import Context, GraphCtx
from onnxfix.edit import RuleEditor
from onnxfix.rule import Fix, FixPlan, Match, fail, ok
from onnxfix.shapes import Shape, d_mul
from onnxfix.shapes.ops import attr

FAMILY = "repeat-pattern"

#: Repeats beyond these are not rewritten (a corrupt count must not make us allocate).
MAX_REPEAT = 1 << 16
MAX_TOTAL = 1 << 20

FIX_SAFETY = """

    ## Fix safety
    Safe when the pattern is fully recognised: one input, one axis, and constant
    repeats (literal, or computed from constants: the analysis folds them). The
    replacement is one `Unsqueeze -> Expand -> Reshape` whose target shapes are
    computed from `Shape(x)` at run time, so dynamic dims stay dynamic (what
    WeNet's own fix does by hand), or a `Gather` with constant indices when the
    repeats are not all equal. Before it is accepted, the new subgraph is run on
    its own at two settings of distinct dims and compared with `numpy.repeat`;
    the whole repaired model is then verified as usual.

    ## In the PyTorch code
    Replace `torch.repeat_interleave(k, n, dim=1)` with
    `k.unsqueeze(2).expand(b, h_kv, n, t, d).reshape(b, h_kv * n, t, d)`, and never
    pass repeats as a tensor when they are known integers. torch 2.0.x lowers even
    an int `repeat_interleave` per slice; torch 2.1 and later lower it to `Tile`.
"""


@dataclass(frozen=True)
class Repeat:
    """What a lowering means: ``repeat_interleave(x, repeats, axis)``."""

    x: str
    axis: int
    repeats: tuple[int, ...] | None  # one count per slice, when the slice count is known
    uniform: int | None  # the count every slice gets, when they all get the same
    actual: Shape | None
    intended: Shape | None
    nodes: tuple[str, ...]  # node names making up the pattern, for the message
    orphans: tuple[str, ...]  # values that become unused once the pattern is replaced
    rank: int = 0
    dtype: int = onnx.TensorProto.FLOAT

    @property
    def wrong(self) -> bool:
        return self.intended is None or self.actual != self.intended


def axis_of(node: onnx.NodeProto, rank: int) -> int | None:
    """The node's ``axis`` attribute made non-negative; None when it is outside the rank
    (an invalid model: onnxruntime refuses it, and no pattern can be read from it)."""
    a = int(attr(node, "axis", 0))
    a = a + rank if a < 0 else a
    return a if 0 <= a < rank else None


def intended(
    xs: Shape, axis: int, repeats: tuple[int, ...] | None, uniform: int | None
) -> Shape | None:
    out = list(xs)
    if uniform is not None:
        out[axis] = d_mul(xs[axis], uniform)
    elif repeats is not None:
        out[axis] = sum(repeats)
    else:
        return None
    return tuple(out)


def unsqueeze_chain(g: GraphCtx, value: str, axis: int) -> Match[tuple[str, int | None]]:
    """Follow Reshape <- Expand <- Unsqueeze(axis + 1) back to the slice; (slice, repeat)."""
    found = g.chain(value, "Reshape", "Expand", "Unsqueeze")
    if found is None:
        return fail(f"'{value}' is not Reshape(Expand(Unsqueeze(..)))", g.producer(value), 2)
    _rs, ex, un = found
    axes = g.axes(un)
    if axes is None or axes != [axis + 1]:
        return fail(f"the Unsqueeze is not on axis {axis + 1}", un, 3)
    target = g.value(ex.input[1])
    r = target[axis + 1] if target is not None and len(target) > axis + 1 else None
    return ok((un.input[0], r if isinstance(r, int) else None))


def uniform_fill(g: GraphCtx, name: str, depth: int = 0) -> int | None:
    """The one value every element of ``name`` holds, through Where/Expand/Cast chains."""
    if depth > 8:
        return None
    c = g.const(name)
    if c is not None and c.size and np.all(c == c.reshape(-1)[0]):
        v = c.reshape(-1)[0]
        return int(v) if float(v).is_integer() else None
    v = g.value(name)
    if v is not None and v and all(isinstance(d, int) for d in v) and len(set(v)) == 1:
        return int(v[0])  # type: ignore[arg-type]
    p = g.producer(name)
    if p is None:
        return None
    if p.op_type == "ConstantOfShape":
        from onnx import numpy_helper

        t = attr(p, "value")
        fill = numpy_helper.to_array(t).reshape(-1)[0] if isinstance(t, onnx.TensorProto) else 0
        return int(fill) if float(fill).is_integer() else None
    if p.op_type in ("Expand", "Cast", "Identity"):
        return uniform_fill(g, p.input[0], depth + 1)
    if p.op_type == "Where":
        a = uniform_fill(g, p.input[1], depth + 1)
        b = uniform_fill(g, p.input[2], depth + 1)
        return a if a is not None and a == b else None
    return None


def fix_for(rep: Repeat) -> Fix[Repeat] | None:
    if rep.uniform is None and rep.repeats is None:
        return None
    if rep.uniform is not None and not 0 < rep.uniform <= MAX_REPEAT:
        return None
    if (
        rep.uniform is None
        and rep.repeats is not None
        and (any(not 0 <= r <= MAX_REPEAT for r in rep.repeats) or sum(rep.repeats) > MAX_TOTAL)
    ):
        return None
    title = (
        f"Replace with Unsqueeze -> Expand -> Reshape (repeat {rep.uniform} on axis "
        f"{rep.axis}, shapes from Shape({rep.x}))"
        if rep.uniform is not None
        else f"Replace with Gather of constant indices (repeats {list(rep.repeats or ())} on "
        f"axis {rep.axis})"
    )
    return Fix(title, rep)


def describe(ctx: Context, g: GraphCtx, rep: Repeat) -> str:
    if rep.repeats is not None:
        reps = f"repeats {list(rep.repeats)}"
    elif rep.uniform is not None:
        reps = f"each slice repeated {rep.uniform} times"
    else:
        reps = "repeats not constant"
    return f"'{rep.x}' {ctx.fmt(g.shape(rep.x))} on axis {rep.axis}, {reps}"


def advice(ctx: Context, rep: Repeat, loop: bool = False) -> str:
    """What to change at the source; names the exporter when it is the cause."""
    producer = ctx.model.producer_name, ctx.model.producer_version
    if loop:
        return (
            "repeat with unsqueeze/expand/reshape; do not build repeats from a size "
            "(torch.full((x.size(1),), r))"
        )
    if producer[0] == "pytorch" and producer[1].startswith("2.0.") and rep.uniform is not None:
        return (
            f"this per-slice lowering is what torch {producer[1]}'s exporter makes of "
            f"repeat_interleave(x, {rep.uniform}, dim) with an int: export with torch 2.1 "
            "or later (it lowers to Tile), or write x.unsqueeze(d + 1).expand(...)"
            ".reshape(...)"
        )
    return (
        "use x.unsqueeze(d + 1).expand(...).reshape(...) instead of repeat_interleave "
        "with a repeats tensor"
    )


def _numpy_repeat(rep: Repeat):
    def ref(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {
            "y": np.repeat(
                feeds["x"],
                rep.uniform if rep.uniform is not None else list(rep.repeats or ()),
                axis=rep.axis,
            )
        }

    return ref


def apply_repeat(editor: RuleEditor, plan: FixPlan[Repeat]) -> str:
    """Replace the lowering with one Unsqueeze -> Expand -> Reshape (or a Gather)."""
    node = plan.anchor.node
    assert node is not None
    rep = plan.params
    nodes = _build(editor, rep, node.output[0])
    g = plan.anchor.graph
    # the check feeds x with distinct dims; the repeated axis keeps its slice count
    checked = semantics.check_rewrite(
        nodes, _Fixed(g, rep), node, {"x": rep.x}, _numpy_repeat(rep), "numpy.repeat", editor
    )
    final = nodes.pop()
    editor.insert_before(node, nodes)
    editor.replace(node, final)
    editor.prune(rep.orphans)
    return checked


class _Fixed:
    """The graph as :func:`semantics.check_rewrite` sees it, with the repeated axis pinned
    to its slice count (uneven repeats need exactly that many slices)."""

    def __init__(self, g: GraphCtx, rep: Repeat) -> None:
        self.g, self.rep = g, rep

    def shape(self, name: str) -> Shape | None:
        s = self.g.shape(name)
        if name == self.rep.x and s is not None and self.rep.uniform is None:
            s = tuple(
                len(self.rep.repeats or ()) if i == self.rep.axis else d for i, d in enumerate(s)
            )
        return s

    def dtype(self, name: str) -> int:
        return self.g.dtype(name) or self.rep.dtype

    def const(self, name: str) -> np.ndarray | None:
        return None if name == self.rep.x else self.g.const(name)


def _build(editor: RuleEditor, rep: Repeat, out: str) -> list[onnx.NodeProto]:
    """Nodes computing ``repeat_interleave(x, repeats, axis)`` into ``out``."""
    nodes: list[onnx.NodeProto] = []
    x, axis = rep.x, rep.axis

    def add(op: str, inputs: list[str], suffix: str, **attrs: Any) -> str:
        n = editor.make(op, inputs, f"repeat/{suffix}", **attrs)
        nodes.append(n)
        return n.output[0]

    def const(values: list[int], suffix: str) -> str:
        c = editor.const(np.asarray(values, dtype=np.int64), f"repeat/{suffix}")
        nodes.append(c)
        return c.output[0]

    if rep.uniform is None:
        assert rep.repeats is not None
        idx = const(np.repeat(np.arange(len(rep.repeats)), rep.repeats).tolist(), "indices")
        add("Gather", [x, idx], "gather", axis=axis)
    else:
        shape = add("Shape", [x], "shape")
        head = add("Slice", [shape, const([0], "zero"), const([axis + 1], "to_axis1")], "head")
        tail = add("Slice", [shape, const([axis + 1], "from_axis1"), const([2**62], "end")], "tail")
        rvec = const([rep.uniform], "repeats")
        exp_shape = add("Concat", [head, rvec, tail], "expand_shape", axis=0)
        unsq = editor.unsqueeze(x, [axis + 1])
        nodes.extend(unsq)
        expanded = add("Expand", [unsq[-1].output[0], exp_shape], "expand")
        before = add("Slice", [shape, const([0], "zero_b"), const([axis], "to_axis")], "before")
        dim = add("Slice", [shape, const([axis], "at_axis"), const([axis + 1], "at_axis1")], "dim")
        merged = add("Mul", [dim, rvec], "merged")
        out_shape = add("Concat", [before, merged, tail], "out_shape", axis=0)
        add("Reshape", [expanded, out_shape], "reshape")
    nodes[-1].output[0] = out
    return nodes
