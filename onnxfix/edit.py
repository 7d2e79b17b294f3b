"""Graph edits shared by every fix.

We edit the protobuf directly instead of going through onnx-graphsurgeon:
graphsurgeon 0.6.1 drops node ``metadata_props`` on export, which is exactly
where the dynamo exporter keeps the PyTorch scope and stack trace.  Every node
a fix inserts is named after the node it serves (so it reads well in Netron),
inherits that node's metadata, and is tagged ``onnxfix.rule=<code>``.  A fix never
addresses nodes by index: it names them, and the :class:`Editor` applies every
edit of a round at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxfix import io

RULE_KEY = "onnxfix.rule"


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
            n
            for n in graph.node
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
        _reset(graph.node, [n for n in graph.node if not any(n is d for d in dead)])
        removed += len(dead)


def _reset(field: Any, items: Sequence[Any]) -> None:
    """Make the repeated message ``field`` hold ``items``, which may be its own elements.
    They are copied before the field is cleared so that the result does not depend on what
    a protobuf implementation does with removed elements still referenced (protobuf 7's
    upb keeps them intact; the copy is the guarantee, not that)."""
    copies = []
    for item in items:
        copy = type(item)()
        copy.CopyFrom(item)
        copies.append(copy)
    del field[:]
    field.extend(copies)


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
    """Mark ``node`` as made by ``rule``, carrying ``origin``'s metadata (PyTorch scope)."""
    if origin is not None:
        for p in origin.metadata_props:
            if p.key != RULE_KEY:
                node.metadata_props.add(key=p.key, value=p.value)
    node.metadata_props.add(key=RULE_KEY, value=rule)


@dataclass
class _GraphEdits:
    graph: onnx.GraphProto
    depth: int
    before: dict[int, list[onnx.NodeProto]] = field(default_factory=dict)
    replace: dict[int, onnx.NodeProto] = field(default_factory=dict)
    drop_outputs: set[str] = field(default_factory=set)
    prune: set[str] = field(default_factory=set)


class Editor:
    """Collects the edits of one fix round, addressed by node reference, and commits them.

    Python protobuf cannot insert into a repeated field, so a graph's node list
    is rebuilt once per round with every insertion and replacement in place.
    Graphs are committed deepest first: rebuilding a graph copies its nodes (and
    the subgraphs they hold), which would detach references into them.
    """

    def __init__(
        self, model: onnx.ModelProto, opset: int, fmt_dim: Callable[[Any], str] = str
    ) -> None:
        self.model = model
        self.opset = opset
        self.fmt_dim = fmt_dim
        self.namer = Namer(model)
        self._graphs: dict[int, _GraphEdits] = {}

    def _at(self, graph: onnx.GraphProto, depth: int) -> _GraphEdits:
        ge = self._graphs.get(id(graph))
        if ge is None:
            ge = self._graphs[id(graph)] = _GraphEdits(graph, depth)
        return ge

    def for_rule(
        self, rule: str, graph: onnx.GraphProto, depth: int, node: onnx.NodeProto | None
    ) -> RuleEditor:
        return RuleEditor(self, rule, graph, depth, node)

    def commit(self) -> None:
        for ge in sorted(self._graphs.values(), key=lambda e: -e.depth):
            if ge.before or ge.replace:
                nodes: list[onnx.NodeProto] = []
                for n in ge.graph.node:
                    nodes.extend(ge.before.get(id(n), ()))
                    nodes.append(ge.replace.get(id(n), n))
                _reset(ge.graph.node, nodes)
            if ge.drop_outputs:
                keep = [vi for vi in ge.graph.output if vi.name not in ge.drop_outputs]
                _reset(ge.graph.output, keep)
            if ge.prune:
                prune_unused(ge.graph, ge.prune)
        self._graphs.clear()


