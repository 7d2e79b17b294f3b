from __future__ import annotations

import numpy as np
import onnx

from onnxfix.context import Context, GraphCtx
from onnxfix.edit import RuleEditor
from onnxfix.findings import Applicability, Severity
from onnxfix.rule import Case, Detection, FixPlan, Match, Rule, fail, ok
from onnxfix.rules.repeat_pattern._common import (
    FAMILY,
    FIX_SAFETY,
    Repeat,
    advice,
    apply_repeat,
    attr,
    axis_of,
    describe,
    fix_for,
    intended,
    unsqueeze_chain,
)


class RepeatInterleavePerSlice(Rule[Repeat]):
    __doc__ = (
        """## What it does
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
    with int repeats in torch 2.0.1 (WeNet issue #2517), where the repeat counts
    and Expand targets are computed through `Where(Equal(shape, -1), ..)` rather
    than written as literals.

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
    ```"""
        + FIX_SAFETY
    )

    code = "RP101"
    name = "repeat-interleave-per-slice"
    severity = Severity.ERROR
    summary = "repeat_interleave lowered per Split slice returns the wrong shape"
    family = FAMILY
    fixable = Applicability.SAFE
    ops = frozenset({"Concat"})
    messages = {
        "main": "repeat_interleave lowered per slice (Split {split} -> Unsqueeze/Expand/Reshape "
        "x{n} -> Concat) of {what} {result}",
    }

    def match(  # noqa: C901 - one reason per way the pattern can differ
        self,
        ctx: Context,
        g: GraphCtx,
        node: onnx.NodeProto,
    ) -> Match[Repeat]:
        if not node.input:
            return fail("an empty Concat", node)
        first = g.producer(node.input[0])
        if first is None or first.op_type != "Reshape":
            return fail("the first input is not a Reshape", node)
        split = None
        reps: list[int | None] = []
        axis = 0
        for k, inp in enumerate(node.input):
            sh = g.shape(inp)
            if sh is None:
                return fail(f"the shape of '{inp}' is unknown", node, 1)
            found = axis_of(node, len(sh))
            if found is None:
                return fail("the Concat axis is outside the rank of its inputs", node, 1)
            axis = found
            hit = unsqueeze_chain(g, inp, axis)
            if not hit:
                return hit
            slice_name, r = hit.get()
            sp = g.producer(slice_name)
            if sp is None or sp.op_type != "Split" or list(sp.output).index(slice_name) != k:
                return fail(f"input {k} does not come from slice {k} of a Split", node, 4)
            if split is None:
                split = sp
            elif sp is not split:
                return fail("the slices come from different Splits", node, 4)
            reps.append(r)
        assert split is not None
        if len(split.output) != len(node.input):
            return fail("the Concat does not join every slice of the Split", node, 5)
        x = split.input[0]
        xs = g.shape(x)
        if xs is None or axis_of(split, len(xs)) != axis:
            return fail("the Split and the Concat are on different axes", split, 5)
        sizes = attr(split, "split", None)
        if sizes is None and len(split.input) > 1 and split.input[1]:
            sizes = g.ints(split.input[1])
        if sizes is not None and any(s != 1 for s in sizes):
            return fail("the Split does not cut single slices", split, 5)
        repeats = None if any(r is None for r in reps) else tuple(int(r) for r in reps)  # type: ignore[arg-type]
        uniform = repeats[0] if repeats and len(set(repeats)) == 1 else None
        rep = Repeat(
            x=x,
            axis=axis,
            repeats=repeats,
            uniform=uniform,
            actual=g.shape(node.output[0]),
            intended=intended(xs, axis, repeats, uniform),
            nodes=(split.name or "Split", node.name or "Concat"),
            orphans=tuple(node.input),
            rank=len(xs),
            dtype=g.dtype(x) or onnx.TensorProto.FLOAT,
        )
        if not rep.wrong:
            return fail("the lowering returns what repeat_interleave returns", node, 6)
        return ok(rep)

    def found(self, ctx: Context, g: GraphCtx, node: onnx.NodeProto, rep: Repeat) -> Detection:
        result = (
            f"returns {ctx.fmt(rep.actual)} where {ctx.fmt(rep.intended)} was meant"
            if rep.intended is not None
            else "cannot be shown to compute repeat_interleave"
        )
        if rep.repeats is not None and rep.uniform is None:
            result += "; onnxruntime refuses it at load"
        return self.report(
            ctx,
            g,
            node,
            self.msg(
                "main",
                split=rep.nodes[0],
                n=len(node.input),
                what=describe(ctx, g, rep),
                result=result,
            ),
            inputs=[rep.x],
            fix=fix_for(rep),
            advice=advice(ctx, rep),
        )

    def apply(self, editor: RuleEditor, plan: FixPlan[Repeat]) -> str | None:
        return apply_repeat(editor, plan)

    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 13]>
             g (float[1, 2, T, 8] x) => (float[1, 4, T, 8] y) {
                 sizes = Constant<value = int64[2] {1, 1}>()
                 s0, s1 = Split<axis = 1>(x, sizes)
                 ax = Constant<value = int64[1] {2}>()
                 u0 = Unsqueeze(s0, ax)
                 u1 = Unsqueeze(s1, ax)
                 tgt = Constant<value = int64[5] {1, 1, 2, 1, 8}>()
                 e0 = Expand(u0, tgt)
                 e1 = Expand(u1, tgt)
                 rt = Constant<value = int64[4] {1, -1, 0, 8}>()
                 r0 = Reshape(e0, rt)
                 r1 = Reshape(e1, rt)
                 y = Concat<axis = 1>(r0, r1) }""",
            "per-slice lowering with literal targets",
            dims={"T": (5, 6)},
            reference=lambda f: {"y": np.repeat(f["x"], 2, axis=1)},
        ),
        Case(
            """<ir_version: 8, opset_import: ["" : 13]>
             g (float[1, 2, T, 8] x) => (float[1, 4, T, 8] y) {
                 sizes = Constant<value = int64[2] {1, 1}>()
                 s0, s1 = Split<axis = 1>(x, sizes)
                 ax = Constant<value = int64[1] {2}>()
                 u0 = Unsqueeze(s0, ax)
                 u1 = Unsqueeze(s1, ax)
                 two = Constant<value = int64 {2}>()
                 n2 = Constant<value = int64[1] {2}>()
                 reps = Expand(two, n2)
                 ones = Constant<value = int64[1] {1}>()
                 r_0, r_1 = Split<axis = 0>(reps, sizes)
                 head = Constant<value = int64[2] {1, 1}>()
                 tail = Constant<value = int64[2] {-1, 8}>()
                 c = Concat<axis = 0>(head, r_0, tail)
                 cs = Shape(c)
                 one = ConstantOfShape<value = int64[1] {1}>(cs)
                 m1 = Constant<value = int64 {-1}>()
                 neg = Mul(one, m1)
                 isneg = Equal(c, neg)
                 tgt = Where(isneg, one, c)
                 e0 = Expand(u0, tgt)
                 e1 = Expand(u1, tgt)
                 rt = Constant<value = int64[4] {1, -1, 0, 8}>()
                 r0 = Reshape(e0, rt)
                 r1 = Reshape(e1, rt)
                 y = Concat<axis = 1>(r0, r1) }""",
            "torch 2.0.1's int lowering: the repeat count is computed, not literal",
            dims={"T": (5, 6)},
            reference=lambda f: {"y": np.repeat(f["x"], 2, axis=1)},
        ),
    )
    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 13]>
             g (float[1, 2, T, 8] x) => (float[1, 4, T, 8] y) {
                 ax = Constant<value = int64[1] {2}>()
                 u = Unsqueeze(x, ax)
                 reps = Constant<value = int64[5] {1, 1, 2, 1, 1}>()
                 t = Tile(u, reps)
                 rt = Constant<value = int64[4] {1, 4, -1, 8}>()
                 r = Reshape(t, rt)
                 y = Identity(r) }""",
            "int repeats lowered to Tile (torch 2.1+)",
        ),
    )
