from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx

from onnxfix.context import Context, GraphCtx
from onnxfix.edit import RuleEditor
from onnxfix.findings import Applicability, Severity
from onnxfix.rule import Case, Detection, Fix, FixPlan, Rule
from onnxfix.rules.trace_baked._common import (
    ADVICE,
    FAMILY,
    RangeRebuild,
    pinned_fields,
    pinning,
    range_fix,
    rebuild_range,
)
from onnxfix.shapes import Dim, evaluate, named
from onnxfix.shapes.conditions import Condition, Verdict
from onnxfix.shapes.ops_shape import quotient


@dataclass(frozen=True)
class Unbake:
    """Replace target entry ``index`` (the baked size) with -1."""

    index: int
    #: the Concat input that holds the entry, or "" when the target is one constant
    concat_input: str
    value: int
    #: graph outputs whose declared dim was baked too: (output, axis, new dim name)
    outputs: tuple[tuple[str, int, str], ...] = ()


#: ``x * (arange(N) < lengths[:, None])[..., None]`` with N baked at 6 (``{table}``)
_MASK = """<ir_version: 8, opset_import: ["" : 17]>
     g (float[B, T, 4] x, int64[B] lengths) => (float[B, T, 4] y) {{
         r = Constant<value = int64[6] {{{table}}}>()
         s = Shape(x)
         i0 = Constant<value = int64[1] {{0}}>()
         b = Gather<axis = 0>(s, i0)
         six = Constant<value = int64[1] {{6}}>()
         es = Concat<axis = 0>(b, six)
         m = Expand(r, es)
         ax = Constant<value = int64[1] {{1}}>()
         l = Unsqueeze(lengths, ax)
         pad = GreaterOrEqual(m, l)
         keep = Not(pad)
         f = Cast<to = 1>(keep)
         i1 = Constant<value = int64[1] {{1}}>()
         t = Gather<axis = 0>(s, i1)
         one = Constant<value = int64[1] {{1}}>()
         tgt = Concat<axis = 0>(b, t, one)
         w = Reshape(f, tgt)
         y = Mul(x, w) }}"""


