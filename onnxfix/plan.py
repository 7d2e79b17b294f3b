"""Probe planning: input dim values chosen from the symbolic engine.

A probe proves nothing at sizes where the bug cannot show.  The HuBERT Where
fails only when the frame axis ``T`` differs from 1 and from the channels, but
``T`` is *derived*: ``T = conv(conv(...(L)))``.  Probing ``L`` with small
numbers gives ``T = 1`` — exactly where the broken ``Where`` also works — and
probing with big numbers makes everything else big.

So the plan evaluates every dim the graph derives (:func:`onnxfix.shapes.evaluate`)
and picks input values such that each derived dim is at least 2, the dims that
matter (those of the nodes a fix is about, the inputs' own dims) are pairwise
distinct, batch-like dims stay at 2 and 3, and every derived dim takes a
different value in the second setting.  Values stay as small as that allows.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import onnx

from onnxfix.context import Context
from onnxfix.shapes import Dim, Sym, evaluate, named, symbols

#: no input dim is planned above this
MAX_VALUE = 1 << 20
_MAX_DERIVED = 4000


@dataclass(frozen=True)
class Setting:
    """One probe: a value per input dim, and the values of the derived dims that matter."""

    dims: dict[str, int]
    derived: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        base = ", ".join(f"{k}={v}" for k, v in self.dims.items())
        if not self.derived:
            return base or "static shapes"
        return base + " → " + ", ".join(f"{k}={v}" for k, v in self.derived.items())


@dataclass
class Plan:
    settings: list[Setting]
    notes: list[str] = field(default_factory=list)


def batch_like(model: onnx.ModelProto, syms: Sequence[str]) -> set[str]:
    """Symbols that only ever appear as the leading axis of inputs, one of rank >= 2 at least."""
    where: dict[str, set[tuple[int, int]]] = {}
    init = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in init:
            continue
        dims = vi.type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            key = d.dim_param or (
                f"{vi.name}:{i}" if not d.HasField("dim_value") or d.dim_value < 0 else ""
            )
            if key:
                where.setdefault(key, set()).add((i, len(dims)))
    return {
        s
        for s in syms
        if where.get(s) and all(i == 0 for i, _r in where[s]) and any(r >= 2 for _i, r in where[s])
    }


def derived_dims(ctx: Context) -> list[Sym]:
    """Every dim of the main graph that varies with the inputs and is not an input dim."""
    seen: dict[Sym, None] = {}
    for shape in ctx.main.shapes.shapes.values():
        for d in shape or ():
            if isinstance(d, Sym) and d.kind != "sym" and d.varies and d not in seen:
                seen[d] = None
                if len(seen) >= _MAX_DERIVED:
                    return list(seen)
    return list(seen)


def plan(
    ctx: Context,
    syms: Sequence[str],
    *,
    focus: Sequence[Dim] = (),
    fixed: Mapping[str, int] | None = None,
) -> Plan:
    """Two settings of the input dims ``syms`` (see the module docstring)."""
    fixed = dict(fixed or {})
    notes: list[str] = []
    if not syms:
        return Plan([Setting({})])
    batch = batch_like(ctx.model, syms) - set(fixed)
    free = [s for s in syms if s not in batch and s not in fixed]
    derived = [d for d in derived_dims(ctx) if symbols(d) <= set(syms)]
    # a dim that equals a fixed size it meets broadcasts by accident (T == 48 hides WB102)
    avoid = {d for d in focus if isinstance(d, int) and d > 1} | _input_sizes(ctx.model)
    focus = [d for d in focus if isinstance(d, Sym) and d.varies]
    env: dict[str, int] = {}
    for i, s in enumerate(syms):
        env[s] = fixed.get(s, 2 if s in batch else 5 + 2 * i)
    env = _raise(env, derived, free, notes)
    env = _distinct(env, [named(s) for s in syms] + list(focus), derived, free, batch, avoid, notes)
    second = _second(env, derived, focus, syms, free, batch, avoid, notes)
    show = _shown(ctx, focus, derived)
    return Plan([_setting(e, show, ctx) for e in (env, second)], notes)


def _low(env: Mapping[str, int], derived: Sequence[Sym]) -> list[Sym]:
    out = []
    for d in derived:
        v = evaluate(d, env)
        if v is not None and v < 2:
            out.append(d)
    return out


def _raise(
    env: dict[str, int], derived: Sequence[Sym], free: Sequence[str], notes: list[str]
) -> dict[str, int]:
    """Grow the free input dims until every derived dim is at least 2."""
    env = dict(env)
    for _ in range(64):
        low = _low(env, derived)
        grow = {s for d in low for s in symbols(d) if s in free}
        if not low:
            return env
        if not grow:
            notes.append(
                f"{len(low)} derived dim(s) stay below 2 whatever the free dims are (e.g. {low[0]})"
            )
            return env
        for s in grow:
            env[s] = min(MAX_VALUE, env[s] * 2)
        if all(env[s] >= MAX_VALUE for s in grow):
            notes.append(f"could not make {low[0]} at least 2 below {MAX_VALUE}")
            return env
    return env


def _input_sizes(model: onnx.ModelProto) -> set[int]:
    return {
        d.dim_value
        for vi in model.graph.input
        for d in vi.type.tensor_type.shape.dim
        if d.dim_value > 1
    }


def _collisions(
    env: Mapping[str, int], watched: Sequence[Dim], avoid: Collection[int] = ()
) -> list[tuple[Dim, Dim]]:
    vals: dict[int, Dim] = {v: v for v in avoid}
    out: list[tuple[Dim, Dim]] = []
    for d in watched:
        v = evaluate(d, env)
        if v is None:
            continue
        if v in vals and vals[v] != d:
            out.append((vals[v], d))
        vals.setdefault(v, d)
    return out


def _distinct(
    env: dict[str, int],
    watched: Sequence[Dim],
    derived: Sequence[Sym],
    free: Sequence[str],
    batch: set[str],
    avoid: set[int],
    notes: list[str],
) -> dict[str, int]:
    """Nudge free (then batch) dims until the watched dims take pairwise distinct values."""
    env = dict(env)
    movable = list(free) + sorted(batch)
    for _ in range(200):
        hits = _collisions(env, watched, avoid)
        if not hits:
            return env
        a, b = hits[0]
        support = [s for s in movable if s in symbols(b) | symbols(a)] or movable
        if not support:
            break
        env[support[-1]] += 1
        env = _raise(env, derived, free, notes)
    if _collisions(env, watched, avoid):
        a, b = _collisions(env, watched, avoid)[0]
        notes.append(f"{a} and {b} take the same value in every small setting")
    return env


def _second(
    env: Mapping[str, int],
    derived: Sequence[Sym],
    focus: Sequence[Dim],
    syms: Sequence[str],
    free: Sequence[str],
    batch: set[str],
    avoid: set[int],
    notes: list[str],
) -> dict[str, int]:
    """A second setting in which every input dim and every derived dim takes a new value."""
    out = dict(env)
    for s in batch:
        out[s] = env[s] + 1
    for s in free:
        deps = [d for d in derived if s in symbols(d)]
        must = [d for d in focus if s in symbols(d)]
        best: tuple[int, int] | None = None  # (score, inc)
        for inc in range(1, max(64, 4 * env[s])):
            trial = {**out, s: env[s] + inc}
            vals = [(evaluate(d, trial), evaluate(d, env)) for d in deps]
            if any(v is not None and v < 2 for v, _ in vals):
                continue
            if any(evaluate(d, trial) == evaluate(d, env) for d in must):
                continue
            score = sum(v != w for v, w in vals)
            if best is None or score > best[0]:
                best = (score, inc)
            if score == len(deps):
                break
        if best is None:
            out[s] = env[s] + 1
            notes.append(f"no small change of {s} moves the dims a fix is about")
        else:
            out[s] = env[s] + best[1]
    watched = [named(s) for s in syms] + list(focus)
    return _distinct(out, watched, derived, free, batch, avoid, notes)


def _shown(ctx: Context, focus: Sequence[Dim], derived: Sequence[Sym]) -> list[Sym]:
    """The derived dims a report names: those a fix is about, then the outputs' named dims."""
    out: list[Sym] = [d for d in focus if isinstance(d, Sym) and d.kind != "sym"]
    for d in ctx.aliases:
        if d in derived and d not in out:
            out.append(d)
    return out[:4]


def _setting(env: dict[str, int], show: Sequence[Sym], ctx: Context) -> Setting:
    derived = {}
    for d in show:
        v = evaluate(d, env)
        if v is not None:
            derived[ctx.fmt_dim(d)] = v
    return Setting(dict(env), derived)
