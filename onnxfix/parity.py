"""Is an optimized model still the model that was exported?  (``check --against``)

Optimizers exit 0 after freezing every dynamic dim to the size they happened to
see (onnxslim, ``polygraphy surgeon sanitize --fold-constants``), after dropping
an input, or after folding something they got wrong.  Two checks settle it:

* the interface: the same input and output names and dtypes, and every dim the
  original leaves dynamic still dynamic (a dim that became a number is an error
  naming the axis and the value);
* the values: both models run on the same inputs at planned probe settings (every
  dynamic dim at distinct values of at least 2) and their outputs agree within a
  tolerance.  On a mismatch, :func:`first_difference` exposes the intermediate
  values both graphs name and returns the first, in graph order, that differs —
  what ``polygraphy --onnx-outputs mark all`` does by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from onnxfix import io
from onnxfix.contracts import dtype_name, model_ports

#: optimizers fold and reorder arithmetic: relative error is allowed on top of the
#: dtype's absolute tolerance (``--rtol`` / ``--atol`` override both)
DEFAULT_RTOL = 1e-3


def _dynamic(d: int | str) -> bool:
    return isinstance(d, str) or d < 0  # a name, '?' (unnamed) or -1


def interface(original: onnx.ModelProto, candidate: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """(problems, notes): what breaks a caller of the original, and what merely differs."""
    problems: list[str] = []
    notes: list[str] = []
    for kind in ("inputs", "outputs"):
        word = kind[:-1]
        have = {n: (dt, sh) for n, dt, sh in model_ports(candidate, kind)}
        want = model_ports(original, kind)
        for name, dtype, shape in want:
            if name not in have:
                problems.append(f"{word} '{name}' is gone")
                continue
            dt, sh = have.pop(name)
            if dt != dtype:
                problems.append(
                    f"{word} '{name}' has dtype {dtype_name(dt)}; the original's is "
                    f"{dtype_name(dtype)}"
                )
            if shape and sh and len(shape) != len(sh):
                problems.append(
                    f"{word} '{name}' has rank {len(sh)}; the original's is {len(shape)}"
                )
                continue
            for axis, (a, b) in enumerate(zip(shape, sh)):
                if _dynamic(a) and not _dynamic(b):
                    problems.append(
                        f"{word} '{name}' axis {axis} is fixed to {b}; it is dynamic ({a}) in "
                        "the original (an optimizer froze it to the size it saw)"
                    )
                elif not _dynamic(a) and a != b:
                    problems.append(f"{word} '{name}' axis {axis} is {b}; the original's is {a}")
                elif isinstance(a, str) and isinstance(b, str) and a != b and "?" not in (a, b):
                    notes.append(f"{word} '{name}' axis {axis} is named {b}; the original's is {a}")
        for name in have:
            problems.append(f"{word} '{name}' is new: the original has no such {word}")
        if not problems and [p[0] for p in want] != [p[0] for p in model_ports(candidate, kind)]:
            notes.append(f"the {kind} are in another order (callers that feed by name are fine)")
    return problems, notes


def _exposed(m: onnx.ModelProto, types: dict[str, int], names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``m`` with ``names`` (typed intermediate values) added as graph outputs."""
    out = onnx.ModelProto()
    out.CopyFrom(m)
    have = {o.name for o in out.graph.output}
    for name in names:
        if name not in have:
            out.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
    return out


def _value_types(m: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(io.inference_safe(m))
    except Exception:
        inferred = m
    g = inferred.graph
    return {
        vi.name: vi.type.tensor_type.elem_type
        for vi in (*g.value_info, *g.output, *g.input)
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type
    }


#: at most this many intermediate values are exposed (memory stays bounded)
MAX_EXPOSED = 4000


def first_difference(
    path: str,
    other: str,
    feeds: dict[str, np.ndarray],
    providers: Sequence[str],
    atol: float | None,
    rtol: float,
) -> str | None:
    """The first value, in ``path``'s graph order, that both models compute under the same
    name and that differs; None when no shared value differs (or none is shared)."""
    from onnxfix.runner import session
    from onnxfix.verify import VerificationError, compare

    a = onnx.load(path, load_external_data=False)
    b = onnx.load(other, load_external_data=False)
    ta, tb = _value_types(a), _value_types(b)
    made_b = {o for n in b.graph.node for o in n.output if o}
    producer = {}
    order = []
    for n in a.graph.node:
        for o in n.output:
            if o and o in made_b and ta.get(o) and ta.get(o) == tb.get(o):
                producer[o] = n
                order.append(o)
    order = order[:MAX_EXPOSED]
    if not order:
        return None
    try:
        sa = session(path, providers, _exposed(a, ta, order))
        sb = session(other, providers, _exposed(b, tb, order))
        got = dict(zip(order, sa.run(order, feeds)))
        want = dict(zip(order, sb.run(order, feeds)))
    except Exception as exc:  # a model that will not expose its values: say so, do not fail
        return f"(could not expose intermediate values: {str(exc).splitlines()[0][:160]})"
    for name in order:
        try:
            compare({name: got[name]}, {name: want[name]}, atol=atol, rtol=rtol)
        except VerificationError as exc:
            n = producer[name]
            detail = exc.detail.replace(f"output '{name}' ", "")
            return f"value '{name}' made by node '{n.name or n.op_type}' ({n.op_type}) {detail}"
    return None
