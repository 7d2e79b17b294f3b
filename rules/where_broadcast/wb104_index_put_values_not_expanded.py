from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx

from onnxfix import semantics
from onnxfix.context import Context, GraphCtx
from onnxfix.edit import RuleEditor
from onnxfix.findings import Applicability, Severity
from onnxfix.rule import Case, Detection, Fix, FixPlan, Match, Rule, fail, ok
from onnxfix.rules.where_broadcast._common import FAMILY
from onnxfix.shapes import Sym, broadcast


@dataclass(frozen=True)
class ScatterEvidence:
    mask: str
    values: str
    data: str
    n_values: int
    #: values that become unused once the ScatterND is replaced
    orphans: tuple[str, ...]


def _assign(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``x[mask] = v`` with ``v`` repeated for every selected row (PyTorch's semantics)."""
    out = np.array(feeds["x"], copy=True)
    out[feeds["mask"]] = np.broadcast_to(feeds["v"], out.shape)[feeds["mask"]]
    return {"y": out}


class IndexPutValuesNotExpanded(Rule[ScatterEvidence]):
    """## What it does
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
    selected elements. `Where(mask, v, x)` is then exactly PyTorch's semantics,
    and the new `Where` is run on its own against numpy's `x[mask] = v` before it
    is accepted. The dead `NonZero`/`Slice` chain is removed.

    ## In the PyTorch code
    Write `x = torch.where(mask.unsqueeze(-1), v, x)`, or export with
    `dynamo=True`.
    """

    code = "WB104"
    name = "index-put-values-not-expanded"
    severity = Severity.ERROR
    summary = (
        "ScatterND from x[mask] = v takes the first N values of v instead of "
        "repeating v per selected row"
    )
    family = FAMILY
    fixable = Applicability.SAFE
    ops = frozenset({"ScatterND"})
    messages = {
        "main": "ScatterND from `x[mask] = v`: updates '{updates}' are the first N values of "
        "'{values}' {values_shape}, but the N selected elements of '{data}' {data_shape} need "
        "one value each (v repeated per selected row); onnxruntime fails when more than "
        "{n} elements are selected and writes wrong values when fewer",
    }

    def match(self, ctx: Context, g: GraphCtx, node: onnx.NodeProto) -> Match[ScatterEvidence]:
        """Recognise ScatterND(x, Transpose(NonZero(m)), Slice(v, 0, N)) from index_put."""
        if len(node.input) < 3:
            return fail("fewer than three inputs", node)
        data, indices, updates = node.input[:3]
        xs, ms_idx, us = g.shape(data), g.shape(indices), g.shape(updates)
        if xs is None or ms_idx is None or us is None or len(ms_idx) != 2:
            return fail("operand shapes unknown or indices not 2-D", node, 1)
        found = g.chain(indices, "Transpose", "NonZero")
        if found is None:
            return fail("the indices are not Transpose(NonZero(mask))", node, 2)
        mask = found[1].input[0]
        if g.dtype(mask) != onnx.TensorProto.BOOL or g.shape(mask) != tuple(xs):
            return fail("the NonZero input is not a boolean mask of the data's shape", found[1], 3)
        if ms_idx[1] != len(xs) or len(us) != 1:
            return fail("the indices do not address single elements", node, 4)
        sl = g.producer(updates)
        if sl is None or sl.op_type != "Slice" or len(sl.input) < 3:
            return fail("the updates are not a Slice", node, 5)
        values = sl.input[0]
        vs = g.shape(values)
        if vs is None or g.value(sl.input[1]) != (0,) or g.value(sl.input[2]) != (ms_idx[0],):
            return fail("the updates are not the first N values of a tensor", sl, 6)
        if len(sl.input) > 3 and sl.input[3] and g.value(sl.input[3]) not in ((0,), (-len(vs),)):
            return fail("the slice is not on the values' first axis", sl, 7)
        if len(vs) > len(xs) or not broadcast([vs, xs]).ok or any(isinstance(d, Sym) for d in vs):
            return fail("the values do not broadcast onto the data", sl, 8)
        n_values = math.prod(vs)  # type: ignore[arg-type]
        if n_values <= 1:
            return fail("a single value repeated is what the slice gives: correct", sl, 9)
        return ok(ScatterEvidence(mask, values, data, n_values, (indices, updates)))

    def found(
        self, ctx: Context, g: GraphCtx, node: onnx.NodeProto, ev: ScatterEvidence
    ) -> Detection:
        names = list(node.input[:3])
        message = self.msg(
            "main",
            updates=names[2],
            values=ev.values,
            values_shape=ctx.fmt(g.shape(ev.values)),
            data=names[0],
            data_shape=ctx.fmt(g.shape(names[0])),
            n=ev.n_values,
        )
        return self.report(
            ctx,
            g,
            node,
            message,
            inputs=names,
            fix=Fix(
                f"Replace the NonZero/ScatterND lowering with Where({ev.mask}, "
                f"{ev.values}, {ev.data})",
                ev,
            ),
            advice="write torch.where(mask.unsqueeze(-1), v, x), or export with dynamo=True",
        )

    def apply(self, editor: RuleEditor, plan: FixPlan[ScatterEvidence]) -> str | None:
        node = plan.anchor.node
        assert node is not None
        p = plan.params
        where = editor.make("Where", [p.mask, p.values, p.data], "where")
        del where.output[:]
        where.output.extend(node.output)
        checked = semantics.check_rewrite(
            [where],
            plan.anchor.graph,
            node,
            {"mask": p.mask, "v": p.values, "x": p.data},
            _assign,
            "numpy's x[mask] = v",
            editor,
        )
        editor.replace(node, where)
        editor.prune(p.orphans)
        return checked

    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 13]>
             g (float[B, T, 4] x, bool[B, T] mask) => (float[B, T, 4] y) {
                 v = Constant<value = float[4] {1.0, 2.0, 3.0, 4.0}>()
                 ax = Constant<value = int64[1] {2}>()
                 mu = Unsqueeze(mask, ax)
                 shp = Shape(x)
                 m = Expand(mu, shp)
                 nz = NonZero(m)
                 idx = Transpose<perm = [1, 0]>(nz)
                 n = Shape<start = 0, end = 1>(idx)
                 zero = Constant<value = int64[1] {0}>()
                 upd = Slice(v, zero, n)
                 y = ScatterND(x, idx, upd) }""",
            "x[mask] = v with a vector v",
            dims={"B": (2, 3), "T": (5, 6)},
            reference=lambda f: _assign(
                {"x": f["x"], "mask": f["mask"], "v": np.arange(1, 5, dtype=np.float32)}
            ),
        ),
    )
    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 13]>
             g (float[B, T, 4] x, bool[B, T, 4] m, float[N] u) => (float[B, T, 4] y) {
                 nz = NonZero(m)
                 idx = Transpose<perm = [1, 0]>(nz)
                 y = ScatterND(x, idx, u) }""",
            "updates computed per element",
        ),
    )
