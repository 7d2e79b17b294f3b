from __future__ import annotations

import onnx

from onnxfix.context import Context, GraphCtx
from onnxfix.findings import Severity
from onnxfix.rule import Case, Detection, Match, Rule, fail, ok
from onnxfix.rules.where_broadcast._common import FAMILY, conditional_terms, operands
from onnxfix.shapes import BROADCAST_OPS, BroadcastCheck, Shape, Sym, broadcast


def _varying_vs_fixed(check: BroadcastCheck) -> bool:
    """A conflict binds an input-dependent dim to a fixed size > 1."""
    for _axis, dims in check.conflicts:
        if any(isinstance(d, int) and d > 1 for d in dims) and any(
            isinstance(d, Sym) and d.varies for d in dims
        ):
            return True
    return False


class BroadcastConditional(Rule[None]):
    """## What it does
    Finds broadcasting operators whose operands broadcast only for particular
    values of a dynamic dimension: a dim that varies with the inputs (`T`, or a
    size computed from it) sits on the same axis as a fixed size other than 1,
    e.g. `cond [B, S]` against `x [B, T, 768]` requires `S == 768`.

    ## Why is this bad?
    The model runs at the one size it was traced at (or with 1, which is what
    most probing tools feed) and fails at every other size.

    ## Example
    ```
    Add(x: float[B, T, 256], pos: float[1, 512, 256])   # only if T == 512 (or 1)
    ```

    ## Fix safety
    No automatic fix unless the operands prove the mask-indexing signature
    (then WB102 reports it with a safe fix). Review the exporting code.
    """

    code = "WB103"
    name = "broadcast-conditional"
    severity = Severity.WARNING
    summary = "Operands broadcast only when a dynamic dim takes one particular size"
    family = FAMILY
    ops = frozenset(BROADCAST_OPS)
    messages = {"main": "{op} operands {operands} broadcast only if {terms}"}

    def match(
        self, ctx: Context, g: GraphCtx, node: onnx.NodeProto
    ) -> Match[tuple[list[str], list[Shape], BroadcastCheck]]:
        got = operands(g, node)
        if not got:
            return got
        names, shapes = got.get()
        check = broadcast(shapes)
        if check.ok:
            return fail("the operands broadcast for every size", node, 1)
        if check.concrete:
            return fail("two concrete sizes conflict (WB101)", node, 1)
        if not _varying_vs_fixed(check):
            return fail("no input-dependent dim meets a fixed size", node, 2)
        return ok((names, shapes, check))

    def found(
        self,
        ctx: Context,
        g: GraphCtx,
        node: onnx.NodeProto,
        evidence: tuple[list[str], list[Shape], BroadcastCheck],
    ) -> Detection:
        names, shapes, check = evidence
        desc = ", ".join(f"'{n}' {ctx.fmt(s)}" for n, s in zip(names, shapes))
        return self.report(
            ctx,
            g,
            node,
            self.msg(
                "main",
                op=node.op_type,
                operands=desc,
                terms="; ".join(conditional_terms(ctx, check)),
            ),
            inputs=names,
            advice="no automatic fix: check the exporting code for this size "
            "(a fixed-size table or a mask built for another axis)",
        )

    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 8] x, float[1, 1, 8] b) => (float[B, T, 8] y) { y = Add(x, b) }""",
            "a bias over channels",
        ),
    )
    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 8] x, float[1, 20, 8] pe) => (float[B, T, 8] y) { y = Add(x, pe) }""",
            "a positional table of the traced length",
        ),
    )