class RuleEditor:
    """The edit API one fix sees: nodes it creates are named after the node they serve
    (``/encoder/Where`` -> ``/encoder/Where/onnxfix_unsqueeze``), carry that node's
    metadata and are tagged with the rule's code."""

    def __init__(
        self,
        editor: Editor,
        rule: str,
        graph: onnx.GraphProto,
        depth: int,
        node: onnx.NodeProto | None,
    ) -> None:
        self.editor = editor
        self.rule = rule
        self.graph = graph
        self.depth = depth
        self.node = node

    @property
    def opset(self) -> int:
        return self.editor.opset

    def fmt_dim(self, dim: Any) -> str:
        """A dim as reports show it (the output's declared name, or a short name)."""
        return self.editor.fmt_dim(dim)

    def _base(self, suffix: str) -> str:
        origin = self.node
        head = (origin.name or origin.op_type) if origin is not None else "/onnxfix"
        return f"{head}/onnxfix_{suffix}"

    def make(
        self, op: str, inputs: Sequence[str], suffix: str, *, outputs: int = 1, **attrs: Any
    ) -> onnx.NodeProto:
        """A new node named after the served node, tagged, with fresh output names."""
        name = self.editor.namer(self._base(suffix))
        outs = [self.editor.namer(f"{name}_output_{i}") for i in range(outputs)]
        node = helper.make_node(op, list(inputs), outs, name=name, **attrs)
        tag(node, self.rule, self.node)
        return node

    def const(self, array: np.ndarray, suffix: str) -> onnx.NodeProto:
        return self.make("Constant", [], suffix, value=numpy_helper.from_array(array, name=""))

    def unsqueeze(self, value: str, axes: Sequence[int]) -> list[onnx.NodeProto]:
        """``Unsqueeze(value, axes)`` in the form the model's opset wants; last node's
        output is the result."""
        if self.opset >= 13:
            c = self.const(np.asarray(list(axes), dtype=np.int64), "unsqueeze/axes")
            return [c, self.make("Unsqueeze", [value, c.output[0]], "unsqueeze")]
        return [self.make("Unsqueeze", [value], "unsqueeze", axes=list(axes))]

    def insert_before(self, anchor: onnx.NodeProto, nodes: Sequence[onnx.NodeProto]) -> None:
        """Insert ``nodes`` (in order) just before ``anchor`` (topological order holds)."""
        ge = self.editor._at(self.graph, self.depth)
        ge.before.setdefault(id(anchor), []).extend(nodes)

    def replace(self, old: onnx.NodeProto, new: onnx.NodeProto) -> None:
        """Put ``new`` where ``old`` is; it keeps ``old``'s doc string (the PyTorch source)."""
        new.doc_string = old.doc_string
        self.editor._at(self.graph, self.depth).replace[id(old)] = new

    def set_input(self, node: onnx.NodeProto, index: int, value: str) -> None:
        node.input[index] = value

    def redeclare_output_dim(self, name: str, axis: int, dim_param: str) -> None:
        """Declare axis ``axis`` of graph output ``name`` dynamic, named ``dim_param``."""
        for vi in self.graph.output:
            if vi.name == name:
                d = vi.type.tensor_type.shape.dim[axis]
                d.Clear()
                d.dim_param = dim_param

    def drop_output(self, name: str) -> None:
        self.editor._at(self.graph, self.depth).drop_outputs.add(name)

    def prune(self, values: Iterable[str]) -> None:
        """Offer the producers of ``values`` (and theirs) for removal if they end up unused."""
        self.editor._at(self.graph, self.depth).prune.update(v for v in values if v)


def _declared_clash(
    graph: onnx.GraphProto, name: str, value: onnx.ValueInfoProto | None
) -> str | None:
    """Why VALUE cannot become the already-declared output NAME: another dtype, rank or
    fixed dim (the checker would refuse the Identity between them, in its own words)."""
    declared = next((vi for vi in graph.output if vi.name == name), None)
    if declared is None or value is None:
        return None
    a, b = declared.type.tensor_type, value.type.tensor_type

    def dims(t: onnx.TypeProto.Tensor) -> list[int | str]:
        return [
            d.dim_value
            if d.HasField("dim_value")
            else (d.dim_param if d.dim_param and not d.dim_param.startswith("unk__") else "?")
            for d in t.shape.dim
        ]

    def text(ds: list[int | str]) -> str:
        return "[" + ", ".join(map(str, ds)) + "]"

    said = f"'{name}' is declared {text(dims(a))}"
    if a.elem_type and b.elem_type and a.elem_type != b.elem_type:
        return f"{said} of another dtype than the value's; pick a value of the declared dtype"
    if not (a.HasField("shape") and b.HasField("shape")):
        return None
    da, db = dims(a), dims(b)
    bad = len(da) != len(db) or any(
        isinstance(x, int) and isinstance(y, int) and x != y for x, y in zip(da, db)
    )
    if bad:
        return (
            f"{said} but the value is {text(db)}; pick a value of that shape, or declare a new "
            "output name (a new output takes the value's shape)"
        )
    return None


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
        inf = onnx.shape_inference.infer_shapes(io.inference_safe(model))
        inferred = {
            vi.name: vi for vi in (*inf.graph.value_info, *inf.graph.output, *inf.graph.input)
        }
    except Exception:
        pass
    namer = Namer(model)
    for name, value in outputs.items():
        if value not in known:
            raise ValueError(f"--output {name}={value}: no value '{value}' in the graph")
        if name in produced:
            raise ValueError(f"--output {name}={value}: '{name}' is already produced by a node")
        clash = _declared_clash(graph, name, inferred.get(value))
        if clash:
            raise ValueError(f"--output {name}={value}: {clash}")
        node = helper.make_node("Identity", [value], [name], name=namer(f"/onnxfix_output/{name}"))
        node.metadata_props.add(key=RULE_KEY, value="--output")
        graph.node.append(node)
        if not any(vi.name == name for vi in graph.output):
            vi = onnx.ValueInfoProto()
            if value in inferred:
                vi.CopyFrom(inferred[value])
            vi.name = name
            graph.output.append(vi)
