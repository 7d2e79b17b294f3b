"""The Python API: lint and repair, returning typed results.

The CLI is a thin layer over these functions; tests and other tools call them
directly.  Nothing here imports onnxruntime: verification does, when a repair
actually runs a model.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from onnxfix import context, contracts, edit, io, registry
from onnxfix.findings import Applicability, Finding, Severity
from onnxfix.registry import Rule

#: Fix rounds before a repair is declared non-convergent.
MAX_ROUNDS = 8


@dataclass
class LintResult:
    path: str
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.ERROR]


def run_rules(ctx: context.Context, rules: Iterable[Rule]) -> list[Finding]:
    findings: list[Finding] = []
    generic: set[str] = set()
    for rule in rules:
        findings.extend(rule.detect(ctx))
        if rule.generic:
            generic.add(rule.code)
    # a generic finding (e.g. "strict inference fails") yields to a specific error there
    specific = {(f.graph, f.node) for f in findings
                if f.rule not in generic and f.severity == Severity.ERROR}
    findings = [f for f in findings if f.rule not in generic or (f.graph, f.node) not in specific]
    for f in findings:  # define the short names (d1, d2, ...) a message uses
        f.message += ctx.legend(f.message + " ".join(s for _, s in f.inputs))
    return _drop_consequences(ctx, findings)


def _drop_consequences(ctx: context.Context, findings: list[Finding]) -> list[Finding]:
    """Drop warnings and infos without a fix on nodes downstream of an error.

    An error such as a wrong repeat shape makes every shape after it wrong too, and
    the broadcasts that then look suspicious are consequences, not findings (a
    compiler's cascading errors).  Errors are always kept: each is real on its own
    evidence.  The next lint after a repair shows whatever was hidden.
    """
    errors = [f for f in findings if f.severity == Severity.ERROR and f.node_ref is not None]
    if not errors or len(errors) == len(findings):
        return findings
    by_graph = {id(g.graph): g for g in ctx.graphs}
    tainted: set[int] = set()
    for f in errors:
        g = by_graph.get(id(f.graph_ref))
        if g is None:
            continue
        stack = list(f.node_ref.output)
        seen: set[str] = set()
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            for n in g.consumers.get(v, []):
                if id(n) not in tainted:
                    tainted.add(id(n))
                    stack.extend(n.output)
    return [f for f in findings
            if f.severity == Severity.ERROR or f.fix is not None or id(f.node_ref) not in tainted]


def lint_model(model: onnx.ModelProto, rules: Iterable[Rule] | None = None,
               contract: contracts.Contract | None = None
               ) -> tuple[list[Finding], context.Context]:
    ctx = context.build(model, contract)
    return run_rules(ctx, rules if rules is not None else registry.all_rules()), ctx


def lint(path: str | os.PathLike[str] | onnx.ModelProto, *, select: Iterable[str] | None = None,
         ignore: Iterable[str] | None = None,
         expect: str | os.PathLike[str] | contracts.Contract | None = None) -> LintResult:
    """Lint a model file (weights are never read) or an in-memory model.

    ``expect`` is an interface contract (a file, a built-in profile name, or a
    :class:`~onnxfix.contracts.Contract`) checked by rule TG201.
    """
    if isinstance(path, onnx.ModelProto):
        model, label = path, "<model>"
    else:
        model, label = io.load(path).model, str(path)
    findings, ctx = lint_model(model, registry.select(select, ignore), contracts.resolve(expect))
    notes = [f"shape inference failed: {ctx.inference_error}"] if ctx.inference_error else []
    return LintResult(label, findings, notes)


# --- fixing --------------------------------------------------------------------------------


def _allowed(f: Finding, unsafe: bool) -> bool:
    if f.fix is None:
        return False
    if f.fix.applicability == Applicability.SAFE:
        return True
    return unsafe and f.fix.applicability == Applicability.UNSAFE


class NonConvergence(Exception):
    pass


class FixFailed(Exception):
    """A fix raised or rejected its own rewrite; the model is left as it was on disk."""


@dataclass
class FixRun:
    applied: list[Finding]
    #: findings of the model as it was given, and as it is after the last round
    before: list[Finding]
    after: list[Finding]


def apply_fixes(model: onnx.ModelProto, rules: list[Rule], *, unsafe: bool = False
                ) -> list[Finding]:
    """Fix ``model`` in place until no fixable finding is left; return what was fixed."""
    return run_fixes(model, rules, unsafe=unsafe).applied


def run_fixes(model: onnx.ModelProto, rules: list[Rule], *, unsafe: bool = False,
              contract: contracts.Contract | None = None) -> FixRun:
    """Fix ``model`` in place until no fixable finding is left.

    Each round analyses the model afresh, so a fix always sees the graph as it
    is now; the first and last rounds' findings are returned, so a caller needs
    no analysis of its own.  Within a round, edits go deepest subgraph first and
    highest node index first: inserting nodes rebuilds a node list, and this
    order keeps every pending edit's index valid.
    """
    by_code = {r.code: r for r in rules}
    applied: list[Finding] = []
    first: list[Finding] | None = None
    for _ in range(MAX_ROUNDS):
        findings, ctx = lint_model(model, rules, contract)
        if first is None:
            first = findings
        todo = [f for f in findings if _allowed(f, unsafe) and by_code[f.rule].fix is not None]
        if not todo:
            return FixRun(applied, first, findings)
        namer = edit.Namer(model)
        routes = {id(g.graph): g.route for g in ctx.graphs}
        planned = []
        seen: set[tuple[int, int]] = set()
        for f in todo:
            # findings on a graph input/output rather than a node carry no node
            idx = edit.index_of(f.graph_ref, f.node_ref) if f.node_ref is not None else -1
            key = (id(f.graph_ref), idx)
            if key in seen:  # one fix per node per round; the next round sees the rest
                continue
            seen.add(key)
            planned.append((len(routes.get(id(f.graph_ref), ())), idx, f))
        planned.sort(key=lambda t: (t[0], t[1]), reverse=True)
        prune: list[tuple[tuple[tuple[int, str], ...], str]] = []
        for _depth, idx, f in planned:
            ectx = edit.EditContext(f.graph_ref, idx, namer, ctx.opset,
                                    routes.get(id(f.graph_ref), ()), prune)
            try:
                by_code[f.rule].fix(model, f, ectx)  # type: ignore[misc]
            except Exception as exc:  # a fix that cannot apply stops the repair, cleanly
                raise FixFailed(f"{f.rule} at {f.node}: {type(exc).__name__}: {exc}") from exc
            applied.append(f)
        by_route: dict[tuple[tuple[int, str], ...], set[str]] = {}
        for route, name in prune:
            by_route.setdefault(route, set()).add(name)
        # deepest first: pruning a graph renumbers its nodes, which enclosing routes index
        for route in sorted(by_route, key=len, reverse=True):
            edit.prune_unused(edit.graph_at(model, route), by_route[route])
    raise NonConvergence(f"fixes did not converge after {MAX_ROUNDS} rounds")


@dataclass
class RepairResult:
    input: str
    output: str | None
    fixed: list[Finding]
    remaining: list[Finding]
    written: bool
    verification: object | None = None
    error: str | None = None

    @property
    def exit_code(self) -> int:
        if not self.written:
            return 2
        return 1 if any(f.severity == Severity.ERROR for f in self.remaining) else 0


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
) -> RepairResult:
    """Repair ``src`` into ``dst``; nothing is written unless verification passes.

    ``outputs`` maps a graph output name to an existing value that should provide
    it (``repair --output NAME=VALUE``): the way to re-declare outputs of a cut graph.
    """
    from onnxfix import verify  # imports onnxruntime lazily, inside its functions

    rules = registry.select(select, ignore)
    contract = contracts.resolve(expect)
    # Weights stay on disk: fixes add small nodes, and the data files are copied as bytes.
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
    try:
        run = run_fixes(model, rules, unsafe=unsafe_fixes, contract=contract)
    except (NonConvergence, FixFailed) as exc:
        return RepairResult(str(src), None, [], before or [], False, error=str(exc))
    fixed, remaining = run.applied, run.after
    before = before if before is not None else run.before
    changed |= {f.fix.params["output"] for f in fixed if f.rule == "TG101"}
    # Re-lint must converge: what was fixed is gone and no new error appeared.  (Warnings
    # may appear: those downstream of an error were hidden as its consequences.)
    old_keys = {f.key() for f in before}
    new = [f for f in remaining if f.key() not in old_keys and f.severity == Severity.ERROR]
    if fixed and new:
        return RepairResult(
            str(src), None, fixed, remaining, False,
            error="fixes introduced new findings: " + "; ".join(f"{f.rule} {f.node}" for f in new),
        )
    if dry_run or dst is None:
        return RepairResult(str(src), None, fixed, remaining, False)
    out = Path(dst)
    if not fixed and not outputs:
        io.copy_atomic(loaded, out)
        return RepairResult(str(src), str(out), [], remaining, True)
    rep = verify.Report()
    errors_fixed = sorted({f.rule for f in fixed if f.severity == Severity.ERROR})
    wrong = f"it has errors that were fixed: {', '.join(errors_fixed)}" if errors_fixed else None

    def check(tmp: Path) -> None:
        verify.verify(loaded.path, original, tmp, reference=Path(reference) if reference else None,
                      probe=verify_probe, report=rep, original_wrong=wrong,
                      changed_outputs=changed)

    try:
        io.write_atomic(model, out, verify=check,
                        external_from=loaded.path.resolve().parent
                        if loaded.uses_external_data else None)
    except verify.VerificationError as exc:
        return RepairResult(str(src), None, fixed, remaining, False, rep, error=str(exc))
    return RepairResult(str(src), str(out), fixed, remaining, True, rep)


# --- pre-deployment check --------------------------------------------------------------


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


@dataclass
class CheckResult:
    path: str
    lint: LintResult
    load_error: str | None = None
    runs: list[ProbeRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.lint.errors and self.load_error is None and bool(self.runs) and all(
            r.ok for r in self.runs)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


_ORT_NODE = re.compile(r"(?:Name:\s*'([^']+)'|[Nn]ode \(([^)]+)\))")


def _explain(error: str, model: onnx.ModelProto, findings: list[Finding]
             ) -> tuple[str | None, str | None, str | None]:
    """Map an onnxruntime error to (node, PyTorch scope, rule code that explains it)."""
    m = _ORT_NODE.search(error)
    if m is None:
        return None, None, None
    name = m.group(1) or m.group(2)
    # onnxruntime names fused nodes after their origin ('/a/MatMul/MatmulTransposeFusion/')
    nodes = {n.name: n for n in model.graph.node if n.name}
    node = nodes.get(name) or next(
        (nodes[k] for k in sorted(nodes, key=len, reverse=True) if name.startswith(k + "/")),
        None)
    if node is None:
        return name, None, None
    rule = next((f.rule for f in findings if f.node == node.name), None)
    if rule is None:  # a wrong shape made upstream (a repeat) fails here: name the cause
        rule = next((f.rule for f in findings if f.severity == Severity.ERROR), None)
    return node.name, context.scope_of(node), rule


def check(path: str | os.PathLike[str], *, dims: dict[str, list[int]] | None = None,
          reference: str | os.PathLike[str] | None = None,
          expect: str | os.PathLike[str] | contracts.Contract | None = None,
          select: Iterable[str] | None = None, ignore: Iterable[str] | None = None,
          providers: list[str] | None = None) -> CheckResult:
    """Lint, load in onnxruntime, and run at probe settings: will this model deploy?

    Without ``dims`` every dynamic dim gets a distinct value other than 1 (1 hides
    broadcasting bugs): the check passes if the model runs at both settings of some
    rung of the probe ladder.  With ``dims`` ({"T": [1, 37, 400], ...}) every
    combination must run.  ``reference`` (an ``.npz`` of inputs and outputs) must
    be reproduced.  ``providers`` are onnxruntime execution providers (default: CPU);
    one that is not installed raises :class:`onnxfix.verify.ProviderError`.
    """
    import itertools

    from onnxfix import verify

    model = io.load(path).model  # read once: lint and the probes share it
    linted = lint(model, select=select, ignore=ignore, expect=expect)
    linted.path = str(path)
    result = CheckResult(str(path), linted)
    try:
        sess = verify.session(Path(path), providers)
    except verify.ProviderError:
        raise
    except Exception as exc:
        result.load_error = verify.first_error_line(exc)
        node, scope, rule = _explain(result.load_error, model, result.lint.findings)
        result.runs.append(ProbeRun({}, False, result.load_error, node, scope, rule))
        return result
    symbols = verify.input_symbols(model)

    def attempt(setting: dict[str, int], feeds: dict | None = None,
                want: dict | None = None) -> ProbeRun:
        try:
            feeds = feeds if feeds is not None else verify.make_inputs(model, setting)
            if feeds is None:
                return ProbeRun(setting, False, "inputs too large to probe")
            got = verify.run(sess, feeds)
            diff = verify.compare(got, want) if want is not None else None
            return ProbeRun(setting, True, max_abs_diff=diff)
        except Exception as exc:
            err = verify.first_error_line(exc)
            node, scope, rule = _explain(err, model, result.lint.findings)
            return ProbeRun(setting, False, err, node, scope, rule)

    if reference is not None:
        for feeds, want in verify.load_reference(reference):
            result.runs.append(attempt(verify.setting_of(model, feeds), feeds, want))
    if dims:
        unknown = sorted(set(dims) - set(symbols))
        if unknown:
            result.notes.append(f"--dims names no dynamic dim of the inputs: {unknown}")
        names = [s for s in symbols if s in dims]
        combos = list(itertools.product(*(dims[s] for s in names)))[:64]
        for combo in combos:
            result.runs.append(attempt(dict(zip(names, combo))))
    elif reference is None:
        last: list[ProbeRun] = []
        for a, b in verify.probe_ladder(symbols) if symbols else [({}, {})]:
            last = [attempt(s) for s in ((a, b) if symbols else (a,))]
            if all(r.ok for r in last):
                break
        result.runs.extend(last)
    return result
