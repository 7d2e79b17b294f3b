"""Broadcast rules (WB): operands that cannot broadcast, and PyTorch mask indexing
exported as ``Where``.

The TorchScript exporter lowers ``x[mask] = v`` (mask of lower rank than
``x``) to ``Where(mask, v, x)``.  PyTorch's boolean indexing lines the mask up
with the *leading* axes of ``x``; ONNX broadcasting lines shapes up from the
*right*.  With dynamic dims nothing fails until run time, and onnx.checker,
strict shape inference and ``polygraphy check lint`` all pass the model.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx

from onnxfix import edit
from onnxfix.context import Context, GraphCtx, scope_of, source_of
from onnxfix.findings import Applicability, Finding, Fix, Severity
from onnxfix.registry import Rule
from onnxfix.shapes import BROADCAST_OPS, BroadcastCheck, Sym, broadcast

FAMILY = "where-broadcast"

INCOMPATIBLE_DOCS = """\
## What it does
Finds operators with multidirectional (NumPy-style) broadcasting — `Where`,
`Add`, `Mul`, `Equal`, … — whose operand shapes cannot broadcast because two
*concrete* sizes on the same axis (aligned from the right) differ and neither
is 1.

## Why is this bad?
The model cannot run: onnxruntime refuses it at load time ("ShapeInferenceError")
or at the first run ("Attempting to broadcast an axis by a dimension other
than 1").

## Example
```
Add(a: float[2, 3], b: float[4])      # 3 vs 4 on the last axis
```

## Fix safety
No automatic fix: which operand is wrong depends on what the author meant.
When the operands of a `Where` match the signature of PyTorch mask indexing,
WB102 reports it instead, with a safe fix.
"""

MASK_DOCS = """\
## What it does
Finds `Where(cond, X, Y)` nodes whose condition has lower rank than the data
and equals the data's *leading* dims — `cond [B, T]` against `x [B, T, C]` —
while the shapes do not broadcast when aligned from the right. That is the
signature of PyTorch boolean mask indexing, `x[mask] = v`, as lowered by the
TorchScript exporter (`torch.onnx.export(..., dynamo=False)`), e.g. fairseq
HuBERT/wav2vec2's `index_put(x, padding_mask, 0)`.

## Why is this bad?
PyTorch aligns the mask with the leading axes; ONNX broadcasting aligns from
the right. With a dynamic time axis the checker, shape inference and
`polygraphy check lint` pass the model (polygraphy probes with 1, which
broadcasts); onnxruntime then fails at run time:
`Attempting to broadcast an axis by a dimension other than 1. 100 by 768`.

## Example
Before:
```
cond = Cast(padding_mask)            # bool[B, T]
y = Where(cond, 0.0, x)              # x: float[B, T, 768]
```
After `onnxfix repair`:
```
cond_u = Unsqueeze(cond, axes=[2])  # bool[B, T, 1]
y = Where(cond_u, 0.0, x)
```

## Fix safety
Safe when the signature is proven: the condition's dims are shown (by the
symbolic shape algebra) to equal the data's leading dims, and after the
Unsqueeze the operands broadcast for every value of the symbols. That is
exactly PyTorch's semantics. The repair is verified by running the model.

## In the PyTorch code
Unsqueeze the mask before indexing (`x.masked_fill(mask.unsqueeze(-1), v)`),
or export with `dynamo=True`, which lowers the same code correctly.
"""

CONDITIONAL_DOCS = """\
## What it does
Finds broadcasting operators whose operands broadcast only for particular
values of a dynamic dimension: a dim that varies with the inputs (`T`, or a
size computed from it) sits on the same axis as a fixed size other than 1,
e.g. `cond [B, S]` against `x [B, T, 768]` requires `S == 768`.

## Why is this bad?
The model runs at the one size it was traced at (or with 1, which is what
most probing tools feed) and fails at every other size.

## Example
```
Add(x: float[B, T, 256], pos: float[1, 512, 256])   # only if T == 512 (or 1)
```

## Fix safety
No automatic fix unless the operands prove the mask-indexing signature
(then WB102 reports it with a safe fix). Review the exporting code.
"""

SCATTER_DOCS = """\
## What it does
Finds the TorchScript exporter's other lowering of `x[mask] = v`, used when
`v` is a tensor with several elements (e.g. a learned padding vector):
the mask is expanded to `x`'s shape, `NonZero` lists the N selected
*elements*, and `ScatterND` writes `Slice(v, 0, N)` to them. ScatterND needs
exactly N updates, one per element, but the slice holds at most `len(v)`
values, taken in order instead of repeated for every selected row.

