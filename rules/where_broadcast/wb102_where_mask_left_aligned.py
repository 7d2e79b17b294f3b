from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from onnxfix import semantics
from onnxfix.context import Context, GraphCtx
from onnxfix.edit import RuleEditor
from onnxfix.findings import Applicability, Severity
from onnxfix.rule import Case, Detection, Fix, FixPlan, Match, Rule
from onnxfix.rules.where_broadcast._common import (
    FAMILY,
    MaskEvidence,
    conditional_terms,
    mask_indexing,
)


@dataclass(frozen=True)
class UnsqueezeCondition:
    axes: tuple[int, ...]
    #: rank and data operand of the Where, for the local semantic check
    rank: int
    data: int


def _left_aligned(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """numpy's (and PyTorch's) ``x[mask] = v``: the mask indexes the leading axes."""
    mask, a, b = feeds["cond"], feeds["a"], feeds["b"]
    data, value = (a, b) if a.ndim >= b.ndim else (b, a)
    out = np.array(data, copy=True)
    sel = mask if data is b else ~mask  # Where(mask, v, x) writes v where mask holds
    out[sel] = np.broadcast_to(value, out.shape)[sel]
    return {"y": out}


class WhereMaskLeftAligned(Rule[UnsqueezeCondition]):
    """## What it does
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
    exactly PyTorch's semantics. The rewritten `Where` is first run on its own
    against numpy's `x[mask] = v` at two settings of distinct dims, then the whole
    model is verified by running it.

    ## In the PyTorch code
    Unsqueeze the mask before indexing (`x.masked_fill(mask.unsqueeze(-1), v)`),
    or export with `dynamo=True`, which lowers the same code correctly.
    """

    code = "WB102"
    name = "where-mask-left-aligned"
    severity = Severity.ERROR
    summary = "Where condition aligned with leading data dims (PyTorch x[mask] = v export)"
    family = FAMILY
    fixable = Applicability.SAFE
    ops = frozenset({"Where"})
    supersedes = ("WB101", "WB103")
    messages = {
        "main": "Where condition '{cond}' {cond_shape} lines up with the leading dims of "
        "'{data}' {data_shape} (PyTorch `x[mask] = v`), but ONNX broadcasts from the right, "
        "so it {fails}",
    }

    def match(self, ctx: Context, g: GraphCtx, node: onnx.NodeProto) -> Match[MaskEvidence]:
        return mask_indexing(g, node)

    def found(self, ctx: Context, g: GraphCtx, node: onnx.NodeProto, ev: MaskEvidence) -> Detection:
        names, shapes = ev.names, ev.shapes
        fails = (
            "fails for every input"
            if ev.check.concrete
            else "fails at run time unless " + "; ".join(conditional_terms(ctx, ev.check))
        )
        message = self.msg(
            "main",
            cond=names[0],
            cond_shape=ctx.fmt(shapes[0]),
            data=names[ev.data],
            data_shape=ctx.fmt(shapes[ev.data]),
            fails=fails,
        )
        return self.report(
            ctx,
            g,
            node,
            message,
            inputs=names,
            fix=Fix(
                f"Unsqueeze the condition on axes {ev.axes}",
                UnsqueezeCondition(tuple(ev.axes), len(shapes[ev.data]), ev.data),
            ),
            advice="unsqueeze the mask before indexing: x.masked_fill(mask.unsqueeze(-1), v), "
            "or export with dynamo=True",
        )

    def apply(self, editor: RuleEditor, plan: FixPlan[UnsqueezeCondition]) -> str | None:
        node = plan.anchor.node
        assert node is not None
        new = editor.unsqueeze(node.input[0], plan.params.axes)
        checked = semantics.check_rewrite(
            [*new, _where_on(new[-1].output[0], node)],
            plan.anchor.graph,
            node,
            {"cond": node.input[0], "a": node.input[1], "b": node.input[2]},
            _left_aligned,
            "numpy's left-aligned x[mask] = v",
            editor,
        )
        editor.insert_before(node, new)
        editor.set_input(node, 0, new[-1].output[0])
        return checked

    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 8] x, bool[B, T, 1] m) => (float[B, T, 8] y) {
                 z = Constant<value = float {0.0}>()
                 y = Where(m, z, x) }""",
            "the mask was unsqueezed",
        ),
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 8] x, bool[T, 8] m) => (float[B, T, 8] y) {
                 z = Constant<value = float {0.0}>()
                 y = Where(m, z, x) }""",
            "the mask lines up with the trailing dims",
        ),
    )
    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, T, 8] x, bool[B, T] m) => (float[B, T, 8] y) {
                 z = Constant<value = float {0.0}>()
                 y = Where(m, z, x) }""",
            "x[mask] = 0 with mask [B, T]",
            dims={"B": (2, 3), "T": (5, 7)},
            reference=lambda f: _left_aligned(
                {"cond": f["m"], "a": np.array(0.0, np.float32), "b": f["x"]}
            ),
        ),
        Case(
            """<ir_version: 8, opset_import: ["" : 11]>
             g (float[T, 4] x, bool[T] m) => (float[T, 4] y) {
                 v = Constant<value = float {1.5}>()
                 y = Where(m, x, v) }""",
            "x[~mask] = v, opset 11 (axes as an attribute)",
            dims={"T": (5, 6)},
            reference=lambda f: _left_aligned(
                {"cond": f["m"], "a": f["x"], "b": np.array(1.5, np.float32)}
            ),
        ),
    )


def _where_on(cond: str, node: onnx.NodeProto) -> onnx.NodeProto:
    return onnx.helper.make_node(
        "Where", [cond, node.input[1], node.input[2]], list(node.output), name=node.name
    )
