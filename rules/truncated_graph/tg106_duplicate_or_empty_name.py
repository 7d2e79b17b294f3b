from __future__ import annotations

from collections.abc import Iterator

from onnxfix.context import Context
from onnxfix.findings import Severity
from onnxfix.rule import Case, Detection, Rule
from onnxfix.rules.truncated_graph._common import FAMILY, docs


class DuplicateOrEmptyName(Rule[None]):
    __doc__ = docs(
        "Finds values defined more than once (two nodes writing one name, an initializer "
        "shadowed by a node output, a graph input declared twice) and graph inputs, outputs "
        "or initializers with an empty name.",
        'ONNX graphs are single-assignment; onnxruntime refuses duplicates ("Duplicate '
        'definition") and empty names.',
        "Add(a, b) -> y ;  Mul(a, b) -> y",
        "No fix: which definition is meant cannot be decided from the graph.",
    )
    code = "TG106"
    name = "duplicate-or-empty-name"
    severity = Severity.ERROR
    summary = "A value is defined twice, or a graph name is empty"
    family = FAMILY

    def detect(self, ctx: Context) -> Iterator[Detection]:  # noqa: C901 - one check per kind of name
        for g in ctx.graphs:
            seen: dict[str, str] = {}
            init = {t.name for t in g.graph.initializer}
            problems: list[tuple[str, str]] = []
            for vi in g.graph.input:
                if not vi.name:
                    problems.append(("", "a graph input has an empty name"))
                elif vi.name in seen and vi.name not in init:
                    problems.append((vi.name, f"graph input '{vi.name}' is declared twice"))
                seen.setdefault(vi.name, "graph input")
            for t in g.graph.initializer:
                if not t.name:
                    problems.append(("", "an initializer has an empty name"))
                seen.setdefault(t.name, "initializer")
            for vi in g.graph.output:
                if not vi.name:
                    problems.append(("", "a graph output has an empty name"))
            # when every node output is a name of its own, the nodes hold nothing to report
            written = sum(len(outs) - outs.count("") for outs in g.outs)
            clash = written != len(g.producers) or not seen.keys().isdisjoint(g.producers)
            for n, outs in zip(g.nodes, g.outs) if clash else ():
                for o in outs:
                    if not o:
                        continue
                    if o in seen:
                        problems.append(
                            (
                                o,
                                f"'{o}' is written by {n.op_type} {n.name or ''} "
                                f"and already defined by a {seen[o]}",
                            )
                        )
                    seen[o] = f"node {n.name or n.op_type}"
            for name, msg in problems:
                node = g.producers.get(name)
                yield self.report(
                    ctx,
                    g,
                    node,
                    f"{msg}; onnxruntime refuses such a graph",
                    label=(node.name if node is not None else "") or f"<{name or 'empty'}>",
                    op_type=node.op_type if node is not None else "Value",
                )

    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                  g (float[N] x) => (float[N] y) { y = Relu(x) }""",
            "single assignment",
        ),
    )
    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                    g (float[N] a, float[N] b) => (float[N] y) {
                        y = Add(a, b)
                        y = Mul(a, b) }""",
            "two nodes write y",
        ),
    )
