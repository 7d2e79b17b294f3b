"""The Loop lowering of ``repeat_interleave`` (repeats computed from a size)."""

from __future__ import annotations

import onnx

from onnxfix.context import Context, GraphCtx
from onnxfix.rule import Match, fail, ok
from onnxfix.rules.repeat_pattern._common import (
    Repeat,
    attr,
    axis_of,
    intended,
    uniform_fill,
)
from onnxfix.shapes import Dim, Shape, d_mul

LOOP_DOCS_HEAD = """## What it does
    Finds `repeat_interleave` lowered as a `Loop` over `SplitToSequence(x)` with
    `SequenceEmpty`/`SequenceInsert`/`ConcatFromSequence` (repeats computed from a
    size, e.g. `torch.full((x.size(1),), r)`), rebuilds input, axis and repeats,
    and evaluates the loop body's shape symbolically.
"""

#: the most slices whose repeat counts a finding lists one by one
_LISTED = 64


def match_loop(ctx: Context, g: GraphCtx, node: onnx.NodeProto) -> Match[Repeat]:  # noqa: C901 - one reason per way the pattern can differ
    if int(attr(node, "new_axis", 0)):
        return fail("ConcatFromSequence with new_axis", node)
    loop = g.producer(node.input[0])
    if loop is None or loop.op_type != "Loop" or len(loop.input) != 3:
        return fail("the sequence does not come from a Loop with one carried value", node, 1)
    empty = g.producer(loop.input[2])
    if empty is None or empty.op_type != "SequenceEmpty":
        return fail("the Loop does not start from SequenceEmpty", loop, 2)
    body = next(a.g for a in loop.attribute if a.name == "body")
    inserts = [
        n for n in body.node if n.op_type == "SequenceInsert" and n.input[0] == body.input[2].name
    ]
    if len(inserts) != 1:
        return fail("the body does not insert once into the carried sequence", loop, 3)
    producers = {o: n for n in body.node for o in n.output if o}
    chain = []
    value = inserts[0].input[1]
    for op in ("Reshape", "Expand", "Unsqueeze"):
        p = producers.get(value)
        if p is None or p.op_type != op:
            return fail("the inserted value is not Reshape(Expand(Unsqueeze(..)))", loop, 4)
        chain.append(p)
        value = p.input[0]
    at_x = value
    at_x_node = producers.get(at_x)
    others = [n for n in body.node if n.op_type == "SequenceAt" and n.output[0] != at_x]
    if at_x_node is None or at_x_node.op_type != "SequenceAt" or len(others) != 1:
        return fail("the body does not read one slice of x and one repeat count", loop, 5)
    at_r = others[0].output[0]
    seq_x = g.producer(at_x_node.input[0])
    seq_r = g.producer(others[0].input[0])
    if seq_x is None or seq_r is None or "SplitToSequence" != seq_x.op_type != seq_r.op_type:
        return fail("the slices do not come from SplitToSequence", loop, 6)
    xs = g.shape(seq_x.input[0])
    if xs is None:
        return fail("the shape of the repeated tensor is unknown", seq_x, 7)
    axis = axis_of(seq_x, len(xs))
    if axis is None:
        return fail("the split axis is outside the rank of the tensor", seq_x, 7)
    if axis_of(node, len(xs)) != axis:
        return fail("the split and the concatenation are on different axes", node, 7)
    r = uniform_fill(g, seq_r.input[0])
    n = xs[axis]
    # one count per slice, listed only for a slice count fit to be listed: the counts are
    # all ``r`` (``uniform`` says so), and a dim of 2**62 made a list that exhausted memory
    listed = r is not None and isinstance(n, int) and 0 <= n <= _LISTED
    repeats = tuple([r] * n) if listed else None
    # evaluate one iteration with the slice shape and repeat value seeded
    slice_shape = list(xs)
    slice_shape[axis] = 1
    seeds: dict[str, tuple[Shape, tuple[Dim, ...] | None]] = {at_x: (tuple(slice_shape), None)}
    if r is not None:
        seeds[at_r] = ((1,), (r,))
    per_iter = g.evaluate_body(body, seeds).shape(inserts[0].input[1])
    actual = None
    if per_iter is not None and len(per_iter) == len(xs):
        a = list(per_iter)
        a[axis] = d_mul(n, per_iter[axis])
        actual = tuple(a)
    return ok(
        Repeat(
            x=seq_x.input[0],
            axis=axis,
            repeats=repeats,
            uniform=r,
            actual=actual,
            intended=intended(xs, axis, repeats, r),
            nodes=(loop.name or "Loop", node.name or "ConcatFromSequence"),
            orphans=tuple(node.input),
            rank=len(xs),
            dtype=g.dtype(seq_x.input[0]) or onnx.TensorProto.FLOAT,
        )
    )


def loop_text(
    x: str, y: str, reps: list[int], axis: int, head: list[int], tail: list[int], target: list[int]
) -> str:
    """ONNX text of the TorchScript Loop lowering (for the rules' own cases): slices of
    ``x`` on ``axis``, each Unsqueeze -> Expand([*head, r, *tail]) -> Reshape(target)."""

    def ints(v: list[int]) -> str:
        return f"int64[{len(v)}] {{{', '.join(map(str, v))}}}"

    n = len(reps)
    tail_line = f"tail = Constant<value = {ints(tail)}>()" if tail else ""
    return f"""<ir_version: 8, opset_import: ["" : 13]>
        g (float[{x}] x) => (float[{y}] y) {{
            reps = Constant<value = {ints(reps)}>()
            ones = Constant<value = {ints([1] * n)}>()
            seq_r = SplitToSequence<axis = 0>(reps, ones)
            seq_x = SplitToSequence<axis = {axis}>(x, ones)
            n = Constant<value = int64 {{{n}}}>()
            t = Constant<value = bool {{1}}>()
            empty = SequenceEmpty<dtype = 1>()
            out = Loop(n, t, empty) <body = body (int64 i, bool c, seq(float) s)
                                             => (bool c_out, seq(float) s_out) {{
                r = SequenceAt(seq_r, i)
                xi = SequenceAt(seq_x, i)
                ax = Constant<value = {ints([axis + 1])}>()
                u = Unsqueeze(xi, ax)
                head = Constant<value = {ints(head)}>()
                {tail_line}
                tgt = Concat<axis = 0>(head, r{", tail" if tail else ""})
                e = Expand(u, tgt)
                rt = Constant<value = {ints(target)}>()
                rs = Reshape(e, rt)
                s_out = SequenceInsert(s, rs)
                c_out = Identity(c)
            }}>
            y = ConcatFromSequence<axis = {axis}>(out) }}"""


#: a Loop that returns [1, 2T, 2, 8] where repeat_interleave gives [1, 4, T, 8]
WRONG_LOOP = loop_text("1, 2, T, 8", "1, 4, T, 8", [2, 2], 1, [1, 1], [1, 8], [1, -1, 0, 8])
#: a Loop on the last axis of [T, 3]: the right result, slowly
RIGHT_LOOP = loop_text("T, 3", "T, 6", [2, 2, 2], 1, [1, 1], [], [0, -1])
