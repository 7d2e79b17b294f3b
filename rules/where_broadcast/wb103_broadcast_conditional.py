from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from onnxfix.context import Context, GraphCtx
from onnxfix.edit import RuleEditor
from onnxfix.findings import Applicability, Severity
from onnxfix.rule import Case, Detection, Fix, FixPlan, Rule
from onnxfix.rules.trace_baked._common import (
    ADVICE,
    RangeRebuild,
    pinned_fields,
    pinning,
    range_fix,
    rebuild_range,
)
from onnxfix.rules.where_broadcast._common import FAMILY, operands
from onnxfix.shapes import BROADCAST_OPS, BroadcastCheck, Shape, Sym, broadcast, named
from onnxfix.shapes.conditions import Condition, Verdict


def _varying_vs_fixed(check: BroadcastCheck) -> bool:
    """A conflict binds an input-dependent dim to a fixed size > 1."""
    for _axis, dims in check.conflicts:
        if any(isinstance(d, int) and d > 1 for d in dims) and any(
            isinstance(d, Sym) and d.varies for d in dims
        ):
            return True
    return False


def _zero_padding(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``x`` with the frames past each length zeroed: what the padding-mask cases compute
    at every size."""
    valid = np.arange(f["x"].shape[1])[None, :] < f["lengths"][:, None]
    return {"y": np.where(valid[..., None], f["x"], np.float32(0))}


class BroadcastConditional(Rule[RangeRebuild]):
    """## What it does
    Finds broadcasting operators whose operands broadcast only for particular
    values of a dynamic dimension: a dim that varies with the inputs (`T`, or a
    size computed from it) sits on the same axis as a size that does not follow
    it, e.g. `x [B, T, 256]` against a positional table `[1, 20, 256]` requires
    `T == 20`. The condition is simplified and evaluated over the input dims
    (`((x - 1)//2)//2 == (x - 1)//4` always holds and is dropped).

    ## Why is this bad?
    The model runs at the one size it was traced at (or with 1, which is what
    most probing tools feed) and fails at every other size. When the condition
    provably pins an input dim the model declares dynamic (`T == 20`,
    `L % 8 == 0`), the finding is an error; when the sizes cannot be computed it
    is a warning.

    ## Example
    ```
    Add(x: float[B, T, 256], pos: float[1, 20, 256])   # only if T == 20 (or 1)
    ```

    ## Fix safety
    Unsafe (applied with `--unsafe-fixes`) when the fixed size is a range baked at
    the traced length: a padding mask built from `arange(int(lengths.max()))`
    (ESPnet's and WeNet's `make_pad_mask` with a length from `.item()`) and
    applied with `masked_fill`. If every path that gives the operand its size
    comes from a constant `[0, 1, ..., N-1]` through elementwise ops, Unsqueeze
    and Expand, and the operands then broadcast at every size, the constant
    becomes `Range(0, T)` with T read from the input axis the other operand has
    (see TB101). Otherwise no automatic fix, unless the operands prove the
    mask-indexing signature (then WB102 reports it with a safe fix). Build the
    table from the input's size in PyTorch (`self.pe[:, :x.size(1)]`,
    `torch.arange(x.size(1))`).
    """

    code = "WB103"
    name = "broadcast-conditional"
    severity = Severity.WARNING
    severities = (Severity.ERROR,)
    summary = "Operands broadcast only when a dynamic dim takes one particular size"
    family = FAMILY
    cascades = True
    fixable = Applicability.UNSAFE
    no_fix = (
        "only a size that comes from a range baked at the traced length (arange(int(T))) "
        "and meets the input dim itself is rebuilt; build the table from the input's size in "
        "PyTorch (`self.pe[:, :x.size(1)]`, `torch.arange(x.size(1))`)"
    )
    ops = frozenset(BROADCAST_OPS)
    messages = {
        "pins": "{op} operands {operands} broadcast {works} ({what} disagree: {a} vs {b}); "
        "{sym} is {where}, declared dynamic. Likely cause: {cause}",
        "unknown": "{op} operands {operands} broadcast only if {terms}",
    }

    def detect(self, ctx: Context) -> Iterator[Detection]:
        pinned: dict[int, tuple[Condition, Verdict]] = {}
        for cond, v in pinning(ctx, self.ops or frozenset()):
            pinned.setdefault(id(cond.node), (cond, v))
        verdicts: dict[int, list[str]] = {}
        for cond, v in ctx.conditions:
            verdicts.setdefault(id(cond.node), []).append(v.status)
        for g, node in ctx.by_op(self.ops or frozenset()):
            got = operands(g, node)
            if not got:
                continue
            names, shapes = got.get()
            check = broadcast(shapes)
            # described only where it may be reported: formatting every broadcast op's
            # shapes was most of this rule's time
            desc = (
                ", ".join(f"'{n}' {ctx.fmt(s)}" for n, s in zip(names, shapes))
                if id(node) in pinned or not check.ok
                else ""
            )
            if id(node) in pinned:
                cond, v = pinned[id(node)]
                yield self.report(
                    ctx,
                    g,
                    node,
                    self.msg(
                        "pins",
                        op=node.op_type,
                        operands=desc,
                        what=cond.what,
                        a=ctx.fmt_dim(cond.lhs),
                        b=ctx.fmt_dim(cond.rhs),
                        **pinned_fields(ctx, cond, v),
                    ),
                    inputs=names,
                    advice=ADVICE,
                    severity=Severity.ERROR,
                    fix=_rebuild(ctx, g, names, shapes, v),
                )
                continue
            if check.ok or check.concrete or not _varying_vs_fixed(check):
                continue
            # decided conditions (always, a relation between inputs, most sizes) say nothing
            if "unknown" not in verdicts.get(id(node), ["unknown"]):
                continue
            yield self.report(
                ctx,
                g,
                node,
                self.msg(
                    "unknown", op=node.op_type, operands=desc, terms="; ".join(_terms(ctx, check))
                ),
                inputs=names,
                advice="no automatic fix: check the exporting code for this size "
                "(a fixed-size table or a mask built for another axis)",
            )

    def apply(self, editor: RuleEditor, plan: FixPlan[RangeRebuild]) -> str | None:
        rebuild_range(editor, plan.anchor.graph, plan.params)
        return None

    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 8] x, float[1, 1, 8] b) => (float[B, T, 8] y) { y = Add(x, b) }""",
            "a bias over channels",
        ),
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 8] x) => (float[B, T, 8] y) {
                 s = Shape(x)
                 i = Constant<value = int64[1] {1}>()
                 t = Gather<axis = 0>(s, i)
                 z = Constant<value = int64[1] {0}>()
                 ps = Constant<value = int64[3] {1, 512, 8}>()
                 pe = ConstantOfShape(ps)
                 p = Slice(pe, z, t, i)
                 y = Add(x, p) }""",
            "pe[:, :x.size(1)]: the table sliced to the input's length",
        ),
    )
    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 4] x, int64[B] lengths) => (float[B, T, 4] y) {
                 r = Constant<value = int64[2, 6] {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5}>()
                 ax = Constant<value = int64[1] {1}>()
                 l = Unsqueeze(lengths, ax)
                 keep = Less(r, l)
                 ax2 = Constant<value = int64[1] {2}>()
                 k3 = Unsqueeze(keep, ax2)
                 zero = Constant<value = float {0.0}>()
                 y = Where(k3, x, zero) }""",
            "SpeechBrain's length_to_mask traced at B=2, T=6: arange(max_len).expand(len(length), "
            "max_len) bakes the batch into the range's constant too",
            dims={"B": (2, 3), "T": (5, 7)},
            reference=_zero_padding,
        ),
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 4] x, int64[B] lengths) => (float[B, T, 4] y) {
                 r = Constant<value = int64[1, 6] {0, 1, 2, 3, 4, 5}>()
                 s = Shape(x)
                 i0 = Constant<value = int64[1] {0}>()
                 b = Gather<axis = 0>(s, i0)
                 six = Constant<value = int64[1] {6}>()
                 es = Concat<axis = 0>(b, six)
                 m = Expand(r, es)
                 ax = Constant<value = int64[1] {1}>()
                 l = Unsqueeze(lengths, ax)
                 pad = GreaterOrEqual(m, l)
                 ax2 = Constant<value = int64[1] {2}>()
                 p3 = Unsqueeze(pad, ax2)
                 zero = Constant<value = float {0.0}>()
                 y = Where(p3, zero, x) }""",
            "x.masked_fill(make_pad_mask(lengths).unsqueeze(-1), 0) with the mask's length "
            "from int(lengths.max()), traced at T=6",
            dims={"B": (2, 3), "T": (5, 7)},
            reference=_zero_padding,
        ),
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 8] x, float[1, 20, 8] pe) => (float[B, T, 8] y) {
                 y = Add(x, pe) }""",
            "a positional table of the traced length",
        ),
    )


