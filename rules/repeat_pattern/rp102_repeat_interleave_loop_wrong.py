from __future__ import annotations

import numpy as np
import onnx

from onnxfix.context import Context, GraphCtx
from onnxfix.edit import RuleEditor
from onnxfix.findings import Applicability, Severity
from onnxfix.rule import Case, Detection, FixPlan, Match, Rule, fail
from onnxfix.rules.repeat_pattern._common import (
    FAMILY,
    FIX_SAFETY,
    Repeat,
    advice,
    apply_repeat,
    describe,
    fix_for,
)
from onnxfix.rules.repeat_pattern._loop import LOOP_DOCS_HEAD, RIGHT_LOOP, WRONG_LOOP, match_loop


class RepeatInterleaveLoopWrong(Rule[Repeat]):
    __doc__ = (
        LOOP_DOCS_HEAD
        + """
    ## Why is this bad?
    The body carries the same baked Reshape target as the per-slice lowering, so
    in the usual 4-D attention case the result has the wrong shape. The sequence
    ops are also slow and unsupported by several runtimes (onnxruntime 1.32
    refuses the torch 2.13 export at load: the repeats are float in the body).

    ## Example
    Before: `Loop(n, true, SequenceEmpty) { SequenceInsert(Reshape(Expand(Unsqueeze(
    SequenceAt(seq_x, i)))), ...) }` then `ConcatFromSequence(axis=1)`.
    After: one `Unsqueeze -> Expand -> Reshape` computed from `Shape(x)`."""
        + FIX_SAFETY
    )

    code = "RP102"
    name = "repeat-interleave-loop-wrong"
    severity = Severity.ERROR
    summary = "repeat_interleave lowered as a Loop over sequences returns the wrong shape"
    family = FAMILY
    fixable = Applicability.SAFE
    ops = frozenset({"ConcatFromSequence"})
    messages = {
        "main": "repeat_interleave lowered as Loop {loop} over sequences "
        "(ConcatFromSequence {node}) of {what} {result}"
    }

    def match(self, ctx: Context, g: GraphCtx, node: onnx.NodeProto) -> Match[Repeat]:
        m = match_loop(ctx, g, node)
        if m and not m.get().wrong:
            return fail("the Loop computes the right shape (RP103)", node, 9)
        return m

    def found(self, ctx: Context, g: GraphCtx, node: onnx.NodeProto, rep: Repeat) -> Detection:
        result = (
            f"returns {ctx.fmt(rep.actual)} where {ctx.fmt(rep.intended)} was meant"
            if rep.intended is not None
            else "cannot be shown to compute it"
        )
        return self.report(
            ctx,
            g,
            node,
            self.msg(
                "main",
                loop=rep.nodes[0],
                node=rep.nodes[1],
                what=describe(ctx, g, rep),
                result=result,
            ),
            inputs=[rep.x],
            fix=fix_for(rep),
            advice=advice(ctx, rep, loop=True),
        )

    def apply(self, editor: RuleEditor, plan: FixPlan[Repeat]) -> str | None:
        return apply_repeat(editor, plan)

    invalid = (
        Case(
            WRONG_LOOP,
            "Loop over sequences, 4-D heads: [1, 2T, 2, 8] for [1, 4, T, 8]",
            dims={"T": (5, 6)},
            reference=lambda f: {"y": np.repeat(f["x"], 2, axis=1)},
        ),
    )
    valid = (Case(RIGHT_LOOP, "a Loop that computes the right shape (RP103)"),)
