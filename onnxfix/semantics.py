"""Checking a rewrite, on its own, against the semantics it restores.

A fix knows what its new nodes must compute: numpy's left-aligned
``x[mask] = v`` for a mask fix, ``numpy.repeat`` for a repeat fix.  Before an
edit is accepted, the new nodes are cut out into a model of their own (their
inputs become graph inputs with the shapes the analysis gave them), run by the
``onnx`` reference evaluator at two settings where every distinct dim takes a
distinct value of at least 2 (1 hides broadcasting bugs), and compared with
that reference.  A rewrite that disagrees is rejected before it touches the
model.  This holds even when the whole model cannot be compared with anything
(the original fails, and no ``--reference`` was given).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np
import onnx
from onnx import helper

from onnxfix.rule import RewriteRejected
from onnxfix.shapes import Shape, Sym


class Editor(Protocol):
    """What the check needs of the fix's editor (a :class:`~onnxfix.edit.RuleEditor`)."""

    @property
    def opset(self) -> int: ...
    def fmt_dim(self, dim: Sym) -> str: ...


class Values(Protocol):
    """What the check reads about the rewrite's inputs (a :class:`~onnxfix.context.GraphCtx`)."""

    def shape(self, name: str) -> Shape | None: ...
    def dtype(self, name: str) -> int: ...
    def const(self, name: str) -> np.ndarray | None: ...


Reference = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

#: values the distinct dims take in the two settings (never 1, never shared)
_BASES = (3, 4)


def concrete(shape: Sequence[object], setting: dict[object, int], base: int) -> list[int]:
    """Concrete dims for ``shape``: ints stay, each distinct symbol gets its own value."""
    out = []
    for d in shape:
        if isinstance(d, int):
            out.append(d)
            continue
        if d not in setting:
            setting[d] = base + 2 * len(setting)
        out.append(setting[d])
    return out


def check_rewrite(
    nodes: Sequence[onnx.NodeProto],
    g: Values,
    origin: onnx.NodeProto,
    roles: Mapping[str, str],
    reference: Reference,
    described: str,
    editor: Editor,
) -> str:
    """Run ``nodes`` alone against ``reference``; raise :class:`RewriteRejected` if they differ.

    ``roles`` maps the reference's argument names to the value names the nodes read.
    Values the analysis knows exactly (constants) are fed as they are.
    """
    from onnx.reference import ReferenceEvaluator

    produced = {o for n in nodes for o in n.output}
    needed = [i for n in nodes for i in n.input if i and i not in produced]
    inputs, seen = [], set()
    for name in needed:
        if name in seen:
            continue
        seen.add(name)
        shape = g.shape(name)
        if shape is None:
            raise RewriteRejected(
                f"the shape of '{name}' is unknown; the rewrite cannot be checked on its own"
            )
        inputs.append((name, g.dtype(name) or onnx.TensorProto.FLOAT, shape))
    outs = list(nodes[-1].output)
    graph = helper.make_graph(
        [_copy(n) for n in nodes],
        "onnxfix_check",
        [helper.make_tensor_value_info(n, dt, [None] * len(s)) for n, dt, s in inputs],
        [helper.make_tensor_value_info(o, 0, None) for o in outs],
    )
    model = helper.make_model(
        graph, ir_version=8, opset_imports=[helper.make_opsetid("", editor.opset)]
    )
    ev = ReferenceEvaluator(model)
    rng = np.random.default_rng(0)
    settings = []
    for base in _BASES:
        dims: dict[object, int] = {}
        feeds = {}
        for name, dtype, shape in inputs:
            const = g.const(name)
            if const is not None:
                feeds[name] = const
                continue
            feeds[name] = _random(rng, dtype, concrete(shape, dims, base))
        got = ev.run(None, feeds)
        by_role = {role: feeds[v] if v in feeds else g.const(v) for role, v in roles.items()}
        want = list(reference(by_role).values())  # type: ignore[arg-type]
        for o, a, b in zip(outs, got, want):
            if a.shape != b.shape or not np.allclose(a, b, equal_nan=True):
                raise RewriteRejected(
                    f"the rewrite of {origin.name or origin.op_type} disagrees with {described} "
                    f"on '{o}' at {_show(dims, editor)} ({a.shape} vs {b.shape})"
                )
        settings.append(_show(dims, editor))
    return f"checked on its own against {described} at {' and '.join(settings)}"


def _show(dims: dict[object, int], editor: Editor) -> str:
    return (
        "{"
        + ", ".join(f"{editor.fmt_dim(k)}={v}" for k, v in dims.items() if isinstance(k, Sym))
        + "}"
    )


def _random(rng: np.random.Generator, dtype: int, shape: list[int]) -> np.ndarray:
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    if np_dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(np_dtype, np.integer):
        return rng.integers(0, 5, size=shape).astype(np_dtype)
    return np.asarray(rng.standard_normal(shape).astype(np_dtype))


def _copy(n: onnx.NodeProto) -> onnx.NodeProto:
    c = onnx.NodeProto()
    c.CopyFrom(n)
    return c
