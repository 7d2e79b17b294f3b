from __future__ import annotations

from collections.abc import Iterator

from onnxfix.context import Context, GraphCtx
from onnxfix.findings import Severity
from onnxfix.rule import Case, Detection, Rule
from onnxfix.rules.truncated_graph._common import FAMILY, docs


def _reached(g: GraphCtx, inputs: set[str], wanted: list[str]) -> set[str]:
    """Every value of ``g`` computed from a graph input: sweeps in graph order (a node
    holding a subgraph counts what the subgraph reads from the outer scope), repeated
    while a ``wanted`` value is missing and the last sweep found more (nodes out of
    order, which VA102 reports)."""
    reached = set(inputs)
    holders = set(g.nesting)
    while True:
        before = len(reached)
        for k, (ins, outs) in enumerate(zip(g.ins, g.outs)):
            if not reached.isdisjoint(ins) or (
                k in holders
                and any(
                    i in reached
                    for sub in g.subgraphs(g.nodes[k])
                    for n in sub.node
                    for i in n.input
                )
            ):
                reached.update(outs)
        if all(w in reached for w in wanted) or len(reached) == before:
            return reached


class ConstantOutput(Rule[None]):
    __doc__ = docs(
        "Finds graph outputs that depend on no graph input at all.",
        "Tracing turns Python values computed from sizes (`torch.tensor(x.size(1))`, "
        "`len(...)`) into constants: the output then says the same at every length (one "
        "export returned a baked 10 for every input).",
        "lengths = Constant(value=[10])   # was torch.tensor(x.size(1)) at trace time",
        "No fix: compute the value with tensor ops (`x.new_tensor(...)` is traced too; use "
        "`torch.ones_like(x[:, :, 0]).sum(-1)` or return the shape from the runtime).",
    )
    code = "TG103"
    name = "constant-output"
    severity = Severity.WARNING
    summary = "A graph output depends on no graph input (baked at trace time)"
    family = FAMILY

    def detect(self, ctx: Context) -> Iterator[Detection]:
        g = ctx.main
        init = {t.name for t in g.graph.initializer}
        inputs = {vi.name for vi in g.graph.input if vi.name not in init}
        if not inputs:
            return
        reached = _reached(g, inputs, [vi.name for vi in g.graph.output])
        for vi in g.graph.output:
            if vi.name in reached or vi.name not in g.producers:
                continue
            value = g.value(vi.name)
            shown = f" (it is {list(value)} at every input)" if value is not None else ""
            node = g.producers[vi.name]
            yield self.report(
                ctx,
                g,
                node,
                f"graph output '{vi.name}' depends on no graph input{shown}: "
                "tracing baked a value computed from sizes into a constant",
                label=node.name or f"<{node.op_type}>",
                advice="compute it with tensor ops instead of Python ints (torch.tensor("
                "x.size(1)) is a constant once traced)",
            )

    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                  g (float[B, T] x) => (int64[2] s) { s = Shape(x) }""",
            "a shape computed",
        ),
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                  g (float[B, T] x) => (int64[2] s) {
                      s = Shape(t)
                      t = Neg(x) }""",
            "nodes out of order still depend on the input (VA102 reports the order)",
        ),
    )
    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                    g (float[B, T] x) => (float[B, T] y, int64[1] n) {
                        y = Relu(x)
                        n = Constant<value = int64[1] {5}>() }""",
            "a length baked at 5",
        ),
    )
