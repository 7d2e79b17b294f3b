"""The repair pipeline: load, fix, verify, write atomically — or write nothing.

Weights stay on disk: fixes add small nodes, and the data files are copied as
bytes.  A repair that fixed nothing writes nothing (there is nothing to verify
and nothing new to deploy); one that fixed something writes only after every
verification step has passed on the file as it will land.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from onnxfix import contracts, edit, io, progress, registry
from onnxfix.findings import Applicability, Finding, Severity
from onnxfix.fixer import Applied, FixFailed, FixRun, NonConvergence, run_fixes
from onnxfix.linter import lint_model


@dataclass
class RepairResult:
    input: str
    output: str | None
    fixed: list[Finding]
    remaining: list[Finding]
    written: bool
    verification: object | None = None
    error: str | None = None
    #: per fix, what its rewrite was checked against on its own
    checks: list[tuple[Finding, str]] = field(default_factory=list)
    #: why errors remain: one line per rule ("TG102 has no fix: ...")
    reasons: list[str] = field(default_factory=list)
    #: graph outputs a fix removed or re-declared on purpose
    changed_outputs: frozenset[str] = frozenset()
    #: temporary files of an earlier, killed run that were removed from the output folder
    stale_removed: list[str] = field(default_factory=list)
    #: ``--simplify``: what onnxsim removed ("306 → 199 nodes (...)"), or why it was not kept
    simplified: str | None = None
    simplify_skipped: str | None = None
    #: ``--diff``: the node-level changes ("- y = Where(...)", "+ ...") and op counts
    diff: list[str] = field(default_factory=list)
    op_counts: str | None = None
    #: the model as written (or as it would be): for the diff
    final: onnx.ModelProto | None = None

    @property
    def exit_code(self) -> int:
        """0: no error left; 1: errors without an applicable fix remain; 2: failed."""
        if self.error is not None:
            return 2
        return 1 if any(f.severity == Severity.ERROR for f in self.remaining) else 0


def _reasons(remaining: list[Finding], unsafe: bool) -> list[str]:
    """Why each remaining error was not fixed, in the rule's own words."""
    out = []
    for code in sorted({f.rule for f in remaining if f.severity == Severity.ERROR}):
        rule = registry.get(code)
        fs = [f for f in remaining if f.rule == code]
        if any(f.fix is not None and f.fix.applicability == Applicability.UNSAFE for f in fs):
            if not unsafe:
                out.append(f"{code} has an unsafe fix: pass --unsafe-fixes to apply it")
                continue
        if rule is None or rule.fixable is None:
            safety = ""
            if rule is not None:
                tail = rule.docs.split("## Fix safety", 1)[-1].strip().split("\n\n")[0]
                safety = ": " + " ".join(tail.split()).removeprefix("No fix: ").rstrip(".")
            out.append(f"{code} has no fix{safety}")
        elif rule.no_fix:
            out.append(f"{code} has no fix here: {rule.no_fix}")
        else:
            out.append(
                f"{code}: the pattern was not recognised fully enough to rewrite it "
                f"safely (see `onnxfix lint --explain {code}`)"
            )
    return out


