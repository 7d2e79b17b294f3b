"""Truncated-graph and interface rules (TG): what a graph lost on the way out of the exporter.

Cut graphs, stripped initializers and hand edits leave outputs nothing
produces and inputs nothing defines; tracing bakes paths into constants and
drops inputs whose branch was not taken.  No peer we measured reports an output
that no longer depends on the inputs or an input that the exporter dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import onnx

from onnxfix import contracts, edit
from onnxfix.context import Context, GraphCtx, scope_of
from onnxfix.findings import Applicability, Finding, Fix, Severity
from onnxfix.registry import Rule
from onnxfix.shapes import Sym, named

FAMILY = "truncated-graph"


def _docs(what: str, why: str, example: str, safety: str) -> str:
    return (f"## What it does\n{what}\n\n## Why is this bad?\n{why}\n\n## Example\n```\n{example}"
            f"\n```\n\n## Fix safety\n{safety}\n")


DANGLING_DOCS = _docs(
    "Finds graph outputs (also of subgraphs) that no node, input or initializer defines.",
    "onnxruntime refuses the model: \"Graph output X does not exist in the graph\". It is "
    "what a cut at the wrong place or a hand edit leaves.",
    "graph outputs: [logits]   # no node produces 'logits'",
    "Removing the output changes the interface, so it is only applied with `--unsafe-fixes`. "
    "To point the output at a value that exists, use `onnxfix repair --output "
    "logits=/encoder/layers.3/Add_output_0`.",
)
UNDEFINED_DOCS = _docs(
    "Finds node inputs that nothing defines: no graph input, initializer, node output or "
    "outer-scope value of an enclosing graph.",
    "The model cannot load. Usually an initializer was stripped (weights removed to share "
    "the graph) or the graph was cut above a node that is still there.",
    "MatMul(x, encoder.layers.0.fc1.weight)   # no initializer of that name",
    "No fix: a missing initializer's values cannot be invented.",
)
CONSTANT_DOCS = _docs(
    "Finds graph outputs that depend on no graph input at all.",
    "Tracing turns Python values computed from sizes (`torch.tensor(x.size(1))`, "
    "`len(...)`) into constants: the output then says the same at every length (one "
    "export returned a baked 10 for every input).",
    "lengths = Constant(value=[10])   # was torch.tensor(x.size(1)) at trace time",
    "No fix: compute the value with tensor ops (`x.new_tensor(...)` is traced too; use "
    "`torch.ones_like(x[:, :, 0]).sum(-1)` or return the shape from the runtime).",
)
UNUSED_DOCS = _docs(
    "Finds graph inputs that no node (and no subgraph) reads.",
    "A runtime feeds every input it knows of; an input nothing reads usually means the "
    "exporter removed its path (a Python branch decided at trace time) and the runtime's "
    "assumptions no longer hold. With an interface contract (`--expect`) a missing or "
    "extra input is an error (TG201).",
    "inputs: chunk, offset, att_mask   # att_mask read by no node",
    "No fix: removing an input changes what every caller must feed.",
)
DEAD_DOCS = _docs(
    "Finds nodes whose results reach no graph output.",
    "They cost load time and memory and often mark where a graph was cut.",
    "Shape -> Gather -> Unsqueeze   # feeding nothing",
    "Safe: the nodes are removed; outputs and their values are unchanged (verified).",
)
NAMES_DOCS = _docs(
    "Finds values defined more than once (two nodes writing one name, an initializer "
    "shadowed by a node output, a graph input declared twice) and graph inputs, outputs "
    "or initializers with an empty name.",
    "ONNX graphs are single-assignment; onnxruntime refuses duplicates (\"Duplicate "
    "definition\") and empty names.",
    "Add(a, b) -> y ;  Mul(a, b) -> y",
    "No fix: which definition is meant cannot be decided from the graph.",
)
MISLABELED_DOCS = _docs(
    "Finds graph outputs whose declared dynamic dim reuses the name of an input dim "
    "while the symbolic shape analysis shows the graph computes something else.",
    "Declared dims are how runtimes and serving code size buffers and match shapes. "
    "WeNet's export names both the input frames and the 4x-subsampled output frames 'T': "
    "the declaration says output T equals input T, the graph says ((T - 1)//2 - 1)//2.",
    "chunk: float[1, T, 80] -> output: float[1, T, 256]   # computed: conv(conv(T))",
    "No fix: rename the axis in `dynamic_axes` (an output axis needs its own name).",
)
CONTRACT_DOCS = _docs(
    "Checks the model's inputs and outputs against an interface contract (`--expect` "
    "with a TOML/JSON file or a built-in profile: " + ", ".join(sorted(contracts.PROFILES))
    + "): missing, extra, renamed, wrong dtype, wrong rank, frozen where dynamic.",
    "Exporters drop inputs whose branch was not taken (WeNet's CPU export drops "
    "`required_cache_size` and `att_mask` when left_chunks <= 0), freeze dims that were "
    "meant to be dynamic (`dynamic_axes` naming only the batch), and rename outputs. None "
    "of that is an ONNX error; the runtime that feeds the model fails.",
    "input 'feats' axis 1 is frozen at 400 where dynamic 'L' is expected:\n"
    "  expected float32 [B, L], model has float32 [seq, 400]",
    "No fix: re-export with the intended `input_names`/`dynamic_axes`.",
)


def _defined(graph: onnx.GraphProto, outer: set[str]) -> set[str]:
    names = set(outer)
    names.update(vi.name for vi in graph.input)
    names.update(t.name for t in graph.initializer)
    names.update(o for n in graph.node for o in n.output if o)
    return names


def _walk(ctx: Context) -> Iterator[tuple[GraphCtx, set[str]]]:
    """Every graph with the names visible in it (its own and its ancestors')."""
    visible: dict[int, set[str]] = {}
    for g in ctx.graphs:  # parents come before children
        outer = visible[id(g.parent)] if g.parent is not None else set()
        visible[id(g)] = _defined(g.graph, outer)
        yield g, visible[id(g)]


def _nearest(name: str, names: Iterable[str]) -> str | None:
    """The surviving value whose name shares the longest prefix with ``name``."""
    best, score = None, 0
    for cand in names:
        k = next((i for i, (a, b) in enumerate(zip(name, cand)) if a != b),
                 min(len(name), len(cand)))
        if k > score:
            best, score = cand, k
    return best if score >= 3 else None


def _loc(g: GraphCtx, node: onnx.NodeProto | None, name: str, op: str) -> dict:
    return {"graph": g.path, "node": name, "op_type": op,
            "scope": scope_of(node) if node is not None else None,
            "node_ref": node, "graph_ref": g.graph}


def detect_dangling_outputs(ctx: Context) -> Iterable[Finding]:
    for g, visible in _walk(ctx):
        for vi in g.graph.output:
            if vi.name in visible:
                continue
            near = _nearest(vi.name, [o for n in g.graph.node for o in n.output if o])
            hint = f"; nearest surviving value: '{near}' (produced by " \
                   f"{g.producers[near].name or g.producers[near].op_type})" if near else ""
            yield Finding(
                rule="TG101", name="dangling-output", severity=Severity.ERROR,
                message=f"graph output '{vi.name}' is defined by no node, input or initializer"
                f"{hint}; onnxruntime refuses the model",
                fix=Fix(f"Remove the output declaration '{vi.name}' (changes the interface)",
                        Applicability.UNSAFE, {"output": vi.name}),
                advice="cut the graph with onnx.utils.extract_model at values that exist, or "
                "re-declare the output with `onnxfix repair --output NAME=VALUE`",
                **_loc(g, None, f"<output {vi.name}>", "GraphOutput"),
            )


def fix_dangling_output(model: onnx.ModelProto, finding: Finding, edit_ctx: edit.EditContext
                        ) -> None:
    name = finding.fix.params["output"]
    keep = [vi for vi in edit_ctx.graph.output if vi.name != name]
    copies = [onnx.ValueInfoProto() for _ in keep]
    for c, vi in zip(copies, keep):
        c.CopyFrom(vi)
    del edit_ctx.graph.output[:]
    edit_ctx.graph.output.extend(copies)


def detect_undefined_inputs(ctx: Context) -> Iterable[Finding]:
    for g, visible in _walk(ctx):
        for node in g.graph.node:
            for inp in node.input:
                if not inp or inp in visible:
                    continue
                near = _nearest(inp, visible)
                yield Finding(
                    rule="TG102", name="undefined-input", severity=Severity.ERROR,
                    message=f"input '{inp}' of {node.op_type} {node.name or '(unnamed)'} is "
                    "defined nowhere: no initializer, graph input, node output or outer-scope "
                    "value (a stripped initializer or a cut graph); its values cannot be "
                    "invented" + (f"; nearest existing name: '{near}'" if near else ""),
                    **_loc(g, node, node.name or f"<{node.op_type}>", node.op_type),
                )


def _depends_on_inputs(g: GraphCtx, name: str, inputs: set[str], memo: dict[str, bool]) -> bool:
    stack, seen = [name], set()
    order: list[str] = []
    while stack:  # iterative DFS: graphs are thousands of nodes deep
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        order.append(v)
        if v in inputs:
            return True
        if v in memo:
            if memo[v]:
                return True
            continue
        p = g.producer(v)
        if p is None:
            continue
        stack.extend(i for i in p.input if i)
        for a in p.attribute:  # a subgraph may read graph inputs from the outer scope
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for sub in subs:
                stack.extend(i for n in sub.node for i in n.input if i)
    for v in order:
        memo[v] = False
    return False


def detect_constant_outputs(ctx: Context) -> Iterable[Finding]:
    g = ctx.main
    init = {t.name for t in g.graph.initializer}
    inputs = {vi.name for vi in g.graph.input if vi.name not in init}
    if not inputs:
        return
    memo: dict[str, bool] = {}
    for vi in g.graph.output:
        if vi.name in inputs or vi.name not in g.producers:
            continue
        if _depends_on_inputs(g, vi.name, inputs, memo):
            continue
        value = g.value(vi.name)
        shown = f" (it is {list(value)} at every input)" if value is not None else ""
        node = g.producers[vi.name]
        yield Finding(
            rule="TG103", name="constant-output", severity=Severity.WARNING,
            message=f"graph output '{vi.name}' depends on no graph input{shown}: tracing "
            "baked a value computed from sizes into a constant",
            advice="compute it with tensor ops instead of Python ints (torch.tensor(x.size(1)) "
            "is a constant once traced)",
            **_loc(g, node, node.name or f"<{node.op_type}>", node.op_type),
        )


def detect_unused_inputs(ctx: Context) -> Iterable[Finding]:
    g = ctx.main
    init = {t.name for t in g.graph.initializer}
    used = edit.used_names(g.graph)
    for vi in g.graph.input:
        if vi.name in init or vi.name in used:
            continue
        yield Finding(
            rule="TG104", name="unused-input", severity=Severity.WARNING,
            message=f"graph input '{vi.name}' is read by no node: its path was removed (a "
            "Python branch decided at trace time?); a runtime that relies on it gets no effect"
            " from it",
            advice="check the branches that read it in the exported code; pass --expect to "
            "check the interface a runtime needs",
            **_loc(g, None, f"<input {vi.name}>", "GraphInput"),
        )


def _dead_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
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


def detect_dead_nodes(ctx: Context) -> Iterable[Finding]:
    for g in ctx.graphs:
        dead = _dead_nodes(g.graph)
        if not dead:
            continue
        names = [n.name or n.op_type for n in dead]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        yield Finding(
            rule="TG105", name="dead-nodes", severity=Severity.INFO,
            message=f"{len(dead)} node(s) reach no graph output: {shown}",
            fix=Fix(f"Remove the {len(dead)} dead node(s)", Applicability.SAFE,
                    {"outputs": [o for n in dead for o in n.output if o]}),
            **_loc(g, dead[0], dead[0].name or f"<{dead[0].op_type}>", dead[0].op_type),
        )


def fix_dead_nodes(model: onnx.ModelProto, finding: Finding, edit_ctx: edit.EditContext
                   ) -> None:
    edit_ctx.upstream(finding.fix.params["outputs"])


def detect_names(ctx: Context) -> Iterable[Finding]:
    for g in ctx.graphs:
        seen: dict[str, str] = {}
        init = {t.name for t in g.graph.initializer}
        problems: list[tuple[str, str]] = []
        for vi in g.graph.input:
            if not vi.name:
                problems.append(("", "a graph input has an empty name"))
            elif vi.name in seen and vi.name not in init:
                problems.append((vi.name, f"graph input '{vi.name}' is declared twice"))
            seen.setdefault(vi.name, "graph input")
        for t in g.graph.initializer:
            if not t.name:
                problems.append(("", "an initializer has an empty name"))
            seen.setdefault(t.name, "initializer")
        for vi in g.graph.output:
            if not vi.name:
                problems.append(("", "a graph output has an empty name"))
        for n in g.graph.node:
            for o in n.output:
                if not o:
                    continue
                if o in seen:
                    problems.append((o, f"'{o}' is written by {n.op_type} {n.name or ''} and "
                                     f"already defined by a {seen[o]}"))
                seen[o] = f"node {n.name or n.op_type}"
        for name, msg in problems:
            node = g.producers.get(name)
            yield Finding(
                rule="TG106", name="duplicate-or-empty-name", severity=Severity.ERROR,
                message=f"{msg}; onnxruntime refuses such a graph",
                **_loc(g, node, (node.name if node is not None else "") or f"<{name or 'empty'}>",
                       node.op_type if node is not None else "Value"),
            )


def _closed_form(d: object) -> bool:
    """Arithmetic of input symbols only: its difference from a symbol is a proven fact
    (a size sliced by run-time bounds is not)."""
    if isinstance(d, int):
        return True
    if not isinstance(d, Sym):
        return False
    if d.kind == "sym":
        return True
    return d.kind in ("add", "mul", "floordiv", "mod") and all(_closed_form(a) for a in d.args)


def detect_mislabeled_dims(ctx: Context) -> Iterable[Finding]:
    g = ctx.main
    input_syms = {d.dim_param for vi in g.graph.input
                  for d in vi.type.tensor_type.shape.dim if d.dim_param}
    for vi in g.graph.output:
        shape = g.shape(vi.name)
        if shape is None:
            continue
        for axis, (decl, d) in enumerate(zip(vi.type.tensor_type.shape.dim, shape)):
            name = decl.dim_param
            if not name or name not in input_syms or not isinstance(d, Sym):
                continue
            if d.kind == "sym" or not d.varies or named(name) == d or not _closed_form(d):
                continue
            node = g.producers.get(vi.name)
            yield Finding(
                rule="TG107", name="output-dim-mislabeled", severity=Severity.WARNING,
                message=f"output '{vi.name}' axis {axis} is declared '{name}', the name of an "
                f"input dim, but the graph computes {d}: code that sizes buffers "
                "or checks shapes from the declaration will be wrong",
                advice="give the output axis its own name in dynamic_axes",
                **_loc(g, node, f"<output {vi.name}>", "GraphOutput"),
            )


def detect_contract(ctx: Context) -> Iterable[Finding]:
    contract = ctx.contract
    if contract is None:
        return
    for kind, name, msg in contracts.differences(contract, ctx.model):
        yield Finding(
            rule="TG201", name="interface-mismatch", severity=Severity.ERROR,
            message=f"{msg} (contract '{contract.name}')",
            advice="re-export with the input_names/output_names/dynamic_axes the runtime needs",
            **_loc(ctx.main, None, f"<{kind[:-1]} {name}>",
                   "GraphInput" if kind == "inputs" else "GraphOutput"),
        )


RULES = [
    Rule("TG101", "dangling-output", Severity.ERROR, "A graph output is defined by nothing",
         DANGLING_DOCS, Applicability.UNSAFE, detect_dangling_outputs, fix_dangling_output,
         FAMILY),
    Rule("TG102", "undefined-input", Severity.ERROR, "A node input is defined by nothing",
         UNDEFINED_DOCS, None, detect_undefined_inputs, family=FAMILY),
    Rule("TG103", "constant-output", Severity.WARNING,
         "A graph output depends on no graph input (baked at trace time)", CONSTANT_DOCS,
         None, detect_constant_outputs, family=FAMILY),
    Rule("TG104", "unused-input", Severity.WARNING, "A graph input is read by no node",
         UNUSED_DOCS, None, detect_unused_inputs, family=FAMILY),
    Rule("TG105", "dead-nodes", Severity.INFO, "Nodes whose results reach no output",
         DEAD_DOCS, Applicability.SAFE, detect_dead_nodes, fix_dead_nodes, FAMILY),
    Rule("TG106", "duplicate-or-empty-name", Severity.ERROR,
         "A value is defined twice, or a graph name is empty", NAMES_DOCS, None, detect_names,
         family=FAMILY),
    Rule("TG107", "output-dim-mislabeled", Severity.WARNING,
         "An output dim is declared with an input dim's name but computed differently",
         MISLABELED_DOCS, None, detect_mislabeled_dims, family=FAMILY),
    Rule("TG201", "interface-mismatch", Severity.ERROR,
         "Inputs/outputs differ from the interface contract (--expect)", CONTRACT_DOCS, None,
         detect_contract, family=FAMILY),
]
