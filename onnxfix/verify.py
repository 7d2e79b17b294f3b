"""Verification: a repaired model is written only after it has proven itself.

Checks, in order: the full ONNX checker, strict shape inference, the
interface (input/output names, dtypes, dims) against the original, then, in a
child process with limits (:mod:`onnxfix.runner`): onnxruntime loads it, and
probe runs.  Probes are planned (:mod:`onnxfix.plan`) so that every dim the
graph derives is at least 2 and the dims each fixed node is about take
distinct values at two settings — 1 is what hides broadcasting bugs.  Outputs
are compared with the original model where it can be trusted, else with stored
reference outputs; each rewrite was also checked on its own against the
semantics it restores (:mod:`onnxfix.semantics`) before it was applied.

While a repair's weights are still being copied beside the output (a 1.2 GB copy takes
about as long as onnxruntime's session on it), the child reads them from the files they
are copied from and starts before the graph checks, which run meanwhile: the copies are
then shown to hold the same bytes (:meth:`onnxfix.staging.Staged.finish`) before
anything is renamed.  A step that fails stops the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxfix import diagnose, io, progress, runner
from onnxfix import plan as planner
from onnxfix.contracts import declared_dims, model_ports
from onnxfix.probe import input_symbols, load_reference, setting_of
from onnxfix.shapes import Dim, Sym, evaluate


class VerificationError(Exception):
    """A failed step: ``cause`` in our words when we can tell it, then the tool's text."""

    def __init__(self, step: str, detail: str, cause: str | None = None) -> None:
        self.step = step
        self.detail = diagnose.shorten(detail)
        self.cause = cause
        super().__init__(str(self))

    def __str__(self) -> str:
        if not self.cause:
            return f"verification failed at {self.step}: {self.detail}"
        who = {"checker": "onnx.checker", "shape inference": "ONNX shape inference"}.get(
            self.step, "onnxruntime" if self.step in ("onnxruntime load", "probe") else None
        )
        said = f"; {who} says: {self.detail}" if who else f" ({self.detail})"
        return f"verification failed at {self.step}: {self.cause}{said}"

    def explained(self, model: onnx.ModelProto | None) -> VerificationError:
        """This failure with its cause, read from the candidate model where we can."""
        if self.cause is None:
            self.cause = diagnose.cause(self.step, self.detail, model)
        return self


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
    #: per fix, whether the dims its node is about were at least 2 when the model ran
    exercised: list[str] = field(default_factory=list)

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


def tolerance(arr: np.ndarray) -> float:
    return 1e-2 if arr.dtype == np.float16 else 1e-4