def repair(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None,
    *,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    unsafe_fixes: bool = False,
    dry_run: bool = False,
    reference: str | os.PathLike[str] | None = None,
    verify_probe: bool = True,
    outputs: dict[str, str] | None = None,
    expect: str | os.PathLike[str] | contracts.Contract | None = None,
    simplify: bool = False,
    diff: bool = False,
    early: io.Staged | None = None,
) -> RepairResult:
    """Repair ``src`` into ``dst``; nothing is written unless something was fixed and
    verification passed.

    ``outputs`` maps a graph output name to an existing value that should provide
    it (``repair --output NAME=VALUE``): the way to re-declare outputs of a cut graph.
    ``simplify`` runs onnxsim on the repaired model (:mod:`onnxfix.simplify`) and keeps
    its result only if it verifies and matches the unsimplified repair.  ``early``: a copy
    of the weights the caller started before the model was read
    (:func:`onnxfix.staging.start_early`); used if it copies exactly the files the
    validated model names into ``dst``'s folder.  The caller discards it afterwards.
    """
    rules = registry.select(select, ignore)
    contract = contracts.resolve(expect)
    if reference is not None:
        from onnxfix.probe import load_reference

        load_reference(reference)  # a file that is not one is refused before any work
    progress.phase("reading the graph")
    loaded = io.load(src)
    original = onnx.ModelProto()
    original.CopyFrom(loaded.model)
    model = loaded.model
    changed = frozenset(outputs or {})
    before: list[Finding] | None = None
    if outputs:
        before = lint_model(original, rules, contract)[0]
        try:
            edit.redeclare_outputs(model, outputs)
        except ValueError as exc:
            return RepairResult(str(src), None, [], before, False, error=str(exc))
    progress.phase("analysing and fixing")
    staged: list[io.Staged] = []
    if dst is not None and not dry_run and not simplify and loaded.locations:
        # The weights start copying now, while the graph is analysed and fixed: the copy
        # runs in the kernel, so the two overlap.  If there turns out to be nothing to fix,
        # the copy is stopped and removed (it was never visible).  A simplified model is
        # written from memory instead.
        if early is not None and not _stages(early, loaded, dst):
            early.discard()  # other files than the model names: not needed
            early = None
        s = early or _stage(loaded, dst)
        if s is not None:
            staged.append(s)
    try:
        return _repair(
            str(src), loaded, original, model, rules, contract, changed, before, dst, staged,
            unsafe_fixes=unsafe_fixes, dry_run=dry_run, reference=reference,
            verify_probe=verify_probe, outputs=outputs, simplify=simplify, diff=diff,
        )  # fmt: skip
    finally:
        for s in staged:  # a copy not moved into place (nothing written, or a failure)
            s.discard()


def _stages(early: io.Staged, loaded: io.LoadedModel, dst: str | os.PathLike[str]) -> bool:
    """Whether ``early`` copies exactly the data files ``loaded`` names (as validated) into
    ``dst``'s folder."""
    base = loaded.path.resolve().parent
    return early.folder == Path(dst).resolve().parent and early.sources == {
        loc: base / loc for loc in loaded.locations
    }


def _stage(loaded: io.LoadedModel, dst: str | os.PathLike[str]) -> io.Staged | None:
    """Start copying the weights beside ``dst`` (:class:`onnxfix.io.Staged`), or None when
    the output folder is unusable (:func:`onnxfix.io.write_atomic` then says why)."""
    folder = Path(dst).resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        return None
    base = loaded.path.resolve().parent
    try:
        return io.Staged({loc: base / loc for loc in loaded.locations}, folder)
    except OSError:
        return None


def _repair(
    src: str,
    loaded: io.LoadedModel,
    original: onnx.ModelProto,
    model: onnx.ModelProto,
    rules: list[Any],
    contract: contracts.Contract | None,
    changed: frozenset[str],
    before: list[Finding] | None,
    dst: str | os.PathLike[str] | None,
    staged: list[io.Staged],
    *,
    unsafe_fixes: bool,
    dry_run: bool,
    reference: str | os.PathLike[str] | None,
    verify_probe: bool,
    outputs: dict[str, str] | None,
    simplify: bool,
    diff: bool,
) -> RepairResult:
    try:
        run = run_fixes(model, rules, unsafe=unsafe_fixes, contract=contract)
    except (NonConvergence, FixFailed) as exc:
        return RepairResult(str(src), None, [], before or [], False, error=str(exc))
    fixed, remaining = run.fixed, run.after
    before = before if before is not None else run.before
    changed |= run.changed_outputs
    result = RepairResult(
        str(src),
        None,
        fixed,
        remaining,
        False,
        checks=_checks(run.applied),
        reasons=_reasons(remaining, unsafe_fixes),
        changed_outputs=changed,
    )
    # Re-lint must converge: what was fixed is gone and no new error appeared.  (Warnings
    # may appear: those downstream of an error were hidden as its consequences.)
    old_keys = {f.key() for f in before}
    new = [f for f in remaining if f.key() not in old_keys and f.severity == Severity.ERROR]
    if fixed and new:
        result.error = (
            "after the fixes, errors that were hidden behind them remain, so the model still "
            "fails: "
            + "; ".join(f"{f.rule} at {f.node}" + ("" if f.fix else " (no fix)") for f in new)
        )
        return result
    result.final = model
    if dry_run or dst is None or (not fixed and not outputs):
        return _diffed(result, original, diff)  # nothing fixed: nothing to write
    landing = _Landing(
        result,
        loaded,
        original,
        run,
        Path(dst),
        Path(reference) if reference else None,
        verify_probe,
        staged[0] if staged else None,
    )
    landing.write(model, simplify)
    return _diffed(result, original, diff)


