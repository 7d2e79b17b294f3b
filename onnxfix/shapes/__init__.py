"""Shape reasoning: the dim algebra, broadcasting, per-op handlers, propagation, folding.

Layout: :mod:`~onnxfix.shapes.dims` (what a dim is and its arithmetic),
:mod:`~onnxfix.shapes.broadcast`, :mod:`~onnxfix.shapes.ops` (the handler table;
one handler per op, also in ``ops_shape`` and ``ops_nn``),
:mod:`~onnxfix.shapes.propagate` (the pass over a graph),
:mod:`~onnxfix.shapes.fold` (the bounded partial evaluator) and
:mod:`~onnxfix.shapes.conditions`.
"""

from onnxfix.shapes.broadcast import BroadcastCheck, broadcast
from onnxfix.shapes.dims import (
    Dim,
    Shape,
    Sym,
    closed_form,
    d_add,
    d_floordiv,
    d_mod,
    d_mul,
    d_prod,
    d_sub,
    derived,
    evaluate,
    fmt_dim,
    fmt_shape,
    fresh,
    named,
    symbols,
)
from onnxfix.shapes.ops import BROADCAST_OPS, HANDLERS
from onnxfix.shapes.propagate import Propagator

__all__ = [
    "BROADCAST_OPS",
    "HANDLERS",
    "BroadcastCheck",
    "Dim",
    "Propagator",
    "Shape",
    "Sym",
    "broadcast",
    "closed_form",
    "d_add",
    "d_floordiv",
    "d_mod",
    "d_mul",
    "d_prod",
    "d_sub",
    "derived",
    "evaluate",
    "fmt_dim",
    "fmt_shape",
    "fresh",
    "named",
    "symbols",
]
