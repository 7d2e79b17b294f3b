"""Verification: a repaired model is written only after it has proven itself.

Checks, in order: the full ONNX checker, strict shape inference, the
interface (input/output names, dtypes, dims) against the original, that
onnxruntime loads it, and probe runs.  Probe runs give every dynamic
dimension a *distinct* value other than 1 — 1 is what hides broadcasting bugs
— at two settings, and compare with the original model where it runs, else
with stored reference outputs.  onnxruntime is imported here and only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxfix.contracts import declared_dims, model_ports
from onnxfix.probe import (
    input_symbols,
    load_reference,
    make_inputs,
    probe_ladder,
    setting_of,
)


class VerificationError(Exception):
    def __init__(self, step: str, detail: str) -> None:
        self.step = step
        self.detail = detail
        super().__init__(f"verification failed at {step}: {detail}")


@dataclass
class Step:
    name: str
    detail: str


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)
    settings: list[dict[str, int]] = field(default_factory=list)
    compared_with: str = "nothing"
    max_abs_diff: float = 0.0
    #: per fix, what its rewrite was checked against on its own (before it was applied)
    rewrites: list[str] = field(default_factory=list)

    def add(self, name: str, detail: str) -> None:
        self.steps.append(Step(name, detail))


# --- interface -----------------------------------------------------------------------------


def interface(model: onnx.ModelProto) -> dict[str, list[tuple[str, int, tuple]]]:
    return {
        kind: [(n, dt, tuple(sh)) for n, dt, sh in model_ports(model, kind)]
        for kind in ("inputs", "outputs")
    }


def interface_diff(
    before: onnx.ModelProto, after: onnx.ModelProto, changed_outputs: frozenset[str] = frozenset()
) -> list[str]:
    """Differences in inputs/outputs, ignoring outputs a fix or the user chose to change."""
    a, b = interface(before), interface(after)
    diffs = []
    for kind in ("inputs", "outputs"):
        aa, bb = a[kind], b[kind]
        if kind == "outputs":
            aa = [p for p in aa if p[0] not in changed_outputs]
            bb = [p for p in bb if p[0] not in changed_outputs]
        if aa != bb:
            diffs.append(f"{kind}: {aa} -> {bb}")
    return diffs


# --- running ---------------------------------------------------------------------------------


class ProviderError(Exception):
    """An execution provider that this onnxruntime does not have."""


def session(path_or_bytes: str | Path | bytes, providers: Sequence[str] | None = None) -> Any:
    import onnxruntime as ort  # heavy: imported only when a model is run

    wanted = list(providers or ["CPUExecutionProvider"])
    available = ort.get_available_providers()
    missing = [p for p in wanted if p not in available]
    if missing:
        raise ProviderError(
            f"execution provider {', '.join(missing)} is not available in "
            f"this onnxruntime (available: {', '.join(available)})"
        )
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    src = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    return ort.InferenceSession(src, opts, providers=wanted)


def run(sess: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def first_error_line(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text[:400]


def tolerance(arr: np.ndarray) -> float:
    return 1e-2 if arr.dtype == np.float16 else 1e-4


def compare(
    got: dict[str, np.ndarray], want: dict[str, np.ndarray], skip: frozenset[str] = frozenset()
) -> float:
    """Max abs difference over all outputs; raises on a shape or value mismatch."""
    worst = 0.0
    for name, ref in want.items():
        if name not in got:
            if name in skip:
                continue
            raise VerificationError("compare", f"output '{name}' missing")
        out = got[name]
        if out.shape != ref.shape:
            raise VerificationError(
                "compare", f"output '{name}' has shape {out.shape}, reference {ref.shape}"
            )
        if ref.dtype.kind in "fc":
            a, b = out.astype(np.float64), ref.astype(np.float64)
            same_nan = np.isnan(a) == np.isnan(b)
            if not same_nan.all():
                raise VerificationError("compare", f"output '{name}' differs in NaN positions")
            diff = np.abs(np.nan_to_num(a) - np.nan_to_num(b))
            m = float(diff.max()) if diff.size else 0.0
            if m > tolerance(ref):
                raise VerificationError(
                    "compare", f"output '{name}' differs by {m:.3g} (tolerance {tolerance(ref)})"
                )
            worst = max(worst, m)
        elif not np.array_equal(out, ref):
            raise VerificationError("compare", f"output '{name}' differs")
    return worst


def check_output_dims(
    model: onnx.ModelProto,
    setting: dict[str, int],
    outs: dict[str, np.ndarray],
    symbolic: bool = True,
) -> None:
    """Declared output dims must hold at run time (catches a silently wrong shape).

    With ``symbolic=False`` only concrete dims are checked: used when reference
    outputs fix the shapes exactly, since exporters sometimes declare an output dim
    with an input's symbol that it does not equal (WeNet names both the input
    frames and the subsampled output frames ``T``).
    """
    for vi in model.graph.output:
        arr = outs.get(vi.name)
        dims = declared_dims(vi)
        if arr is None or dims is None:
            continue
        if len(dims) != arr.ndim:
            raise VerificationError(
                "output shape", f"'{vi.name}' has rank {arr.ndim}, declared {len(dims)}"
            )
        for i, (d, got) in enumerate(zip(dims, arr.shape)):
            want = d if isinstance(d, int) else (setting.get(d) if symbolic else None)
            if want is not None and want != got:
                raise VerificationError(
                    "output shape",
                    f"'{vi.name}' axis {i} is {got} at {setting}, declared {d} = {want}",
                )


# --- the whole verification -------------------------------------------------------------------


def verify(
    original_path: Path | None,
    original: onnx.ModelProto,
    candidate_path: Path,
    *,
    reference: Path | None = None,
    probe: bool = True,
    report: Report | None = None,
    original_wrong: str | None = None,
    changed_outputs: frozenset[str] = frozenset(),
) -> Report:
    """Verify the model written at ``candidate_path``; raise :class:`VerificationError`.

    ``original_wrong`` says why the original's outputs cannot be the reference (an
    error was fixed: it fails, or runs and returns the wrong thing).
    """
    rep = report or Report()
    try:
        onnx.checker.check_model(str(candidate_path), full_check=True)
    except Exception as exc:
        raise VerificationError("checker", first_error_line(exc)) from None
    rep.add("checker", "onnx.checker (full) passed")
    cand = onnx.load(str(candidate_path), load_external_data=False)
    try:
        onnx.shape_inference.infer_shapes(cand, check_type=True, strict_mode=True)
    except Exception as exc:
        raise VerificationError("shape inference", first_error_line(exc)) from None
    rep.add("shape inference", "strict shape inference passed")
    diffs = interface_diff(original, cand, changed_outputs)
    if diffs:
        raise VerificationError("interface", "; ".join(diffs))
    rep.add(
        "interface",
        "input/output names, dtypes and dims unchanged"
        + (
            f" (outputs changed on purpose: {', '.join(sorted(changed_outputs))})"
            if changed_outputs
            else ""
        ),
    )
    if not probe:
        rep.add("onnxruntime", "skipped (--no-verify): the model was not loaded or run")
        return rep
    try:
        sess = session(candidate_path)
    except Exception as exc:
        raise VerificationError("onnxruntime load", first_error_line(exc)) from None
    rep.add("onnxruntime load", "InferenceSession created")
    _probe(original_path, cand, sess, reference, rep, original_wrong, changed_outputs)
    return rep


def _probe(
    original_path: Path | None,
    cand: onnx.ModelProto,
    sess: Any,
    reference: Path | None,
    rep: Report,
    original_wrong: str | None,
    changed_outputs: frozenset[str] = frozenset(),
) -> None:
    symbols = input_symbols(cand)
    orig_sess = None
    orig_error = original_wrong
    if original_path is not None and original_wrong is None:
        try:
            orig_sess = session(original_path)
        except Exception as exc:
            orig_error = first_error_line(exc)
    compared = 0
    failures: list[str] = []
    if reference is not None:
        ref_settings = []
        for feeds, want in load_reference(reference):
            setting = setting_of(cand, feeds)
            try:
                got = run(sess, feeds)
                check_output_dims(cand, setting, got, symbolic=False)
            except VerificationError:
                raise
            except Exception as exc:
                raise VerificationError(
                    "probe", f"reference inputs: {first_error_line(exc)}"
                ) from None
            rep.max_abs_diff = max(rep.max_abs_diff, compare(got, want, changed_outputs))
            ref_settings.append(setting)
            compared += 1
        rep.compared_with = f"reference outputs ({compared} cases)"
        if all(len({s[k] for s in ref_settings} - {1}) >= 2 for k in symbols):
            # The reference already varies every dynamic dim over two values other than 1:
            # those are the probe settings (stateful models, e.g. streaming encoders with
            # offsets and caches, only run on consistent inputs that random probes miss).
            rep.settings.extend(ref_settings)
            _report_probe(rep, symbols)
            return
    ladder = probe_ladder(symbols) if symbols else [({}, {})]
    for a, b in ladder:
        results: list[tuple[dict[str, int], dict[str, np.ndarray], dict[str, np.ndarray]]] = []
        for seed, setting in enumerate((a, b) if symbols else (a,)):
            made = make_inputs(cand, setting, seed)
            if made is None:
                break
            feeds = made
            try:
                got = run(sess, feeds)
                check_output_dims(cand, setting, got)
            except VerificationError:
                raise
            except Exception as exc:
                failures.append(f"{setting}: {first_error_line(exc)}")
                break
            results.append((setting, feeds, got))
        else:
            for setting, feeds, got in results:
                rep.settings.append(setting)
                if orig_sess is None:
                    continue
                try:
                    want = run(orig_sess, feeds)
                except Exception as exc:
                    orig_error = first_error_line(exc)
                    continue
                rep.max_abs_diff = max(rep.max_abs_diff, compare(got, want, changed_outputs))
                compared += 1
            break
    if not rep.settings:
        raise VerificationError(
            "probe",
            "the repaired model ran at no probe setting: " + (failures[-1] if failures else "?"),
        )
    if reference is None:
        if compared:
            rep.compared_with = f"original model ({compared} settings)"
        else:
            rep.compared_with = (
                "nothing: the original cannot serve as reference"
                + (f" ({orig_error})" if orig_error else "")
                + "; outputs checked for declared shapes only (pass --reference to compare)"
            )
    _report_probe(rep, symbols)


def _report_probe(rep: Report, symbols: list[str]) -> None:
    desc = ", ".join(str(s) for s in rep.settings) if symbols else "static shapes"
    rep.add(
        "probe",
        f"ran at {desc}; compared with {rep.compared_with}; max abs diff {rep.max_abs_diff:.3g}",
    )
