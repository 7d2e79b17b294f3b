"""When does an op run?  Conditions on dims, collected per op and classified by sampling.

Many ops only run when their inputs agree in size: broadcasting operands on
each axis, a Reshape's element count, Split sizes that add up, Concat's other
axes, a MatMul's inner dims.  With symbolic shapes each such requirement is a
condition on the model's input dims, e.g. ``T*B*144 == 20*B*144``.

Rather than solve conditions algebraically, :func:`classify` evaluates them at
many input values (:func:`onnxfix.shapes.evaluate`): a condition that always
holds is dropped (``((x - 1)//2)//2 == (x - 1)//4``), one that holds at a few
values *pins* a dynamic dim (``T == 20``, the size it was traced at), one that
holds on a residue class pins it modulo something (``L % 8 == 0``), and one
that sets an input dim to a function of others (``F == (L // 10) - 1``) is a
*relation* the inputs must satisfy — something probes must respect, not a bug.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx

from onnxfix.shapes import _sample
from onnxfix.shapes.broadcast import aligned
from onnxfix.shapes.dims import Dim, Sym, d_add, d_prod, evaluate_array, symbols
from onnxfix.shapes.ops import BROADCAST_OPS
from onnxfix.shapes.propagate import dynamic_input_dims

if TYPE_CHECKING:
    from onnxfix.context import Context, GraphCtx

#: single-symbol conditions are scanned densely over 2..SCAN
SCAN = 1024
#: at most this many pinned values are listed as "works only at"
FEW = 4


@dataclass(frozen=True)
class Condition:
    """``lhs`` and ``rhs`` must agree for ``node`` to run.

    ``kind``: ``eq`` (equal), ``broadcast`` (equal, or one is 1), ``divides``
    (``rhs % lhs == 0``, a Reshape with -1).
    """

    graph: GraphCtx
    node: onnx.NodeProto
    lhs: Dim
    rhs: Dim
    kind: str
    what: str
    operands: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """What a condition means for the model's input dims.

    ``status``: ``always`` (drop it), ``never`` (fails at every size), ``pins`` (a
    symbol only works at ``values``), ``residue`` (``symbol % modulus == remainder``),
    ``finite`` (several symbols, finitely many combinations: ``B*T == 80``),
    ``relation`` (``symbol`` must equal ``defines``: an input relation), ``bounded``
    (an interval: a maximum or minimum length), ``dense`` (holds on most values) or
    ``unknown`` (not computable).
    """

    status: str
    symbol: str | None = None
    values: tuple[int, ...] = ()
    modulus: int = 0
    remainder: int = 0
    defines: Dim | None = None
    combos: tuple[tuple[int, ...], ...] = ()
    syms: tuple[str, ...] = ()
    #: ``values`` is (first, last) of an interval, not a list
    interval: bool = False

    @property
    def pins(self) -> bool:
        return self.status in ("pins", "residue", "finite", "never")


def _truth(
    cond: Condition, env: dict[str, np.ndarray], n: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(where the condition says something, where it holds) over ``n`` settings at once.

    Sizes below 1 are settings the model cannot have there (no evidence either way), and
    for broadcasting a 1 broadcasts by accident: neither counts."""
    a = evaluate_array(cond.lhs, env, n)
    b = evaluate_array(cond.rhs, env, n)
    if a is None or b is None:
        return None
    valid = (a >= 1) & (b >= 1)
    if cond.kind == "broadcast":
        valid &= (a != 1) & (b != 1)
    if cond.kind == "divides":
        truth = b % np.where(a == 0, 1, a) == 0
    else:
        truth = a == b
    return valid, truth


def holds(cond: Condition, env: dict[str, int]) -> bool | None:
    got = _truth(cond, {k: np.array([v], np.int64) for k, v in env.items()}, 1)
    if got is None or not got[0][0]:
        return None
    return bool(got[1][0])


_VALUES = np.arange(2, SCAN + 1, dtype=np.int64)


