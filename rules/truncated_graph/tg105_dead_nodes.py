from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from onnxfix.context import Context
from onnxfix.edit import RuleEditor
from onnxfix.findings import Applicability, Severity
from onnxfix.rule import Case, Detection, Fix, FixPlan, Rule
from onnxfix.rules.truncated_graph._common import FAMILY, dead_nodes, docs


@dataclass(frozen=True)
class Prune:
    outputs: tuple[str, ...]


class DeadNodes(Rule[Prune]):
    __doc__ = docs(
        "Finds nodes whose results reach no graph output.",
        "They cost load time and memory and often mark where a graph was cut.",
        "Shape -> Gather -> Unsqueeze   # feeding nothing",
        "Safe: the nodes are removed; outputs and their values are unchanged (verified).",
    )
    code = "TG105"
    name = "dead-nodes"
    severity = Severity.INFO
    summary = "Nodes whose results reach no output"
    family = FAMILY
    fixable = Applicability.SAFE

    def detect(self, ctx: Context) -> Iterator[Detection]:
        for g in ctx.graphs:
            dead = dead_nodes(ctx, g)
            if not dead:
                continue
            names = [n.name or n.op_type for n in dead]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            yield self.report(
                ctx,
                g,
                dead[0],
                f"{len(dead)} node(s) reach no graph output: {shown}",
                label=dead[0].name or f"<{dead[0].op_type}>",
                fix=Fix(
                    f"Remove the {len(dead)} dead node(s)",
                    Prune(tuple(o for n in dead for o in n.output if o)),
                ),
            )

    def apply(self, editor: RuleEditor, plan: FixPlan[Prune]) -> str | None:
        editor.prune(plan.params.outputs)
        return None

    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                  g (float[N] x) => (float[N] y) { y = Relu(x) }""",
            "every node used",
        ),
    )
    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                    g (float[N] x) => (float[N] y) {
                        s = Shape(x)
                        y = Relu(x) }""",
            "a Shape feeding nothing",
            dims={"N": (3, 4)},
            reference=lambda f: {"y": f["x"].clip(min=0)},
        ),
    )
