"""The dimension algebra: a dim is an ``int``, a named symbol, an expression, or an unknown.

ONNX shape inference loses the identity of dynamic dimensions as soon as they
go through a convolution, a slice with a computed end or a reshape.  Rules need
more: to tell that a mask built from ``Shape(x)[1]`` has the same length as
``x``'s axis 1 even when nobody can say what that length is.  So every dim is

* an ``int`` (a concrete size),
* a :class:`Sym` named after a graph-input symbol (``T``) or an expression of
  such symbols (``((T + -1) // 2)``) — these vary with the inputs,
* a :class:`Sym` of kind ``unk`` — unknown, but with an identity that is kept
  through the ops that copy it.

Expressions are built in a normal form (sums and products flattened and
sorted, like terms collected, constant factors cancelled, nested floor
divisions merged), so the same computation gives an equal dim and equality is
structural.  :func:`evaluate` gives an expression's value at concrete symbol
values: that is how probes are planned and how conditions are classified.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

INT_MAX = 2**62


@dataclass(frozen=True, repr=False)
class Sym:
    """A non-concrete dimension; ``kind`` is ``sym``, ``unk`` or an operator."""

    kind: str
    #: operands (dims, ints, or op parameters such as a conv's stride)
    args: tuple[Any, ...]
    #: True if the dim is (a function of) a named input symbol
    varies: bool = field(init=False, compare=False)
    _hash: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # both are asked of every dim of every value: computed once, from the operands'
        # own (a dataclass hash walks the whole expression each time it is asked)
        k = self.kind
        varies = k == "sym" or (
            k != "unk" and any(isinstance(x, Sym) and x.varies for x in self.args)
        )
        object.__setattr__(self, "varies", varies)
        object.__setattr__(self, "_hash", hash((k, self.args)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuilt, not restored: a string's hash differs between interpreters
        return (Sym, (self.kind, self.args))

    def __repr__(self) -> str:
        # what dataclass would write, without its recursion guard: normal forms sort their
        # terms by this text, and the guard made it a tenth of a 100k-node lint
        return f"Sym(kind={self.kind!r}, args={self.args!r})"

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


Dim = int | Sym
Shape = tuple[Dim, ...]


#: the same sums and products recur at every layer of a model (a Reshape's element count
#: is ``B*T*768`` in each block), so the normal forms are memoised (they are pure)
_MEMO = 1 << 16

_fresh = itertools.count()


def fresh(hint: str = "") -> Sym:
    """A new unknown dim, equal only to itself."""
    return Sym("unk", (next(_fresh), hint))


@functools.lru_cache(maxsize=_MEMO)
def named(name: str) -> Sym:
    return Sym("sym", (name,))


def derived(kind: str, *args: object) -> Sym:
    """A dim computed by an op we do not model exactly; equal inputs give equal dims."""
    return Sym(kind, tuple(args))


def fmt_dim(d: Dim | None, aliases: Mapping[Sym, str] | None = None) -> str:
    if d is None:
        return "?"
    if aliases and isinstance(d, Sym) and d in aliases:
        return aliases[d]
    return str(d)


def fmt_shape(shape: Sequence[Dim] | None, aliases: Mapping[Sym, str] | None = None) -> str:
    if shape is None:
        return "[?]"
    return "[" + ", ".join(fmt_dim(d, aliases) for d in shape) + "]"


# --- arithmetic ---------------------------------------------------------------------------


def _terms(d: Dim) -> tuple[Dim, ...]:
    return d.args if isinstance(d, Sym) and d.kind == "add" else (d,)


@functools.lru_cache(maxsize=_MEMO, typed=True)
def d_add(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if a == 0:
        return b
    if b == 0:
        return a
    const = 0
    coef: dict[Dim, int] = {}
    for t in (*_terms(a), *_terms(b)):
        if isinstance(t, int):
            const += t
            continue
        c, rest = _factors(t)
        base = d_prod(rest)
        coef[base] = coef.get(base, 0) + c  # like terms collect: x + x = 2*x
    out: list[Dim] = [d_mul(c, base) for base, c in coef.items() if c]
    if const:
        out.append(const)
    if not out:
        return 0
    if len(out) == 1:
        return out[0]
    return Sym("add", tuple(sorted(out, key=repr)))


def d_sub(a: Dim, b: Dim) -> Dim:
    return d_add(a, d_mul(-1, b))


@functools.lru_cache(maxsize=_MEMO, typed=True)
def d_mul(a: Dim, b: Dim) -> Dim:  # noqa: C901 - the normal form of a product
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if a == 1:
        return b
    if b == 1:
        return a
    if a == 0 or b == 0:
        return 0
    if isinstance(a, int) and isinstance(b, Sym) and b.kind == "add":
        return _distribute(a, b)
    if isinstance(b, int) and isinstance(a, Sym) and a.kind == "add":
        return _distribute(b, a)
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


def _distribute(k: int, s: Sym) -> Dim:
    """k * (a + b) = k*a + k*b: keeps sums in one normal form (2*(T + 1) == 2*T + 2)."""
    out: Dim = 0
    for t in s.args:
        out = d_add(out, d_mul(k, t))
    return out


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


def d_prod(dims: Sequence[Dim]) -> Dim:
    return _prod(tuple(dims))


@functools.lru_cache(maxsize=_MEMO, typed=True)
def _prod(dims: tuple[Dim, ...]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = d_mul(out, d)
    return out


def d_floordiv(a: Dim, b: Dim) -> Dim:  # noqa: C901 - one simplification per identity
    """Floor division in normal form.

    Common factors cancel (``n*k // n = k``, a Reshape's -1); nested divisions by
    positive constants merge (``(x // 2) // 2 = x // 4``); whole multiples leave
    the quotient (``(x + 4) // 2 = x // 2 + 2``).
    """
    if isinstance(a, int) and isinstance(b, int):
        return a // b if b else fresh("div0")
    if b == 1:
        return a
    if a == 0:
        return 0
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
    if isinstance(den, int) and den > 0 and isinstance(num, Sym):
        if num.kind == "floordiv" and isinstance(num.args[1], int) and num.args[1] > 0:
            return d_floordiv(num.args[0], num.args[1] * den)
        if num.kind == "add":
            whole = [t for t in num.args if _multiple_of(t, den)]
            if whole:
                rest: Dim = 0
                for t in num.args:
                    if t not in whole:
                        rest = d_add(rest, t)
                quotient: Dim = 0
                for t in whole:
                    quotient = d_add(quotient, _exact_div(t, den))
                return d_add(d_floordiv(rest, den), quotient)
    return Sym("floordiv", (num, den))


def _multiple_of(t: object, n: int) -> bool:
    if isinstance(t, int):
        return t % n == 0
    if isinstance(t, Sym):
        c, _ = _factors(t)
        return c % n == 0
    return False


def _exact_div(t: Dim, n: int) -> Dim:
    if isinstance(t, int):
        return t // n
    c, rest = _factors(t)
    return d_mul(c // n, d_prod(rest))


def d_mod(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a % b if b else fresh("mod0")
    if b == 1 or a == b:
        return 0
    if isinstance(b, int) and b > 0 and _multiple_of(a, b):
        return 0
    return Sym("mod", (a, b))


def d_ceildiv(a: Dim, b: Dim) -> Dim:
    """ceil(a / b) = -((-a) // b)."""
    return d_mul(-1, d_floordiv(d_mul(-1, a), b))


# --- evaluation ---------------------------------------------------------------------------


def symbols(d: object) -> frozenset[str]:
    """The input symbols a dim depends on."""
    if isinstance(d, Sym):
        return _symbols(d)
    return frozenset()


@functools.lru_cache(maxsize=65536)
def _symbols(d: Sym) -> frozenset[str]:
    if d.kind == "sym":
        return frozenset((str(d.args[0]),))
    if d.kind == "unk":
        return frozenset()
    out: frozenset[str] = frozenset()
    for a in d.args:
        if isinstance(a, Sym):
            out |= _symbols(a)
    return out


def closed_form(d: object) -> bool:
    """Arithmetic of input symbols only (no unknowns, no ops we model loosely)."""
    if isinstance(d, int):
        return True
    if not isinstance(d, Sym):
        return False
    if d.kind == "sym":
        return True
    return d.kind in ("add", "mul", "floordiv", "mod") and all(closed_form(a) for a in d.args)


def evaluate(d: object, env: Mapping[str, int]) -> int | None:
    """The value of ``d`` when each symbol takes its value in ``env``; None if unknown."""
    if isinstance(d, int):
        return d
    if not isinstance(d, Sym):
        return None
    k, a = d.kind, d.args
    if k == "sym":
        return env.get(str(a[0]))
    if k == "unk":
        return None
    vals = [evaluate(x, env) if isinstance(x, Sym | int) else x for x in a]
    try:
        return _apply(k, vals)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None


def _apply(kind: str, v: list[object]) -> int | None:  # noqa: C901 - one case per kind
    if any(x is None for x in v):
        return None
    n = [x for x in v if isinstance(x, int)]
    if kind == "add":
        return sum(n)
    if kind == "mul":
        out = 1
        for x in n:
            out *= x
        return out
    if kind == "floordiv":
        return n[0] // n[1] if n[1] else None
    if kind == "mod":
        return n[0] % n[1] if n[1] else None
    if kind == "ceildiv":
        return -(-n[0] // n[1]) if n[1] else None
    if kind == "conv":  # (d, k, s, dilation, total pads, ceil)
        d, k, s, dil, pads, ceil = v
        eff = dil * (k - 1) + 1  # type: ignore[operator]
        num = d + pads - eff  # type: ignore[operator]
        q = -(-num // s) if ceil else num // s
        return q + 1
    if kind == "slice" and len(v) == 4:
        d, st, en, sp = v
        return len(range(*slice(st, en, sp).indices(d)))  # type: ignore[arg-type]
    if kind == "slice" and len(v) == 2:
        d, en = v
        return len(range(*slice(0, en, 1).indices(d)))  # type: ignore[arg-type]
    if kind == "range":
        st, lim, dl = v
        return max(0, -(-(lim - st) // dl)) if dl else None  # type: ignore[operator]
    if kind == "split":  # (d, parts, i): ONNX's even split, the last part smaller
        d, parts, i = v
        size = -(-d // parts)  # type: ignore[operator]
        return max(0, min(size, d - size * i))
    return None


def evaluate_array(d: object, env: Mapping[str, np.ndarray], n: int) -> np.ndarray | None:
    """:func:`evaluate` over many settings at once: ``env`` maps each symbol to an int64
    array of length ``n``.  Entries that are undefined there (a division by zero) are
    set to -1 (not a size); None if ``d`` cannot be computed at all."""
    if isinstance(d, int):
        if not -(2**63) <= d < 2**63:  # a corrupt constant: no int64 size holds it
            return None
        return np.full(n, d, dtype=np.int64)
    if not isinstance(d, Sym):
        return None
    k, a = d.kind, d.args
    if k == "sym":
        v = env.get(str(a[0]))
        return None if v is None else v
    if k == "unk":
        return None
    vals = []
    for x in a:
        arr = evaluate_array(x, env, n)
        if arr is None:
            return None
        vals.append(arr)
    return _apply_array(k, vals, n)


def _apply_array(kind: str, v: list[np.ndarray], n: int) -> np.ndarray | None:
    with np.errstate(all="ignore"):
        if kind == "add":
            return np.sum(v, axis=0)
        if kind == "mul":
            return np.prod(v, axis=0)
        if kind in ("floordiv", "ceildiv", "mod"):
            num, den = v
            safe = np.where(den == 0, 1, den)
            out = (
                num // safe
                if kind == "floordiv"
                else -(-num // safe)
                if kind == "ceildiv"
                else num % safe
            )
            return np.where(den == 0, -1, out)
        if kind == "conv":  # (d, k, s, dilation, total pads, ceil)
            d, k, s, dil, pads, ceil = v
            eff = dil * (k - 1) + 1
            num = d + pads - eff
            safe = np.where(s == 0, 1, s)
            q = np.where(ceil != 0, -(-num // safe), num // safe)
            return np.where(s == 0, -1, q + 1)
        if kind == "slice" and len(v) in (2, 4):
            d, st, en, sp = (
                (v[0], np.zeros(n, np.int64), v[1], np.ones(n, np.int64)) if len(v) == 2 else v
            )
            if not np.all(sp == 1):
                return None
            st = np.clip(np.where(st < 0, st + d, st), 0, d)
            en = np.clip(np.where(en < 0, en + d, en), 0, d)
            return np.maximum(0, en - st)
        if kind == "range":
            st, lim, dl = v
            safe = np.where(dl == 0, 1, dl)
            return np.where(dl == 0, -1, np.maximum(0, -(-(lim - st) // safe)))
        if kind == "split":
            d, parts, i = v
            safe = np.where(parts == 0, 1, parts)
            size = -(-d // safe)
            return np.maximum(0, np.minimum(size, d - size * i))
    return None
