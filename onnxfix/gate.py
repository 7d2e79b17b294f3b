"""``onnxfix check``: will this model deploy?  Lint, load in onnxruntime, run at probes.

A gate CI can trust must be right both ways:

* it FAILs only on a failure that does not depend on values it made up: a
  failure at a node a lint error explains, a load failure, a mismatch with a
  stored reference, or a runtime failure that no made-up input reaches;
* when a failure may come from made-up values (a shape input, a branch), or a
  probe passes its memory or time limit, the answer is "could not verify"
  (exit 2), with what would settle it (``--reference``);
* it stays bounded: probes run in a child process (:mod:`onnxfix.runner`) at
  the smallest sizes that exercise every derived dim (:mod:`onnxfix.plan`).

Nothing here is imported by ``lint``.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import onnx

from onnxfix import context, contracts, diagnose, io, plan, probe, progress, registry, runner
from onnxfix.findings import Finding, Severity
from onnxfix.linter import LintResult, analyse
from onnxfix.roles import infer as infer_roles
from onnxfix.rule import Detection
from onnxfix.shapes import Dim


class DimsError(ValueError):
    """``--dims`` names that are not dynamic dims of the model (a usage error)."""


@dataclass
class ProbeRun:
    setting: dict[str, int]
    ok: bool
    error: str | None = None
    #: the node onnxruntime named, its PyTorch scope, and the rule that explains it
    node: str | None = None
    scope: str | None = None
    explained_by: str | None = None
    max_abs_diff: float | None = None
    #: derived dims at this setting (``T=12``), for the report
    derived: dict[str, int] = field(default_factory=dict)
    #: a failure that may come from values the probe made up
    doubtful: str | None = None
    #: the outputs differ from the original's (``--against``) or the reference's
    mismatch: bool = False
    #: on a mismatch with ``--against``: the first shared value that differs
    first_difference: str | None = None


@dataclass
class CheckResult:
    path: str
    lint: LintResult
    load_error: str | None = None
    runs: list[ProbeRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: why the check could not decide (exit 2), if it could not
    inconclusive: str | None = None
    #: ``--against ORIGINAL``: its path, and how this model's interface breaks its callers
    against: str | None = None
    interface: list[str] = field(default_factory=list)
    #: what the outputs were compared with ("the original model (2 settings)")
    compared_with: str | None = None

    @property
    def passed(self) -> bool:
        return (
            self.inconclusive is None
            and not self.lint.errors
            and not self.interface
            and self.load_error is None
            and bool(self.runs)
            and all(r.ok for r in self.runs)
        )

    @property
    def exit_code(self) -> int:
        if self.passed:
            return 0
        return 2 if self.inconclusive is not None and not self._definite() else 1

    def _definite(self) -> bool:
        """A failure that stands whatever the made-up values were."""
        if self.lint.errors or self.interface or self.load_error is not None:
            return True
        return any(not r.ok and r.doubtful is None for r in self.runs)


_ORT_NODE = re.compile(r"(?:Name:\s*'([^']+)'|[Nn]ode \(([^)]+)\))")


def explain(
    error: str, model: onnx.ModelProto, findings: list[Finding]
) -> tuple[onnx.NodeProto | None, str | None, str | None, str | None]:
    """Map an onnxruntime error to (node, its name, PyTorch scope, rule that explains it)."""
    m = _ORT_NODE.search(error)
    if m is None:
        return None, None, None, None
    name = m.group(1) or m.group(2)
    # onnxruntime names fused nodes after their origin ('/a/MatMul/MatmulTransposeFusion/')
    nodes = {n.name: n for n in model.graph.node if n.name}
    node = nodes.get(name) or next(
        (nodes[k] for k in sorted(nodes, key=len, reverse=True) if name.startswith(k + "/")), None
    )
    if node is None:
        return None, name, None, None
    rule = next(
        (f.rule for f in findings if f.node == node.name and f.severity == Severity.ERROR), None
    )
    if rule is None:  # a wrong shape made upstream (a repeat) fails here: name the cause
        rule = next((f.rule for f in findings if f.severity == Severity.ERROR), None)
    return node, node.name, context.scope_of(node), rule


def _upstream(model: onnx.ModelProto, target: onnx.NodeProto) -> set[str]:
    """Every main-graph value that flows into ``target`` through node inputs (a value a
    subgraph reads from the enclosing scope is not followed)."""
    producers = {o: n for n in model.graph.node for o in n.output if o}
    stack, seen = list(target.input), set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        p = producers.get(v)
        if p is not None:
            stack.extend(i for i in p.input if i)
    return seen


def settings_for(
    ctx: context.Context,
    model: onnx.ModelProto,
    dims: dict[str, list[int]] | None,
    found: list[Detection],
    skip: set[int] | None = None,
) -> tuple[list[plan.Setting], list[str]]:
    """Planned settings, or every combination of the ``--dims`` values (other dims planned)."""
    syms = probe.input_symbols(model)
    if dims:
        unknown = sorted(set(dims) - set(syms))
        if unknown:
            have = ", ".join(syms) or "none (all input dims are fixed)"
            raise DimsError(
                f"--dims names no dynamic dim of the model's inputs: "
                f"{', '.join(unknown)} (the model's dims: {have})"
            )
    focus: list[Dim] = [  # the dims of the inputs of errors are the ones worth exercising
        d
        for det in found
        if det.finding.severity == Severity.ERROR
        for name, _shape in det.finding.inputs
        for d in det.anchor.graph.shape(name) or ()
    ]
    base = plan.plan(ctx, syms, focus=focus, skip_nodes=skip)
    if not dims:
        return base.settings, base.notes
    names = [s for s in syms if s in dims]
    out: list[plan.Setting] = []
    for combo in list(itertools.product(*(dims[s] for s in names)))[:64]:
        fixed = dict(zip(names, combo))
        planned = plan.plan(ctx, syms, focus=focus, fixed=fixed, skip_nodes=skip)
        for s in planned.settings[:1]:
            out.append(s)
    return out, base.notes


def check(
    path: str | os.PathLike[str],
    *,
    dims: dict[str, list[int]] | None = None,
    reference: str | os.PathLike[str] | None = None,
    expect: str | os.PathLike[str] | contracts.Contract | None = None,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    providers: list[str] | None = None,
    against: str | os.PathLike[str] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
) -> CheckResult:
    """Lint, load in onnxruntime, and run at probe settings: will this model deploy?

    Without ``dims`` the probes are planned (every derived dim at least 2, the dims of
    nodes with errors distinct, two settings).  With ``dims`` ({"T": [1, 37, 400]})
    every combination runs, other dims planned.  ``reference`` (an ``.npz`` of inputs
    and outputs) must be reproduced.  ``providers`` are onnxruntime execution providers.
    ``against`` is the model this one was made from (an optimizer's input): the
    interface must be the same and the outputs must match its outputs at the probes
    planned on it (:mod:`onnxfix.parity`); ``atol``/``rtol`` set the tolerance.
    Raises :class:`DimsError` for ``--dims`` names the model does not have.
    """
    progress.phase(f"{os.path.basename(str(path))}: analysing")
    loaded = io.load(path)
    model = loaded.model
    found, ctx = analyse(model, registry.select(select, ignore), contracts.resolve(expect))
    findings = [d.finding for d in found]
    notes = [f"shape inference failed: {ctx.inference_error}"] if ctx.inference_error else []
    result = CheckResult(str(path), LintResult(str(path), findings, notes))
    planned_on, plan_found, plan_ctx = model, found, ctx
    compare_with = None
    if against is not None:
        from onnxfix import parity

        original = io.load(against)
        result.against = str(against)
        result.interface, more = parity.interface(original.model, model)
        result.notes += more
        plan_found, plan_ctx = analyse(original.model, registry.select(None, None), None)
        planned_on = original.model
        broken = sorted(
            {d.finding.rule for d in plan_found if d.finding.severity == Severity.ERROR}
        )
        if result.interface:
            result.notes.append("outputs not compared: the interfaces differ")
            return result
        if not broken:
            compare_with = str(original.path)
        elif reference is None:
            result.inconclusive = (
                f"could not compare with {against}: it has errors ({', '.join(broken)}), so its "
                "outputs are no reference; pass --reference with outputs of the exported model"
            )
        else:
            result.notes.append(
                f"{against} has errors ({', '.join(broken)}): compared with --reference instead"
            )
    # relations at nodes with errors are not trusted (a broken Where "relates" B and T)
    skip = {
        id(d.anchor.node)
        for d in plan_found
        if d.finding.severity == Severity.ERROR and d.anchor.node is not None
    }
    settings, plan_notes = settings_for(plan_ctx, planned_on, dims, plan_found, skip)
    result.notes += plan_notes
    runs: list[runner.Run] = []
    if reference is not None:
        runs += [
            runner.Run({}, reference_case=i) for i in range(len(probe.load_reference(reference)))
        ]
    if dims or reference is None:
        runs += [runner.Run(s.dims, seed=i) for i, s in enumerate(settings)]
    derived = {tuple(sorted(s.dims.items())): s.derived for s in settings}
    tolerance = None
    if against is not None or atol is not None or rtol is not None:
        from onnxfix.parity import DEFAULT_RTOL

        tolerance = (atol, DEFAULT_RTOL if rtol is None else rtol)
    job = runner.Job(
        str(loaded.path),
        tuple(runs),
        compare_with=compare_with,
        reference=str(reference) if reference else None,
        providers=tuple(providers or ["CPUExecutionProvider"]),
        stop_on_failure=not dims,
        inputs_from=compare_with,
        tolerance=tolerance,
        bisect=compare_with is not None,
    )
    weights = runner.weights_bytes(str(loaded.path), loaded.external_files)
    if compare_with is not None:  # two sessions live in the child
        weights += runner.weights_bytes(compare_with, original.external_files)
    limits = runner.Limits.for_model(weights)
    progress.phase(f"{os.path.basename(str(path))}: onnxruntime load and {len(runs)} run(s)")
    outcomes = runner.execute(job, limits)
    roles = infer_roles(model)
    made_up = {name for name, role in roles.items() if role.made_up}
    for o in outcomes:
        _record(result, o, model, findings, made_up, roles, derived)
    if not outcomes:
        result.inconclusive = "the probe process ended without a result"
    if against is not None:
        _compared(result, outcomes, compare_with is not None)
    return result


def _compared(result: CheckResult, outcomes: list[runner.Outcome], original: bool) -> None:
    """Say what the outputs were compared with; a comparison that never happened is no pass."""
    on_ref = sum(1 for o in outcomes if o.compared and o.run and o.run.reference_case is not None)
    on_orig = sum(1 for o in outcomes if o.compared_other and o.run)
    parts = [f"reference outputs ({on_ref} cases)"] if on_ref else []
    if on_orig:
        parts.append(f"the original model ({on_orig} {'runs' if on_ref else 'settings'})")
    result.compared_with = " and ".join(parts) or None
    failed_orig = next((o for o in outcomes if o.other_error), None)
    if failed_orig is not None and original:
        result.notes.append(
            f"the original failed to run at {failed_orig.setting or 'static shapes'}: "
            f"{diagnose.shorten(failed_orig.other_error or '')}"
        )
    if result.compared_with is None and result.inconclusive is None and result.passed:
        result.inconclusive = "could not compare: no probe produced outputs of both models"


def _record(
    result: CheckResult,
    o: runner.Outcome,
    model: onnx.ModelProto,
    findings: list[Finding],
    made_up: set[str],
    roles: dict,
    derived: dict,
) -> None:
    if o.kind == "tool":
        if o.error and "execution provider" in o.error:
            raise ProviderError(o.error)
        raise RuntimeError(o.error or "the probe failed")
    setting = o.setting
    said = diagnose.shorten(o.error) if o.error else o.error
    run = ProbeRun(
        setting,
        o.ok,
        said,
        max_abs_diff=o.max_abs_diff,
        derived=derived.get(tuple(sorted(setting.items())), {}),
    )
    if o.kind == "limit":
        result.inconclusive = f"could not verify: {said} (pass --dims with smaller values)"
        run.doubtful = said
        result.runs.append(run)
        return
    if o.kind == "load":
        result.load_error = said
    if o.kind == "compare":
        run.mismatch = True
        run.first_difference = o.first_difference
    if not o.ok and o.error:
        node, run.node, run.scope, run.explained_by = explain(o.error, model, findings)
        if o.kind == "runtime" and run.explained_by is None and made_up:
            reach = made_up if node is None else made_up & _upstream(model, node)
            if reach:
                why = "; ".join(f"'{m}': {roles[m].why}" for m in sorted(reach))
                run.doubtful = f"the failure may come from values the probe made up ({why})"
                result.inconclusive = "could not verify without --reference: " + run.doubtful
    result.runs.append(run)


class ProviderError(ValueError):
    """An execution provider that this onnxruntime does not have."""


__all__ = ["CheckResult", "DimsError", "ProbeRun", "ProviderError", "check", "explain"]