def _masked(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What ``_MASK`` computes at every size: ``x`` zeroed past each length."""
    keep = np.arange(f["x"].shape[1])[None, :] < f["lengths"][:, None]
    return {"y": f["x"] * keep[..., None].astype(np.float32)}


class ReshapeSizeBaked(Rule[Unbake | RangeRebuild]):
    """## What it does
    Finds `Reshape` nodes whose target holds a size that tracing turned into a
    constant, so the element counts only agree when a dim the model declares
    dynamic takes the traced value (`T == 20`) or a residue (`L % 8 == 0`). The
    condition is read from the symbolic shapes: `numel(x) == prod(target)`, or
    for a target with `-1`, that `prod(target)` divides `numel(x)`.

    ## Why is this bad?
    The model is declared dynamic, loads, and runs at the size it was traced at;
    at every other size onnxruntime fails: "The input tensor cannot be reshaped
    to the requested shape". It is the most reported dynamic-axes failure
    (onnxruntime #2779, #7464, #10463; pytorch #99701).

    ## Example
    torchaudio's Conformer, exported by the TorchScript exporter at T=20:
    ```
    q = Reshape(x: [T, B, 32], Concat([20], [4*B], [8]))   # runs only when T == 20
    ```

    ## Fix safety
    Unsafe (applied with `--unsafe-fixes`): when exactly one target entry is a
    constant equal to the pinned size and no entry is `-1`, it becomes `-1`, which
    is what `view(t, b * h, d)` meant at every size. When the baked size is in the
    data instead, on one axis that comes from a constant `[0, 1, ..., N-1]`
    (`torch.arange(int(T))`, a padding mask built at the traced maximum length, as
    torchaudio's `_lengths_to_padding_mask` does) through elementwise ops and
    Expands, the constant becomes `Range(0, T)` with T read from the input axis the
    target needs, and the Expands keep that axis; this is offered only if the
    element counts then agree at every size. At the traced size the result is
    identical; elsewhere the original failed. Verified by running the model at
    sizes other than the traced one. Otherwise: no fix; change the PyTorch code.
    """

    code = "TB101"
    name = "reshape-size-baked"
    severity = Severity.ERROR
    summary = "A Reshape target holds a size baked at trace time: it runs only at that size"
    family = FAMILY
    cascades = True
    fixable = Applicability.UNSAFE
    no_fix = (
        "only a target entry that is the one constant equal to the traced size, or a range "
        "baked at the traced length in the data, is rebuilt; compute the size from the "
        "tensor in PyTorch (`view(b, -1, c)`, `x.size(1)` instead of `int(x.size(1))`)"
    )
    messages = {
        "main": "Reshape of '{x}' {shape} into a target {target} runs {works}: its element "
        "count {numel} must {must} {prod}; {sym} is {where}, declared dynamic. Likely cause: "
        "{cause}",
    }

    def detect(self, ctx: Context) -> Iterator[Detection]:
        for cond, v in pinning(ctx, frozenset({"Reshape"})):
            g, node = cond.graph, cond.node
            target = g.value(node.input[1]) or ()
            message = self.msg(
                "main",
                x=node.input[0],
                shape=ctx.fmt(g.shape(node.input[0])),
                target="[" + ", ".join(ctx.fmt_dim(t) for t in target) + "]",
                numel=ctx.fmt_dim(cond.rhs if cond.kind == "divides" else cond.lhs),
                must="be a multiple of" if cond.kind == "divides" else "equal",
                prod=ctx.fmt_dim(cond.lhs if cond.kind == "divides" else cond.rhs),
                **pinned_fields(ctx, cond, v),
            )
            yield self.report(
                ctx,
                g,
                node,
                message,
                inputs=[node.input[0]],
                fix=_unbake(g, node, cond, v) or _rebuild(ctx, g, node, cond, v),
                advice=ADVICE,
            )

    def apply(self, editor: RuleEditor, plan: FixPlan[Unbake | RangeRebuild]) -> str | None:
        node = plan.anchor.node
        assert node is not None
        g = plan.anchor.graph
        p = plan.params
        if isinstance(p, RangeRebuild):
            rebuild_range(editor, g, p)
            return None
        if p.concat_input:
            concat = g.producer(node.input[1])
            assert concat is not None
            c = editor.const(np.asarray([-1], dtype=np.int64), "unbaked")
            k = list(concat.input).index(p.concat_input)
            editor.insert_before(node, [c])
            clone = onnx.NodeProto()
            clone.CopyFrom(concat)
            clone.input[k] = c.output[0]
            clone.name = editor.editor.namer(f"{concat.name or 'Concat'}/onnxfix_unbaked")
            clone.output[0] = editor.editor.namer(f"{clone.name}_output_0")
            editor.insert_before(node, [clone])
            editor.set_input(node, 1, clone.output[0])
        else:
            values = [int(x) for x in (g.ints(node.input[1]) or [])]
            values[p.index] = -1
            c = editor.const(np.asarray(values, dtype=np.int64), "unbaked_target")
            editor.insert_before(node, [c])
            editor.set_input(node, 1, c.output[0])
        for output, axis, dim in p.outputs:
            editor.redeclare_output_dim(output, axis, dim)
        return None

    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 8] x) => (float[B, T, 2, 4] y) {
                 s = Shape(x)
                 i0 = Constant<value = int64[1] {0}>()
                 b = Gather<axis = 0>(s, i0)
                 t = Constant<value = int64[1] {20}>()
                 h = Constant<value = int64[2] {2, 4}>()
                 tgt = Concat<axis = 0>(b, t, h)
                 y = Reshape(x, tgt) }""",
            "x.view(b, int(x.size(1)), 2, 4) traced at T=20",
            dims={"B": (2, 3), "T": (5, 7)},
            reference=lambda f: {"y": f["x"].reshape(f["x"].shape[0], f["x"].shape[1], 2, 4)},
        ),
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, L] x) => (float[B, F, 8] y) {
                 t = Constant<value = int64[3] {0, -1, 8}>()
                 y = Reshape(x, t) }""",
            "frames of 8 only fit when L % 8 == 0",
        ),
        Case(
            _MASK.format(table="0, 1, 2, 3, 4, 5"),
            "a padding mask built at the traced length: arange(int(lengths.max())) at T=6",
            dims={"B": (2, 3), "T": (5, 7)},
            reference=_masked,
        ),
        Case(
            _MASK.format(table="0, 1, 2, 3, 4, 5").replace(
                "m = Expand(r, es)",
                "z = Constant<value = int64[1] {0}>()\n u = Unsqueeze(r, z)\n m = Expand(u, es)",
            ),
            "make_pad_mask at the traced length: arange(max_len).unsqueeze(0).expand(b, max_len)",
            dims={"B": (2, 3), "T": (5, 7)},
            reference=_masked,
        ),
        Case(
            _MASK.format(table="0, 2, 4, 6, 8, 10"),
            "a table of the traced length that is not a range: no fix",
        ),
    )
    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 8] x) => (float[B, T, 2, 4] y) {
                 t = Constant<value = int64[4] {0, -1, 2, 4}>()
                 y = Reshape(x, t) }""",
            "x.view(x.size(0), -1, 2, 4)",
        ),
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 8] x) => (float[B, T, 2, 4] y) {
                 s = Shape(x)
                 i = Constant<value = int64[2] {0, 1}>()
                 bt = Gather<axis = 0>(s, i)
                 h = Constant<value = int64[2] {2, 4}>()
                 tgt = Concat<axis = 0>(bt, h)
                 y = Reshape(x, tgt) }""",
            "x.view(x.size(0), x.size(1), 2, 4)",
        ),
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[4, 20, 8] x) => (float[4, 20, 2, 4] y) {
                 t = Constant<value = int64[4] {4, 20, 2, 4}>()
                 y = Reshape(x, t) }""",
            "static by design",
        ),
    )


