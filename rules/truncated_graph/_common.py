"""What the truncated-graph rules share: visible names, nearest names, dead nodes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import onnx

from onnxfix.context import Context, GraphCtx

FAMILY = "truncated-graph"


def docs(what: str, why: str, example: str, safety: str) -> str:
    return (
        f"## What it does\n{what}\n\n## Why is this bad?\n{why}\n\n## Example\n```\n{example}"
        f"\n```\n\n## Fix safety\n{safety}\n"
    )


def defined(g: GraphCtx, outer: set[str]) -> set[str]:
    names = set(outer)
    names.update(vi.name for vi in g.graph.input)
    names.update(t.name for t in g.graph.initializer)
    names.update(g.producers)
    return names


def walk(ctx: Context) -> Iterator[tuple[GraphCtx, set[str]]]:
    """Every graph with the names visible in it (its own and its ancestors')."""
    visible: dict[int, set[str]] = {}
    for g in ctx.graphs:  # parents come before children
        outer = visible[id(g.parent)] if g.parent is not None else set()
        visible[id(g)] = defined(g, outer)
        yield g, visible[id(g)]


def nearest(name: str, names: Iterable[str]) -> str | None:
    """The surviving value whose name shares the longest prefix with ``name``
    (ties: the first in sorted order, so the answer never depends on hashing)."""
    best, score = None, 0
    for cand in sorted(names):
        k = next(
            (i for i, (a, b) in enumerate(zip(name, cand)) if a != b), min(len(name), len(cand))
        )
        if k > score:
            best, score = cand, k
    return best if score >= 3 else None


def dead_nodes(ctx: Context, g: GraphCtx) -> list[onnx.NodeProto]:
    """The nodes of ``g`` whose outputs reach no graph output (nor a subgraph's read)."""
    live = {o.name for o in g.graph.output}
    depth = g.depth
    for sub in ctx.graphs:  # outer-scope reads from subgraphs (at any depth) keep values alive
        if sub.depth > depth and sub.route[:depth] == g.route:
            live.update(sub.consumers)
            live.update(o.name for o in sub.graph.output)
    alive = [False] * len(g.nodes)
    live.discard("")  # an unused optional output ("") keeps nothing alive
    for k in range(len(g.nodes) - 1, -1, -1):
        if not live.isdisjoint(g.outs[k]):
            alive[k] = True
            live.update(g.ins[k])
            live.discard("")
    return [n for n, keep in zip(g.nodes, alive) if not keep]
