from __future__ import annotations

from collections.abc import Iterator

from onnxfix.context import Context
from onnxfix.findings import Severity
from onnxfix.rule import Case, Detection, Rule


class NodeOrder(Rule[None]):
    """## What it does
    Finds nodes that read a value defined only by a *later* node of the same
    graph: the graph is not topologically sorted, or it has a cycle (a node that
    reads its own output, directly or through others).

    ## Why is this bad?
    ONNX graphs are executed in order and must be acyclic; onnxruntime refuses
    such a model at load ("This is an invalid model. Error: the graph is not
    acyclic", or an input that "is not output of any previous nodes"). Hand edits
    and graph surgery leave this behind; shape inference does not complain.

    ## Example
    ```
    a = Add(x, y)     # y is defined below: a cycle through Relu
    y = Relu(a)
    ```

    ## Fix safety
    No fix: reordering is possible when there is no cycle, but a graph in the wrong
    order usually means an edit went wrong; re-export or redo the edit.
    """

    code = "VA102"
    name = "node-order"
    severity = Severity.ERROR
    summary = "A node reads a value defined later (a cycle, or nodes out of order)"
    family = "validity"
    messages = {
        "main": "{op} {node} reads '{value}', which is only defined later, by {by}: "
        "{what}; onnxruntime refuses the model"
    }

    def detect(self, ctx: Context) -> Iterator[Detection]:
        for g in ctx.graphs:
            outer: set[str] = set()
            p = g.parent
            while p is not None:
                outer |= (
                    set(p.producers)
                    | {vi.name for vi in p.graph.input}
                    | {t.name for t in p.graph.initializer}
                )
                p = p.parent
            defined = (
                outer | {vi.name for vi in g.graph.input} | {t.name for t in g.graph.initializer}
            )
            for node, ins, outs in zip(g.nodes, g.ins, g.outs):
                for value in ins:
                    if not value or value in defined or value not in g.producers:
                        continue
                    producer = g.producers[value]
                    cycle = producer is node or id(producer) in g.downstream(node)
                    yield self.report(
                        ctx,
                        g,
                        node,
                        self.msg(
                            "main",
                            op=node.op_type,
                            node=node.name or "(unnamed)",
                            value=value,
                            by=f"{producer.op_type} {producer.name or '(unnamed)'}",
                            what="a cycle" if cycle else "the nodes are not in topological order",
                        ),
                        label=node.name or f"<{node.op_type}>",
                        inputs=[value],
                    )
                defined.update(outs)

    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                  g (float[N] x) => (float[N] y) {
                      a = Relu(x)
                      y = Add(a, x) }""",
            "in order",
        ),
    )
    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[N] x) => (float[N] y) {
                 a = Add(x, y)
                 y = Relu(a) }""",
            "a cycle through two nodes",
        ),
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[N] x) => (float[N] y) {
                 y = Add(a, x)
                 a = Relu(x) }""",
            "out of order",
        ),
    )
