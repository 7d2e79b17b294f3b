"""``onnxfix check``: will this model deploy?  Lint, load in onnxruntime, run at probes.

Nothing here is imported by ``lint``; onnxruntime is imported by
:mod:`onnxfix.verify` only when a model is run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from onnxfix import context, contracts, io, probe
from onnxfix.findings import Finding, Severity
from onnxfix.linter import LintResult, lint


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
        return (
            not self.lint.errors
            and self.load_error is None
            and bool(self.runs)
            and all(r.ok for r in self.runs)
        )

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


_ORT_NODE = re.compile(r"(?:Name:\s*'([^']+)'|[Nn]ode \(([^)]+)\))")


def _explain(
    error: str, model: onnx.ModelProto, findings: list[Finding]
) -> tuple[str | None, str | None, str | None]:
    """Map an onnxruntime error to (node, PyTorch scope, rule code that explains it)."""
    m = _ORT_NODE.search(error)
    if m is None:
        return None, None, None
    name = m.group(1) or m.group(2)
    # onnxruntime names fused nodes after their origin ('/a/MatMul/MatmulTransposeFusion/')
    nodes = {n.name: n for n in model.graph.node if n.name}
    node = nodes.get(name) or next(
        (nodes[k] for k in sorted(nodes, key=len, reverse=True) if name.startswith(k + "/")), None
    )
    if node is None:
        return name, None, None
    rule = next((f.rule for f in findings if f.node == node.name), None)
    if rule is None:  # a wrong shape made upstream (a repeat) fails here: name the cause
        rule = next((f.rule for f in findings if f.severity == Severity.ERROR), None)
    return node.name, context.scope_of(node), rule


def check(
    path: str | os.PathLike[str],
    *,
    dims: dict[str, list[int]] | None = None,
    reference: str | os.PathLike[str] | None = None,
    expect: str | os.PathLike[str] | contracts.Contract | None = None,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    providers: list[str] | None = None,
) -> CheckResult:
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
    symbols = probe.input_symbols(model)

    def attempt(
        setting: dict[str, int], feeds: dict | None = None, want: dict | None = None
    ) -> ProbeRun:
        try:
            feeds = feeds if feeds is not None else probe.make_inputs(model, setting)
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
        for feeds, want in probe.load_reference(reference):
            result.runs.append(attempt(probe.setting_of(model, feeds), feeds, want))
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
        for a, b in probe.probe_ladder(symbols) if symbols else [({}, {})]:
            last = [attempt(s) for s in ((a, b) if symbols else (a,))]
            if all(r.ok for r in last):
                break
        result.runs.extend(last)
    return result
