"""What each graph input is for, read from the graph, so probes feed values that fit.

Random values make valid models fail: a mask of 0..3, lengths longer than the
time axis, a sample rate that picks the wrong branch, an Expand shape of
random numbers.  An input's role is read from where its values go:

* ``mask``: a condition (``Where``, ``And``/``Or``/``Not``), bool, or a 0/1 tensor
  multiplied in — fed as a prefix mask (each row valid up to a length, the
  first row full; ``*pad*`` names mark the padded tail instead);
* ``lengths``: compared with a ``Range`` over a dim, or named ``*len*`` — fed
  within the time axis, the first one full;
* ``index``: gathered from a table — fed inside the table;
* ``shape``: a shape, split sizes, slice bounds, a trip count or a branch —
  cannot be invented: probes still feed something, but a failure it may cause
  is reported as inconclusive, never as the model's fault;
* ``data``: everything else (floats from a normal distribution).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import onnx

#: (op type, input index) pairs whose values are shapes, sizes, bounds or control
SHAPE_SINKS = {
    ("Reshape", 1),
    ("Expand", 1),
    ("ConstantOfShape", 0),
    ("Tile", 1),
    ("Split", 1),
    ("Slice", 1),
    ("Slice", 2),
    ("Slice", 3),
    ("Slice", 4),
    ("Range", 0),
    ("Range", 1),
    ("Range", 2),
    ("TopK", 1),
    ("Resize", 2),
    ("Resize", 3),
    ("Pad", 1),
    ("OneHot", 1),
    ("If", 0),
    ("Loop", 0),
    ("Loop", 1),
    ("Upsample", 1),
    ("Squeeze", 1),
    ("Unsqueeze", 1),
    ("ReduceSum", 1),
    ("ReduceMean", 1),
    ("ReduceMax", 1),
    ("CumSum", 1),
    ("Trilu", 1),
}
MASK_SINKS = {
    ("Where", 0),
    ("And", 0),
    ("And", 1),
    ("Or", 0),
    ("Or", 1),
    ("Not", 0),
    ("Xor", 0),
    ("Xor", 1),
}
COMPARE = {"Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Equal"}
#: ops whose output carries the input's meaning on (a mask cast to float is still a mask)
TRANSPARENT = {
    "Cast",
    "Identity",
    "Unsqueeze",
    "Squeeze",
    "Reshape",
    "Expand",
    "Transpose",
    "Flatten",
    "Slice",
    "Gather",
    "Concat",
    "Neg",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Abs",
    "Max",
    "Min",
    "Clip",
    "ReduceMax",
    "ReduceMin",
    "ReduceSum",
    "Floor",
    "Ceil",
    "CastLike",
    "Shape",
    "Size",
}


@dataclass(frozen=True)
class Role:
    kind: str  # mask | lengths | index | shape | data
    #: for masks: 1 marks padding (``*pad*`` names) rather than valid positions
    pad_is_one: bool = False
    #: for indices: the table size, when known
    bound: int | None = None
    why: str = ""

    @property
    def made_up(self) -> bool:
        """Values a probe cannot know: a failure may come from them."""
        return self.kind == "shape"


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    out: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in graph.node:
        for k, i in enumerate(n.input):
            if i:
                out.setdefault(i, []).append((n, k))
        for a in n.attribute:  # reads from subgraphs count as control (a branch, a loop)
            for sub in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                for sn in sub.node:
                    for i in sn.input:
                        if i:
                            out.setdefault(i, []).append((n, -1))
    return out


def _reach(
    name: str, cons: dict[str, list[tuple[onnx.NodeProto, int]]], limit: int = 40
) -> Iterator[tuple[onnx.NodeProto, int, int]]:
    """(node, input index, hops) for every use of ``name``'s values, through transparent ops."""
    seen: set[str] = set()
    frontier = [(name, 0)]
    while frontier:
        value, hops = frontier.pop()
        if value in seen or hops > limit:
            continue
        seen.add(value)
        for node, k in cons.get(value, ()):
            yield node, k, hops
            if node.op_type in TRANSPARENT and node.op_type not in ("Shape", "Size"):
                frontier.extend((o, hops + 1) for o in node.output if o)


def _ranges(graph: onnx.GraphProto) -> set[str]:
    """Values computed from a Range (positions along an axis)."""
    cons = _consumers(graph)
    out: set[str] = set()
    for n in graph.node:
        if n.op_type == "Range":
            out.update(v for v in n.output)
            for o in n.output:
                for node, _k, _h in _reach(o, cons):
                    out.update(node.output)
    return out


def infer(model: onnx.ModelProto) -> dict[str, Role]:  # noqa: C901 - one case per role
    """The role of every graph input (initializers excluded)."""
    g = model.graph
    init = {t.name for t in g.initializer}
    cons = _consumers(g)
    ranges: set[str] | None = None
    tables = {t.name: list(t.dims) for t in g.initializer}
    roles: dict[str, Role] = {}
    for vi in g.input:
        if vi.name in init:
            continue
        dtype = vi.type.tensor_type.elem_type
        lname = vi.name.lower()
        pad = "pad" in lname
        is_float = dtype in (
            onnx.TensorProto.FLOAT,
            onnx.TensorProto.FLOAT16,
            onnx.TensorProto.DOUBLE,
            onnx.TensorProto.BFLOAT16,
        )
        role = None
        for node, k, _hops in _reach(vi.name, cons):
            key = (node.op_type, k)
            if key in SHAPE_SINKS or k == -1:
                if is_float and node.op_type not in ("If", "Loop"):
                    continue
                what = "a branch" if node.op_type == "If" else "a shape or bound"
                role = Role(
                    "shape", why=f"its values reach {node.op_type} {node.name or ''} as {what}"
                )
                break
            if key in MASK_SINKS and role is None:
                role = Role("mask", pad, why=f"it is a condition of {node.op_type}")
            elif node.op_type in COMPARE and role is None and not is_float:
                if ranges is None:
                    ranges = _ranges(g)
                if any(i in ranges for i in node.input):
                    role = Role("lengths", why=f"it is compared with a Range in {node.op_type}")
            elif node.op_type == "Gather" and k == 1 and role is None and not is_float:
                bound = tables.get(node.input[0], [None])[0] if node.input[0] in tables else None
                role = Role("index", bound=bound, why="it indexes a table")
        if role is None:
            if dtype == onnx.TensorProto.BOOL or "mask" in lname:
                role = Role(
                    "mask",
                    pad,
                    why="a boolean input" if dtype == onnx.TensorProto.BOOL else "named as a mask",
                )
            elif "len" in lname and not is_float:
                role = Role("lengths", why="named as lengths")
            else:
                role = Role("data")
        roles[vi.name] = role
    return roles
