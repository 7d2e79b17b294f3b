"""The propagator: one pass over a graph computing a symbolic shape per value.

Besides shapes it tracks two kinds of values:

* *shape values*: small 1-D int tensors as tuples of dims (``Shape(x)`` is
  ``(B, T, 768)``), so ``Reshape``/``Expand``/``ConstantOfShape``/``Range``
  outputs inherit symbols;
* *constants*: any tensor computed only from constants, folded exactly by the
  ``onnx`` package's reference implementation of each op
  (:mod:`onnxfix.shapes.fold`), bounded in size.  Exporters compute repeat
  counts and reshape targets this way (torch 2.0.1's
  ``Where(Equal(shape, -1), ConstantOfShape(..), ..)``): they are not literals,
  but they are known.  Folding is lazy: a value is folded when something asks
  for it and the symbolic path did not already know it, so lint pays for the
  reference evaluator only on models that need it.

Per-op rules live in :mod:`onnxfix.shapes.ops`, one small handler each; where
there is none, the outputs fall back to what ONNX shape inference said.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from onnxfix.shapes import fold
from onnxfix.shapes.dims import Dim, Shape, Sym, fresh, named

if TYPE_CHECKING:
    from collections.abc import Callable

#: longest int tensor tracked as a shape value
MAX_VALUE = 64
#: longest chain of constant producers folded on demand
_MAX_DEPTH = 64
_NP_INT: dict[int, type] = {
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.BOOL: np.bool_,
}


@dataclass(slots=True)
class OpCall:
    """What a handler needs about one node: inputs, their shapes, outputs, op type (read
    from the protobuf once, by the context)."""

    node: onnx.NodeProto
    ins: list[str]
    shapes: list[Shape | None]
    out: str
    outs: tuple[str, ...]
    op: str

    @property
    def s0(self) -> Shape | None:
        return self.shapes[0] if self.shapes else None


def input_dim_key(input_name: str, axis: int, d: onnx.TensorShapeProto.Dimension) -> str | None:
    """The symbol of a dynamic dim of a model input: its name, or ``input:axis`` when it has
    none; None if fixed.  ``dim_value: -1`` (Paddle2ONNX writes it) is dynamic; ``0`` is not:
    onnxruntime 1.32 enforces it as an empty axis (measured).  Probes, the planner and
    conditions name input dims through this one function."""
    if d.HasField("dim_value") and d.dim_value >= 0:
        return None
    return d.dim_param or f"{input_name}:{axis}"


def dynamic_input_dims(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.ValueInfoProto, int]]:
    """(symbol, input, axis) for every dynamic dim of the model's inputs, initializers
    excluded, in graph order: the one walk behind probes, plans, conditions and views."""
    init = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in init:
            continue
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            key = input_dim_key(vi.name, axis, d)
            if key is not None:
                yield key, vi, axis


class Propagator:
    """Computes a symbolic shape (and, for small tensors, a value) per tensor name.

    One instance covers one graph; subgraphs get a child whose lookups fall
    through to the parent, so outer-scope values keep their symbols.
    """

    def __init__(
        self,
        graph: onnx.GraphProto,
        inferred: dict[str, onnx.ValueInfoProto],
        parent: Propagator | None = None,
        opset: int = 17,
    ) -> None:
        self.graph = graph
        self.inferred = inferred
        self.parent = parent
        self.opset: int = parent.opset if parent is not None else opset
        self.shapes: dict[str, Shape | None] = {}
        self.values: dict[str, tuple[Dim, ...]] = {}
        self.consts: dict[str, np.ndarray] = {}
        #: producers of this graph's values and stored tensors, for lazy folding
        self.producers: dict[str, onnx.NodeProto] = {}
        self.stored: dict[str, onnx.TensorProto] = {}
        self._not_const: set[str] = set()
        self.scalar: set[str] = set()
        self.dtypes: dict[str, int] = {}
        self.seeded: set[str] = set()

    def seed(self, name: str, shape: Shape, value: Sequence[Dim] | None = None) -> None:
        """Fix what a value is before :meth:`run` (e.g. a sequence element in a Loop body)."""
        self.shapes[name] = tuple(shape)
        if value is not None:
            self.values[name] = tuple(value)
        self.seeded.add(name)

    # -- lookups fall through to the enclosing graph --------------------------------------

    def shape(self, name: str) -> Shape | None:
        if not name:
            return None
        if name in self.shapes:
            return self.shapes[name]
        return self.parent.shape(name) if self.parent else None

    def value(self, name: str) -> tuple[Dim, ...] | None:
        if name in self.values:
            return self.values[name]
        if name in self.shapes:
            if name not in self._not_const and self.const(name) is not None:
                return self.values.get(name)
            return None
        return self.parent.value(name) if self.parent else None

    def const(self, name: str, depth: int = 0) -> np.ndarray | None:
        """The exact value of a tensor computed from constants only (bounded size)."""
        if name in self.consts:
            return self.consts[name]
        if name not in self.shapes:
            return self.parent.const(name, depth) if self.parent else None
        if name in self._not_const or depth > _MAX_DEPTH:
            return None
        arr = self._known(name) if name not in self.stored else tensor_value(self.stored[name])
        if arr is None and name in self.producers:
            arr = self._fold(self.producers[name], name, depth)
        if arr is None:
            self._not_const.add(name)
            return None
        self.set_const(name, arr)
        return arr

    def _known(self, name: str) -> np.ndarray | None:
        """A shape value the symbolic path already knows exactly, as an array."""
        v, s = self.values.get(name), self.shapes.get(name)
        if v is None or s is None or len(s) > 1 or not all(isinstance(x, int) for x in v):
            return None
        if (len(s) == 1 and s[0] != len(v)) or (len(s) == 0 and len(v) != 1):
            return None
        dtype = _NP_INT.get(self.dtypes.get(name, 0))
        if dtype is None:
            return None
        return np.asarray(v, dtype=dtype).reshape([len(v)] if s else [])

    def const_ints(self, name: str) -> list[int] | None:
        v = self.value(name)
        if v is None or not all(isinstance(x, int) for x in v):
            return None
        return [int(x) for x in v]  # type: ignore[arg-type]

    def is_scalar(self, name: str) -> bool:
        if name in self.shapes:
            return name in self.scalar
        return self.parent.is_scalar(name) if self.parent else False

    def dtype(self, name: str) -> int:
        if name in self.dtypes:
            return self.dtypes[name]
        return self.parent.dtype(name) if self.parent else 0

    # -- recording ---------------------------------------------------------------------------

    def from_type(self, t: onnx.TypeProto, hint: str) -> Shape | None:
        if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            return None
        dims: list[Dim] = []
        for i, d in enumerate(t.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value >= 0:
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and not d.dim_param.startswith("unk__"):
                dims.append(named(d.dim_param))
            else:
                dims.append(fresh(f"{hint}:{i}"))
        return tuple(dims)

    def set(
        self,
        name: str,
        shape: Shape | None,
        value: Sequence[Dim] | None = None,
        scalar: bool = False,
        dtype: int = 0,
    ) -> None:
        if not name:
            return
        vi = self.inferred.get(name)
        if vi is not None:
            # a type that is not a tensor reads as an empty tensor type: no dtype, no shape
            tt = vi.type.tensor_type
            if not dtype:
                dtype = tt.elem_type
            # ONNX's answer is read only where it can change ours: a missing shape, another
            # rank, or a dim we do not know (converting every inferred type was a fifth of
            # a 100k-node analysis)
            if tt.HasField("shape") and (
                shape is None or len(shape) != len(tt.shape.dim) or not _settled(shape)
            ):
                ref = self.from_type(vi.type, "=" + name)
                if ref is not None:
                    if shape is None or len(shape) != len(ref):
                        shape = ref
                    else:  # refine unknowns with what ONNX knows for sure
                        shape = tuple(_refine(s, r) for s, r in zip(shape, ref))
        self.shapes[name] = shape
        if dtype:
            self.dtypes[name] = dtype
        if value is not None and len(value) <= MAX_VALUE:
            self.values[name] = tuple(value)
            if scalar:
                self.scalar.add(name)
        elif shape == ():
            self.scalar.add(name)

    def set_const(self, name: str, arr: np.ndarray) -> None:
        """Record an exactly known tensor; small integral ones are shape values too."""
        self.consts[name] = arr
        if arr.ndim <= 1 and arr.size <= MAX_VALUE and arr.dtype.kind in "iuf":
            # Python numbers, not numpy calls on a one-element array: five ufuncs per
            # float constant were 7.6 µs of a 13 µs Constant node (measured)
            flat = arr.reshape(-1).tolist()
            if arr.dtype.kind != "f" or all(v.is_integer() for v in flat):  # not inf, nan
                self.values[name] = tuple(int(v) for v in flat)
                if arr.ndim == 0:
                    self.scalar.add(name)

    # -- the pass ----------------------------------------------------------------------------

    def run(
        self,
        rows: Iterable[tuple[onnx.NodeProto, tuple[str, ...], tuple[str, ...], str, str]]
        | None = None,
    ) -> None:
        """One pass in graph order.  ``rows`` are (node, inputs, outputs, op type, domain)
        already read from the protobuf (the context reads them once for everything); by
        default they are read here."""
        from onnxfix.shapes.ops import HANDLERS, unknown

        g = self.graph
        for vi in g.input:
            self.set(
                vi.name,
                self.from_type(vi.type, vi.name),
                dtype=vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0,
            )
        for init in g.initializer:
            self.set(
                init.name,
                tuple(int(d) for d in init.dims),
                None,
                len(init.dims) == 0,
                init.data_type,
            )
            self.stored[init.name] = init
            if len(init.dims) <= 1 and math.prod(init.dims) <= MAX_VALUE:
                self.const(init.name)  # small 1-D ints are shape values (Reshape targets)
        if rows is None:
            rows = ((n, tuple(n.input), tuple(n.output), n.op_type, n.domain) for n in g.node)
        producers, seeded, shape, shapes = self.producers, self.seeded, self.shape, self.shapes
        for node, ins, outs, op, domain in rows:
            for o in outs:
                producers[o] = node
            if seeded and outs and all(o in seeded for o in outs):
                continue
            call = OpCall(
                node,
                list(ins),
                # this graph's own values first (a dict lookup); the rest asks the parents
                [shapes[i] if i in shapes else shape(i) if i else None for i in ins],
                outs[0] if outs else "",
                outs,
                op,
            )
            handler: Callable[[Propagator, OpCall], None] = (
                HANDLERS.get(op, unknown) if domain in ("", "ai.onnx") else unknown
            )
            try:
                handler(self, call)
            except Exception:
                for o in outs:
                    self.set(o, None)

    def _fold(self, node: onnx.NodeProto, want: str, depth: int) -> np.ndarray | None:  # noqa: C901 - bounds checked before anything runs
        """Fold ``node`` if all its inputs are constants and its outputs are known small."""
        if node.domain not in ("", "ai.onnx") or node.op_type in fold.NEVER or not node.input:
            return None
        for o in node.output:
            s = self.shapes.get(o) if o else ()
            if s is None or not all(isinstance(d, int) for d in s):
                if node.op_type not in fold.SHAPE_FREE:
                    return None
            elif math.prod(s) > fold.MAX_ELEMENTS:  # type: ignore[arg-type]
                return None
        inputs = []
        for i in node.input:
            arr = self.const(i, depth + 1) if i else None
            if i and arr is None:
                return None
            inputs.append(arr)
        result = fold.run(node, inputs, self.opset)
        if result is None:
            return None
        found = None
        for o, arr in zip(node.output, result):
            if not o or arr is None or arr.size > fold.MAX_ELEMENTS:
                continue
            if self.shapes.get(o) is None or len(self.shapes[o] or ()) != arr.ndim:
                self.shapes[o] = tuple(int(d) for d in arr.shape)
            if o == want:
                found = arr
            else:
                self.set_const(o, arr)
        return found


def tensor_value(t: onnx.TensorProto) -> np.ndarray | None:
    """A stored tensor's values if small and inside the model (lint reads no weight bytes).

    Raw bytes of a plain numeric type are read as ``numpy_helper.to_array`` reads them
    (``frombuffer``, read-only) without its general path: 1 µs instead of 4 µs, for each
    of the hundreds of Constant nodes a TorchScript export has."""
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return None
    dims = tuple(t.dims)
    if math.prod(dims) > fold.MAX_ELEMENTS:
        return None
    raw = _RAW.get(t.data_type)
    if raw is not None and t.HasField("raw_data") and not t.HasField("segment"):
        try:
            return np.frombuffer(t.raw_data, dtype=raw).reshape(dims)
        except ValueError:  # a size that does not match the dims: to_array refuses too
            return None
    try:
        return numpy_helper.to_array(t)
    except Exception:
        return None


#: the types whose raw bytes are numpy's own on this machine (ONNX stores little-endian):
#: the integer types shape values use, and the two plain float types
_RAW: dict[int, np.dtype] = (
    {
        **{t: np.dtype(np_type) for t, np_type in _NP_INT.items()},
        onnx.TensorProto.FLOAT: np.dtype(np.float32),
        onnx.TensorProto.DOUBLE: np.dtype(np.float64),
    }
    if sys.byteorder == "little"
    else {}
)


def _settled(shape: Shape) -> bool:
    """Whether no dim of ``shape`` can be refined by ONNX's (see :func:`_refine`).  A loop,
    not all() over a generator: it runs for nearly every value of the graph."""
    for d in shape:
        if not isinstance(d, int) and not d.varies:
            return False
    return True


def _refine(mine: Dim, onnx_dim: Dim) -> Dim:
    """Prefer ONNX's answer where ours is an unknown and ONNX knows more."""
    if isinstance(mine, Sym) and mine.kind == "unk":
        if isinstance(onnx_dim, int) or onnx_dim.kind == "sym":
            return onnx_dim
    if isinstance(mine, Sym) and not mine.varies and isinstance(onnx_dim, int):
        return onnx_dim
    return mine