def _unbake(g: GraphCtx, node: onnx.NodeProto, cond: Condition, v: Verdict) -> Fix[Unbake] | None:
    """The -1 fix, when one constant target entry is the pinned size and provably right."""
    if v.status != "pins" or len(v.values) != 1 or cond.kind != "eq" or v.symbol is None:
        return None
    target = g.value(node.input[1])
    shape = g.shape(node.input[0])
    if target is None or shape is None or -1 in target:
        return None
    pinned = v.values[0]
    hits = [i for i, t in enumerate(target) if t == pinned]
    if len(hits) != 1:
        return None
    index = hits[0]
    concat_input = ""
    producer = g.producer(node.input[1])
    if producer is not None and producer.op_type == "Concat":
        offset = 0
        for inp in producer.input:
            part = g.value(inp)
            if part is None:
                return None
            if offset <= index < offset + len(part):
                if len(part) != 1 or g.ints(inp) != [pinned]:
                    return None
                concat_input = inp
                break
            offset += len(part)
    elif g.ints(node.input[1]) is None:
        return None
    # the -1 entry must give back the pinned size at the traced size, and fit at every size
    known: list[Dim] = [shape[i] if t == 0 else t for i, t in enumerate(target) if i != index]
    free = quotient(list(shape), known)
    if evaluate(free, {v.symbol: pinned, **{s: 3 for s in v.syms if s != v.symbol}}) != pinned:
        return None
    outputs = _baked_outputs(g, node, index, pinned, free, v.symbol)
    also = (
        f"; declare {', '.join(f'{o} axis {a} as {d}' for o, a, d in outputs)} dynamic"
        if outputs
        else ""
    )
    return Fix(
        f"Replace the baked {pinned} in the Reshape target with -1 (the size it stood "
        f"for when traced){also}",
        Unbake(index, concat_input, pinned, outputs),
        changes_outputs=frozenset(o for o, _a, _d in outputs),
    )


def _rebuild(
    ctx: Context, g: GraphCtx, node: onnx.NodeProto, cond: Condition, v: Verdict
) -> Fix[RangeRebuild] | None:
    """The range fix, when the pinned size sits on one axis of the data (not the target)
    and comes from a baked ``arange``, and the counts agree at every size once it is T."""
    if v.status != "pins" or len(v.values) != 1 or cond.kind != "eq" or v.symbol is None:
        return None
    pinned, symbol = v.values[0], v.symbol
    shape, target = g.shape(node.input[0]), g.value(node.input[1])
    if shape is None or target is None or -1 in target or pinned < 2:
        return None
    axes = [i for i, d in enumerate(shape) if d == pinned]
    if len(axes) != 1:
        return None
    axis = axes[0]
    rebuilt = [named(symbol) if i == axis else d for i, d in enumerate(shape)]
    wanted = [shape[i] if t == 0 and i < len(shape) else t for i, t in enumerate(target)]
    for seed, value in enumerate((7, 11)):  # distinct from the traced size and from 1
        env = {s: 3 + 2 * seed for s in ctx.input_dims}
        env[symbol] = value + (value == pinned)
        got = [evaluate(d, env) for d in rebuilt]
        want = [evaluate(d, env) for d in wanted]
        if None in got or None in want or np.prod(got) != np.prod(want):  # type: ignore[arg-type]
            return None
    return range_fix(ctx, g, node.input[0], axis, pinned, symbol)


def _baked_outputs(
    g: GraphCtx, node: onnx.NodeProto, index: int, pinned: int, free: Dim, symbol: str
) -> tuple[tuple[str, int, str], ...]:
    """Graph outputs fed by the Reshape that declare the same baked size on the same axis
    (the exporter bakes the output declaration too)."""
    reach = {*node.output, *(o for n in g.downstream(node).values() for o in n.output)}
    rank = len(g.shape(node.output[0]) or ())
    name = symbol if free == named(symbol) else f"{symbol}_reshaped"
    out = []
    for vi in g.graph.output:
        dims = vi.type.tensor_type.shape.dim
        if (
            vi.name in reach
            and len(dims) == rank
            and index < rank
            and dims[index].HasField("dim_value")
            and dims[index].dim_value == pinned
        ):
            out.append((vi.name, index, name))
    return tuple(out)
