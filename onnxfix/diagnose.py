"""Why a model failed, in our words first: a person reads the cause, then the tool's text.

onnxruntime's messages carry source paths and whole C++ signatures (hundreds of
characters of ``const onnxruntime::...&``) before the sentence that matters, and
some (a graph with no outputs) never name the cause at all.  :func:`shorten`
keeps the sentence; :func:`structural_cause` reads the model itself for the
commonest reasons a fixed graph cannot load: nothing left, an output or input
that nothing defines, a node before its producer.
"""

from __future__ import annotations

import re

import onnx

#: "[ONNXRuntimeError] : 1 : FAIL : " and friends
_ORT_PREFIX = re.compile(r"\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
#: "/onnxruntime_src/onnxruntime/core/framework/x.cc:294 "
_SOURCE = re.compile(r"(?:/[\w.+-]+)+\.(?:cc|h|cpp|hpp):\d+\s*")
#: a C++ function signature: qualified name (and return type) then a balanced (...) list
_QUALIFIED = re.compile(r"(?:[\w:<>,~*&]+\s+)?[\w]+(?:::[\w~<>]+)+\s*\(")
_RUN_NODE = re.compile(
    r"Non-zero status code returned while running (\w+) node\. Name:'([^']*)' Status Message:\s*"
)

LIMIT = 300


def _drop_signatures(text: str) -> str:
    """Remove ``ns::f(const T&, ...)`` signatures, parentheses balanced."""
    out, i = [], 0
    while True:
        m = _QUALIFIED.search(text, i)
        if m is None:
            out.append(text[i:])
            return "".join(out)
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
        out.append(text[i : m.start()])
        i = j


def shorten(text: str, limit: int = LIMIT) -> str:
    """The runtime's message without its prefix, source paths and C++ signatures."""
    text = " ".join(text.split())
    text = _ORT_PREFIX.sub("", text)
    text = _SOURCE.sub("", text)
    text = _drop_signatures(text)
    text = re.sub(r"\s+", " ", text).strip(" :")
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def failing_node(text: str) -> str | None:
    """The node a run-time failure names ("node '/encoder/Where' (Where)"), if any."""
    m = _RUN_NODE.search(" ".join(text.split()))
    return f"node '{m.group(2)}' ({m.group(1)}) fails at run time" if m else None


def structural_cause(model: onnx.ModelProto) -> str | None:
    """The first reason in the main graph's structure that it cannot load, if any."""
    g = model.graph
    if not g.output:
        return "the graph has no outputs" + (" and no nodes" if not g.node else "") + " left"
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    defined |= {t.name for t in g.sparse_initializer}
    made_later = {o for n in g.node for o in n.output if o}
    for n in g.node:
        for name in n.input:
            if name and name not in defined:
                label = f"node '{n.name or n.op_type}' ({n.op_type}) reads '{name}'"
                if name in made_later:
                    return f"{label} before the node that makes it (nodes out of order)"
                return f"{label}, which nothing defines"
        defined.update(o for o in n.output if o)
    for o in g.output:
        if o.name not in defined:
            return f"output '{o.name}' is made by no node, input or initializer"
    return None


def cause(step: str, text: str, model: onnx.ModelProto | None) -> str | None:
    """Our words for a failed verification step, or None when we have none to add."""
    if model is not None and step in ("checker", "shape inference", "onnxruntime load"):
        found = structural_cause(model)
        if found:
            return found
    return failing_node(text)
