"""What the truncated-graph rules share: visible names, nearest names, dead nodes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import onnx

from onnxfix import edit
from onnxfix.context import Context, GraphCtx

FAMILY = "truncated-graph"


def docs(what: str, why: str, example: str, safety: str) -> str:
    return (
        f"## What it does\n{what}\n\n## Why is this bad?\n{why}\n\n## Example\n```\n{example}"
        f"\n```\n\n## Fix safety\n{safety}\n"
    )


def defined(graph: onnx.GraphProto, outer: set[str]) -> set[str]:
    names = set(outer)
    names.update(vi.name for vi in graph.input)
    names.update(t.name for t in graph.initializer)
    names.update(o for n in graph.node for o in n.output if o)
    return names


def walk(ctx: Context) -> Iterator[tuple[GraphCtx, set[str]]]:
    """Every graph with the names visible in it (its own and its ancestors')."""
    visible: dict[int, set[str]] = {}
    for g in ctx.graphs:  # parents come before children
        outer = visible[id(g.parent)] if g.parent is not None else set()
        visible[id(g)] = defined(g.graph, outer)
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


def dead_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    live = {o.name for o in graph.output}
    for n in graph.node:  # outer-scope reads from subgraphs keep values alive
        for a in n.attribute:
            for sub in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                live |= edit.used_names(sub)
    alive: set[int] = set()
    for n in reversed(graph.node):
        if any(o in live for o in n.output if o):
            alive.add(id(n))
            live.update(i for i in n.input if i)
    return [n for n in graph.node if id(n) not in alive]
