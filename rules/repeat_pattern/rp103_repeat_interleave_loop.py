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


class RepeatInterleaveLoop(Rule[Repeat]):
    __doc__ = (
        LOOP_DOCS_HEAD
        + """
    ## Why is this bad?
    The loop computes the right result, but one iteration per slice with
    sequence ops is slow (a measured 24.7 ms against 0.14 ms for the rewrite on
    x[8, 512, 8]) and several runtimes do not support sequence ops at all.

    ## Example
    As for RP102; here the body's shape is right."""
        + FIX_SAFETY
    )

    code = "RP103"
    name = "repeat-interleave-loop"
    severity = Severity.WARNING
    summary = "repeat_interleave lowered as a Loop over sequences (slow, poorly supported)"
    family = FAMILY
    fixable = Applicability.SAFE
    ops = frozenset({"ConcatFromSequence"})
    messages = {
        "main": "repeat_interleave lowered as Loop {loop} over sequences "
        "(ConcatFromSequence {node}) of {what}: correct, but one iteration per "
        "slice with sequence ops is slow and unsupported by several runtimes"
    }

    def match(self, ctx: Context, g: GraphCtx, node: onnx.NodeProto) -> Match[Repeat]:
        m = match_loop(ctx, g, node)
        if m and m.get().wrong:
            return fail("the Loop computes the wrong shape (RP102)", node, 9)
        return m

    def found(self, ctx: Context, g: GraphCtx, node: onnx.NodeProto, rep: Repeat) -> Detection:
        return self.report(
            ctx,
            g,
            node,
            self.msg("main", loop=rep.nodes[0], node=rep.nodes[1], what=describe(ctx, g, rep)),
            inputs=[rep.x],
            fix=fix_for(rep),
            advice=advice(ctx, rep, loop=True),
        )

    def apply(self, editor: RuleEditor, plan: FixPlan[Repeat]) -> str | None:
        return apply_repeat(editor, plan)

    invalid = (
        Case(
            RIGHT_LOOP,
            "Loop over sequences on the last axis: right, but slow",
            dims={"T": (5, 6)},
            reference=lambda f: {"y": np.repeat(f["x"], 2, axis=1)},
        ),
    )
    valid = (Case(WRONG_LOOP, "a Loop with the wrong shape (RP102)"),)
