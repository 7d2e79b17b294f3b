"""Shape reasoning: a small symbolic dimension algebra and a propagator.

ONNX shape inference loses the identity of dynamic dimensions as soon as they
go through a convolution, a slice with a computed end or a reshape: the dims
come back empty.  Rules need more than that: to tell that a mask built from
``Shape(x)[1]`` has the same length as ``x``'s axis 1, even when nobody can
say what that length is.  So every dimension here is one of

* an ``int`` (a concrete size),
* a :class:`Sym` named after a graph-input symbol (``T``) or an expression of
  such symbols (``conv(T;10,5)``, ``(T + -3)``) — these vary with the inputs,
* a :class:`Sym` of kind ``unk`` — unknown, but with an identity that is kept
  through the ops that copy it.

Expressions are hash-consed by value, so the same computation on the same
dims yields an equal dim: equality is structural.  Shape *values* (the int64
tensors produced by ``Shape``/``Gather``/``Concat``/…) are tracked as tuples of
dims too, which is how ``Reshape``/``Expand``/``ConstantOfShape``/``Range``
outputs inherit symbols.  Where this module has no rule for an op it falls
back to what ONNX shape inference said.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

INT_MAX = 2**62


@dataclass(frozen=True)
class Sym:
    """A non-concrete dimension; ``kind`` is ``sym``, ``unk`` or an operator."""

    kind: str
    args: tuple

    def __str__(self) -> str:
        k, a = self.kind, self.args
        if k == "sym":
            return str(a[0])
        if k == "unk":
            return "?"
        if k == "add":
            return "(" + " + ".join(map(str, a)) + ")"
        if k == "mul":
            return "*".join(map(str, a))
        if k == "floordiv":
            return f"({a[0]} // {a[1]})"
        if k == "mod":
            return f"({a[0]} % {a[1]})"
        if k == "conv":
            return f"conv({a[0]};k={a[1]},s={a[2]})"
        return f"{k}({', '.join(map(str, a))})"

    @property
    def varies(self) -> bool:
        """True if the dim is (a function of) a named input symbol."""
        return _varies(self)


@functools.lru_cache(maxsize=65536)
def _varies(d: Sym) -> bool:
    if d.kind == "sym":
        return True
    if d.kind == "unk":
        return False
    return any(isinstance(x, Sym) and _varies(x) for x in d.args)


Dim = int | Sym
Shape = tuple[Dim, ...]

_fresh = itertools.count()


def fresh(hint: str = "") -> Sym:
    return Sym("unk", (next(_fresh), hint))


def named(name: str) -> Sym:
    return Sym("sym", (name,))


def fmt_dim(d: Dim | None, aliases: dict[Sym, str] | None = None) -> str:
    if d is None:
        return "?"
    if aliases and isinstance(d, Sym) and d in aliases:
        return aliases[d]
    return str(d)


def fmt_shape(shape: Sequence[Dim] | None, aliases: dict[Sym, str] | None = None) -> str:
    if shape is None:
        return "[?]"
    return "[" + ", ".join(fmt_dim(d, aliases) for d in shape) + "]"


# --- arithmetic on dims -------------------------------------------------------


def d_add(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if a == 0:
        return b
    if b == 0:
        return a
    terms: list[Dim] = []
    const = 0
    for x in (a, b):
        for t in x.args if isinstance(x, Sym) and x.kind == "add" else (x,):
            if isinstance(t, int):
                const += t
            else:
                terms.append(t)
    # collect like terms: x + x = 2*x, x + (-1 * x) = 0
    coef: dict[Dim, int] = {}
    for t in terms:
        c, rest = _factors(t)
        base = d_prod(rest)
        coef[base] = coef.get(base, 0) + c
    out: list[Dim] = [d_mul(c, b) for b, c in coef.items() if c]
    if const:
        out.append(const)
    if not out:
        return 0
    if len(out) == 1:
        return out[0]
    return Sym("add", tuple(sorted(out, key=repr)))


def d_mul(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if a == 1:
        return b
    if b == 1:
        return a
    if a == 0 or b == 0:
        return 0
    factors: list[Dim] = []
    const = 1
    for x in (a, b):
        for t in x.args if isinstance(x, Sym) and x.kind == "mul" else (x,):
            if isinstance(t, int):
                const *= t
            else:
                factors.append(t)
    if const == 0:
        return 0
    if const != 1:
        factors.append(const)
    if len(factors) == 1:
        return factors[0]
    return Sym("mul", tuple(sorted(factors, key=repr)))


def _factors(d: Dim) -> tuple[int, list[Dim]]:
    if isinstance(d, int):
        return d, []
    if d.kind == "mul":
        const = 1
        syms: list[Dim] = []
        for t in d.args:
            if isinstance(t, int):
                const *= t
            else:
                syms.append(t)
        return const, syms
    return 1, [d]


def d_floordiv(a: Dim, b: Dim) -> Dim:
    """Exact division where the factors cancel (a reshape's -1), else a symbolic quotient."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b if b else fresh("div0")
    if b == 1:
        return a
    ca, sa = _factors(a)
    cb, sb = _factors(b)
    for t in list(sb):
        if t in sa:
            sa.remove(t)
            sb.remove(t)
    if not sb and cb and ca % cb == 0:
        return d_mul(ca // cb, d_prod(sa))
    num, den = d_mul(ca, d_prod(sa)), d_mul(cb, d_prod(sb))
    if den == 1:
        return num
    return Sym("floordiv", (num, den))


def d_mod(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a % b if b else fresh("mod0")
    if b == 1 or a == b:
        return 0
    return Sym("mod", (a, b))


def d_prod(dims: Sequence[Dim]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = d_mul(out, d)
    return out


def derived(kind: str, *args: object) -> Sym:
    """A dim computed by an op we do not model exactly; equal inputs give equal dims."""
    return Sym(kind, tuple(args))


# --- broadcasting ---------------------------------------------------------------


@dataclass(frozen=True)
class BroadcastCheck:
    """Outcome of checking multidirectional broadcasting of several shapes.

    ``conflicts`` lists, per output axis (counted from the right, 1-based),
    the dims that must agree and cannot be proven to.  ``concrete`` is true if
    any conflict is between two different concrete sizes, i.e. it fails for
    every input.
    """

    shape: Shape | None
    conflicts: tuple[tuple[int, tuple[Dim, ...]], ...]
    concrete: bool

    @property
    def ok(self) -> bool:
        return not self.conflicts


def broadcast(shapes: Sequence[Sequence[Dim]]) -> BroadcastCheck:
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    conflicts = []
    concrete = False
    for i in range(1, rank + 1):
        dims = [s[-i] for s in shapes if len(s) >= i]
        distinct: list[Dim] = []
        for d in dims:
            if d != 1 and d not in distinct:
                distinct.append(d)
        if not distinct:
            out.append(1)
            continue
        if len(distinct) > 1:
            conflicts.append((i, tuple(distinct)))
            ints = {d for d in distinct if isinstance(d, int)}
            if len(ints) > 1:
                concrete = True
        if len(distinct) > 1:
            # The op fails here; guess what was meant so one bug does not cascade into
            # findings downstream: the dim of the highest-rank operand (the data, not a mask).
            top = max(range(len(shapes)), key=lambda k: (len(shapes[k]), k))
            out.append(shapes[top][-i] if len(shapes[top]) >= i else distinct[0])
            continue
        out.append(distinct[0])
    return BroadcastCheck(tuple(reversed(out)), tuple(conflicts), concrete)


# --- the propagator ------------------------------------------------------------------


_SAME_SHAPE = {
    "Identity", "Cast", "CastLike", "Not", "Neg", "Abs", "Relu", "Sigmoid", "Tanh", "Erf",
    "Sqrt", "Exp", "Log", "Reciprocal", "Softmax", "LogSoftmax", "Dropout", "Gelu",
    "IsNaN", "IsInf", "Sign", "Floor", "Ceil", "Round", "LeakyRelu", "Elu", "Selu",
    "HardSigmoid", "HardSwish", "Clip", "BatchNormalization", "InstanceNormalization",
    "GroupNormalization", "LayerNormalization", "Softplus", "Softsign", "Mish", "CumSum",
    "Trilu", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Celu",
    "ThresholdedRelu", "LpNormalization", "MeanVarianceNormalization", "Hardmax", "Shrink",
    "BitwiseNot", "SimplifiedLayerNormalization", "SkipLayerNormalization", "FastGelu",
    "QuickGelu", "BiasGelu", "Swish",
}
BROADCAST_OPS = {
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "And", "Or", "Xor", "Equal", "Less",
    "LessOrEqual", "Greater", "GreaterOrEqual", "Where", "Max", "Min", "Sum", "Mean",
    "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
}
def d_sub(a: Dim, b: Dim) -> Dim:
    return d_add(a, d_mul(-1, b))


_VALUE_ARITH = {"Add": d_add, "Sub": d_sub, "Mul": d_mul, "Div": d_floordiv, "Mod": d_mod}
_MAX_VALUE = 64  # longest int tensor tracked as a value


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


class Propagator:
    """Computes a symbolic shape (and, for small int tensors, a value) per tensor name.

    One instance covers one graph; subgraphs get a child whose lookups fall
    through to the parent, so outer-scope values keep their symbols.
    """

    def __init__(
        self,
        graph: onnx.GraphProto,
        inferred: dict[str, onnx.ValueInfoProto],
        parent: Propagator | None = None,
    ) -> None:
        self.graph = graph
        self.inferred = inferred
        self.parent = parent
        self.shapes: dict[str, Shape | None] = {}
        self.values: dict[str, tuple[Dim, ...]] = {}
        self.scalar: set[str] = set()
        self.dtypes: dict[str, int] = {}
        self.seeded: set[str] = set()

    def seed(self, name: str, shape: Shape, value: Sequence[Dim] | None = None) -> None:
        """Fix what a value is before :meth:`run` (e.g. a sequence element in a Loop body)."""
        self.shapes[name] = tuple(shape)
        if value is not None:
            self.values[name] = tuple(value)
        self.seeded.add(name)

    # lookups fall through to the enclosing graph
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
            return None
        return self.parent.value(name) if self.parent else None

    def is_scalar(self, name: str) -> bool:
        if name in self.shapes:
            return name in self.scalar
        return self.parent.is_scalar(name) if self.parent else False

    def dtype(self, name: str) -> int:
        if name in self.dtypes:
            return self.dtypes[name]
        return self.parent.dtype(name) if self.parent else 0

    def _from_type(self, vi: onnx.ValueInfoProto | onnx.TypeProto, hint: str) -> Shape | None:
        t = vi.type if isinstance(vi, onnx.ValueInfoProto) else vi
        if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            return None
        dims: list[Dim] = []
        for i, d in enumerate(t.tensor_type.shape.dim):
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and not d.dim_param.startswith("unk__"):
                dims.append(named(d.dim_param))
            else:
                dims.append(fresh(f"{hint}:{i}"))
        return tuple(dims)

    def _set(self, name: str, shape: Shape | None, value: Sequence[Dim] | None = None,
             scalar: bool = False, dtype: int = 0) -> None:
        if not name:
            return
        vi = self.inferred.get(name)
        if vi is not None:
            ref = self._from_type(vi, name)
            if ref is not None:
                if shape is None or len(shape) != len(ref):
                    shape = ref
                else:  # refine unknowns with what ONNX knows for sure
                    shape = tuple(_refine(s, r) for s, r in zip(shape, ref))
            if not dtype and vi.type.HasField("tensor_type"):
                dtype = vi.type.tensor_type.elem_type
        self.shapes[name] = shape
        if dtype:
            self.dtypes[name] = dtype
        if value is not None and len(value) <= _MAX_VALUE:
            self.values[name] = tuple(value)
            if scalar:
                self.scalar.add(name)
        elif shape == ():
            self.scalar.add(name)

    def run(self) -> None:
        g = self.graph
        for vi in g.input:
            self._set(vi.name, self._from_type(vi, vi.name),
                      dtype=vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0)
        for init in g.initializer:
            scalar = len(init.dims) == 0
            value = _small_int_values(init)
            self._set(init.name, tuple(int(d) for d in init.dims), value, scalar, init.data_type)
        for node in g.node:
            if node.output and all(o in self.seeded for o in node.output):
                continue
            try:
                self._node(node)
            except Exception:
                for o in node.output:
                    self._set(o, None)

    # -- per-op rules -----------------------------------------------------------------

    def _const_ints(self, name: str) -> list[int] | None:
        v = self.value(name)
        if v is None or not all(isinstance(x, int) for x in v):
            return None
        return list(v)  # type: ignore[arg-type]

    def _node(self, node: onnx.NodeProto) -> None:
        op = node.op_type
        ins = list(node.input)
        shp = [self.shape(i) if i else None for i in ins]
        out = node.output[0] if node.output else ""
        s0 = shp[0] if shp else None
        dt0 = self.dtype(ins[0]) if ins and ins[0] else 0

        if node.domain not in ("", "ai.onnx"):
            for o in node.output:
                self._set(o, None)
            return

        if op == "Constant":
            t = _attr(node, "value")
            if isinstance(t, onnx.TensorProto):
                value = _small_int_values(t)
                self._set(out, tuple(int(d) for d in t.dims), value, len(t.dims) == 0, t.data_type)
                return
            ints = _attr(node, "value_ints")
            if ints is not None:
                self._set(out, (len(ints),), list(ints), dtype=onnx.TensorProto.INT64)
                return
            iv = _attr(node, "value_int")
            if iv is not None:
                self._set(out, (), [int(iv)], True, dtype=onnx.TensorProto.INT64)
                return
            self._set(out, None)
            return

        if op in _SAME_SHAPE:
            v = self.value(ins[0]) if op in ("Identity", "Cast", "CastLike", "Neg") else None
            if op == "Neg" and v is not None:
                v = tuple(d_mul(-1, x) for x in v)
            dtype = dt0
            if op == "Cast":
                dtype = int(_attr(node, "to", 0))
            elif op == "CastLike":
                dtype = self.dtype(ins[1])
            self._set(out, s0, v, self.is_scalar(ins[0]), dtype)
            for extra in node.output[1:]:
                self._set(extra, None)
            return

        if op in BROADCAST_OPS:
            known = [s for s in shp if s is not None]
            res = None
            if len(known) == len([i for i in ins if i]):
                res = broadcast(known).shape
            value = None
            fn = _VALUE_ARITH.get(op)
            if fn is not None and len(ins) == 2:
                a, b = self.value(ins[0]), self.value(ins[1])
                if a is not None and b is not None and (len(a) == len(b) or 1 in (len(a), len(b))):
                    n = max(len(a), len(b))
                    aa = a * n if len(a) == 1 else a
                    bb = b * n if len(b) == 1 else b
                    value = [fn(x, y) for x, y in zip(aa, bb)]
            if op in ("Equal", "Where") and value is None:
                value = self._select_value(op, ins)
            dtype = onnx.TensorProto.BOOL if op in (
                "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor"
            ) else (self.dtype(ins[1]) if op == "Where" else dt0)
            scalar = all(self.is_scalar(i) for i in ins if i)
            self._set(out, res, value, scalar, dtype)
            return

        if op == "Shape":
            if s0 is None:
                self._set(out, None)
                return
            r = len(s0)
            start = int(_attr(node, "start", 0))
            end = _attr(node, "end", None)
            start = max(0, start + r if start < 0 else start)
            end = r if end is None else int(end)
            end = min(r, end + r if end < 0 else end)
            v = list(s0[start:end])
            self._set(out, (len(v),), v, dtype=onnx.TensorProto.INT64)
            return

        if op == "Size":
            self._set(out, (), [d_prod(s0)] if s0 is not None else None, True,
                      onnx.TensorProto.INT64)
            return

        if op == "Gather":
            axis = int(_attr(node, "axis", 0))
            si = shp[1]
            if s0 is None or si is None:
                self._set(out, None)
                return
            axis = axis + len(s0) if axis < 0 else axis
            res = tuple(s0[:axis]) + tuple(si) + tuple(s0[axis + 1:])
            value = None
            v = self.value(ins[0])
            idx = self._const_ints(ins[1])
            if v is not None and idx is not None and len(s0) == 1:
                try:
                    value = [v[i] for i in idx]
                except IndexError:
                    value = None
            self._set(out, res, value, len(si) == 0, dt0)
            return

        if op in ("Unsqueeze", "Squeeze"):
            axes = _attr(node, "axes", None)
            if axes is None and len(ins) > 1 and ins[1]:
                axes = self._const_ints(ins[1])
            v = self.value(ins[0])
            if s0 is None:
                self._set(out, None)
                return
            if op == "Unsqueeze":
                if axes is None:
                    self._set(out, None)
                    return
                r = len(s0) + len(axes)
                ax = sorted(a + r if a < 0 else a for a in axes)
                res = list(s0)
                for a in ax:
                    res.insert(a, 1)
                self._set(out, tuple(res), v, False, dt0)
            else:
                r = len(s0)
                if axes is None:
                    ax = {i for i, d in enumerate(s0) if d == 1}
                else:
                    ax = {a + r if a < 0 else a for a in axes}
                res = [d for i, d in enumerate(s0) if i not in ax]
                self._set(out, tuple(res), v, len(res) == 0, dt0)
            return

        if op == "Concat":
            axis = int(_attr(node, "axis", 0))
            if any(s is None for s in shp):
                self._set(out, None)
                return
            r = len(shp[0])  # type: ignore[arg-type]
            axis = axis + r if axis < 0 else axis
            res = list(shp[0])  # type: ignore[arg-type]
            res[axis] = d_add(0, 0)
            total: Dim = 0
            for s in shp:
                total = d_add(total, s[axis])  # type: ignore[index]
            res[axis] = total
            vals = [self.value(i) for i in ins]
            value = None
            if r == 1 and all(v is not None for v in vals):
                value = [x for v in vals for x in v]  # type: ignore[union-attr]
            self._set(out, tuple(res), value, False, dt0)
            return

        if op == "Slice":
            self._slice(node, ins, s0, dt0)
            return

        if op == "Reshape":
            target = self.value(ins[1]) if len(ins) > 1 else None
            if s0 is None or target is None:
                self._set(out, None)
                return
            allowzero = int(_attr(node, "allowzero", 0))
            res: list[Dim | None] = []
            for i, t in enumerate(target):
                if t == 0 and not allowzero:
                    res.append(s0[i] if i < len(s0) else fresh())
                else:
                    res.append(None if t == -1 else t)
            if None in res:
                known = [d for d in res if d is not None]
                res[res.index(None)] = _quotient(list(s0), known)
            self._set(out, tuple(res), self.value(ins[0]), False, dt0)  # type: ignore[arg-type]
            return

        if op == "Expand":
            target = self.value(ins[1])
            if s0 is None or target is None:
                self._set(out, None)
                return
            self._set(out, broadcast([s0, target]).shape, None, False, dt0)
            return

        if op == "ConstantOfShape":
            target = self.value(ins[0])
            t = _attr(node, "value")
            dtype = t.data_type if isinstance(t, onnx.TensorProto) else onnx.TensorProto.FLOAT
            value = None
            if (target is not None and len(target) == 1 and isinstance(target[0], int)
                    and 0 <= target[0] <= _MAX_VALUE):
                fill = numpy_helper.to_array(t).reshape(-1)[0] if isinstance(
                    t, onnx.TensorProto) else 0
                if float(fill).is_integer():
                    value = [int(fill)] * target[0]
            self._set(out, tuple(target) if target is not None else None, value, False, dtype)
            return

        if op == "Range":
            start, limit, delta = (self.value(i) for i in ins[:3])
            n: Dim | None = None
            if start is not None and limit is not None and delta is not None:
                if start == (0,) and delta == (1,):
                    n = limit[0]
                elif all(isinstance(x, int) for x in (*start, *limit, *delta)) and delta[0]:
                    n = max(0, -(-(limit[0] - start[0]) // delta[0]))  # type: ignore[operator]
                else:
                    n = derived("range", start[0], limit[0], delta[0])
            self._set(out, (n if n is not None else fresh("range"),), None, False, dt0)
            return

        if op == "Transpose":
            if s0 is None:
                self._set(out, None)
                return
            perm = _attr(node, "perm", None) or list(reversed(range(len(s0))))
            self._set(out, tuple(s0[p] for p in perm), None, False, dt0)
            return

        if op == "MatMul":
            a, b = shp[0], shp[1]
            if a is None or b is None:
                self._set(out, None)
                return
            a2 = (1, *a) if len(a) == 1 else tuple(a)
            b2 = (*b, 1) if len(b) == 1 else tuple(b)
            batch = broadcast([a2[:-2], b2[:-2]]).shape or ()
            res = (*batch, a2[-2], b2[-1])
            if len(a) == 1:
                res = res[:-2] + res[-1:]
            if len(b) == 1:
                res = res[:-1]
            self._set(out, tuple(res), None, False, dt0)
            return

        if op == "Gemm":
            a, b = shp[0], shp[1]
            if a is None or b is None:
                self._set(out, None)
                return
            m = a[1] if _attr(node, "transA", 0) else a[0]
            n_ = b[0] if _attr(node, "transB", 0) else b[1]
            self._set(out, (m, n_), None, False, dt0)
            return

        if op in ("Conv", "MaxPool", "AveragePool", "LpPool"):
            self._conv(node, shp, dt0)
            return

        if op.startswith("Reduce") or op in ("ArgMax", "ArgMin"):
            if s0 is None:
                self._set(out, None)
                return
            r = len(s0)
            if op in ("ArgMax", "ArgMin"):
                axes = [int(_attr(node, "axis", 0))]
            else:
                axes = _attr(node, "axes", None)
                if axes is None and len(ins) > 1 and ins[1]:
                    axes = self._const_ints(ins[1])
                    if axes is None:
                        self._set(out, None)
                        return
            keep = int(_attr(node, "keepdims", 1))
            if not axes:
                if _attr(node, "noop_with_empty_axes", 0):
                    self._set(out, s0, None, False, dt0)
                    return
                axes = list(range(r))
            ax = {a + r if a < 0 else a for a in axes}
            if keep:
                res = tuple(1 if i in ax else d for i, d in enumerate(s0))
            else:
                res = tuple(d for i, d in enumerate(s0) if i not in ax)
            dtype = onnx.TensorProto.INT64 if op in ("ArgMax", "ArgMin") else dt0
            self._set(out, res, None, len(res) == 0, dtype)
            return

        if op == "Split":
            self._split(node, ins, s0, dt0)
            return

        if op == "Tile":
            reps = self.value(ins[1])
            if s0 is None or reps is None or len(reps) != len(s0):
                self._set(out, None)
                return
            self._set(out, tuple(d_mul(a, b) for a, b in zip(s0, reps)), None, False, dt0)
            return

        if op == "Flatten":
            if s0 is None:
                self._set(out, None)
                return
            axis = int(_attr(node, "axis", 1))
            axis = axis + len(s0) if axis < 0 else axis
            self._set(out, (d_prod(s0[:axis]), d_prod(s0[axis:])), None, False, dt0)
            return

        if op == "NonZero":
            r = len(s0) if s0 is not None else fresh()
            self._set(out, (r, fresh("nonzero")), None, False, onnx.TensorProto.INT64)
            return

        for o in node.output:
            self._set(o, None)

    def _select_value(self, op: str, ins: list[str]) -> list[Dim] | None:
        """Values of Equal/Where on small shape tensors (the exporter's ``-1 -> 1`` idiom)."""
        vals = [self.value(i) for i in ins]
        if any(v is None for v in vals):
            return None
        n = max(len(v) for v in vals)  # type: ignore[arg-type]
        if any(len(v) not in (1, n) for v in vals):  # type: ignore[arg-type]
            return None
        full = [v * n if len(v) == 1 else v for v in vals]  # type: ignore[operator]
        if op == "Equal":
            out: list[Dim] = []
            for a, b in zip(*full):
                if a == b:
                    out.append(1)
                elif isinstance(a, int) and isinstance(b, int):
                    out.append(0)
                elif (isinstance(a, Sym) and a.varies and b == -1) or (
                        isinstance(b, Sym) and b.varies and a == -1):
                    out.append(0)  # a size is never -1
                else:
                    return None
            return out
        cond, x, y = full
        if not all(isinstance(c, int) for c in cond):
            return None
        return [a if c else b for c, a, b in zip(cond, x, y)]

    def _slice(self, node: onnx.NodeProto, ins: list[str], s0: Shape | None, dt0: int) -> None:
        out = node.output[0]
        if s0 is None:
            self._set(out, None)
            return
        if len(ins) == 1:  # opset < 10: attributes
            starts = list(_attr(node, "starts", []))
            ends = list(_attr(node, "ends", []))
            axes = _attr(node, "axes", None)
            steps = None
            starts_v: Sequence[Dim] | None = starts
            ends_v: Sequence[Dim] | None = ends
        else:
            starts_v = self.value(ins[1])
            ends_v = self.value(ins[2])
            axes = self._const_ints(ins[3]) if len(ins) > 3 and ins[3] else None
            steps = self._const_ints(ins[4]) if len(ins) > 4 and ins[4] else None
        r = len(s0)
        if starts_v is None or ends_v is None:
            # Bounds computed at run time: untouched axes keep their dims, sliced ones get
            # a dim that is equal for equal slices (same input, same bound tensors).
            res = list(s0)
            for ax in axes if axes is not None else range(r):
                ax = ax + r if ax < 0 else ax
                res[ax] = derived("slice", s0[ax], *ins[1:])
            self._set(out, tuple(res), None, False, dt0)
            return
        axes = list(axes) if axes is not None else list(range(len(starts_v)))
        steps = list(steps) if steps is not None else [1] * len(axes)
        res = list(s0)
        for st, en, ax, sp in zip(starts_v, ends_v, axes, steps):
            ax = ax + r if ax < 0 else ax
            d = s0[ax]
            res[ax] = _slice_len(d, st, en, sp)
        value = None
        v = self.value(ins[0])
        if v is not None and r == 1 and all(isinstance(x, int) for x in (*starts_v, *ends_v)):
            value = list(v[slice(starts_v[0], ends_v[0], steps[0])])  # type: ignore[misc]
        self._set(out, tuple(res), value, False, dt0)

    def _conv(self, node: onnx.NodeProto, shp: list[Shape | None], dt0: int) -> None:
        out = node.output[0]
        x = shp[0]
        if x is None:
            self._set(out, None)
            return
        nsp = len(x) - 2
        if node.op_type == "Conv":
            w = shp[1]
            if w is None:
                self._set(out, None)
                return
            kernel = list(w[2:])
            channels: Dim = w[0]
        else:
            kernel = list(_attr(node, "kernel_shape", []))
            channels = x[1]
        strides = list(_attr(node, "strides", None) or [1] * nsp)
        dil = list(_attr(node, "dilations", None) or [1] * nsp)
        pads = list(_attr(node, "pads", None) or [0] * (2 * nsp))
        auto_pad = _attr(node, "auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        ceil = int(_attr(node, "ceil_mode", 0))
        spatial: list[Dim] = []
        for i in range(nsp):
            d = x[2 + i]
            k = kernel[i]
            if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                spatial.append(d if strides[i] == 1 else derived("ceildiv", d, strides[i]))
                continue
            if isinstance(k, int) and not ceil:
                # floor((d + pads - eff) / s) + 1, kept exact so that equal sizes compare
                # equal: a causal conv over (cache + x) gives x back
                eff = dil[i] * (k - 1) + 1
                inner = d_add(d, pads[i] + pads[i + nsp] - eff)
                spatial.append(d_add(d_floordiv(inner, strides[i]), 1))
            else:
                spatial.append(
                    derived("conv", d, k, strides[i], dil[i], pads[i] + pads[i + nsp], ceil)
                )
        outs = [(x[0], channels, *spatial)]
        self._set(out, tuple(outs[0]), None, False, dt0)
        for extra in node.output[1:]:
            self._set(extra, None)

    def _split(self, node: onnx.NodeProto, ins: list[str], s0: Shape | None, dt0: int) -> None:
        n = len(node.output)
        if s0 is None:
            for o in node.output:
                self._set(o, None)
            return
        axis = int(_attr(node, "axis", 0))
        axis = axis + len(s0) if axis < 0 else axis
        sizes = _attr(node, "split", None)
        if sizes is None and len(ins) > 1 and ins[1]:
            sizes = self.value(ins[1])
        if sizes is None:
            d = s0[axis]
            if isinstance(d, int) and d % n == 0:
                sizes = [d // n] * n
            else:
                sizes = [derived("split", d, n, i) for i in range(n)]
        v = self.value(ins[0])
        start = 0
        for o, sz in zip(node.output, sizes):
            res = list(s0)
            res[axis] = sz
            value = None
            if v is not None and len(s0) == 1 and isinstance(sz, int) and isinstance(start, int):
                value = list(v[start:start + sz])
            start = d_add(start, sz)
            self._set(o, tuple(res), value, False, dt0)


_VALUE_TYPES = {
    onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.FLOAT,
    onnx.TensorProto.DOUBLE,
}


def _small_int_values(t: onnx.TensorProto) -> list[int] | None:
    """A small constant's values when they are whole numbers (shape-like), else None.

    Floats count too: exporters build shapes in float inside Loop bodies.  Tensors
    stored as external data are never read (lint reads no weight bytes).
    """
    if (t.data_type not in _VALUE_TYPES or t.data_location == onnx.TensorProto.EXTERNAL
            or math.prod(t.dims) > _MAX_VALUE):
        return None
    arr = numpy_helper.to_array(t).reshape(-1)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        return None
    return [int(v) for v in arr]


def _refine(mine: Dim, onnx_dim: Dim) -> Dim:
    """Prefer ONNX's answer where ours is an unknown and ONNX knows more."""
    if isinstance(mine, Sym) and mine.kind == "unk":
        if isinstance(onnx_dim, int) or onnx_dim.kind == "sym":
            return onnx_dim
    if isinstance(mine, Sym) and not mine.varies and isinstance(onnx_dim, int):
        return onnx_dim
    return mine


def _slice_len(d: Dim, st: Dim, en: Dim, sp: Dim) -> Dim:
    if all(isinstance(x, int) for x in (d, st, en, sp)):
        return len(range(*slice(st, en, sp).indices(d)))  # type: ignore[arg-type]
    if sp == 1 and isinstance(st, int) and isinstance(en, int):
        if st >= 0 and en >= INT_MAX // 4:
            return d_add(d, -st)
        if st >= 0 and en < 0:
            return d_add(d, -(st - en))
    if sp == 1 and st == 0 and isinstance(en, Sym):
        return derived("slice", d, en)
    return derived("slice", d, st, en, sp)


def _quotient(numer: list[Dim], known: list[Dim]) -> Dim:
    """numel(numer) / prod(known), cancelling common factors first."""
    rest = list(numer)
    den: list[Dim] = []
    for k in known:
        if k in rest:
            rest.remove(k)
        else:
            den.append(k)
    num = d_prod(rest)
    dd = d_prod(den)
    if isinstance(num, int) and isinstance(dd, int) and dd and num % dd == 0:
        return num // dd
    return d_floordiv(num, dd)