def classify(
    cond: Condition, inputs: Collection[str] | None = None, rng: random.Random | None = None
) -> Verdict:
    """Classify ``cond`` by evaluating it over the input dims it depends on.

    ``inputs`` are the model's input dims; a condition on any other symbol (a name an
    exporter gave an intermediate size) is ``unknown``.
    """
    if cond.lhs == cond.rhs:
        return Verdict("always")
    syms = tuple(sorted(symbols(cond.lhs) | symbols(cond.rhs)))
    if not syms or (inputs is not None and not set(syms) <= set(inputs)):
        return Verdict("unknown")
    for side, other in ((cond.lhs, cond.rhs), (cond.rhs, cond.lhs)):
        if (
            isinstance(side, Sym)
            and side.kind == "sym"
            and str(side.args[0]) not in symbols(other)
            and symbols(other)
        ):
            return Verdict("relation", str(side.args[0]), defines=other, syms=syms)
    if len(syms) == 1:
        return _one(cond, syms[0])
    return _many(cond, syms, rng)


def classified(
    conds: Iterable[Condition], inputs: Collection[str] | None = None
) -> Iterator[tuple[Condition, Verdict]]:
    """Each condition with its verdict; conditions that compare the same dims the same way
    are classified once (a 24-layer encoder repeats each of its five conditions about ten
    times: classifying 52 cost 4.6 ms of a 1.2 GB model's lint, measured)."""
    seen: dict[tuple[Dim, Dim, str], Verdict] = {}
    for cond in conds:
        key = (cond.lhs, cond.rhs, cond.kind)
        verdict = seen.get(key)
        if verdict is None:
            verdict = seen[key] = classify(cond, inputs)
        yield cond, verdict


