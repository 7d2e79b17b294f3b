"""Views of a model that people otherwise reconstruct by hand in Netron.

* :func:`shapes` — the symbolic shape of every value (or of one node's inputs and
  outputs), the dims the graph derives (``T = ((L - 400) // 320) + 1`` style) and
  where each symbol comes from (``onnxfix shapes``);
* :func:`node_diff` — what a repair changed, node by node (``repair --diff``);
* :func:`annotate` — the findings written onto their nodes (``doc_string`` and
  ``metadata_props``), so Netron shows them on the node (``lint --annotate``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import onnx

from onnxfix.context import Context
from onnxfix.contracts import dtype_name
from onnxfix.findings import Finding
from onnxfix.shapes import Sym
from onnxfix.shapes.propagate import dynamic_input_dims

# --- shapes -----------------------------------------------------------------------------------


def _symbols(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Each named input dim and the input axes that carry it."""
    out: dict[str, list[str]] = {}
    for name, vi, axis in dynamic_input_dims(model):
        out.setdefault(name, []).append(f"'{vi.name}' axis {axis}")
    return out


def shapes(ctx: Context, node: str | None = None) -> dict[str, Any]:
    """The shape view as data: values (name, producer, dtype, shape), derived dims with their
    definitions, and the symbols' origins.  ``node``: only that node's inputs and outputs."""
    g = ctx.main
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(name: str, made_by: str) -> None:
        if not name or name in seen:
            return
        seen.add(name)
        shape = g.shape(name)
        rows.append(
            {
                "value": name,
                "made_by": made_by,
                "dtype": dtype_name(g.dtype(name)) if g.dtype(name) else "?",
                "shape": ctx.fmt(shape) if shape is not None else "[?]",
            }
        )

    if node is None:
        init = {t.name for t in g.graph.initializer}
        for vi in g.graph.input:
            if vi.name not in init:
                add(vi.name, "input")
        for n in g.graph.node:
            for o in n.output:
                add(o, f"{n.name or '?'} ({n.op_type})")
    else:
        found = next((n for n in g.graph.node if n.name == node), None)
        if found is None:
            raise KeyError(node)
        for i in found.input:
            p = g.producer(i)
            add(i, f"{p.name or '?'} ({p.op_type})" if p is not None else "input or initializer")
        for o in found.output:
            add(o, f"{found.name or '?'} ({found.op_type})")
    return _with_dims(ctx, rows, everything=node is None)


def _with_dims(ctx: Context, rows: list[dict[str, Any]], everything: bool) -> dict[str, Any]:
    """Add the derived dims and the symbols the rows use (all of them for the whole graph)."""
    text = " ".join(r["shape"] for r in rows)
    derived = []
    for dim, name in sorted(ctx.aliases.items(), key=lambda kv: kv[1]):
        if isinstance(dim, Sym) and dim.kind != "sym" and (everything or name in text):
            derived.append({"name": name, "definition": str(dim), "named_by": "a graph output"})
    for dim, name in ctx.abbrev.items():
        if everything or name in text:
            derived.append({"name": name, "definition": str(dim), "named_by": "onnxfix"})
    text += " " + " ".join(d["definition"] for d in derived)
    symbols = [
        {"name": s, "from": axes}
        for s, axes in _symbols(ctx.model).items()
        if everything or s in text
    ]
    return {"values": rows, "derived": derived, "symbols": symbols}


def render_shapes(view: dict[str, Any]) -> list[str]:
    """The shape view as text lines (made visible by the caller)."""
    lines = ["symbols (dynamic input dims):"]
    lines += [f"  {s['name']}: {', '.join(s['from'])}" for s in view["symbols"]] or ["  none"]
    if view["derived"]:
        lines.append("derived dims:")
        lines += [
            f"  {d['name']} = {d['definition']}"
            + ("  (named by a graph output)" if d["named_by"] == "a graph output" else "")
            for d in view["derived"]
        ]
    lines.append("values:")
    width = max((len(r["value"]) for r in view["values"]), default=0)
    width = min(width, 60)
    for r in view["values"]:
        lines.append(f"  {r['value']:<{width}}  {r['dtype']:<8} {r['shape']}  <- {r['made_by']}")
    return lines


