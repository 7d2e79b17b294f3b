from __future__ import annotations

from collections.abc import Iterator

from onnxfix.context import Context
from onnxfix.findings import Severity
from onnxfix.rule import Case, Detection, Rule
from onnxfix.rules.truncated_graph._common import FAMILY, docs
from onnxfix.shapes import Sym, closed_form, named


class OutputDimMislabeled(Rule[None]):
    __doc__ = docs(
        "Finds graph outputs whose declared dynamic dim reuses the name of an input dim "
        "while the symbolic shape analysis shows the graph computes something else.",
        "Declared dims are how runtimes and serving code size buffers and match shapes. "
        "WeNet's export names both the input frames and the 4x-subsampled output frames 'T': "
        "the declaration says output T equals input T, the graph says ((T - 1)//2 - 1)//2.",
        "chunk: float[1, T, 80] -> output: float[1, T, 256]   # computed: conv(conv(T))",
        "No fix: rename the axis in `dynamic_axes` (an output axis needs its own name).",
    )
    code = "TG107"
    name = "output-dim-mislabeled"
    severity = Severity.WARNING
    summary = "An output dim is declared with an input dim's name but computed differently"
    family = FAMILY

    def detect(self, ctx: Context) -> Iterator[Detection]:
        g = ctx.main
        input_syms = {
            d.dim_param
            for vi in g.graph.input
            for d in vi.type.tensor_type.shape.dim
            if d.dim_param
        }
        for vi in g.graph.output:
            shape = g.shape(vi.name)
            if shape is None:
                continue
            for axis, (decl, d) in enumerate(zip(vi.type.tensor_type.shape.dim, shape)):
                name = decl.dim_param
                if not name or name not in input_syms or not isinstance(d, Sym):
                    continue
                # the difference from a symbol is a proven fact only for closed forms
                if d.kind == "sym" or not d.varies or named(name) == d or not closed_form(d):
                    continue
                yield self.report(
                    ctx,
                    g,
                    g.producers.get(vi.name),
                    f"output '{vi.name}' axis {axis} is declared '{name}', the name of an "
                    f"input dim, but the graph computes {d}: code that sizes buffers "
                    "or checks shapes from the declaration will be wrong",
                    label=f"<output {vi.name}>",
                    op_type="GraphOutput",
                    advice="give the output axis its own name in dynamic_axes",
                )

    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                  g (float[B, T] x) => (float[B, T] y) { y = Relu(x) }""",
            "same T",
        ),
    )
    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                    g (float[B, 1, T] x, float[4, 1, 3] w) => (float[B, 4, T] y) {
                        y = Conv<strides = [2]>(x, w) }""",
            "a strided conv output called T",
        ),
    )