def _scan(
    cond: Condition, s: str, base: dict[str, int] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(valid, truth) of ``cond`` for ``s`` = 2..SCAN, the other symbols at ``base``."""
    n = len(_VALUES)
    env = {k: np.full(n, v, np.int64) for k, v in (base or {}).items()}
    env[s] = _VALUES
    return _truth(cond, env, n)


def _one(cond: Condition, s: str) -> Verdict:
    got = _scan(cond, s)
    if got is None or not got[0].any():
        return Verdict("unknown", s, syms=(s,))
    return _shape_of(cond, s, *got, syms=(s,))


def _shape_of(
    cond: Condition, s: str, valid: np.ndarray, truth: np.ndarray, syms: tuple[str, ...]
) -> Verdict:
    """What the set of values of ``s`` where ``cond`` holds looks like."""
    ok = _VALUES[valid & truth]
    seen = int(valid.sum())
    if len(ok) == seen:
        return Verdict("always", s, syms=syms)
    if not len(ok):
        return Verdict("never", s, syms=syms)
    if len(ok) <= FEW:
        return Verdict("pins", s, tuple(int(v) for v in ok), syms=syms)
    known = _VALUES[valid]
    if ok[-1] - ok[0] + 1 == len(ok) and (ok[0] == known[0] or ok[-1] == known[-1]):
        # an interval from the smallest size on (a positional table of max_len) or up to
        # the largest (a conv needs some input): a bound, not a size baked at trace time
        return Verdict("bounded", s, (int(ok[0]), int(ok[-1])), syms=syms, interval=True)
    if ok[-1] - ok[0] + 1 == len(ok):  # a window of sizes, e.g. where a derived T == 48
        return Verdict("pins", s, (int(ok[0]), int(ok[-1])), syms=syms, interval=True)
    for p in range(2, 129):
        r = int(ok[0]) % p
        if np.array_equal(truth[valid], (_VALUES[valid] % p) == r):
            return Verdict("residue", s, tuple(int(v) for v in ok[:FEW]), p, r, syms=syms)
    if len(ok) > seen // 2:
        return Verdict("dense", s, syms=syms)
    return Verdict("pins", s, tuple(int(v) for v in ok[:FEW]), syms=syms)


def _many(cond: Condition, syms: tuple[str, ...], rng: random.Random | None) -> Verdict:
    n = _sample.SIZE
    stored = _sample.rows(len(syms)) if rng is None else None
    if stored is not None:
        env = dict(zip(syms, stored))
    else:
        gen = np.random.default_rng(rng.randrange(2**31) if rng else _sample.SEED)
        env = {s: gen.integers(2, 257, size=n) for s in syms}
    got = _truth(cond, env, n)
    if got is None or not got[0].any():
        return Verdict("unknown", syms=syms)
    valid, truth = got
    if truth[valid].all():
        return Verdict("always", syms=syms)
    # does one symbol carry the whole condition, whatever the others are?
    for s in syms:
        verdicts = []
        for j in range(6):
            base = {k: int(env[k][j]) for k in syms if k != s}
            scanned = _scan(cond, s, base)
            if scanned is not None and scanned[0].any():
                verdicts.append(_shape_of(cond, s, *scanned, syms=syms))
        if (
            verdicts
            and all(v == verdicts[0] for v in verdicts)
            and verdicts[0].status in ("pins", "residue")
        ):
            return verdicts[0]
    if truth[valid].mean() > 0.25:
        return Verdict("dense", syms=syms)
    combos = _combos(cond, syms)
    if combos is not None and len(combos) <= _FINITE:
        if not combos:  # not at any of the 65,025 combinations
            return Verdict("never", syms=syms)
        return Verdict("finite", combos=tuple(combos[:FEW]), syms=syms)
    return Verdict("dense", syms=syms)


#: a condition on two dims that holds at more combinations than this is not a few sizes
_FINITE = 64


def _combos(cond: Condition, syms: tuple[str, ...]) -> list[tuple[int, ...]] | None:
    """For two symbols: the combinations in 2..256 where ``cond`` holds (``B*T == 80``),
    at most ``_FINITE + 1`` of them.  A sample that met none does not make a condition
    ``never``: only this exhaustive grid does (a condition that held at 230 of its
    combinations, none of them sampled, was reported as failing at every size)."""
    if len(syms) != 2:
        return None
    a, b = np.meshgrid(np.arange(2, 257), np.arange(2, 257), indexing="ij")
    got = _truth(cond, {syms[0]: a.ravel(), syms[1]: b.ravel()}, a.size)
    if got is None:
        return None
    hit = np.flatnonzero(got[0] & got[1])[: _FINITE + 1]
    return [(int(a.flat[k]), int(b.flat[k])) for k in hit]


# --- collecting conditions -----------------------------------------------------------------

Collector = Callable[["GraphCtx", onnx.NodeProto], Iterator[Condition]]
COLLECTORS: dict[str, Collector] = {}


def collects(*ops: str) -> Callable[[Collector], Collector]:
    def register(fn: Collector) -> Collector:
        for op in ops:
            COLLECTORS[op] = fn
        return fn

    return register


def _pairs(
    g: GraphCtx,
    node: onnx.NodeProto,
    shapes: Sequence[Sequence[Dim]],
    names: Sequence[str],
    kind: str,
    label: str,
) -> Iterator[Condition]:
    first = tuple(shapes[0])
    if all(tuple(s) == first for s in shapes[1:]):
        return  # the same shape everywhere (most operands): nothing must agree
    for i, distinct in aligned(shapes):
        for a, b in itertools.pairwise(distinct):
            yield Condition(g, node, a, b, kind, f"{label} axis -{i}", tuple(names))


@collects(*BROADCAST_OPS, "PRelu")
def _broadcast(g: GraphCtx, node: onnx.NodeProto) -> Iterator[Condition]:
    names = [i for i in g.inputs_of(node) if i]
    shapes = [g.shape(i) for i in names]
    if len(names) >= 2 and all(s is not None for s in shapes):
        yield from _pairs(g, node, shapes, names, "broadcast", "operands'")  # type: ignore[arg-type]


@collects("Expand")
def _expand(g: GraphCtx, node: onnx.NodeProto) -> Iterator[Condition]:
    ins = g.inputs_of(node)
    s, t = g.shape(ins[0]), g.value(ins[1])
    if s is not None and t is not None:
        yield from _pairs(g, node, [s, t], [ins[0], ins[1]], "broadcast", "input and target")


@collects("Concat")
def _concat(g: GraphCtx, node: onnx.NodeProto) -> Iterator[Condition]:
    ins = g.inputs_of(node)
    shapes = [s for i in ins if i and (s := g.shape(i)) is not None]
    if not shapes or len(shapes) != len([i for i in ins if i]):
        return
    rank = len(shapes[0])
    axis = next((int(a.i) for a in node.attribute if a.name == "axis"), 0)
    axis = axis + rank if axis < 0 else axis
    for i in range(rank):
        if i == axis:
            continue
        first = shapes[0][i]
        for s in shapes[1:]:
            if len(s) == rank and s[i] != first:
                yield Condition(g, node, first, s[i], "eq", f"inputs' axis {i}", tuple(ins))
                break


@collects("MatMul")
def _matmul(g: GraphCtx, node: onnx.NodeProto) -> Iterator[Condition]:
    ins = g.inputs_of(node)
    a, b = g.shape(ins[0]), g.shape(ins[1])
    if a is None or b is None or not a or not b:
        return
    inner_b = b[-2] if len(b) >= 2 else b[0]
    if a[-1] != inner_b:
        yield Condition(g, node, a[-1], inner_b, "eq", "inner dims", tuple(ins[:2]))
    if len(a) > 2 and len(b) > 2:
        yield from _pairs(g, node, [a[:-2], b[:-2]], list(ins[:2]), "broadcast", "batch dims'")


@collects("Reshape")
def _reshape(g: GraphCtx, node: onnx.NodeProto) -> Iterator[Condition]:
    ins = g.inputs_of(node)
    s, target = g.shape(ins[0]), g.value(ins[1])
    if s is None or target is None:
        return
    allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
    known: list[Dim] = []
    free = False
    for i, t in enumerate(target):
        if t == 0 and not allowzero:
            if i >= len(s):
                return
            known.append(s[i])
        elif t == -1:
            free = True
        else:
            known.append(t)
    numel, prod = d_prod(s), d_prod(known)
    if numel == prod:  # trivially true: collect() would drop it (most Reshapes)
        return
    if free:
        yield Condition(g, node, prod, numel, "divides", "element count", (ins[0],))
    else:
        yield Condition(g, node, numel, prod, "eq", "element count", (ins[0],))


@collects("Split")
def _split(g: GraphCtx, node: onnx.NodeProto) -> Iterator[Condition]:
    ins = g.inputs_of(node)
    s = g.shape(ins[0])
    if s is None:
        return
    axis = next((int(a.i) for a in node.attribute if a.name == "axis"), 0)
    axis = axis + len(s) if axis < 0 else axis
    sizes = next((list(a.ints) for a in node.attribute if a.name == "split"), None)
    if sizes is None and len(ins) > 1 and ins[1]:
        sizes = g.ints(ins[1])
    if not sizes or axis >= len(s):
        return
    total: Dim = 0
    for v in sizes:
        total = d_add(total, v)
    yield Condition(g, node, s[axis], total, "eq", f"split sizes on axis {axis}", (ins[0],))


def collect(ctx: Context) -> list[Condition]:
    """Every condition of every node of the main graph that is not trivially true."""
    out: list[Condition] = []
    for g, node in ctx.by_op(COLLECTORS):
        if g is not ctx.main:
            continue
        try:
            for c in COLLECTORS[node.op_type](g, node):
                if c.lhs != c.rhs:
                    out.append(c)
        except Exception:  # an odd node says nothing: never a reason to stop the analysis
            continue
    return out


def input_dims(model: onnx.ModelProto) -> set[str]:
    """The names of the model's dynamic input dims (``input:axis`` when unnamed)."""
    return {key for key, _vi, _axis in dynamic_input_dims(model)}


def relations(ctx: Context, skip: set[int] | None = None) -> list[tuple[str, Dim]]:
    """Input dims the graph sets from others (``F == (L // 10) - 1``), for planning
    probes; conditions of nodes in ``skip`` (ids of nodes with errors) are ignored."""
    out: list[tuple[str, Dim]] = []
    seen: set[str] = set()
    inputs = input_dims(ctx.model)
    for _cond, v in classified(
        (c for c in collect(ctx) if not skip or id(c.node) not in skip), inputs
    ):
        if v.status == "relation" and v.symbol not in seen and v.defines is not None:
            seen.add(v.symbol)  # type: ignore[arg-type]
            out.append((v.symbol, v.defines))  # type: ignore[arg-type]
    return out


__all__ = ["Condition", "Verdict", "classified", "classify", "collect", "holds", "relations"]