def _terms(ctx: Context, check: BroadcastCheck) -> list[str]:
    from onnxfix.rules.where_broadcast._common import conditional_terms

    return conditional_terms(ctx, check)


def _rebuild(
    ctx: Context, g: GraphCtx, names: list[str], shapes: list[Shape], v: Verdict
) -> Fix[RangeRebuild] | None:
    """The range fix, when exactly one operand holds the pinned size on an axis where
    another has the symbol itself, the size comes from a baked ``arange``, and the
    operands broadcast at every size once it is rebuilt."""
    if v.status != "pins" or len(v.values) != 1 or v.symbol is None or v.values[0] < 2:
        return None
    pinned, t = v.values[0], named(v.symbol)
    hits = []
    for k, s in enumerate(shapes):
        for axis, d in enumerate(s):
            right = len(s) - 1 - axis
            if d == pinned and any(len(o) > right and o[len(o) - 1 - right] == t for o in shapes):
                hits.append((k, axis))
    if len(hits) != 1:
        return None
    k, axis = hits[0]
    rebuilt = [
        tuple(t if (i, a) == (k, axis) else d for a, d in enumerate(s))
        for i, s in enumerate(shapes)
    ]
    if not broadcast(rebuilt).ok:
        return None
    return range_fix(ctx, g, names[k], axis, pinned, v.symbol)