## Why is this bad?
onnxruntime fails as soon as more than `len(v)` elements are selected
("updates tensor should have shape equal to indices.shape[:-1] + …"), and
writes wrong values when fewer are; it is right only when exactly one row is
selected. Nothing complains before run time.

## Example
Before:
```
m   = Expand(Unsqueeze(mask, [2]), Shape(x))      # bool[B, T, C]
idx = Transpose(NonZero(m))                      # int64[N, 3]
upd = Slice(v, [0], [N])                         # v: float[C] -> [min(C, N)]
y   = ScatterND(x, idx, upd)
```
After `onnxfix repair`:
```
y   = Where(m, v, x)                              # v broadcasts over the selected rows
```

## Fix safety
Safe when the pattern is proven: the indices come from `NonZero` of a boolean
mask with exactly `x`'s shape, the updates are a leading slice of a tensor
whose shape broadcasts onto `x`, and the slice length is the number of
selected elements. `Where(mask, v, x)` is then exactly PyTorch's semantics.
The dead `NonZero`/`Slice` chain is removed.

## In the PyTorch code
Write `x = torch.where(mask.unsqueeze(-1), v, x)`, or export with
`dynamo=True`.
"""


def _data_input(shapes: list) -> int:
    """Index of the highest-rank value input of a Where (1 = X, 2 = Y)."""
    r1 = len(shapes[1]) if shapes[1] is not None else -1
    r2 = len(shapes[2]) if shapes[2] is not None else -1
    return 1 if r1 >= r2 else 2


def _mask_signature(cond: tuple, data: tuple) -> bool:
    """cond's dims equal data's leading dims: PyTorch boolean-index alignment."""
    rc = len(cond)
    if rc == 0 or rc >= len(data):
        return False
    return all(c == d or c == 1 for c, d in zip(cond, data[:rc]))


def _conditional_terms(ctx: Context, check: BroadcastCheck) -> list[str]:
    """Human-readable conditions under which the conflicting axes would broadcast."""
    terms = []
    for _axis, dims in check.conflicts:
        syms = [d for d in dims if isinstance(d, Sym)]
        ints = [d for d in dims if isinstance(d, int)]
        for s in syms:
            if ints:
                terms.append(f"{ctx.fmt_dim(s)} == {ints[0]} or {ctx.fmt_dim(s)} == 1")
            else:
                others = [ctx.fmt_dim(o) for o in dims if o != s]
                terms.append(f"{ctx.fmt_dim(s)} == {' == '.join(others)} (or one is 1)")
                break
    return terms


def _varying_vs_fixed(check: BroadcastCheck) -> bool:
    """A conflict binds an input-dependent dim to a fixed size > 1."""
    for _axis, dims in check.conflicts:
        if any(isinstance(d, int) and d > 1 for d in dims) and any(
            isinstance(d, Sym) and d.varies for d in dims
        ):
            return True
    return False


def _location(ctx: Context, g: GraphCtx, node: onnx.NodeProto, names: list[str],
              shapes: list) -> dict:
    return {
        "graph": g.path,
        "node": node.name or f"<{node.op_type} producing {node.output[0]}>",
        "op_type": node.op_type,
        "scope": scope_of(node),
        "source": source_of(node),
        "inputs": [(n, ctx.fmt(s)) for n, s in zip(names, shapes)],
        "node_ref": node,
        "graph_ref": g.graph,
    }


def _operands(g: GraphCtx, node: onnx.NodeProto) -> tuple[list[str], list] | None:
    names = [i for i in node.input if i]
    shapes = [g.shape(i) for i in names]
    if len(names) < 2 or any(s is None for s in shapes):
        return None
    return names, shapes


def detect_incompatible(ctx: Context) -> Iterable[Finding]:
    for g, node in ctx.nodes():
        if node.op_type not in BROADCAST_OPS or node.domain not in ("", "ai.onnx"):
            continue
        ops = _operands(g, node)
        if ops is None:
            continue
        names, shapes = ops
        check = broadcast(shapes)
        if not check.concrete:
            continue
        if node.op_type == "Where" and _mask_finding(g, node, names, shapes) is not None:
            continue  # WB102 says it better, with a fix
        axes = ", ".join(
            f"axis -{axis}: {' vs '.join(map(ctx.fmt_dim, dims))}"
            for axis, dims in check.conflicts
        )
        desc = ", ".join(f"{n} {ctx.fmt(s)}" for n, s in zip(names, shapes))
        yield Finding(
            rule="WB101",
            name="broadcast-incompatible",
            severity=Severity.ERROR,
            message=f"{node.op_type} operands cannot broadcast ({axes}): {desc}",
            advice="no automatic fix: decide which operand has the wrong shape",
            **_location(ctx, g, node, names, shapes),
        )


def _mask_finding(g: GraphCtx, node: onnx.NodeProto, names: list[str], shapes: list
                  ) -> tuple[int, list[int], BroadcastCheck] | None:
    """(data index, unsqueeze axes, check) if the Where is the mask-indexing bug."""
    if node.op_type != "Where" or len(shapes) != 3:
        return None
    check = broadcast(shapes)
    if check.ok:
        return None
    di = _data_input(shapes)
    cond, data = tuple(shapes[0]), tuple(shapes[di])
    if not _mask_signature(cond, data):
        return None
    axes = list(range(len(cond), len(data)))
    fixed_cond = cond + (1,) * len(axes)
    after = broadcast([fixed_cond, shapes[1], shapes[2]])
    if not after.ok:
        return None
    return di, axes, check


def detect_mask_indexing(ctx: Context) -> Iterable[Finding]:
    for g, node in ctx.nodes():
        if node.op_type != "Where" or node.domain not in ("", "ai.onnx"):
            continue
        ops = _operands(g, node)
        if ops is None:
            continue
        names, shapes = ops
        hit = _mask_finding(g, node, names, shapes)
        if hit is None:
            continue
        di, axes, check = hit
        cond, data = shapes[0], shapes[di]
        when = _conditional_terms(ctx, check)
        fails = (
            "fails for every input" if check.concrete
            else "fails at run time unless " + "; ".join(when)
        )
        msg = (
            f"Where condition '{names[0]}' {ctx.fmt(cond)} lines up with the leading dims "
            f"of '{names[di]}' {ctx.fmt(data)} (PyTorch `x[mask] = v`), but ONNX broadcasts "
            f"from the right, so it {fails}"
        )
        yield Finding(
            rule="WB102",
            name="where-mask-left-aligned",
            severity=Severity.ERROR,
            message=msg,
            fix=Fix(f"Unsqueeze the condition on axes {axes}", Applicability.SAFE,
                    {"axes": axes}),
            advice="unsqueeze the mask before indexing: x.masked_fill(mask.unsqueeze(-1), v), "
            "or export with dynamo=True",
            **_location(ctx, g, node, names, shapes),
        )


def detect_conditional(ctx: Context) -> Iterable[Finding]:
    for g, node in ctx.nodes():
        if node.op_type not in BROADCAST_OPS or node.domain not in ("", "ai.onnx"):
            continue
        ops = _operands(g, node)
        if ops is None:
            continue
        names, shapes = ops
        check = broadcast(shapes)
        if check.ok or check.concrete or not _varying_vs_fixed(check):
            continue
        if _mask_finding(g, node, names, shapes) is not None:
            continue
        desc = ", ".join(f"'{n}' {ctx.fmt(s)}" for n, s in zip(names, shapes))
        yield Finding(
            rule="WB103",
            name="broadcast-conditional",
            severity=Severity.WARNING,
            message=f"{node.op_type} operands {desc} broadcast only if "
            + "; ".join(_conditional_terms(ctx, check)),
            advice="no automatic fix: check the exporting code for this size "
            "(a fixed-size table or a mask built for another axis)",
            **_location(ctx, g, node, names, shapes),
        )


def fix_mask_indexing(model: onnx.ModelProto, finding: Finding, edit_ctx: edit.EditContext
                      ) -> None:
    graph, idx = edit_ctx.graph, edit_ctx.index
    node = graph.node[idx]
    cond = node.input[0]
    new, out = edit.unsqueeze_nodes(edit_ctx.namer, edit_ctx.opset, cond,
                                    finding.fix.params["axes"], "WB102", node)
    node.input[0] = out
    edit.insert_before(graph, idx, new)


def _scatter_pattern(g: GraphCtx, node: onnx.NodeProto) -> dict | None:
    """Recognise ScatterND(x, Transpose(NonZero(m)), Slice(v, 0, N)) from index_put."""
    if node.op_type != "ScatterND" or len(node.input) < 3:
        return None
    data, indices, updates = node.input[:3]
    xs, ms_idx, us = g.shape(data), g.shape(indices), g.shape(updates)
    if xs is None or ms_idx is None or us is None or len(ms_idx) != 2:
        return None
    found = g.chain(indices, "Transpose", "NonZero")
    if found is None:
        return None
    mask = found[1].input[0]
    if g.dtype(mask) != onnx.TensorProto.BOOL or g.shape(mask) != tuple(xs):
        return None
    if ms_idx[1] != len(xs) or len(us) != 1:
        return None  # indices address single elements: one update per selected element
    sl = g.producer(updates)
    if sl is None or sl.op_type != "Slice" or len(sl.input) < 3:
        return None
    values = sl.input[0]
    vs = g.shape(values)
    if vs is None or g.value(sl.input[1]) != (0,) or g.value(sl.input[2]) != (ms_idx[0],):
        return None
    if len(sl.input) > 3 and sl.input[3] and g.value(sl.input[3]) not in ((0,), (-len(vs),)):
        return None
    if len(vs) > len(xs) or not broadcast([vs, xs]).ok or any(isinstance(d, Sym) for d in vs):
        return None
    n_values = 1
    for d in vs:
        n_values *= d
    if n_values <= 1:
        return None  # a single value repeated is what the slice gives: correct
    return {"mask": mask, "values": values, "data": data, "n_values": n_values,
            "orphans": [indices, updates]}


def detect_scatter_values(ctx: Context) -> Iterable[Finding]:
    for g, node in ctx.nodes():
        if node.domain not in ("", "ai.onnx"):
            continue
        hit = _scatter_pattern(g, node)
        if hit is None:
            continue
        names = list(node.input[:3])
        shapes = [g.shape(n) for n in names]
        vs = g.shape(hit["values"])
        msg = (
            f"ScatterND from `x[mask] = v`: updates '{names[2]}' are the first N values of "
            f"'{hit['values']}' {ctx.fmt(vs)}, but the N selected elements of "
            f"'{names[0]}' {ctx.fmt(shapes[0])} need one value each (v repeated per selected "
            "row); onnxruntime fails "
            f"when more than {hit['n_values']} elements are selected and writes wrong values "
            "when fewer"
        )
        yield Finding(
            rule="WB104",
            name="index-put-values-not-expanded",
            severity=Severity.ERROR,
            message=msg,
            fix=Fix(f"Replace the NonZero/ScatterND lowering with Where({hit['mask']}, "
                    f"{hit['values']}, {hit['data']})", Applicability.SAFE, hit),
            advice="write torch.where(mask.unsqueeze(-1), v, x), or export with dynamo=True",
            **_location(ctx, g, node, names, shapes),
        )


def fix_scatter_values(model: onnx.ModelProto, finding: Finding, edit_ctx: edit.EditContext
                       ) -> None:
    node = edit_ctx.graph.node[edit_ctx.index]
    p = finding.fix.params
    where = onnx.helper.make_node(
        "Where", [p["mask"], p["values"], p["data"]], list(node.output),
        name=edit_ctx.namer(f"{node.name or 'ScatterND'}/onnxfix_where"),
    )
    edit.tag(where, "WB104", node)
    where.doc_string = node.doc_string
    node.CopyFrom(where)
    edit_ctx.upstream(p["orphans"])


RULES = [
    Rule(
        code="WB101",
        name="broadcast-incompatible",
        severity=Severity.ERROR,
        summary="Operands of a broadcasting op have different concrete sizes on one axis",
        docs=INCOMPATIBLE_DOCS,
        fixable=None,
        detect=detect_incompatible,
        family=FAMILY,
    ),
    Rule(
        code="WB102",
        name="where-mask-left-aligned",
        severity=Severity.ERROR,
        summary="Where condition aligned with leading data dims (PyTorch x[mask] = v export)",
        docs=MASK_DOCS,
        fixable=Applicability.SAFE,
        detect=detect_mask_indexing,
        fix=fix_mask_indexing,
        family=FAMILY,
    ),
    Rule(
        code="WB103",
        name="broadcast-conditional",
        severity=Severity.WARNING,
        summary="Operands broadcast only when a dynamic dim takes one particular size",
        docs=CONDITIONAL_DOCS,
        fixable=None,
        detect=detect_conditional,
        family=FAMILY,
    ),
    Rule(
        code="WB104",
        name="index-put-values-not-expanded",
        severity=Severity.ERROR,
        summary="ScatterND from x[mask] = v takes the first N values of v instead of "
        "repeating v per selected row",
        docs=SCATTER_DOCS,
        fixable=Applicability.SAFE,
        detect=detect_scatter_values,
        fix=fix_scatter_values,
        family=FAMILY,
    ),
]
