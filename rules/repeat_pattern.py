"""Repeat rules (RP): lowerings of ``torch.repeat_interleave`` that compute the wrong thing.

The TorchScript exporter lowers ``repeat_interleave(x, repeats, dim)`` three ways:
``Unsqueeze -> Tile -> Reshape`` for int repeats (correct); one
``Unsqueeze -> Expand -> Reshape`` chain per ``Split`` slice, joined by
``Concat``, for a 1-D repeats tensor (and, in torch 2.0.1, for int repeats);
a ``Loop`` over ``SplitToSequence`` for repeats computed from a size.  The last
two bake a Reshape target whose ``0`` copies the axis *after* the inserted one
— the repeat count instead of T — so the result has the wrong shape (WeNet
issue #2517: multi-query attention's key/value heads).  Each rule rebuilds
what the pattern means (input, axis, repeats), evaluates the pattern's shape
symbolically, and compares it with what ``repeat_interleave`` returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxfix import edit
from onnxfix.context import Context, GraphCtx, scope_of, source_of
from onnxfix.findings import Applicability, Finding, Fix, Severity
from onnxfix.registry import Rule
from onnxfix.shapes import Propagator, Shape, d_mul

FAMILY = "repeat-pattern"

_FIX_SAFETY = """\
## Fix safety
Safe when the pattern is fully recognised: one input, one axis, and constant
repeats. The replacement is one `Unsqueeze -> Expand -> Reshape` whose target
shapes are computed from `Shape(x)` at run time, so dynamic dims stay dynamic
(what WeNet's own fix does by hand), or a `Gather` with constant indices when
the repeats are not all equal. Before it is accepted, the new subgraph is run
on random inputs with distinct dimension values and compared with
`numpy.repeat`; the whole repaired model is then verified as usual.

## In the PyTorch code
Replace `torch.repeat_interleave(k, n, dim=1)` with
`k.unsqueeze(2).expand(b, h_kv, n, t, d).reshape(b, h_kv * n, t, d)`, and never
pass repeats as a tensor when they are known integers.
"""

PER_SLICE_DOCS = """\
## What it does
Finds `repeat_interleave` lowered per slice: `Split(x, axis)` into single
slices, each `Unsqueeze -> Expand -> Reshape`, joined by `Concat(axis)`. It
rebuilds the input, axis and repeats, evaluates the chain's output shape
symbolically, and reports when it differs from what `repeat_interleave`
returns.

## Why is this bad?
The exporter bakes Reshape targets such as `[1, -1, 0, 8]`: after the
Unsqueeze, the `0` copies the repeat count instead of T. With equal repeats
the model runs and silently returns `[B, 2T, 2, 8]` instead of
`[B, 4, T, 8]` (attention then fails at a MatMul, or worse, does not); with
unequal repeats onnxruntime refuses the model ("Can't merge shape info").
It comes from `repeat_interleave` with a repeats *tensor* in torch 2.13, and
with int repeats in torch 2.0.1 (WeNet issue #2517).

## Example
Before (x: [1, 2, T, 8], repeats [2, 2], dim 1):
```
s0, s1 = Split(x, axis=1)
r_i = Reshape(Expand(Unsqueeze(s_i, [2]), [1, 1, 2, 1, 8]), [1, -1, 0, 8])   # [1, T, 2, 8]
y = Concat(r0, r1, axis=1)                                                   # [1, 2T, 2, 8]
```
After:
```
y = Reshape(Expand(Unsqueeze(x, [2]), [1, 2, 2, T, 8]), [1, 4, T, 8])        # from Shape(x)
```

""" + _FIX_SAFETY

LOOP_DOCS_HEAD = """\
## What it does
Finds `repeat_interleave` lowered as a `Loop` over `SplitToSequence(x)` with
`SequenceEmpty`/`SequenceInsert`/`ConcatFromSequence` (repeats computed from a
size, e.g. `torch.full((x.size(1),), r)`), rebuilds input, axis and repeats,
and evaluates the loop body's shape symbolically.
"""

LOOP_WRONG_DOCS = LOOP_DOCS_HEAD + """
## Why is this bad?
The body carries the same baked Reshape target as the per-slice lowering, so
in the usual 4-D attention case the result has the wrong shape. The sequence
ops are also slow and unsupported by several runtimes (onnxruntime 1.32
refuses the torch 2.13 export at load: the repeats are float in the body).

## Example
Before: `Loop(n, true, SequenceEmpty) { SequenceInsert(Reshape(Expand(Unsqueeze(
SequenceAt(seq_x, i)))), ...) }` then `ConcatFromSequence(axis=1)`.
After: one `Unsqueeze -> Expand -> Reshape` computed from `Shape(x)`.

""" + _FIX_SAFETY

LOOP_OK_DOCS = LOOP_DOCS_HEAD + """
## Why is this bad?
The loop computes the right result, but one iteration per slice with
sequence ops is slow (a measured 24.7 ms against 0.14 ms for the rewrite on
x[8, 512, 8]) and several runtimes do not support sequence ops at all.

## Example
As for RP102; here the body's shape is right.

""" + _FIX_SAFETY


@dataclass
class Repeat:
    """What a lowering means: ``repeat_interleave(x, repeats, axis)``."""

    x: str
    axis: int
    repeats: list[int] | None  # one count per slice, when the slice count is known
    uniform: int | None  # the count every slice gets, when they all get the same
    actual: Shape | None
    intended: Shape | None
    nodes: list[str]  # node names making up the pattern, for the message
    orphans: list[str]  # values that become unused once the pattern is replaced
    rank: int = 0
    dtype: int = onnx.TensorProto.FLOAT


def _consts(g: GraphCtx, name: str) -> list[int] | None:
    v = g.value(name)
    if v is None or not all(isinstance(d, int) for d in v):
        return None
    return list(v)  # type: ignore[arg-type]


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _axis(node: onnx.NodeProto, rank: int) -> int:
    a = int(_attr(node, "axis", 0))
    return a + rank if a < 0 else a


def _intended(xs: Shape, axis: int, repeats: list[int] | None, uniform: int | None
              ) -> Shape | None:
    out = list(xs)
    if uniform is not None:
        out[axis] = d_mul(xs[axis], uniform)
    elif repeats is not None:
        out[axis] = sum(repeats)
    else:
        return None
    return tuple(out)


def _chain_repeat(g: GraphCtx, value: str, axis: int) -> tuple[str, int | None] | None:
    """Follow Reshape <- Expand <- Unsqueeze(axis + 1) back to the slice; return (slice, r)."""
    found = g.chain(value, "Reshape", "Expand", "Unsqueeze")
    if found is None:
        return None
    _rs, ex, un = found
    axes = _attr(un, "axes", None)
    if axes is None and len(un.input) > 1:
        axes = _consts(g, un.input[1])
    if axes is None or list(axes) != [axis + 1]:
        return None
    target = g.value(ex.input[1])
    r = target[axis + 1] if target is not None and len(target) > axis + 1 else None
    return un.input[0], r if isinstance(r, int) else None


def match_per_slice(g: GraphCtx, node: onnx.NodeProto) -> Repeat | None:
    if node.op_type != "Concat" or not node.input:
        return None
    first = g.producer(node.input[0])
    if first is None or first.op_type != "Reshape":
        return None
    split = None
    reps: list[int | None] = []
    axis = None
    for k, inp in enumerate(node.input):
        sh = g.shape(inp)
        if sh is None:
            return None
        a = _axis(node, len(sh))
        hit = _chain_repeat(g, inp, a)
        if hit is None:
            return None
        slice_name, r = hit
        sp = g.producer(slice_name)
        if sp is None or sp.op_type != "Split" or list(sp.output).index(slice_name) != k:
            return None
        if split is None:
            split = sp
        elif sp is not split:
            return None
        axis = a
        reps.append(r)
    assert split is not None and axis is not None
    if len(split.output) != len(node.input):
        return None
    x = split.input[0]
    xs = g.shape(x)
    if xs is None or _axis(split, len(xs)) != axis:
        return None
    sizes = _attr(split, "split", None)
    if sizes is None and len(split.input) > 1 and split.input[1]:
        sizes = _consts(g, split.input[1])
    if sizes is not None and any(s != 1 for s in sizes):
        return None
    repeats = None if any(r is None for r in reps) else [int(r) for r in reps]  # type: ignore[arg-type]
    uniform = repeats[0] if repeats and len(set(repeats)) == 1 else None
    return Repeat(
        x=x, axis=axis, repeats=repeats, uniform=uniform, actual=g.shape(node.output[0]),
        intended=_intended(xs, axis, repeats, uniform),
        nodes=[split.name, node.name], orphans=list(node.input), rank=len(xs),
        dtype=g.dtype(x) or onnx.TensorProto.FLOAT,
    )


def _uniform_fill(g: GraphCtx, name: str, depth: int = 0) -> int | None:
    """The one value every element of ``name`` holds, through Where/Expand/Cast chains."""
    if depth > 8:
        return None
    v = g.value(name)
    if v is not None and v and all(isinstance(d, int) for d in v) and len(set(v)) == 1:
        return int(v[0])  # type: ignore[arg-type]
    p = g.producer(name)
    if p is None:
        return None
    if p.op_type == "ConstantOfShape":
        t = _attr(p, "value")
        fill = numpy_helper.to_array(t).reshape(-1)[0] if isinstance(t, onnx.TensorProto) else 0
        return int(fill) if float(fill).is_integer() else None
    if p.op_type in ("Expand", "Cast", "Identity"):
        return _uniform_fill(g, p.input[0], depth + 1)
    if p.op_type == "Where":
        a = _uniform_fill(g, p.input[1], depth + 1)
        b = _uniform_fill(g, p.input[2], depth + 1)
        return a if a is not None and a == b else None
    return None


def _body_chain(body: GraphCtx, value: str) -> str | None:
    """The SequenceAt output at the root of Reshape <- Expand <- Unsqueeze in a loop body."""
    found = body.chain(value, "Reshape", "Expand", "Unsqueeze")
    return found[-1].input[0] if found is not None else None


def match_loop(ctx: Context, g: GraphCtx, node: onnx.NodeProto) -> Repeat | None:
    if node.op_type != "ConcatFromSequence" or int(_attr(node, "new_axis", 0)):
        return None
    loop = g.producer(node.input[0])
    if loop is None or loop.op_type != "Loop" or len(loop.input) != 3:
        return None
    empty = g.producer(loop.input[2])
    if empty is None or empty.op_type != "SequenceEmpty":
        return None
    body = next(a.g for a in loop.attribute if a.name == "body")
    ins = body.node
    inserts = [n for n in ins if n.op_type == "SequenceInsert" and n.input[0] == body.input[2].name]
    if len(inserts) != 1:
        return None
    # the data element feeds the Unsqueeze -> Expand -> Reshape chain that is inserted
    body_ctx = GraphCtx(body, g.path, g.shapes, g)
    body_ctx.producers = {o: n for n in ins for o in n.output if o}
    chain = _body_chain(body_ctx, inserts[0].input[1])
    if chain is None:
        return None
    at_x = chain
    others = [n for n in ins if n.op_type == "SequenceAt" and n.output[0] != at_x]
    at_x_node = body_ctx.producers.get(at_x)
    if at_x_node is None or at_x_node.op_type != "SequenceAt" or len(others) != 1:
        return None
    at_r = others[0].output[0]
    seq_x = g.producer(at_x_node.input[0])
    seq_r = g.producer(others[0].input[0])
    if seq_x is None or seq_r is None or "SplitToSequence" != seq_x.op_type != seq_r.op_type:
        return None
    xs = g.shape(seq_x.input[0])
    if xs is None:
        return None
    axis = _axis(seq_x, len(xs))
    if _axis(node, len(xs)) != axis:
        return None
    r = _uniform_fill(g, seq_r.input[0])
    n = xs[axis]
    repeats = [r] * n if r is not None and isinstance(n, int) else None
    # evaluate one iteration with the slice shape and repeat value seeded
    slice_shape = list(xs)
    slice_shape[axis] = 1
    prop = Propagator(body, {}, g.shapes)
    prop.seed(at_x, tuple(slice_shape))
    if r is not None:
        prop.seed(at_r, (1,), (r,))
    prop.run()
    per_iter = prop.shape(inserts[0].input[1])
    actual = None
    if per_iter is not None and len(per_iter) == len(xs):
        a = list(per_iter)
        a[axis] = d_mul(n, per_iter[axis])
        actual = tuple(a)
    return Repeat(
        x=seq_x.input[0], axis=axis, repeats=repeats, uniform=r, actual=actual,
        intended=_intended(xs, axis, repeats, r),
        nodes=[loop.name, node.name], orphans=list(node.input), rank=len(xs),
        dtype=g.dtype(seq_x.input[0]) or onnx.TensorProto.FLOAT,
    )


def _location(g: GraphCtx, node: onnx.NodeProto, ctx: Context, rep: Repeat) -> dict:
    return {
        "graph": g.path, "node": node.name or f"<{node.op_type}>", "op_type": node.op_type,
        "scope": scope_of(node), "source": source_of(node),
        "inputs": [(rep.x, ctx.fmt(g.shape(rep.x)))], "node_ref": node, "graph_ref": g.graph,
    }


#: Repeats beyond these are not rewritten (a corrupt count must not make us allocate).
MAX_REPEAT = 1 << 16
MAX_TOTAL = 1 << 20


def _fix(rep: Repeat) -> Fix | None:
    if rep.uniform is None and rep.repeats is None:
        return None
    if rep.uniform is not None and not 0 < rep.uniform <= MAX_REPEAT:
        return None
    if rep.uniform is None and rep.repeats is not None and (
            any(not 0 <= r <= MAX_REPEAT for r in rep.repeats) or sum(rep.repeats) > MAX_TOTAL):
        return None
    title = (
        f"Replace with Unsqueeze -> Expand -> Reshape (repeat {rep.uniform} on axis "
        f"{rep.axis}, shapes from Shape({rep.x}))" if rep.uniform is not None
        else f"Replace with Gather of constant indices (repeats {rep.repeats} on axis {rep.axis})"
    )
    return Fix(title, Applicability.SAFE, {"rep": rep})


def _describe(ctx: Context, g: GraphCtx, rep: Repeat) -> str:
    if rep.repeats is not None:
        reps = f"repeats {rep.repeats}"
    elif rep.uniform is not None:
        reps = f"each slice repeated {rep.uniform} times"
    else:
        reps = "repeats not constant"
    return f"'{rep.x}' {ctx.fmt(g.shape(rep.x))} on axis {rep.axis}, {reps}"


def detect_per_slice(ctx: Context) -> Iterable[Finding]:
    for g, node in ctx.nodes():
        rep = match_per_slice(g, node)
        if rep is None or (rep.intended is not None and rep.actual == rep.intended):
            continue
        what = (
            f"returns {ctx.fmt(rep.actual)} where {ctx.fmt(rep.intended)} was meant"
            if rep.intended is not None else "cannot be shown to compute repeat_interleave"
        )
        uneven = rep.repeats is not None and rep.uniform is None
        yield Finding(
            rule="RP101", name="repeat-interleave-per-slice", severity=Severity.ERROR,
            message=f"repeat_interleave lowered per slice (Split {rep.nodes[0]} -> "
            f"Unsqueeze/Expand/Reshape x{len(node.input)} -> Concat) of {_describe(ctx, g, rep)} "
            f"{what}" + ("; onnxruntime refuses it at load" if uneven else ""),
            fix=_fix(rep),
            advice="use x.unsqueeze(d + 1).expand(...).reshape(...) instead of "
            "repeat_interleave with a repeats tensor",
            **_location(g, node, ctx, rep),
        )


def _loop_findings(ctx: Context, wrong: bool) -> Iterable[Finding]:
    for g, node in ctx.nodes():
        rep = match_loop(ctx, g, node)
        if rep is None:
            continue
        is_wrong = rep.intended is None or rep.actual != rep.intended
        if is_wrong != wrong:
            continue
        base = (f"repeat_interleave lowered as Loop {rep.nodes[0]} over sequences "
                f"(ConcatFromSequence {node.name}) of {_describe(ctx, g, rep)}")
        if wrong:
            what = (f"returns {ctx.fmt(rep.actual)} where {ctx.fmt(rep.intended)} was meant"
                    if rep.intended is not None else "cannot be shown to compute it")
            msg = f"{base} {what}"
        else:
            msg = f"{base}: correct, but one iteration per slice with sequence ops is slow and " \
                  "unsupported by several runtimes"
        yield Finding(
            rule="RP102" if wrong else "RP103",
            name="repeat-interleave-loop-wrong" if wrong else "repeat-interleave-loop",
            severity=Severity.ERROR if wrong else Severity.WARNING,
            message=msg, fix=_fix(rep),
            advice="repeat with unsqueeze/expand/reshape; do not build repeats from a size "
            "(torch.full((x.size(1),), r))",
            **_location(g, node, ctx, rep),
        )


def detect_loop_wrong(ctx: Context) -> Iterable[Finding]:
    return _loop_findings(ctx, wrong=True)


def detect_loop_ok(ctx: Context) -> Iterable[Finding]:
    return _loop_findings(ctx, wrong=False)


# --- the rewrite ---------------------------------------------------------------------------


class RewriteRejected(Exception):
    pass


def _const(namer: edit.Namer, base: str, values: list[int], rule: str, origin: onnx.NodeProto
           ) -> onnx.NodeProto:
    return edit.const_node(namer, base, np.asarray(values, dtype=np.int64), rule, origin)


def build_repeat(namer: edit.Namer, opset: int, x: str, axis: int, uniform: int | None,
                 repeats: list[int] | None, out: str, rule: str, origin: onnx.NodeProto
                 ) -> list[onnx.NodeProto]:
    """Nodes computing ``repeat_interleave(x, repeats, axis)`` into ``out``."""
    base = f"{origin.name or origin.op_type}/onnxfix_repeat"
    nodes: list[onnx.NodeProto] = []

    def add(op: str, inputs: list[str], suffix: str, **attrs: object) -> str:
        name = namer(f"{base}/{suffix}")
        o = namer(f"{name}_output_0")
        n = helper.make_node(op, inputs, [o], name=name, **attrs)
        edit.tag(n, rule, origin)
        nodes.append(n)
        return o

    def const(values: list[int], suffix: str) -> str:
        c = _const(namer, f"{base}/{suffix}", values, rule, origin)
        nodes.append(c)
        return c.output[0]

    if uniform is None:
        assert repeats is not None
        idx = const(np.repeat(np.arange(len(repeats)), repeats).tolist(), "indices")
        add("Gather", [x, idx], "gather", axis=axis)
    else:
        r = uniform
        shape = add("Shape", [x], "shape")
        big = 2**62
        head = add("Slice", [shape, const([0], "zero"), const([axis + 1], "to_axis1")], "head")
        tail = add("Slice", [shape, const([axis + 1], "from_axis1"), const([big], "end")], "tail")
        rvec = const([r], "repeats")
        exp_shape = add("Concat", [head, rvec, tail], "expand_shape", axis=0)
        unsq, u_out = edit.unsqueeze_nodes(namer, opset, x, [axis + 1], rule, origin)
        nodes.extend(unsq)
        expanded = add("Expand", [u_out, exp_shape], "expand")
        before = add("Slice", [shape, const([0], "zero_b"), const([axis], "to_axis")], "before")
        dim = add("Slice", [shape, const([axis], "at_axis"), const([axis + 1], "at_axis1")],
                  "dim")
        merged = add("Mul", [dim, rvec], "merged")
        out_shape = add("Concat", [before, merged, tail], "out_shape", axis=0)
        add("Reshape", [expanded, out_shape], "reshape")
    nodes[-1].output[0] = out
    return nodes


def self_check(nodes: list[onnx.NodeProto], x: str, rank: int, axis: int, uniform: int | None,
               repeats: list[int] | None, dtype: int, opset: int) -> None:
    """Run the new subgraph alone against numpy.repeat at two settings of distinct dims."""
    from onnx.reference import ReferenceEvaluator

    out = nodes[-1].output[0]
    g = helper.make_graph(
        nodes, "self_check", [helper.make_tensor_value_info(x, dtype, [None] * rank)],
        [helper.make_tensor_value_info(out, dtype, None)],
    )
    model = helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", opset)])
    ev = ReferenceEvaluator(model)
    rng = np.random.default_rng(0)
    np_dtype = onnx.helper.tensor_dtype_to_np_dtype(dtype)
    for base in (3, 4):
        dims = [base + 2 * i for i in range(rank)]
        if uniform is None:
            assert repeats is not None
            dims[axis] = len(repeats)
        arr = rng.standard_normal(dims).astype(np_dtype)
        (got,) = ev.run(None, {x: arr})
        want = np.repeat(arr, uniform if uniform is not None else repeats, axis=axis)
        if got.shape != want.shape or not np.array_equal(got, want):
            raise RewriteRejected(
                f"rewrite of repeat_interleave on axis {axis} disagrees with numpy.repeat "
                f"({got.shape} vs {want.shape})"
            )


def fix_repeat(model: onnx.ModelProto, finding: Finding, edit_ctx: edit.EditContext) -> None:
    graph, idx = edit_ctx.graph, edit_ctx.index
    node = graph.node[idx]
    rep: Repeat = finding.fix.params["rep"]
    nodes = build_repeat(edit_ctx.namer, edit_ctx.opset, rep.x, rep.axis, rep.uniform,
                         rep.repeats, node.output[0], finding.rule, node)
    self_check([_copy(n) for n in nodes], rep.x, rep.rank, rep.axis, rep.uniform, rep.repeats,
               rep.dtype, edit_ctx.opset)
    final = nodes.pop()
    node_out = onnx.NodeProto()
    node_out.CopyFrom(final)
    node_out.doc_string = node.doc_string
    node.CopyFrom(node_out)
    edit.insert_before(graph, idx, nodes)
    edit_ctx.upstream(rep.orphans)


def _copy(n: onnx.NodeProto) -> onnx.NodeProto:
    c = onnx.NodeProto()
    c.CopyFrom(n)
    return c


RULES = [
    Rule(
        code="RP101", name="repeat-interleave-per-slice", severity=Severity.ERROR,
        summary="repeat_interleave lowered per Split slice returns the wrong shape",
        docs=PER_SLICE_DOCS, fixable=Applicability.SAFE, detect=detect_per_slice,
        fix=fix_repeat, family=FAMILY,
    ),
    Rule(
        code="RP102", name="repeat-interleave-loop-wrong", severity=Severity.ERROR,
        summary="repeat_interleave lowered as a Loop over sequences returns the wrong shape",
        docs=LOOP_WRONG_DOCS, fixable=Applicability.SAFE, detect=detect_loop_wrong,
        fix=fix_repeat, family=FAMILY,
    ),
    Rule(
        code="RP103", name="repeat-interleave-loop", severity=Severity.WARNING,
        summary="repeat_interleave lowered as a Loop over sequences (slow, poorly supported)",
        docs=LOOP_OK_DOCS, fixable=Applicability.SAFE, detect=detect_loop_ok,
        fix=fix_repeat, family=FAMILY,
    ),
]