def compare(
    got: dict[str, np.ndarray],
    want: dict[str, np.ndarray],
    skip: frozenset[str] = frozenset(),
    atol: float | None = None,
    rtol: float = 0.0,
) -> float:
    """Max abs difference over all outputs; raises on a shape or value mismatch.

    An element matches when ``|got - want| <= atol + rtol * |want|``; ``atol`` defaults
    to the dtype's (:func:`tolerance`), ``rtol`` to 0 (a repair changes a few nodes, so
    outputs should agree to the last bits that reordering allows)."""
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
            tol = tolerance(ref) if atol is None else atol
            bad = diff > tol + rtol * np.abs(np.nan_to_num(b))
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                bound = f"{tol:g}" + (f" + {rtol:g}·|ref|" if rtol else "")
                raise VerificationError(
                    "compare",
                    f"output '{name}' differs by up to {m:.3g} (tolerance {bound}; "
                    f"first at index {list(where)})",
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
            if isinstance(d, int) and d < 0:  # -1: declared dynamic (Paddle2ONNX)
                continue
            want = d if isinstance(d, int) else (setting.get(d) if symbolic else None)
            if want is not None and want != got:
                raise VerificationError(
                    "output shape",
                    f"'{vi.name}' axis {i} is {got} at {setting}, declared {d} = {want}",
                )


# --- the whole verification -------------------------------------------------------------------


@dataclass(frozen=True)
class Fixed:
    """A fix as verification sees it: which node, and the dims its node's inputs had."""

    label: str
    dims: tuple[Dim, ...]


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
    ctx: Any = None,
    fixed: Sequence[Fixed] = (),
    external_files: Sequence[Path] = (),
    ready: Callable[[], None] | None = None,
    sources: tuple[Path, dict[str, str]] | None = None,
) -> Report:
    """Verify the model written at ``candidate_path``; raise :class:`VerificationError`.

    ``ready`` returns once ``external_files`` are complete: the checks that read only the
    graph run before it is called (while the weights are still being copied).  With
    ``sources`` (:attr:`onnxfix.io.Candidate.sources`), onnxruntime reads the weights
    from the files being copied, so that its session is built during the copy (on a
    1.2 GB model each takes 1-2 s); the copies are compared with them before anything is
    renamed.

    ``original_wrong`` says why the original's outputs cannot be the reference (an
    error was fixed: it fails, or runs and returns the wrong thing).  ``ctx`` is the
    analysis of the candidate (for planning probes); ``fixed`` the fixes made.
    """
    rep = report or Report()
    try:
        cand = onnx.load(str(candidate_path), load_external_data=False)
        if not probe:
            _static(candidate_path, cand, original, changed_outputs, rep)
            rep.add("onnxruntime", "skipped (--no-verify): the model was not loaded or run")
            return rep
        if sources is None:
            # the session reads the copies: the graph checks run while they land
            _static(candidate_path, cand, original, changed_outputs, rep)
            if ready is not None:
                ready()
        probes = _Job(
            original_path, cand, candidate_path, reference, original_wrong, changed_outputs,
            ctx, fixed, external_files, sources,
        )  # fmt: skip
        with probes.start() as started:
            if sources is not None:
                # onnxruntime reads the weights where they are copied from: its session
                # (1-2 s for a 1.2 GB model) is built while the graph checks run here
                _static(candidate_path, cand, original, changed_outputs, rep)
            probes.report(probes.outcomes(started), rep)
        if sources is not None and ready is not None:
            ready()  # the copy's error, if any, before the report says all passed
    except VerificationError as exc:
        try:
            loaded: onnx.ModelProto | None = onnx.load(
                str(candidate_path), load_external_data=False
            )
        except Exception:  # the failure itself is the news; a cause is a bonus
            loaded = None
        exc = exc.explained(loaded)
        if exc.cause is not None and exc.cause == diagnose.structural_cause(original):
            exc.cause += " (so does the input model: no fix here removes it)"
        raise exc from None
    return rep


def _static(
    candidate_path: Path,
    cand: onnx.ModelProto,
    original: onnx.ModelProto,
    changed_outputs: frozenset[str],
    rep: Report,
) -> None:
    """The checks that run nothing: checker, strict inference, interface (``cand`` is the
    graph at ``candidate_path``, read without weights)."""
    progress.phase("verifying: checker and strict shape inference")
    # full_check is the checker plus strict inference, which aborts the process on a
    # declared -1 dim (io.inference_safe): then strict inference runs below, on a safe copy
    full = not io.has_negative_dims(cand)
    try:
        onnx.checker.check_model(str(candidate_path), full_check=full)
    except Exception as exc:
        raise VerificationError("checker", first_error_line(exc)) from None
    rep.add("checker", "onnx.checker (full) passed" if full else "onnx.checker passed")
    try:
        onnx.shape_inference.infer_shapes(
            io.inference_safe(cand), check_type=True, strict_mode=True
        )
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


def _planned(ctx: Any, cand: onnx.ModelProto, fixed: Sequence[Fixed]) -> planner.Plan:
    """Probe settings for the candidate, focused on the dims its fixed nodes are about (one
    empty setting without an analysis)."""
    if ctx is None:
        return planner.Plan([planner.Setting({})])
    return planner.plan(ctx, input_symbols(cand), focus=[d for f in fixed for d in f.dims])


