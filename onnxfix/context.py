"""The analysis context: everything rules read, computed once per model.

Rules never parse the graph themselves; they ask this module for shapes,
dtypes, producers, consumers and the PyTorch scope of a node.  That keeps the
rules small and makes every rule benefit when the shape reasoning improves.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from onnxfix.forked import Forked
from onnxfix.shapes import Dim, Propagator, Shape, Sym, fmt_dim, fmt_shape

if TYPE_CHECKING:
    from onnxfix.io import NodeTable
    from onnxfix.shapes.conditions import Condition, Verdict

#: derived dims rendered longer than this get a short name and a definition
ABBREVIATE_AT = 48

#: (node index, attribute name) steps from the main graph to a subgraph
Route = tuple[tuple[int, str], ...]


@dataclass
class GraphCtx:
    """One graph (the main graph or a subgraph) with its derived maps."""

    graph: onnx.GraphProto
    path: str
    shapes: Propagator
    parent: GraphCtx | None = None
    #: (node index, attribute name) steps from the main graph: resolves the graph again
    #: after edits (node names may contain '/', so the display path cannot)
    route: Route = ()
    producers: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)
    #: node positions by op type: rules walk only the ops they look at
    op_index: dict[str, list[int]] = field(default_factory=dict)
    #: the nodes, and their input and output names, read from the protobuf once: every
    #: access to a protobuf field builds a new Python object (about 4 µs per node for
    #: these), so the structural rules walk these lists instead
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    ins: list[tuple[str, ...]] = field(default_factory=list)
    outs: list[tuple[str, ...]] = field(default_factory=list)
    #: a node's position in ``nodes`` (by id)
    position: dict[int, int] = field(default_factory=dict)
    #: positions of the nodes that may hold subgraphs (see :func:`_nests`)
    nesting: list[int] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return len(self.route)

    def shape(self, name: str) -> Shape | None:
        return self.shapes.shape(name)

    def value(self, name: str) -> tuple[Dim, ...] | None:
        """A small int tensor's value as dims (symbols included), if known."""
        return self.shapes.value(name)

    def ints(self, name: str) -> list[int] | None:
        """A small int tensor's value if every element is a known integer."""
        return self.shapes.const_ints(name)

    def axes(self, node: onnx.NodeProto) -> list[int] | None:
        """The ``axes`` of an Unsqueeze/Squeeze/Reduce node, whichever form its opset
        uses: an attribute (before opset 13) or a constant second input; None if unknown."""
        from onnxfix.shapes.ops import attr

        axes = attr(node, "axes", None)
        if axes is None and len(node.input) > 1 and node.input[1]:
            return self.ints(node.input[1])
        return list(axes) if axes is not None else None

    def const(self, name: str) -> np.ndarray | None:
        """A tensor computed only from constants (folded exactly; bounded size)."""
        return self.shapes.const(name)

    def dtype(self, name: str) -> int:
        return self.shapes.dtype(name)

    def chain(self, value: str, *ops: str) -> list[onnx.NodeProto] | None:
        """The producers of ``value``, of their first input, and so on, if their op types
        are ``ops`` in that order (``chain(y, "Reshape", "Expand")``); else None."""
        nodes = []
        for op in ops:
            node = self.producer(value)
            if node is None or node.op_type != op or not node.input:
                return None
            nodes.append(node)
            value = node.input[0]
        return nodes

    def downstream(self, node: onnx.NodeProto) -> dict[int, onnx.NodeProto]:
        """Every node of this graph that ``node``'s outputs flow into (by id)."""
        out: dict[int, onnx.NodeProto] = {}
        stack, seen = list(node.output), set()
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            for n in self.consumers.get(v, ()):
                if id(n) not in out:
                    out[id(n)] = n
                    stack.extend(n.output)
        return out

    def inputs_of(self, node: onnx.NodeProto) -> tuple[str, ...]:
        """A node's input names (read once, when the context was built)."""
        k = self.position.get(id(node))
        return self.ins[k] if k is not None else tuple(node.input)

    def subgraphs(self, node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
        """The subgraphs a node holds (Loop/Scan bodies, If branches)."""
        for _, g in _subgraphs(node):
            yield g

    def producer(self, name: str) -> onnx.NodeProto | None:
        g: GraphCtx | None = self
        while g is not None:
            if name in g.producers:
                return g.producers[name]
            g = g.parent
        return None

    def evaluate_body(
        self, body: onnx.GraphProto, seeds: dict[str, tuple[Shape, tuple[Dim, ...] | None]]
    ) -> Propagator:
        """Shapes inside a subgraph (a Loop body) with some values fixed beforehand,
        e.g. one iteration's slice shape and repeat count."""
        prop = Propagator(body, {}, self.shapes)
        for name, (shape, value) in seeds.items():
            prop.seed(name, shape, value)
        prop.run()
        return prop


@dataclass
class Context:
    model: onnx.ModelProto
    graphs: list[GraphCtx]
    opset: int
    inference_error: str | None = None
    #: display names for derived dims, learned from the dims the graph outputs declare
    aliases: dict[Sym, str] = field(default_factory=dict)
    #: the interface contract given with --expect, if any (onnxfix.contracts.Contract)
    contract: object | None = None
    #: what strict type/shape inference (onnxruntime's load-time check) said, if it failed
    strict_error: str | None = None

    #: short names (d1, d2, ...) for derived dims too long to read inline
    abbrev: dict[Sym, str] = field(default_factory=dict)

    def _names(self) -> dict[Sym, str]:
        return {**self.abbrev, **self.aliases}

    def fmt(self, shape: Shape | None) -> str:
        if shape is not None:
            for d in shape:
                self._abbreviate(d)
        return fmt_shape(shape, self._names())

    def fmt_dim(self, dim: Dim) -> str:
        self._abbreviate(dim)
        return fmt_dim(dim, self._names())

    def _abbreviate(self, dim: Dim) -> None:
        if (
            isinstance(dim, Sym)
            and dim not in self.aliases
            and dim not in self.abbrev
            and len(str(dim)) > ABBREVIATE_AT
        ):
            self.abbrev[dim] = f"d{len(self.abbrev) + 1}"

    def legend(self, text: str) -> str:
        """The definitions of the short names ``text`` uses, to append to a message."""
        used = [(name, d) for d, name in self.abbrev.items() if re.search(rf"\b{name}\b", text)]
        return "".join(f"; {name} = {d}" for name, d in used)

    @property
    def main(self) -> GraphCtx:
        return self.graphs[0]

    @functools.cached_property
    def input_dims(self) -> set[str]:
        """The names of the model's dynamic input dims (``input:axis`` when unnamed)."""
        from onnxfix.shapes.conditions import input_dims

        return input_dims(self.model)

    @functools.cached_property
    def conditions(self) -> list[tuple[Condition, Verdict]]:
        """Every condition under which a node of the main graph runs, classified once
        (:mod:`onnxfix.shapes.conditions`), in graph order."""
        from onnxfix.shapes.conditions import classified, collect

        return list(classified(collect(self), self.input_dims))

    @functools.cached_property
    def pinning(self) -> list[tuple[Condition, Verdict]]:
        """The conditions that pin an input dim, upstream first, without those that never
        hold downstream of a node already pinned: they are consequences (the shapes after
        a pinned node are only right at the pinned size).  Four rules read this; each
        worked it out again, and the downstream walks cost 30 ms of a 1.7k-node lint."""
        reported: set[int] = set()
        tainted: set[int] = set()
        out = []
        for cond, verdict in self.conditions:
            if not verdict.pins:
                continue
            if verdict.status == "never" and id(cond.node) in tainted:
                continue
            out.append((cond, verdict))
            if id(cond.node) not in reported:
                reported.add(id(cond.node))
                if id(cond.node) not in tainted:  # else its downstream is tainted already
                    tainted |= set(cond.graph.downstream(cond.node))
        return out

    @functools.cached_property
    def outer_reads(self) -> set[str]:
        """Names read inside subgraphs (outer-scope reads keep values alive)."""
        out: set[str] = set()
        for g in self.graphs[1:]:
            out.update(g.consumers)
        return out

    def nodes(self) -> Iterator[tuple[GraphCtx, onnx.NodeProto]]:
        for g in self.graphs:
            for n in g.nodes:
                yield g, n

    def by_op(self, ops: Collection[str]) -> Iterator[tuple[GraphCtx, onnx.NodeProto]]:
        """Nodes of the standard domain whose op type is in ``ops``, in graph order."""
        for g in self.graphs:
            positions: list[int] = []
            for op in ops:
                positions += g.op_index.get(op, ())
            if len(ops) > 1:
                positions.sort()
            nodes = g.nodes
            for i in positions:
                yield g, nodes[i]

    def location(
        self,
        g: GraphCtx,
        node: onnx.NodeProto | None,
        inputs: Sequence[str] = (),
        *,
        label: str | None = None,
        op_type: str | None = None,
    ) -> dict[str, Any]:
        """The location fields of a finding: graph path, node, op, PyTorch scope and source,
        and the named inputs with their shapes."""
        if label is None:
            assert node is not None
            first = node.output[0] if node.output else "?"
            label = node.name or f"<{node.op_type} producing {first}>"
        return {
            "graph": g.path,
            "node": label,
            "op_type": op_type or (node.op_type if node is not None else "?"),
            "scope": scope_of(node) if node is not None else None,
            "source": source_of(node) if node is not None else None,
            "inputs": tuple((n, self.fmt(g.shape(n))) for n in inputs),
        }


def _value_infos(graph: onnx.GraphProto) -> dict[str, onnx.ValueInfoProto]:
    out = {vi.name: vi for vi in graph.value_info}
    out.update({vi.name: vi for vi in graph.output})
    return out


#: the standard ops whose schemas have a graph attribute, in any opset (a test checks it
#: against onnx.defs).  Asking the schema registry instead cost 14 ms: its first use builds
#: every schema, and with ONNX's inference in a child (EarlyInference) nothing else in this
#: process needs it
_GRAPH_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})


