from __future__ import annotations

from collections.abc import Iterator

from onnxfix.context import Context
from onnxfix.findings import Severity
from onnxfix.rule import Case, Detection, Rule
from onnxfix.rules.trace_baked._common import ADVICE, FAMILY, pinned_fields, pinning

OPS = frozenset({"Expand", "Concat", "MatMul"})


class ShapePinned(Rule[None]):
    """## What it does
    Finds `Expand`, `Concat` and `MatMul` nodes whose operands only agree in size
    when a dim the model declares dynamic takes one value (or a residue): an
    Expand target holding a traced size, a Concat of a dynamic tensor with a
    table of the traced length, a MatMul against a matrix built for the traced
    size.

    ## Why is this bad?
    The model runs at the traced size only; onnxruntime fails at every other
    ("invalid expand shape", "Non concat axis dimensions must match",
    "MatMul dimension mismatch").

    ## Example
    ```
    y = Concat(x: [B, T, 8], pos: [B, 20, 8], axis=2)   # runs only when T == 20
    ```

    ## Fix safety
    No automatic fix. Build the tensor from the input's size in PyTorch
    (`self.pe[:, :x.size(1)]`, `torch.arange(x.size(1))`), not from a Python int.
    """

    code = "TB103"
    name = "shape-pinned"
    severity = Severity.ERROR
    summary = "Expand/Concat/MatMul operands agree only at a traced size of a dynamic dim"
    family = FAMILY
    cascades = True
    messages = {
        "main": "{op} runs {works}: {what} {a} and {b} must agree; {sym} is {where}, "
        "declared dynamic. Likely cause: {cause}"
    }

    def detect(self, ctx: Context) -> Iterator[Detection]:
        seen: set[int] = set()
        for cond, v in pinning(ctx, OPS):
            g, node = cond.graph, cond.node
            if id(node) in seen:
                continue
            seen.add(id(node))
            yield self.report(
                ctx,
                g,
                node,
                self.msg(
                    "main",
                    op=node.op_type,
                    what=cond.what,
                    a=ctx.fmt_dim(cond.lhs),
                    b=ctx.fmt_dim(cond.rhs),
                    **pinned_fields(ctx, cond, v),
                ),
                inputs=list(cond.operands),
                advice=ADVICE,
            )

    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                    g (float[B, T, 8] x) => (float[B, T, 16] y) {
                        ps = Constant<value = int64[3] {1, 20, 8}>()
                        pos = ConstantOfShape(ps)
                        s = Shape(x)
                        i0 = Constant<value = int64[1] {0}>()
                        b = Gather<axis = 0>(s, i0)
                        rest = Constant<value = int64[2] {1, 1}>()
                        reps = Concat<axis = 0>(b, rest)
                        p = Tile(pos, reps)
                        y = Concat<axis = 2>(x, p) }""",
            "a positional table of the traced length concatenated",
        ),
    )
    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                  g (float[B, T, 8] x, float[B, T, 8] z) => (float[B, T, 16] y) {
                      y = Concat<axis = 2>(x, z) }""",
            "two inputs of the same length",
        ),
    )