def _diffed(result: RepairResult, original: onnx.ModelProto, diff: bool) -> RepairResult:
    """Fill in the node-level diff between the input and the model as written."""
    if diff and result.final is not None:
        from onnxfix import views

        result.diff = views.node_diff(original, result.final)
        result.op_counts = views.op_counts(original, result.final)
    return result


@dataclass
class _Landing:
    """Where a repaired model goes and what it is verified against: one repair's
    verification and atomic write (:func:`onnxfix.io.write_atomic`), for the repaired
    model and, with ``--simplify``, for its simplified form first."""

    result: RepairResult
    loaded: io.LoadedModel
    original: onnx.ModelProto
    run: FixRun
    out: Path
    reference: Path | None
    probe: bool
    #: the weights' copy started when the model was read (a model on disk only)
    staged: io.Staged | None = None

    def write(self, model: onnx.ModelProto, simplify: bool = False) -> RepairResult:
        """Verify the repaired model as it will land and move it into place, or write
        nothing.

        With ``simplify`` the simplified model is tried first; if onnxsim fails, changes
        the interface, or its result does not verify or match the unsimplified repair, the
        unsimplified repair is verified and written instead, and the result says why.
        """
        from onnxfix import verify  # imports onnxruntime lazily, inside its functions

        result, loaded = self.result, self.loaded
        result.stale_removed = [str(p) for p in io.remove_stale(self.out.resolve().parent)]
        if simplify:
            from onnxfix import simplify as simplifier

            progress.phase("simplifying with onnxsim (weights in memory)")
            simple = simplifier.simplify(model, loaded)
            if simple.model is not None:
                unsimplified = model.SerializeToString()
                from onnxfix.runner import weights_bytes

                weights = weights_bytes(str(loaded.path), loaded.external_files)

                def parity(tmp: Path, rep: verify.Report) -> None:
                    verify.against(
                        tmp,
                        loaded.path,
                        unsimplified,
                        ctx=self.run.ctx,
                        fixed=_fixed(self.run),
                        report=rep,
                        weights=weights,
                    )

                try:
                    self.land(simple.model, parity)
                    result.simplified = simple.summary()
                    result.final = simple.model
                    return result
                except verify.VerificationError as exc:
                    simple.skipped = f"the simplified model did not verify ({exc})"
            result.simplify_skipped = simple.skipped
        try:
            self.land(model, None)
        except verify.VerificationError as exc:
            result.error = str(exc)
        return result

    def land(self, model: onnx.ModelProto, extra: Callable[[Path, Any], None] | None) -> None:
        """Write ``model`` to ``out`` once it has verified (``extra`` too, if given);
        raises :class:`onnxfix.verify.VerificationError` and leaves nothing behind
        otherwise."""
        from onnxfix import verify

        result, loaded, run = self.result, self.loaded, self.run
        rep = verify.Report()
        errors_fixed = sorted({f.rule for f in result.fixed if f.severity == Severity.ERROR})
        wrong = (
            f"it has errors that were fixed: {', '.join(errors_fixed)}" if errors_fixed else None
        )
        rep.rewrites = [f"{f.rule} at {f.node}: {c}" for f, c in result.checks]
        in_memory = extra is not None  # a simplified model holds its weights in memory

        def check(cand: io.Candidate) -> None:
            verify.verify(
                loaded.path,
                self.original,
                cand.path,
                reference=self.reference,
                probe=self.probe,
                report=rep,
                original_wrong=wrong,
                changed_outputs=result.changed_outputs,
                ctx=run.ctx,
                fixed=_fixed(run),
                external_files=cand.data,
                ready=cand.ready,
                sources=cand.sources,
            )
            if extra is not None and self.probe:
                extra(cand.path, rep)

        result.verification = rep
        io.write_atomic(
            model,
            self.out,
            verify=check,
            external_from=(
                loaded.path.resolve().parent
                if loaded.uses_external_data and not in_memory
                else None
            ),
            externalize=in_memory and loaded.uses_external_data,
            staged=None if in_memory else self.staged,
        )
        result.output, result.written = str(self.out), True


def _fixed(run: FixRun) -> list[Any]:
    from onnxfix import verify

    return [verify.Fixed(f"{a.finding.rule} at {a.finding.node}", a.dims) for a in run.applied]


def _checks(applied: list[Applied]) -> list[tuple[Finding, str]]:
    return [(a.finding, a.checked) for a in applied if a.checked]
