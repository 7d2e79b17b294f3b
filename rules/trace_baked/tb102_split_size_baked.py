from __future__ import annotations

from collections.abc import Iterator

from onnxfix.context import Context
from onnxfix.findings import Severity
from onnxfix.rule import Case, Detection, Rule
from onnxfix.rules.trace_baked._common import ADVICE, FAMILY, pinned_fields, pinning


class SplitSizeBaked(Rule[None]):
    """## What it does
    Finds `Split` nodes whose split sizes are constants that only add up to the
    split axis when a dim the model declares dynamic takes the traced value.

    ## Why is this bad?
    `x.split([int(T) - 3, 3], dim=1)` becomes `Split(x, [17, 3])` when traced at
    T=20: onnxruntime refuses every other length ("Cannot split using values in
    'split' attribute").

    ## Example
    ```
    a, b = Split(x: [B, T, C], split=[17, 3], axis=1)   # runs only when T == 20
    ```

    ## Fix safety
    No automatic fix: which part should grow is the author's choice. In PyTorch,
    compute the sizes from tensors (`x.split([x.size(1) - 3, 3], 1)` under dynamo,
    or slice: `x[:, :-3], x[:, -3:]`).
    """

    code = "TB102"
    name = "split-size-baked"
    severity = Severity.ERROR
    summary = "Split sizes baked at trace time only add up at the traced size"
    family = FAMILY
    cascades = True
    messages = {
        "main": "Split of '{x}' {shape} runs {works}: the sizes add up to {total}, the "
        "axis is {axis}; {sym} is {where}, declared dynamic. Likely cause: {cause}"
    }

    def detect(self, ctx: Context) -> Iterator[Detection]:
        for cond, v in pinning(ctx, frozenset({"Split"})):
            g, node = cond.graph, cond.node
            yield self.report(
                ctx,
                g,
                node,
                self.msg(
                    "main",
                    x=node.input[0],
                    shape=ctx.fmt(g.shape(node.input[0])),
                    total=ctx.fmt_dim(cond.rhs),
                    axis=ctx.fmt_dim(cond.lhs),
                    **pinned_fields(ctx, cond, v),
                ),
                inputs=[node.input[0]],
                advice=ADVICE,
            )

    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 13]>
                    g (float[B, T, 4] x) => (float[B, P, 4] a, float[B, 3, 4] b) {
                        s = Constant<value = int64[2] {17, 3}>()
                        a, b = Split<axis = 1>(x, s) }""",
            "x.split([int(T) - 3, 3], 1)",
        ),
    )
    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 13]>
                  g (float[B, T, 4] x) => (float[B, P, 4] a, float[B, Q, 4] b) {
                      a, b = Split<axis = 1>(x) }""",
            "an even split of a dynamic axis",
        ),
    )
