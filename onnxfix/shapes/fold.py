"""The bounded partial evaluator: folds nodes whose inputs are all known constants.

Each op runs through the ``onnx`` package's reference implementation
(``onnx.reference.ops.load_op``), so the semantics are ONNX's own and not a
numpy transcription of ours.  Bounds keep lint cheap and safe on hostile
models: outputs are only computed when their size is known in advance and
small, subgraph and sequence ops are never executed, random ops are not
deterministic, and any failure simply leaves the value unknown.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx

#: largest tensor (elements) read from the model or computed by folding
MAX_ELEMENTS = 4096

#: never folded: control flow and sequences (bodies are not executed), randomness,
#: ops whose outputs say nothing about shapes and can be large
NEVER = frozenset(
    {
        "Loop",
        "Scan",
        "If",
        "SequenceAt",
        "SequenceConstruct",
        "SequenceEmpty",
        "SequenceErase",
        "SequenceInsert",
        "SequenceLength",
        "SequenceMap",
        "SplitToSequence",
        "ConcatFromSequence",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "Dropout",
        "Optional",
        "OptionalGetElement",
        "OptionalHasElement",
        "Conv",
        "ConvTranspose",
        "MatMul",
        "Gemm",
        "LSTM",
        "GRU",
        "RNN",
        "Attention",
    }
)
#: ops whose output size may be unknown to the shape handlers but is bounded by their
#: inputs' sizes (their inputs are already bounded)
SHAPE_FREE = frozenset({"NonZero", "Unique", "Compress", "Shape", "Size"})

_PARAMS: dict[str, Any] = {"new_ops": None, "log": lambda *a: None, "verbose": 0}


@functools.lru_cache(maxsize=1024)
def _op_class(op_type: str, opset: int) -> Any:
    from onnx.reference.ops import load_op

    return load_op("", op_type, opset)


def run(
    node: onnx.NodeProto, inputs: Sequence[np.ndarray | None], opset: int
) -> list[np.ndarray | None] | None:
    """The node's outputs computed from constant ``inputs``; None if it cannot be folded."""
    if node.op_type in NEVER or any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute
    ):
        return None
    try:
        cls = _op_class(node.op_type, opset)
        op = cls(node, {**_PARAMS, "opsets": {"": opset}})
        res = op.run(*inputs)
    except Exception:
        return None
    if not isinstance(res, tuple | list):
        res = (res,)
    out: list[np.ndarray | None] = []
    for r in res:
        if isinstance(r, np.ndarray):
            out.append(r)
        elif isinstance(r, np.generic):
            out.append(np.asarray(r))
        else:
            out.append(None)
    return out