def _nests(domain: str, op_type: str) -> bool:
    """Whether nodes of this op may hold subgraphs: a standard op only if its schema has a
    graph attribute (If, Loop, Scan, SequenceMap); any other op may.  Reading every
    node's attributes to find out cost 0.3 s on a 100k-node graph.  (An attribute a
    standard op's schema lacks makes the model invalid; the checker and onnxruntime
    refuse it, and ONNX's own inference does not look into it either; so does a standard
    op name no schema has.)"""
    return op_type in _GRAPH_OPS or domain not in ("", "ai.onnx")


def _subgraphs(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    if not _nests(node.domain, node.op_type):
        return
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.name, a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            for i, g in enumerate(a.graphs):
                yield f"{a.name}[{i}]", g


def infer(
    model: onnx.ModelProto, table: NodeTable | None = None
) -> tuple[onnx.ModelProto | None, str | None, str | None]:
    """ONNX shape inference: (inferred model, strict-mode error, error of the fallback).

    Strict mode with type checks runs first, because what it rejects onnxruntime
    rejects at load (rule VA101 reports it); only if it fails does a lenient pass
    run for the shapes.  Without data propagation: ours (:mod:`onnxfix.shapes`)
    tracks shape values with bounded memory, while ONNX's materialises them — a
    100-byte model with a ``ConstantOfShape`` of 2**31 elements made it allocate
    until killed.  ``table``: the model's scan at load, with the inference started then
    (:class:`EarlyInference`) or the bytes the model was read from.
    """
    from onnxfix.io import inference_safe

    safe = inference_safe(model, table)
    early = table.take_early() if table is not None else None
    if isinstance(early, EarlyInference):
        if safe is model:
            got = early.result()
            if got is not None:
                return got
        else:  # it read the -1 dims the safe copy leaves out
            early.cancel()
    source = table.take_source() if table is not None else None
    # the bytes the model was read from, unless the copy without -1 dims is what to infer
    data = source if source is not None and safe is model else safe.SerializeToString()
    del source
    inferred, strict, err = _infer_bytes(data)
    return (onnx.load_from_string(inferred) if inferred is not None else None), strict, err


def _infer_bytes(data: bytes) -> tuple[bytes | None, str | None, str | None]:
    """:func:`infer` on a serialised model, answering the inferred model's bytes (the C++
    function ``onnx.shape_inference.infer_shapes`` wraps)."""
    from onnx.onnx_cpp2py_export import shape_inference

    try:
        return shape_inference.infer_shapes(data, True, True, False), None, None
    except Exception as exc:
        strict = str(exc) or repr(exc)
    try:
        return shape_inference.infer_shapes(data, False, False, False), strict, None
    except Exception as exc:
        text = str(exc).strip()
        return None, strict, text.splitlines()[0][:300] if text else repr(exc)


#: a model file smaller than this is inferred in this process: a fork and the answer's
#: transfer cost more than the inference saves (a 460 KB graph infers in about 20 ms)
FORK_AT = 256 * 1024


class EarlyInference:
    """ONNX's inference of the bytes a model was read from, run in a forked child
    (:class:`onnxfix.forked.Forked`) while this process parses and scans the same bytes
    (:func:`onnxfix.io.load` starts it).

    The inference is C++ that holds the GIL, so only another process can run beside it.
    Measured: reading, parsing, scanning and inferring a 100k-node graph took 1.9-2.2 s
    one after the other and 1.4-1.6 s so; a 10k-node graph 0.35-0.42 s and 0.27-0.29 s.
    A child that dies by a signal (a C++ abort in ONNX's inference) is reported as the
    inference's failure, where the same abort in this process would have ended the
    command.
    """

    def __init__(self, child: Forked) -> None:
        self.child = child

    @classmethod
    def start(cls, data: bytes) -> EarlyInference | None:
        """The child inferring ``data``; None where it would not pay (a small model) or no
        child can be had."""
        if len(data) < FORK_AT:
            return None
        child = Forked.start(_infer_bytes, data, quiet=True)
        return cls(child) if child is not None else None

    def result(self) -> tuple[onnx.ModelProto | None, str | None, str | None] | None:
        """The child's answer as :func:`infer` gives it; None if it gave none (infer here)."""
        try:
            crashed = self.child.signal()
            if crashed is not None:
                self.child.cancel()  # reaped already: this closes its file
                return None, None, f"ONNX's shape inference crashed ({crashed})"
            inferred, strict, err = self.child.answer()
        except Exception:
            return None
        return (onnx.load_from_string(inferred) if inferred is not None else None), strict, err

    def cancel(self) -> None:
        """Stop the child (its answer is not wanted) and reap it."""
        self.child.cancel()


def build(
    model: onnx.ModelProto, contract: object | None = None, table: NodeTable | None = None
) -> Context:
    """Analyse ``model`` (which is only read, never changed).  ``table``: its main graph's
    nodes as :func:`onnxfix.io.load` read them, if the model was not edited since."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    graphs: list[GraphCtx] = []
    strict_err = err = None
    # an explicit stack, not a recursive closure: a closure that calls itself is a
    # reference cycle, and it held every GraphCtx of the analysis (millions of objects
    # on a 100k-node graph) until a full collection -- 0.56 s of collector time
    todo: list[tuple[onnx.GraphProto, onnx.GraphProto | None, str, GraphCtx | None, Route]]
    todo = [(model.graph, None, "main", None, ())]
    while todo:
        g, ig, path, parent, route = todo.pop()
        rows: list[tuple[onnx.NodeProto, tuple[str, ...], tuple[str, ...], str, str]]
        if g is model.graph and table is not None:
            rows = table
        else:  # one walk over the protobuf; everything after reads these lists
            rows = [(n, tuple(n.input), tuple(n.output), n.op_type, n.domain) for n in g.node]
        maps = _maps(rows)
        if parent is None:
            # ONNX's answer is needed from here on, not before: an inference started at
            # load (EarlyInference) ran beside the scan and these maps
            inferred, strict_err, err = infer(model, table)
            ig = inferred.graph if inferred is not None else None
        prop = Propagator(
            g, _value_infos(ig) if ig is not None else {}, parent.shapes if parent else None, opset
        )
        gc = GraphCtx(g, path, prop, parent, route=route, nodes=[r[0] for r in rows], **maps)
        nested = gc.nesting
        # subgraph inputs (loop counters, scan slices) come from the graph itself
        prop.run(rows)
        graphs.append(gc)
        inodes = list(ig.node) if ig is not None and nested else []
        children = []
        for k in nested:
            n = gc.nodes[k]
            inode = inodes[k] if k < len(inodes) else None
            isubs = dict(_subgraphs(inode)) if inode is not None else {}
            for attr, sub in _subgraphs(n):
                label = n.name or f"{n.op_type}#{k}"
                children.append(
                    (sub, isubs.get(attr), f"{path}/{label}:{attr}", gc, (*route, (k, attr)))
                )
        todo.extend(reversed(children))  # depth first, in node order: as the recursion was
    return Context(
        model, graphs, opset, err, _output_aliases(model.graph, graphs[0]), contract, strict_err
    )


def _maps(
    rows: Sequence[tuple[onnx.NodeProto, tuple[str, ...], tuple[str, ...], str, str]],
) -> dict[str, Any]:
    """A graph's maps for :class:`GraphCtx`, in one walk over its rows: producers,
    consumers, op index, inputs, outputs, positions, nodes that may nest graphs."""
    ins: list[tuple[str, ...]] = []
    outs: list[tuple[str, ...]] = []
    nesting: list[int] = []
    position: dict[int, int] = {}
    producers: dict[str, onnx.NodeProto] = {}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    op_index: dict[str, list[int]] = {}
    for k, (n, node_ins, node_outs, op, domain) in enumerate(rows):
        ins.append(node_ins)
        outs.append(node_outs)
        position[id(n)] = k
        if domain in ("", "ai.onnx"):
            op_index.setdefault(op, []).append(k)
        if _nests(domain, op):
            nesting.append(k)
        for o in node_outs:
            if o:
                producers[o] = n
        for i in node_ins:
            if i:
                consumers.setdefault(i, []).append(n)
    return {
        "ins": ins,
        "outs": outs,
        "nesting": nesting,
        "position": position,
        "producers": producers,
        "consumers": consumers,
        "op_index": op_index,
    }


def _output_aliases(graph: onnx.GraphProto, main: GraphCtx) -> dict[Sym, str]:
    """An output declared ``[B, T, C]`` names the derived dims computed for it."""
    aliases: dict[Sym, str] = {}
    # an input's symbol is taken: an output reusing it for another size would mislabel
    taken = {d.dim_param for vi in graph.input for d in vi.type.tensor_type.shape.dim}
    for vi in graph.output:
        shape = main.shape(vi.name)
        if shape is None or not vi.type.HasField("tensor_type"):
            continue
        for d, decl in zip(shape, vi.type.tensor_type.shape.dim):
            if isinstance(d, Sym) and d.kind != "sym" and decl.dim_param:
                # names the TorchScript exporter invents ("Concaty_dim_1") explain nothing
                if re.search(r"_dim_\d+$", decl.dim_param) is None and decl.dim_param not in taken:
                    aliases.setdefault(d, decl.dim_param)
    return aliases


# --- PyTorch provenance ------------------------------------------------------------------


def scope_of(node: onnx.NodeProto) -> str | None:
    """The PyTorch module path a node came from, when the exporter recorded one.

    The dynamo exporter keeps it in ``metadata_props``; the TorchScript exporter
    encodes it in the node name (``/encoder/layers.0/Where_3``).
    """
    md = {p.key: p.value for p in node.metadata_props}
    scopes = md.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            parts = [s for s in ast.literal_eval(scopes) if s]
        except (ValueError, SyntaxError):
            parts = []
        if parts:
            return "/".join(parts[:-1]) or "<top>"
    name = node.name
    if name.startswith("/") and name.count("/") >= 1:
        parts = [p for p in name.split("/") if p]
        return "/".join(parts[:-1]) or "<top>"
    return None


_FRAME = re.compile(r"(\S+\.py)\((\d+)\): (\S+)")


def source_of(node: onnx.NodeProto) -> str | None:
    """The PyTorch source line of a node, if the exporter recorded it.

    The dynamo exporter keeps a stack trace in ``metadata_props``; the TorchScript
    exporter, run with ``verbose=True``, writes frames such as ``model.py(6): forward``
    into the node's ``doc_string``: the first frame outside torch itself is the line of
    the model's code.
    """
    md = {p.key: p.value for p in node.metadata_props}
    trace = md.get("pkg.torch.onnx.stack_trace")
    if trace:
        lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else None
    for line in node.doc_string.splitlines():
        m = _FRAME.search(line)
        if m and "/torch/" not in m.group(1).replace("\\", "/"):
            return f"{m.group(1).rsplit('/', 1)[-1]}({m.group(2)}): {m.group(3)}"
    return None
