"""Strict ONNX type and shape inference, as onnxruntime runs it at load."""

from __future__ import annotations

import re
from collections.abc import Iterator

from onnxfix.context import Context
from onnxfix.findings import Severity
from onnxfix.rule import Case, Detection, Rule

_ENTRY = re.compile(r"\(op_type:(\w+), node name: ([^)]*)\): (.*)")
_CONSEQUENCE = ("is null", "expected to have type but instead is null")
#: a declared shape (value_info, graph output) that inference contradicts: onnxruntime 1.32
#: logs "Falling back to lenient merge" and loads the model
_TOLERATED = "Inferred shape and existing shape differ"


def strict_inference_errors(text: str | None) -> list[tuple[str, str, str]]:
    """(op_type, node name, message) for each root failure in strict inference's report."""
    if not text:
        return []
    out = []
    for line in text.splitlines():
        m = _ENTRY.search(line)
        if m is None:
            continue
        op, name, msg = m.groups()
        if any(c in msg for c in _CONSEQUENCE):
            continue
        out.append((op, name.strip(), msg.strip()))
    if not out and text.strip():
        out.append(("", "", text.strip().splitlines()[0][:300]))
    return out


class StrictInferenceFails(Rule[None]):
    """Exporters write models that onnx.checker's default mode accepts but strict
    type and shape inference rejects — a Loop body feeding float repeats to an
    `Expand` shape, a `Where` over incompatible static dims. onnxruntime runs the
    same inference when it loads a model and refuses it. This rule reports each
    root failure on the node it names; failures that only say an input has no
    type (because an earlier node failed) are consequences and are left out.

    ## What it does
    Runs ONNX shape and type inference in strict mode (with type checks) and
    reports every node where it fails, with the inference error. Errors that
    only say an input has no type (a consequence of an earlier failure) are not
    repeated.

    ## Why is this bad?
    onnxruntime runs the same inference when it creates a session and refuses
    the model ("[TypeInferenceError] Graph attribute inferencing failed",
    "[ShapeInferenceError] Incompatible dimensions"). `onnx.checker` without
    `full_check` does not run it, so such models pass a quick check.

    ## Example
    A `Loop` body (from `repeat_interleave` with repeats built by `torch.full`)
    passing float repeats to an `Expand` shape, which must be int64:
    ```
    (op_type:Expand, node name: /Expand_1): shape typestr: tensor(int64),
      has unsupported type: tensor(float)
    ```

    ## Fix safety
    No fix of its own. When a more specific rule explains the same node (WB102 for
    a `Where`, RP102/RP103 for a repeat Loop) that rule's finding is shown instead,
    with its fix; repairing it removes this failure too.
    """

    severities = (Severity.WARNING,)
    code = "VA101"
    name = "strict-inference-fails"
    severity = Severity.ERROR
    summary = "Strict ONNX type/shape inference fails (onnxruntime refuses the model)"
    family = "validity"
    generic = True

    def detect(self, ctx: Context) -> Iterator[Detection]:
        if ctx.strict_error is None:
            return
        nodes = {n.name: (g, n) for g, n in ctx.nodes() if n.name}
        for op, name, msg in strict_inference_errors(ctx.strict_error):
            g, node = nodes.get(name, (ctx.main, None))
            if _TOLERATED in msg:
                yield self.report(
                    ctx,
                    g,
                    node,
                    "a declared shape disagrees with what the graph computes here; onnxruntime "
                    "1.32 merges the two leniently and runs (measured), but code that trusts "
                    f"the declaration is wrong: {msg}",
                    label=name or "<model>",
                    op_type=op or "?",
                    severity=Severity.WARNING,
                )
                continue
            yield self.report(
                ctx,
                g,
                node,
                "strict ONNX type/shape inference fails here, so onnxruntime "
                f"refuses the model at load: {msg}",
                label=name or "<model>",
                op_type=op or "?",
            )

    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                  g (float[2, 3] a, float[3] b) => (float[2, 3] y) { y = Add(a, b) }""",
            "types agree",
        ),
    )
    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
            g (float[2, 3] x) => (float[2, 3] y) { y = Transpose(x) }""",
            "a declared output shape that onnxruntime tolerates (a warning)",
        ),
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
                    g (float[2, 3] a, int64[3] b) => (float[2, 3] y) { y = Add(a, b) }""",
            "float plus int64",
        ),
    )
