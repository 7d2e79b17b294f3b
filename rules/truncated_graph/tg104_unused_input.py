from __future__ import annotations

from collections.abc import Iterator

from onnxfix.context import Context
from onnxfix.findings import Severity
from onnxfix.rule import Case, Detection, Rule
from onnxfix.rules.truncated_graph._common import FAMILY, docs


class UnusedInput(Rule[None]):
    __doc__ = docs(
        "Finds graph inputs that no node (and no subgraph) reads.",
        "A runtime feeds every input it knows of; an input nothing reads usually means the "
        "exporter removed its path (a Python branch decided at trace time) and the runtime's "
        "assumptions no longer hold. With an interface contract (`--expect`) a missing or "
        "extra input is an error (TG201).",
        "inputs: chunk, offset, att_mask   # att_mask read by no node",
        "No fix: removing an input changes what every caller must feed.",
    )
    code = "TG104"
    name = "unused-input"
    severity = Severity.WARNING
    summary = "A graph input is read by no node"
    family = FAMILY

    def detect(self, ctx: Context) -> Iterator[Detection]:
        g = ctx.main
        init = {t.name for t in g.graph.initializer}
        used = set(g.consumers) | {o.name for o in g.graph.output} | ctx.outer_reads
        for vi in g.graph.input:
            if vi.name in init or vi.name in used:
                continue
            yield self.report(
                ctx,
                g,
                None,
                f"graph input '{vi.name}' is read by no node: its path was "
                "removed (a Python branch decided at trace time?); a runtime that relies on it "
                "gets no effect from it",
                label=f"<input {vi.name}>",
                op_type="GraphInput",
                advice="check the branches that read it in the exported code; pass --expect to "
                "check the interface a runtime needs",
            )

    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                  g (float[N] x) => (float[N] y) { y = Relu(x) }""",
            "every input read",
        ),
    )
    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                    g (float[N] x, int64[N] lengths) => (float[N] y) { y = Relu(x) }""",
            "lengths read by nothing",
        ),
    )
