"""The lint pipeline: analyse once, run the rules, then one suppression policy.

Steps, each returning new detections (findings are frozen):

1. every selected rule's :meth:`~onnxfix.rule.Rule.detect` over one shared context;
2. :func:`suppress` — the one policy for findings that another finding explains:
   a rule's ``supersedes`` (WB102's finding replaces WB101/WB103 on the same
   node), ``generic`` rules yielding to a specific error on the same node
   (VA101), and consequences (warnings and infos without a fix downstream of an
   error: a wrong repeat shape makes later broadcasts look suspicious);
3. :func:`with_legends` — the definitions of short dim names a message uses.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx

from onnxfix import context, contracts, io, registry
from onnxfix.findings import Finding, Severity
from onnxfix.rule import Detection, Miss, Rule


@dataclass
class LintResult:
    path: str
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.ERROR]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector paused while a model is analysed.  The analysis makes
    millions of small objects and next to no cycles: on a 100k-node graph the collector
    ran eight full passes that freed nothing and cost 0.75 s of 4.7 s (measured).  What
    cycles there are wait for the next collection after the analysis."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def analyse(
    model: onnx.ModelProto,
    rules: Iterable[Rule[Any]] | None = None,
    contract: contracts.Contract | None = None,
    table: io.NodeTable | None = None,
) -> tuple[list[Detection], context.Context]:
    """Detections of ``rules`` (default: all) on ``model``, which is only read (``table``:
    its nodes as loaded, see :func:`onnxfix.context.build`)."""
    with gc_paused():
        ctx = context.build(model, contract, table)
        chosen = list(rules if rules is not None else registry.all_rules())
        found = [d for rule in chosen for d in rule.detect(ctx)]
    # A rule that explains a selected rule's finding better (WB102 for WB101/WB103) still
    # suppresses it when it was not selected: ignoring WB102 must not turn the same node
    # into a WB103 warning.  Its own findings are not reported.
    codes = {r.code for r in chosen}
    shadow = [r for r in registry.all_rules() if r.code not in codes and codes & set(r.supersedes)]
    explains = [d for rule in shadow for d in rule.detect(ctx)]
    kept = suppress(ctx, [*chosen, *shadow], [*found, *explains])
    return with_legends(ctx, [d for d in kept if d.finding.rule in codes]), ctx


def suppress(
    ctx: context.Context, rules: Sequence[Rule[Any]], found: list[Detection]
) -> list[Detection]:
    """Drop the findings that another finding on the same node (or upstream) explains."""
    by_code = {r.code: r for r in rules}
    here: dict[tuple[int, int], set[str]] = {}
    for d in found:
        here.setdefault(_where(d), set()).add(d.finding.rule)
    kept = []
    for d in found:
        codes = here[_where(d)]
        rule = by_code.get(d.finding.rule)
        if any(d.finding.rule in by_code[c].supersedes for c in codes if c in by_code):
            continue
        if (
            rule is not None
            and rule.generic
            and d.anchor.node is not None
            and any(c != d.finding.rule and _has_error(found, d, c) for c in codes)
        ):
            continue
        kept.append(d)
    return _drop_consequences(ctx, kept, by_code)


def _where(d: Detection) -> tuple[int, int]:
    return (id(d.anchor.graph.graph), id(d.anchor.node) if d.anchor.node is not None else -1)


def _has_error(found: list[Detection], d: Detection, code: str) -> bool:
    return any(
        o.finding.rule == code and o.finding.severity == Severity.ERROR and _where(o) == _where(d)
        for o in found
    )


def _drop_consequences(
    ctx: context.Context, found: list[Detection], rules: dict[str, Rule[Any]] | None = None
) -> list[Detection]:
    """Drop findings that an error upstream explains.

    An error such as a wrong repeat shape makes every shape after it wrong too, and
    the broadcasts that then look suspicious are consequences, not findings (a
    compiler's cascading errors).  Dropped: warnings and infos without a fix downstream
    of any error, and findings of ``cascades`` rules (size conditions) downstream of
    another rule's error.  Other errors are kept: each is real on its own evidence.
    The next lint after a repair shows whatever was hidden.
    """
    errors = [
        d for d in found if d.finding.severity == Severity.ERROR and d.anchor.node is not None
    ]
    if not errors or len(errors) == len(found):
        return found
    tainted: dict[int, set[str]] = {}  # node id -> codes of the errors upstream of it
    for d in errors:
        for n in d.anchor.graph.downstream(d.anchor.node):  # type: ignore[arg-type]
            tainted.setdefault(n, set()).add(d.finding.rule)

    def consequence(d: Detection) -> bool:
        upstream = tainted.get(id(d.anchor.node), set())
        if not upstream:
            return False
        rule = (rules or {}).get(d.finding.rule)
        if rule is not None and rule.cascades and upstream - {d.finding.rule}:
            return True
        return d.finding.severity != Severity.ERROR and d.plan is None

    return [d for d in found if not consequence(d)]


def with_legends(ctx: context.Context, found: list[Detection]) -> list[Detection]:
    """Append the definitions of the short names (d1, d2, ...) each message uses."""
    out = []
    for d in found:
        f = d.finding
        legend = ctx.legend(f.message + " ".join(s for _, s in f.inputs))
        out.append(d.replace_finding(f.replace(message=f.message + legend)) if legend else d)
    return out


def lint_model(
    model: onnx.ModelProto,
    rules: Iterable[Rule[Any]] | None = None,
    contract: contracts.Contract | None = None,
    table: io.NodeTable | None = None,
) -> tuple[list[Finding], context.Context]:
    found, ctx = analyse(model, rules, contract, table)
    return [d.finding for d in found], ctx


def lint(
    path: str | os.PathLike[str] | onnx.ModelProto,
    *,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    expect: str | os.PathLike[str] | contracts.Contract | None = None,
    _retain: list[object] | None = None,
) -> LintResult:
    """Lint a model file (weights are never read) or an in-memory model.

    ``expect`` is an interface contract (a file, a built-in profile name, or a
    :class:`~onnxfix.contracts.Contract`) checked by rule TG201.  ``_retain`` is the
    command line's: the analysis is appended to it instead of being taken apart, for
    the last file of a process that is about to leave (0.14 s of deallocation on a
    100k-node graph, measured).
    """
    rules, contract = registry.select(select, ignore), contracts.resolve(expect)
    with gc_paused():
        if isinstance(path, onnx.ModelProto):
            findings, ctx = lint_model(path, rules, contract)
            label = "<model>"
        else:
            loaded = io.load(path, keep_source=True, on_read=context.EarlyInference.start)
            findings, ctx = lint_model(loaded.model, rules, contract, loaded.table)
            label = str(path)
            if _retain is not None:
                _retain.append(loaded)
            del loaded
        notes = [f"shape inference failed: {ctx.inference_error}"] if ctx.inference_error else []
        if _retain is not None:
            _retain.append(ctx)
            # the collector must not walk what is kept: millions of objects, no garbage
            gc.freeze()
        # the analysis is let go before the collector resumes: otherwise its first pass
        # walks millions of live objects that refcounting is about to free anyway
        del ctx
    return LintResult(label, findings, notes)


def explain(path: str | os.PathLike[str], code: str) -> tuple[list[Finding], list[Miss]]:
    """Where rule ``code`` fired on a model, and why it did not fire on every other node
    it looks at (nearest miss first): ``lint --explain CODE``."""
    rule = registry.get(code)
    if rule is None:
        raise registry.UnknownCodes([code])
    model = io.load(path).model
    ctx = context.build(model)
    return [d.finding for d in rule.detect(ctx)], rule.explain(ctx)
