"""Validity rules (VA): what ONNX itself can prove wrong before any runtime sees the model.

Exporters write models that onnx.checker's default mode accepts but strict
type and shape inference rejects — a Loop body feeding float repeats to an
``Expand`` shape, a ``Where`` over incompatible static dims.  onnxruntime runs
the same inference when it loads a model and refuses it.  This rule reports
each root failure on the node it names; failures that only say an input has
no type (because an earlier node failed) are consequences and are left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from onnxfix.context import Context, scope_of, source_of
from onnxfix.findings import Finding, Severity
from onnxfix.registry import Rule

DOCS = """\
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

_ENTRY = re.compile(r"\(op_type:(\w+), node name: ([^)]*)\): (.*)")
_CONSEQUENCE = ("is null", "expected to have type but instead is null")


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


def detect_strict_inference(ctx: Context) -> Iterable[Finding]:
    nodes = {n.name: (g, n) for g, n in ctx.nodes() if n.name}
    for op, name, msg in strict_inference_errors(ctx.strict_error):
        g, node = nodes.get(name, (ctx.main, None))
        yield Finding(
            rule="VA101", name="strict-inference-fails", severity=Severity.ERROR,
            message=f"strict ONNX type/shape inference fails here, so onnxruntime refuses the "
            f"model at load: {msg}",
            graph=g.path, node=name or "<model>", op_type=op or "?",
            scope=scope_of(node) if node is not None else None,
            source=source_of(node) if node is not None else None,
            node_ref=node, graph_ref=g.graph if node is not None else None,
        )


RULES = [
    Rule(
        code="VA101", name="strict-inference-fails", severity=Severity.ERROR,
        summary="Strict ONNX type/shape inference fails (onnxruntime refuses the model)",
        docs=DOCS, fixable=None, detect=detect_strict_inference, family="validity",
        generic=True,
    ),
]
