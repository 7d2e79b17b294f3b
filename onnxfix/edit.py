"""Graph edits shared by every fix.

We edit the protobuf directly instead of going through onnx-graphsurgeon:
graphsurgeon 0.6.1 drops node ``metadata_props`` on export, which is exactly
where the dynamo exporter keeps the PyTorch scope and stack trace.  Every node
a fix inserts is named after the node it serves (so it reads well in Netron),
inherits that node's metadata, and is tagged ``onnxfix.rule=<code>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

RULE_KEY = "onnxfix.rule"


@dataclass
class EditContext:
    """Where a fix applies: the graph holding the node, its index, names, opset.

    A fix that leaves nodes without consumers lists them in ``prune``; they are
    removed after every fix of the round has run (removal shifts indices).
    """

    graph: onnx.GraphProto
    index: int
    namer: Namer
    opset: int
    route: tuple[tuple[int, str], ...] = ()
    prune: list[tuple[tuple[tuple[int, str], ...], str]] = field(default_factory=list)

    def upstream(self, names: Iterable[str]) -> None:
        """Offer the producers of ``names`` (and theirs) for removal if they end up unused."""
        for n in names:
            if n:
                self.prune.append((self.route, n))


def graph_at(model: onnx.ModelProto, route: tuple[tuple[int, str], ...]) -> onnx.GraphProto:
    """Resolve a graph from its route (see :attr:`onnxfix.context.GraphCtx.route`).

    Graph objects held across an edit of an enclosing graph go stale, so code
    that runs after edits looks graphs up again.
    """
    graph = model.graph
    for index, attr in route:
        node = graph.node[index]
        name, _, item = attr.partition("[")
        a = next(a for a in node.attribute if a.name == name)
        graph = a.graphs[int(item[:-1])] if item else a.g
    return graph


def used_names(graph: onnx.GraphProto) -> set[str]:
    used = {o.name for o in graph.output}
    for n in graph.node:
        used.update(i for i in n.input if i)
        for a in n.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for g in subs:  # outer-scope references from subgraphs
                used |= used_names(g)
    return used


def prune_unused(graph: onnx.GraphProto, candidates: set[str]) -> int:
    """Remove nodes producing only ``candidates``-reachable values that nothing uses.

    Only values a fix offered (and what fed them) are considered, so nodes that
    were already dead before the fix stay: reporting those is another rule's job.
    """
    removed = 0
    while True:
        used = used_names(graph)
        producers = {o: n for n in graph.node for o in n.output if o}
        dead = [
            n for n in graph.node
            if any(o in candidates for o in n.output) and not any(o in used for o in n.output)
        ]
        if not dead:
            return removed
        for n in dead:
            candidates.update(i for i in n.input if i in producers)
            # values a dead Loop/If/Scan body read from this graph die with it
            for a in n.attribute:
                for sub in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                    candidates.update(v for v in used_names(sub) if v in producers)
        keep = [n for n in graph.node if not any(n is d for d in dead)]
        copies = [onnx.NodeProto() for _ in keep]
        for c, n in zip(copies, keep):
            c.CopyFrom(n)
        del graph.node[:]
        graph.node.extend(copies)
        removed += len(dead)


def _all_names(graph: onnx.GraphProto) -> Iterator[str]:
    for vi in (*graph.input, *graph.output, *graph.value_info):
        yield vi.name
    for t in graph.initializer:
        yield t.name
    for n in graph.node:
        yield n.name
        yield from n.output
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_names(a.g)
            for g in a.graphs:
                yield from _all_names(g)


class Namer:
    """Hands out names unused anywhere in the model (subgraphs included)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.used = set(_all_names(model.graph))

    def __call__(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name


def tag(node: onnx.NodeProto, rule: str, origin: onnx.NodeProto | None) -> None:
    if origin is not None:
        for p in origin.metadata_props:
            if p.key != RULE_KEY:
                node.metadata_props.add(key=p.key, value=p.value)
    node.metadata_props.add(key=RULE_KEY, value=rule)


def insert_before(graph: onnx.GraphProto, index: int, new: Sequence[onnx.NodeProto]) -> None:
    """Insert ``new`` before ``graph.node[index]``, keeping the list topologically sorted.

    Python protobuf cannot insert into a repeated message field, so the list is
    rebuilt: node objects taken from this graph before the call are detached
    afterwards.  Callers therefore edit the anchor first and apply several
    edits to one graph from the highest index down (see :func:`apply_edits`).
    """
    nodes = [onnx.NodeProto() for _ in graph.node]
    for c, n in zip(nodes, graph.node):
        c.CopyFrom(n)
    added = [onnx.NodeProto() for _ in new]
    for c, n in zip(added, new):
        c.CopyFrom(n)
    nodes[index:index] = added
    del graph.node[:]
    graph.node.extend(nodes)


def index_of(graph: onnx.GraphProto, node: onnx.NodeProto) -> int:
    for i, n in enumerate(graph.node):
        if n is node or n == node:
            return i
    raise KeyError(node.name)


def const_node(namer: Namer, base: str, array: np.ndarray, rule: str,
               origin: onnx.NodeProto | None) -> onnx.NodeProto:
    out = namer(f"{base}_output_0")
    node = helper.make_node("Constant", [], [out], name=namer(base),
                            value=numpy_helper.from_array(array, name=""))
    tag(node, rule, origin)
    return node


def unsqueeze_nodes(namer: Namer, opset: int, value: str, axes: Sequence[int], rule: str,
                    origin: onnx.NodeProto) -> tuple[list[onnx.NodeProto], str]:
    """``Unsqueeze(value, axes)`` in the form the model's opset wants."""
    base = f"{origin.name or origin.op_type}/onnxfix_unsqueeze"
    out = namer(f"{base}_output_0")
    if opset >= 13:
        c = const_node(namer, f"{base}/axes", np.asarray(list(axes), dtype=np.int64), rule, origin)
        node = helper.make_node("Unsqueeze", [value, c.output[0]], [out], name=namer(base))
        tag(node, rule, origin)
        return [c, node], out
    node = helper.make_node("Unsqueeze", [value], [out], name=namer(base), axes=list(axes))
    tag(node, rule, origin)
    return [node], out


def redeclare_outputs(model: onnx.ModelProto, outputs: dict[str, str]) -> None:
    """Make each graph output NAME the value VALUE (``repair --output NAME=VALUE``).

    An ``Identity`` copies VALUE to NAME, so NAME keeps its declared type when it
    was already an output; a new output takes VALUE's inferred type and shape.
    """
    graph = model.graph
    produced = {o for n in graph.node for o in n.output if o}
    known = produced | {vi.name for vi in graph.input} | {t.name for t in graph.initializer}
    inferred = {}
    try:
        inf = onnx.shape_inference.infer_shapes(model)
        inferred = {vi.name: vi for vi in (*inf.graph.value_info, *inf.graph.output,
                                            *inf.graph.input)}
    except Exception:
        pass
    namer = Namer(model)
    for name, value in outputs.items():
        if value not in known:
            raise ValueError(f"--output {name}={value}: no value '{value}' in the graph")
        if name in produced:
            raise ValueError(f"--output {name}={value}: '{name}' is already produced by a node")
        node = helper.make_node("Identity", [value], [name], name=namer(f"/onnxfix_output/{name}"))
        node.metadata_props.add(key=RULE_KEY, value="--output")
        graph.node.append(node)
        if not any(vi.name == name for vi in graph.output):
            vi = onnx.ValueInfoProto()
            if value in inferred:
                vi.CopyFrom(inferred[value])
            vi.name = name
            graph.output.append(vi)
