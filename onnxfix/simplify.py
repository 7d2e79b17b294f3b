"""``repair --simplify``: onnxsim as a verified step, never trusted on its word.

onnxsim runs on the repaired model **in memory** (never ``onnxsim.simplify(path)``,
which reads whatever path a model names).  Its result is kept only if the
interface is unchanged — every dynamic dim still dynamic — and, after the usual
verification of the written file, its outputs match the unsimplified model's at
planned probes (:func:`onnxfix.verify.against`).  Otherwise the unsimplified
repair is written and the report says why.

Weights: a model with external data has its weights read into memory for onnxsim
(it folds constants through them) and written back as one external data file.
One protobuf holds at most 2 GB, so a model whose weights pass
:data:`MAX_BYTES` is not simplified (the reason is reported).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from onnxfix import io, parity, views

#: onnxsim serialises the whole model (weights included) into one protobuf: 2 GB at most
MAX_BYTES = 2**31 - 2**26


class SimplifyUnavailable(RuntimeError):
    """onnxsim is not installed (``pip install "onnxfix[simplify]"``)."""


def available() -> None:
    try:
        import onnxsim  # noqa: F401
    except ImportError:
        raise SimplifyUnavailable(
            '--simplify needs onnxsim: pip install "onnxfix[simplify]" (or onnxsim)'
        ) from None


@dataclass
class Simplified:
    model: onnx.ModelProto | None
    #: why the unsimplified model is kept, when it is
    skipped: str | None = None
    #: the model onnxsim was given (for the summary)
    before: onnx.ModelProto | None = None

    def summary(self) -> str:
        """``2630 → 1609 nodes (Gemm +121, ..., Constant −776, ...)``: what onnxsim changed."""
        if self.before is None or self.model is None:
            return ""
        return views.op_counts(self.before, self.model)


def simplify(model: onnx.ModelProto, loaded: io.LoadedModel) -> Simplified:
    """onnxsim on a copy of ``model`` (the repaired graph; its weights may still be on
    disk beside ``loaded``); a result that changed the interface is refused."""
    import onnxsim

    if io.has_negative_dims(model):
        return Simplified(
            None,
            "the model declares -1 dims, which abort ONNX's shape inference (onnx 1.23) "
            "that onnxsim runs",
        )
    weights = sum(f.stat().st_size for f in loaded.external_files)
    if weights > MAX_BYTES:
        return Simplified(
            None,
            f"the weights are {weights / 2**30:.1f} GB: onnxsim holds the model in one "
            "protobuf (2 GB at most)",
        )
    m = onnx.ModelProto()
    m.CopyFrom(model)
    if loaded.uses_external_data:  # locations were validated by io.load
        onnx.external_data_helper.load_external_data_for_model(m, str(loaded.path.parent))
    try:
        out, _checked = onnxsim.simplify(m)
    except Exception as exc:  # onnxsim's own failure: keep the repair, say why
        text = " ".join(str(exc).split())[:200]
        return Simplified(None, f"onnxsim failed: {type(exc).__name__}: {text}")
    problems, _notes = parity.interface(model, out)
    if problems:
        return Simplified(None, f"onnxsim changed the interface: {problems[0]}")
    return Simplified(out, None, model)
