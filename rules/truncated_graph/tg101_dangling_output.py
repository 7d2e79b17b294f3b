from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from onnxfix.context import Context
from onnxfix.edit import RuleEditor
from onnxfix.findings import Applicability, Severity
from onnxfix.rule import Case, Detection, Fix, FixPlan, Rule
from onnxfix.rules.truncated_graph._common import FAMILY, docs, nearest, walk


@dataclass(frozen=True)
class DropOutput:
    output: str


class DanglingOutput(Rule[DropOutput]):
    __doc__ = docs(
        "Finds graph outputs (also of subgraphs) that no node, input or initializer defines.",
        'onnxruntime refuses the model: "Graph output X does not exist in the graph". It is '
        "what a cut at the wrong place or a hand edit leaves.",
        "graph outputs: [logits]   # no node produces 'logits'",
        "Removing the output changes the interface, so it is only applied with "
        "`--unsafe-fixes`. To point the output at a value that exists, use `onnxfix repair "
        "--output logits=/encoder/layers.3/Add_output_0`.",
    )
    code = "TG101"
    name = "dangling-output"
    severity = Severity.ERROR
    summary = "A graph output is defined by nothing"
    family = FAMILY
    fixable = Applicability.UNSAFE

    def detect(self, ctx: Context) -> Iterator[Detection]:
        for g, visible in walk(ctx):
            for vi in g.graph.output:
                if vi.name in visible:
                    continue
                near = nearest(vi.name, list(g.producers))
                hint = (
                    f"; nearest surviving value: '{near}' (produced by "
                    f"{g.producers[near].name or g.producers[near].op_type})"
                    if near
                    else ""
                )
                yield self.report(
                    ctx,
                    g,
                    None,
                    f"graph output '{vi.name}' is defined by no node, input or initializer"
                    f"{hint}; onnxruntime refuses the model",
                    label=f"<output {vi.name}>",
                    op_type="GraphOutput",
                    fix=Fix(
                        f"Remove the output declaration '{vi.name}' (changes the interface)",
                        DropOutput(vi.name),
                        changes_outputs=frozenset({vi.name}),
                    ),
                    advice="cut the graph with onnx.utils.extract_model at values that exist, or "
                    "re-declare the output with `onnxfix repair --output NAME=VALUE`",
                )

    def apply(self, editor: RuleEditor, plan: FixPlan[DropOutput]) -> str | None:
        editor.drop_output(plan.params.output)
        return None

    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                  g (float[N] x) => (float[N] y) { y = Relu(x) }""",
            "output produced",
        ),
    )
    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                    g (float[N] x) => (float[N] y, float[N] logits) { y = Relu(x) }""",
            "an output cut away",
            dims={"N": (3, 4)},
            reference=lambda f: {"y": f["x"].clip(min=0)},
        ),
    )
