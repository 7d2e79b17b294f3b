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
from onnxfix.shapes.conditions import relations
from onnxfix.shapes.propagate import dynamic_input_dims

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
    for key, vi, axis in dynamic_input_dims(model):
        where.setdefault(key, set()).add((axis, len(vi.type.tensor_type.shape.dim)))
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
    skip_nodes: set[int] | None = None,
) -> Plan:
    """Two settings of the input dims ``syms`` (see the module docstring).

    Input dims the graph sets from others (a mask whose length must be the frames
    derived from the waveform length) take the value it sets; relations found at nodes
    in ``skip_nodes`` (those with errors: a broken ``Where`` "relates" batch and time)
    are not trusted.
    """
    if not syms:
        return Plan([Setting({})])
    planner = _Planner(ctx, syms, focus, dict(fixed or {}), skip_nodes)
    first = planner.first()
    second = planner.second(first)
    # said only of what the probes really leave below 2, in graph order (the example named
    # is the first one)
    low = {*planner.low(first), *planner.low(second)}
    stuck = [d for d in planner.derived if d in planner.stuck and d in low]
    if stuck:
        planner.notes.append(
            f"{len(stuck)} derived dim(s) stay below 2 at every small "
            f"setting (e.g. {ctx.fmt_dim(stuck[0])})"
        )
    show = _shown(ctx, planner.focus, planner.derived)
    notes = list(dict.fromkeys(planner.notes))
    return Plan([_setting(e, show, ctx) for e in (first, second)], notes)


class _Planner:
    def __init__(
        self,
        ctx: Context,
        syms: Sequence[str],
        focus: Sequence[Dim],
        fixed: dict[str, int],
        skip_nodes: set[int] | None,
    ) -> None:
        self.syms = list(syms)
        self.fixed = fixed
        self.fmt = ctx.fmt_dim
        self.notes: list[str] = []
        self.rel = [
            (s, e)
            for s, e in relations(ctx, skip_nodes)
            if s in syms and s not in fixed and symbols(e) <= set(syms) - {s}
        ]
        defined = {s for s, _ in self.rel}
        self.batch = batch_like(ctx.model, syms) - set(fixed) - defined
        self.free = [s for s in syms if s not in self.batch and s not in fixed and s not in defined]
        self.derived = [d for d in derived_dims(ctx) if symbols(d) <= set(syms)]
        # a dim equal to a fixed size it meets broadcasts by accident (T == 48 hides WB102)
        self.avoid = {d for d in focus if isinstance(d, int) and d > 1} | _input_sizes(ctx.model)
        self.focus = [d for d in focus if isinstance(d, Sym) and d.varies]
        self.watched = [named(s) for s in syms if s not in defined] + list(self.focus)
        #: derived dims no small setting makes 2 or more (reported once, in the notes)
        self.stuck: set[Sym] = set()
        for s, e in self.rel:
            self.notes.append(f"{s} is set from the other dims: {s} = {ctx.fmt_dim(e)}")

    def define(self, env: dict[str, int]) -> dict[str, int]:
        """Input dims the graph sets from others take the value it sets."""
        env = dict(env)
        for _ in range(3):  # a relation may use a dim another relation sets
            for s, e in self.rel:
                v = evaluate(e, env)
                if v is not None and v >= 1:
                    env[s] = v
        return env

    def first(self) -> dict[str, int]:
        env = {
            s: self.fixed.get(s, 2 if s in self.batch else 5 + 2 * i)
            for i, s in enumerate(self.syms)
        }
        return self.distinct(self.grow(self.define(env)))

    def low(self, env: Mapping[str, int]) -> list[Sym]:
        return [d for d in self.derived if (v := evaluate(d, env)) is not None and v < 2]

    def grow(self, env: dict[str, int]) -> dict[str, int]:
        """Grow the free input dims until every derived dim is at least 2.

        Dims that growing does not raise (a size that stays 1 when the inputs grow) are
        given up on after one try, so sizes stay small."""
        for _ in range(24):
            low = [d for d in self.low(env) if d not in self.stuck]
            if not low:
                break
            grow = {s for d in low for s in symbols(d) if s in self.free}
            if not grow or all(env[s] >= MAX_VALUE for s in grow):
                self.stuck.update(low)
                break
            trial = self.define({**env, **{s: min(MAX_VALUE, env[s] * 2) for s in grow}})
            before = {d: evaluate(d, env) or 0 for d in low}
            raised = [d for d in low if (evaluate(d, trial) or 0) > before[d]]
            # a size that the largest inputs leave where it is will not become 2 (an Emformer's
            # slice(T, 4, 5, 1) is 1 from T=5 on: growing T for it reached T=2**20); one that a
            # doubling leaves at 1 or below may still rise with more (floor divisions step:
            # 2 + (-3 + L // 10) // 2 is 1 at L=14 and at L=28, 3 at L=56; a conv stack
            # longer than its input is 0 or less)
            far = self.define({**env, **{s: MAX_VALUE for s in grow}})
            later = [d for d in low if d not in raised and (evaluate(d, far) or 0) > before[d]]
            self.stuck.update(d for d in low if d not in raised and d not in later)
            if raised or later:
                env = trial
        return env

    def distinct(self, env: dict[str, int]) -> dict[str, int]:
        """Nudge free (then batch) dims until the watched dims take pairwise distinct values."""
        movable = list(self.free) + sorted(self.batch)
        for _ in range(200):
            hits = _collisions(env, self.watched, self.avoid)
            if not hits or not movable:
                break
            a, b = hits[0]
            support = [s for s in movable if s in symbols(b) | symbols(a)] or movable
            env = self.grow(self.define({**env, support[-1]: env[support[-1]] + 1}))
        hits = _collisions(env, self.watched, self.avoid)
        if hits:
            self.notes.append(
                f"{self.fmt(hits[0][0])} and {self.fmt(hits[0][1])} take the same value in "
                "every small setting"
            )
        return env

    def second(self, env: dict[str, int]) -> dict[str, int]:
        """A second setting in which every input dim and every derived dim takes a new value."""
        out = {**env, **{s: env[s] + 1 for s in self.batch}}
        for s in self.free:
            inc = self._step(env, out, s)
            if inc is None:
                out[s] = env[s] + 1
                self.notes.append(f"no small change of {s} moves the dims a fix is about")
            else:
                out[s] = env[s] + inc
        return self.distinct(self.define(out))

    def _step(self, env: dict[str, int], out: dict[str, int], s: str) -> int | None:
        """The smallest change of ``s`` that moves the most dims derived from it."""
        deps = [d for d in self.derived if s in symbols(d)]
        must = [d for d in self.focus if s in symbols(d)]
        # what ``env`` gives does not change with ``inc``: evaluated once (0.2 s of a
        # verified repair went to evaluating it again per step)
        was = [evaluate(d, env) for d in deps]
        must_was = [evaluate(d, env) for d in must]
        best: tuple[int, int] | None = None  # (score, inc)
        for inc in range(1, min(256, max(64, 4 * env[s]))):
            trial = self.define({**out, s: env[s] + inc})
            now = [evaluate(d, trial) for d in deps]
            if any(v is not None and v < 2 for v in now):
                continue
            if any(evaluate(d, trial) == w for d, w in zip(must, must_was)):
                continue
            score = sum(v != w for v, w in zip(now, was))
            if best is None or score > best[0]:
                best = (score, inc)
            if score == len(deps):
                break
        return None if best is None else best[1]


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
