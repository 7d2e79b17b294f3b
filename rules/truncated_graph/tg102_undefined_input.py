from __future__ import annotations

from collections.abc import Iterator

from onnxfix.context import Context
from onnxfix.findings import Severity
from onnxfix.rule import Case, Detection, Rule
from onnxfix.rules.truncated_graph._common import FAMILY, docs, nearest, walk


class UndefinedInput(Rule[None]):
    __doc__ = docs(
        "Finds node inputs that nothing defines: no graph input, initializer, node output or "
        "outer-scope value of an enclosing graph.",
        "The model cannot load. Usually an initializer was stripped (weights removed to share "
        "the graph) or the graph was cut above a node that is still there.",
        "MatMul(x, encoder.layers.0.fc1.weight)   # no initializer of that name",
        "No fix: a missing initializer's values cannot be invented.",
    )
    code = "TG102"
    name = "undefined-input"
    severity = Severity.ERROR
    summary = "A node input is defined by nothing"
    family = FAMILY

    def detect(self, ctx: Context) -> Iterator[Detection]:
        for g, visible in walk(ctx):
            if visible.issuperset(g.consumers):
                continue  # every name read is defined: no node to look at
            for node, ins in zip(g.nodes, g.ins):
                for inp in ins:
                    if not inp or inp in visible:
                        continue
                    near = nearest(inp, visible)
                    yield self.report(
                        ctx,
                        g,
                        node,
                        f"input '{inp}' of {node.op_type} {node.name or '(unnamed)'} is defined "
                        "nowhere: no initializer, graph input, node output or outer-scope value "
                        "(a stripped initializer or a cut graph); its values cannot be invented"
                        + (f"; nearest existing name: '{near}'" if near else ""),
                        label=node.name or f"<{node.op_type}>",
                    )

    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                  g (float[N] x) => (float[N] y) { y = Relu(x) }""",
            "every input defined",
        ),
    )
    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                    g (float[N, 4] x) => (float[N, 4] y) { y = MatMul(x, weight) }""",
            "a stripped weight",
        ),
    )