# --- node diff --------------------------------------------------------------------------------


def _attr(a: onnx.AttributeProto) -> str:
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    elif isinstance(v, onnx.TensorProto):
        v = f"tensor{list(v.dims)}"
    elif isinstance(v, onnx.GraphProto):
        v = f"graph({len(v.node)} nodes)"
    elif isinstance(v, list) and v and isinstance(v[0], onnx.GraphProto):
        v = f"{len(v)} graphs"
    return f"{a.name}={v}"


def node_line(n: onnx.NodeProto) -> str:
    """``y = Where(cond, c, x)``, attributes after the inputs."""
    args = [*n.input, *(_attr(a) for a in n.attribute)]
    return f"{', '.join(n.output)} = {n.op_type}({', '.join(args)})"


def node_diff(before: onnx.ModelProto, after: onnx.ModelProto) -> list[str]:
    """Lines ``- node`` / ``+ node`` (main graph, graph order) and output declarations that
    changed; a node whose subgraph changed shows as removed and added."""
    removed = [f"- {node_line(n)}" for n in _only_in(before.graph.node, after.graph.node)]
    added = [f"+ {node_line(n)}" for n in _only_in(after.graph.node, before.graph.node)]
    outs_a = [o.name for o in before.graph.output]
    outs_b = [o.name for o in after.graph.output]
    lines = removed + added
    lines += [f"- output {o}" for o in outs_a if o not in outs_b]
    lines += [f"+ output {o}" for o in outs_b if o not in outs_a]
    return lines


def _only_in(
    these: Iterable[onnx.NodeProto], others: Iterable[onnx.NodeProto]
) -> list[onnx.NodeProto]:
    """The nodes of ``these`` (in order) that ``others`` lacks, counting repeats."""
    key = lambda n: n.SerializeToString(deterministic=True)  # noqa: E731
    left = Counter(key(n) for n in others)
    out = []
    for n in these:
        k = key(n)
        if left[k]:
            left[k] -= 1
        else:
            out.append(n)
    return out


def op_counts(before: onnx.ModelProto, after: onnx.ModelProto) -> str:
    """``306 → 307 nodes (Unsqueeze +1)``."""
    a = Counter(n.op_type for n in before.graph.node)
    b = Counter(n.op_type for n in after.graph.node)
    changes = [f"{op} +{k}" for op, k in sorted((b - a).items())]
    changes += [f"{op} −{k}" for op, k in sorted((a - b).items())]
    head = f"{sum(a.values())} → {sum(b.values())} nodes"
    return head + (f" ({', '.join(changes)})" if changes else "")


# --- annotate ---------------------------------------------------------------------------------

#: metadata key under which each finding is written onto its node
ANNOTATION_KEY = "onnxfix.finding"


def annotate(model: onnx.ModelProto, findings: list[Finding]) -> int:
    """Write each finding onto its main-graph node (``doc_string`` first line and a
    ``metadata_props`` entry, both shown by Netron); return how many nodes carry one."""
    by_name: dict[str, list[Finding]] = {}
    for f in findings:
        by_name.setdefault(f.node, []).append(f)
    marked = 0
    for n in model.graph.node:
        fs = by_name.get(n.name)
        if not n.name or not fs:
            continue
        text = "\n".join(f"{f.rule} {f.severity.value}: {f.message}" for f in fs)
        n.doc_string = text + ("\n\n" + n.doc_string if n.doc_string else "")
        for prop in list(n.metadata_props):
            if prop.key == ANNOTATION_KEY:
                n.metadata_props.remove(prop)
        entry = n.metadata_props.add()
        entry.key, entry.value = ANNOTATION_KEY, text
        marked += 1
    return marked
