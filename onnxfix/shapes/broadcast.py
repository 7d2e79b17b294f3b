"""Multidirectional (NumPy-style) broadcasting over symbolic shapes."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from onnxfix.shapes.dims import Dim, Shape


@dataclass(frozen=True)
class BroadcastCheck:
    """Outcome of broadcasting several shapes.

    ``conflicts`` lists, per output axis (counted from the right, 1-based), the
    dims that must agree and cannot be proven to.  ``concrete`` is true if any
    conflict is between two different concrete sizes, i.e. it fails for every
    input.
    """

    shape: Shape | None
    conflicts: tuple[tuple[int, tuple[Dim, ...]], ...]
    concrete: bool

    @property
    def ok(self) -> bool:
        return not self.conflicts


def aligned(shapes: Sequence[Sequence[Dim]]) -> Iterator[tuple[int, list[Dim]]]:
    """Per output axis, counted from the right (1-based, as ONNX aligns shapes), the
    distinct dims other than 1 that must agree there, in operand order."""
    rank = max((len(s) for s in shapes), default=0)
    for i in range(1, rank + 1):
        distinct: list[Dim] = []
        for d in (s[-i] for s in shapes if len(s) >= i):
            if d != 1 and d not in distinct:
                distinct.append(d)
        yield i, distinct


def broadcast(shapes: Sequence[Sequence[Dim]]) -> BroadcastCheck:
    """Broadcast ``shapes`` together.  Memoised: the same operand shapes recur in every
    layer, and the propagator, the conditions and two rules each ask for them."""
    return _broadcast(tuple(tuple(s) for s in shapes))


@functools.lru_cache(maxsize=1 << 14)
def _broadcast(shapes: tuple[tuple[Dim, ...], ...]) -> BroadcastCheck:
    out: list[Dim] = []
    conflicts = []
    concrete = False
    for i, distinct in aligned(shapes):
        if not distinct:
            out.append(1)
            continue
        if len(distinct) > 1:
            conflicts.append((i, tuple(distinct)))
            if len({d for d in distinct if isinstance(d, int)}) > 1:
                concrete = True
            # The op fails here; guess what was meant so one bug does not cascade into
            # findings downstream: the dim of the highest-rank operand (the data, not a mask).
            top = max(range(len(shapes)), key=lambda k: (len(shapes[k]), k))
            out.append(shapes[top][-i] if len(shapes[top]) >= i else distinct[0])
            continue
        out.append(distinct[0])
    return BroadcastCheck(tuple(reversed(out)), tuple(conflicts), concrete)