def _runs(
    cand: onnx.ModelProto, reference: Path | None, settings: list[planner.Setting]
) -> tuple[list[runner.Run], bool]:
    """Reference cases first; planned settings too unless the reference already varies
    every dynamic dim over two values other than 1 (stateful models, e.g. streaming
    encoders with offsets and caches, only run on consistent inputs)."""
    runs: list[runner.Run] = []
    symbols = input_symbols(cand)
    if reference is not None:
        cases = load_reference(reference)
        runs += [runner.Run({}, reference_case=i) for i in range(len(cases))]
        seen = [setting_of(cand, feeds) for feeds, _ in cases]
        if all(len({s.get(k) for s in seen} - {1, None}) >= 2 for k in symbols):
            return runs, True
    runs += [runner.Run(s.dims, seed=i) for i, s in enumerate(settings)]
    return runs, False


@dataclass
class _Job:
    """The onnxruntime step: the planned probes of the candidate, started in a child
    (:class:`onnxfix.runner.Started`), and what their outcomes mean for the report."""

    original_path: Path | None
    cand: onnx.ModelProto
    cand_path: Path
    reference: Path | None
    original_wrong: str | None
    changed_outputs: frozenset[str]
    ctx: Any
    fixed: Sequence[Fixed]
    external_files: Sequence[Path]
    sources: tuple[Path, dict[str, str]] | None

    def __post_init__(self) -> None:
        self.planned = _planned(self.ctx, self.cand, self.fixed)
        self.runs, self.by_reference = _runs(self.cand, self.reference, self.planned.settings)

    def start(self) -> runner.Started:
        trusted = self.original_path is not None and self.original_wrong is None
        sources = self.sources
        job = runner.Job(
            str(self.cand_path),
            tuple(self.runs),
            compare_with=str(self.original_path) if trusted else None,
            reference=str(self.reference) if self.reference else None,
            skip_outputs=self.changed_outputs,
            declared_dims=self.reference is None,
            weights_from=None if sources is None else (str(sources[0]), tuple(sources[1].items())),
            prepack=False,  # a few probe runs need no packed weights (runner.session)
        )
        data = (
            list(self.external_files)
            if sources is None
            else [sources[0] / loc for loc in sources[1].values()]
        )
        weights = runner.weights_bytes(str(self.cand_path), data)
        return runner.Started(job, runner.Limits.for_model(weights))

    def outcomes(self, started: runner.Started) -> list[runner.Outcome]:
        """What the child says (its session may have been building for a while)."""
        progress.phase(f"verifying: onnxruntime load and {len(self.runs)} probe run(s)")
        return started.outcomes()

    def report(self, outcomes: list[runner.Outcome], rep: Report) -> None:
        """Raise :class:`VerificationError` for a failed outcome; else say what ran."""
        planned, original_wrong, fixed = self.planned, self.original_wrong, self.fixed
        by_reference, ctx = self.by_reference, self.ctx
        first = outcomes[0] if outcomes else runner.Outcome(None, False, "tool", "no result")
        if first.kind in ("load", "tool") or (first.run is None and not first.ok):
            step = "onnxruntime load" if first.kind == "load" else "probe"
            raise VerificationError(step, first.error or "?")
        rep.add("onnxruntime load", "InferenceSession created")
        for o in outcomes:
            if not o.ok:
                what = (
                    "reference inputs"
                    if o.run is not None and o.run.reference_case is not None
                    else describe(o.setting, planned)
                )
                raise VerificationError(
                    "compare" if o.kind == "compare" else "probe", f"{what}: {o.error}"
                )
        rep.settings.extend(o.setting for o in outcomes)
        compared = [o for o in outcomes if o.compared]
        rep.max_abs_diff = max((o.max_abs_diff or 0.0 for o in compared), default=0.0)
        on_reference = [
            o for o in compared if o.run is not None and o.run.reference_case is not None
        ]
        others = [o for o in compared if o not in on_reference]
        parts = []
        if on_reference:
            parts.append(f"reference outputs ({len(on_reference)} cases)")
        if others:
            parts.append(f"the original model ({len(others)} settings)")
        if not parts:
            reason = original_wrong or next(
                (o.other_error for o in outcomes if o.other_error), None
            )
            checked = "; each rewrite was checked on its own (above)" if rep.rewrites else ""
            parts.append(
                "nothing else: the original cannot serve as reference"
                + (f" ({reason})" if reason else "")
                + "; outputs checked for declared shapes"
                + checked
                + " (pass --reference to compare)"
            )
        rep.compared_with = " and ".join(parts)
        settings = (
            "the reference cases"
            if by_reference
            else "; ".join(
                describe(o.setting, planned)
                for o in outcomes
                if o.run is not None and o.run.reference_case is None
            )
        )
        rep.add(
            "probe",
            f"ran at {settings or 'static shapes'}; compared with {rep.compared_with}; "
            f"max abs diff {rep.max_abs_diff:.3g}",
        )
        fmt = ctx.fmt_dim if ctx is not None else str
        rep.exercised = _exercised(fixed, [o.setting for o in outcomes], fmt)
        for line in rep.exercised:
            rep.add("exercised", line)


