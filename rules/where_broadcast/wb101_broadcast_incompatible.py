from __future__ import annotations

import onnx

from onnxfix.context import Context, GraphCtx
from onnxfix.findings import Severity
from onnxfix.rule import Case, Detection, Match, Rule, fail, ok
from onnxfix.rules.where_broadcast._common import FAMILY, operands
from onnxfix.shapes import BROADCAST_OPS, BroadcastCheck, Shape, broadcast


class BroadcastIncompatible(Rule[None]):
    """## What it does
    Finds operators with multidirectional (NumPy-style) broadcasting — `Where`,
    `Add`, `Mul`, `Equal`, … — whose operand shapes cannot broadcast because two
    *concrete* sizes on the same axis (aligned from the right) differ and neither
    is 1.

    ## Why is this bad?
    The model cannot run: onnxruntime refuses it at load time ("ShapeInferenceError")
    or at the first run ("Attempting to broadcast an axis by a dimension other
    than 1").

    ## Example
    ```
    Add(a: float[2, 3], b: float[4])      # 3 vs 4 on the last axis
    ```

    ## Fix safety
    No automatic fix: which operand is wrong depends on what the author meant.
    When the operands of a `Where` match the signature of PyTorch mask indexing,
    WB102 reports it instead, with a safe fix.
    """

    code = "WB101"
    name = "broadcast-incompatible"
    severity = Severity.ERROR
    summary = "Operands of a broadcasting op have different concrete sizes on one axis"
    family = FAMILY
    ops = frozenset(BROADCAST_OPS)
    messages = {"main": "{op} operands cannot broadcast ({axes}): {operands}"}

    def match(
        self, ctx: Context, g: GraphCtx, node: onnx.NodeProto
    ) -> Match[tuple[list[str], list[Shape], BroadcastCheck]]:
        got = operands(g, node)
        if not got:
            return got
        names, shapes = got.get()
        check = broadcast(shapes)
        if not check.concrete:
            return fail("no two concrete sizes conflict", node, 1)
        return ok((names, shapes, check))

    def found(
        self,
        ctx: Context,
        g: GraphCtx,
        node: onnx.NodeProto,
        evidence: tuple[list[str], list[Shape], BroadcastCheck],
    ) -> Detection:
        names, shapes, check = evidence
        axes = ", ".join(
            f"axis -{axis}: {' vs '.join(map(ctx.fmt_dim, dims))}" for axis, dims in check.conflicts
        )
        desc = ", ".join(f"{n} {ctx.fmt(s)}" for n, s in zip(names, shapes))
        return self.report(
            ctx,
            g,
            node,
            self.msg("main", op=node.op_type, axes=axes, operands=desc),
            inputs=names,
            advice="no automatic fix: decide which operand has the wrong shape",
        )

    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[2, 3] a, float[3] b) => (float[2, 3] y) { y = Add(a, b) }""",
            "trailing dims agree",
        ),
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 8] a, float[1, 8] b) => (float[B, T, 8] y) { y = Mul(a, b) }""",
            "a 1 broadcasts",
        ),
    )
    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[2, 3] a, float[4] b) => (float[2, 3] y) { y = Add(a, b) }""",
            "3 vs 4 on the last axis",
        ),
    )
