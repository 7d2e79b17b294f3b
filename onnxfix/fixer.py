"""Fix rounds: analyse, apply every allowed fix plan, commit, analyse again.

Each round sees the graph as it is now; one fix per node per round (the next
round sees the rest).  Edits are addressed by node reference and committed at
once by :class:`~onnxfix.edit.Editor`, so no fix depends on another's indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import onnx

from onnxfix import contracts, edit
from onnxfix.context import Context
from onnxfix.findings import Applicability, Finding
from onnxfix.linter import analyse
from onnxfix.rule import Detection, FixPlan, RewriteRejected, Rule
from onnxfix.shapes import Dim

#: Fix rounds before a repair is declared non-convergent.
MAX_ROUNDS = 8


class NonConvergence(Exception):
    pass


class FixFailed(Exception):
    """A fix raised or rejected its own rewrite; the model is left as it was on disk."""


@dataclass
class Applied:
    finding: Finding
    #: what the rewrite was checked against on its own, if anything
    checked: str | None = None
    changes_outputs: frozenset[str] = frozenset()
    #: the dims of the fixed node's inputs, for probes that exercise them
    dims: tuple[Dim, ...] = ()


@dataclass
class FixRun:
    applied: list[Applied]
    #: findings of the model as it was given, and as it is after the last round
    before: list[Finding]
    after: list[Finding]
    #: detections of the last round (with fix plans), for reasons and advice
    last: list[Detection] = field(default_factory=list)
    #: the analysis of the model as it is after the last round
    ctx: Context | None = None

    @property
    def fixed(self) -> list[Finding]:
        return [a.finding for a in self.applied]

    @property
    def changed_outputs(self) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for a in self.applied:
            out |= a.changes_outputs
        return out


def allowed(d: Detection, unsafe: bool) -> bool:
    if d.plan is None:
        return False
    if d.plan.applicability == Applicability.SAFE:
        return True
    return unsafe and d.plan.applicability == Applicability.UNSAFE


def run_fixes(
    model: onnx.ModelProto,
    rules: Sequence[Rule[Any]],
    *,
    unsafe: bool = False,
    contract: contracts.Contract | None = None,
) -> FixRun:
    """Fix ``model`` in place until no allowed fix is left."""
    applied: list[Applied] = []
    first: list[Finding] | None = None
    for _ in range(MAX_ROUNDS):
        found, ctx = analyse(model, rules, contract)
        if first is None:
            first = [d.finding for d in found]
        todo = [d for d in found if allowed(d, unsafe)]
        if not todo:
            return FixRun(applied, first, [d.finding for d in found], found, ctx)
        editor = edit.Editor(model, ctx.opset, ctx.fmt_dim)
        seen: set[tuple[int, int]] = set()
        for d in todo:
            plan = d.plan
            assert plan is not None
            key = (id(plan.anchor.graph.graph), id(plan.anchor.node))
            if plan.anchor.node is not None and key in seen:
                continue  # one fix per node per round
            seen.add(key)
            scoped = editor.for_rule(
                plan.rule.code, plan.anchor.graph.graph, plan.anchor.graph.depth, plan.anchor.node
            )
            try:
                checked = plan.rule.apply(scoped, plan)
            except RewriteRejected as exc:
                raise FixFailed(f"{d.finding.rule} at {d.finding.node}: {exc}") from exc
            except Exception as exc:  # a fix that cannot apply stops the repair, cleanly
                raise FixFailed(
                    f"{d.finding.rule} at {d.finding.node}: {type(exc).__name__}: {exc}"
                ) from exc
            applied.append(Applied(d.finding, checked, plan.changes_outputs, _dims(plan)))
        editor.commit()
    raise NonConvergence(f"fixes did not converge after {MAX_ROUNDS} rounds")


def _dims(plan: FixPlan[Any]) -> tuple[Dim, ...]:
    node, g = plan.anchor.node, plan.anchor.graph
    if node is None:
        return plan.about
    return tuple(d for i in node.input if i for d in (g.shape(i) or ())) + plan.about


def apply_fixes(
    model: onnx.ModelProto, rules: Sequence[Rule[Any]], *, unsafe: bool = False
) -> list[Finding]:
    """Fix ``model`` in place; return what was fixed."""
    return run_fixes(model, rules, unsafe=unsafe).fixed