def against(
    candidate_path: Path,
    compare_path: Path,
    compare_model: bytes,
    *,
    ctx: Any,
    fixed: Sequence[Fixed],
    report: Report,
    weights: int,
    step: str = "simplify",
) -> None:
    """The candidate's outputs match ``compare_model``'s (the model it was made from, in
    memory; its external data beside ``compare_path``) at the planned probes, within the
    optimizer tolerance (:data:`onnxfix.parity.DEFAULT_RTOL`)."""
    from onnxfix.parity import DEFAULT_RTOL

    planned = _planned(ctx, onnx.load(str(candidate_path), load_external_data=False), fixed)
    progress.phase("comparing with the model before simplification")
    job = runner.Job(
        str(candidate_path),
        tuple(runner.Run(s.dims, seed=i) for i, s in enumerate(planned.settings)),
        compare_with=str(compare_path),
        compare_model=compare_model,
        tolerance=(None, DEFAULT_RTOL),
        prepack=False,
    )
    outcomes = runner.execute(job, runner.Limits.for_model(2 * weights))
    for o in outcomes:
        if not o.ok:
            where = describe(o.setting, planned) if o.run is not None else "load"
            raise VerificationError(step, f"{where}: {o.error}")
        if o.other_error:
            raise VerificationError(
                step,
                f"the model before it failed at {describe(o.setting, planned)}: {o.other_error}",
            )
    compared = [o for o in outcomes if o.compared]
    if not compared:
        raise VerificationError(step, "no probe produced outputs of both models")
    worst = max(o.max_abs_diff or 0.0 for o in compared)
    settings = "; ".join(describe(o.setting, planned) for o in compared)
    report.add(step, f"outputs match the model before it at {settings}; max abs diff {worst:.3g}")


def describe(setting: dict[str, int], planned: planner.Plan) -> str:
    for s in planned.settings:
        if s.dims == setting:
            return s.describe()
    return ", ".join(f"{k}={v}" for k, v in setting.items()) or "static shapes"


def _exercised(
    fixed: Sequence[Fixed], settings: list[dict[str, int]], fmt: Callable[[Any], str] = str
) -> list[str]:
    """Per fix: did its node run with the dims it is about at values of at least 2?"""
    out = []
    for f in fixed:
        dims = list(dict.fromkeys(d for d in f.dims if isinstance(d, Sym) and d.varies))
        if not dims:
            out.append(f"{f.label}: its dims are fixed; ran at every probe")
            continue
        values = [[evaluate(d, s) for s in settings] for d in dims]
        known = [(d, v) for d, v in zip(dims, values) if all(x is not None for x in v)]
        if not known:
            out.append(
                f"{f.label}: NOT shown to run with its dims at 2 or more (they are "
                "not computable from the inputs)"
            )
            continue
        ok = all(min(x or 0 for x in v) >= 2 and len(set(v)) >= 2 for _d, v in known)
        shown = ", ".join(f"{fmt(d)}={'/'.join(map(str, v))}" for d, v in known[:4])
        out.append(
            f"{f.label}: ran with {shown}"
            + ("" if ok else " — NOT every dim at two values of at least 2")
        )
    return out


def first_error_line(exc: BaseException) -> str:
    """The tool's message, whole: :class:`VerificationError` shortens it for people."""
    return str(exc).strip()[:4000]
