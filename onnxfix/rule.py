"""What a rule is: one object holding its code, docs, detection, fix and cases.

After ruff (a rule's docs on the rule, a stable code, fix applicability),
eslint (``meta`` with message templates, ``valid``/``invalid`` cases) and
onnxscript's rewriter (a matcher that says *why* it did not match).

A rule subclass declares class attributes and implements:

* :meth:`Rule.match` for node rules (``ops`` names the op types it looks at):
  a :class:`Match` with the evidence, or the reason it failed;
* :meth:`Rule.found`: turn a match into a :class:`Detection` (via :meth:`Rule.report`,
  so a finding always carries its rule's code, name and severity);
* :meth:`Rule.detect` instead of both, for rules over a whole graph;
* :meth:`Rule.apply` if it can fix: edit through the :class:`~onnxfix.edit.RuleEditor`
  it is given, which names and tags new nodes.

Detection never mutates the model (a harness test checks it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
import onnx

from onnxfix.findings import Applicability, Finding, FixInfo, Severity

if TYPE_CHECKING:
    from onnxfix.context import Context, GraphCtx
    from onnxfix.edit import RuleEditor

T = TypeVar("T")
P = TypeVar("P")


@dataclass(frozen=True)
class Match(Generic[T]):
    """A matcher's answer: the evidence, or why it did not match and where.

    ``depth`` counts the checks that passed before the failure, so the nearest
    miss of a rule on a model can be shown first (``lint --explain CODE``).
    """

    value: T | None = None
    reason: str | None = None
    node: str | None = None
    depth: int = 0

    def __bool__(self) -> bool:
        return self.reason is None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def get(self) -> T:
        assert self.reason is None and self.value is not None, self.reason
        return self.value


def ok(value: T) -> Match[T]:
    return Match(value=value)


def fail(reason: str, node: onnx.NodeProto | str | None = None, depth: int = 0) -> Match[Any]:
    name = node if isinstance(node, str) or node is None else (node.name or node.op_type)
    return Match(reason=reason, node=name, depth=depth)


@dataclass(frozen=True)
class Anchor:
    """Where a detection sits: the graph (with its route from the main graph) and node."""

    graph: GraphCtx
    node: onnx.NodeProto | None


@dataclass(frozen=True)
class Fix(Generic[P]):
    """A fix a rule offers: the title people see and the typed parameters ``apply`` gets."""

    title: str
    params: P
    applicability: Applicability | None = None  # default: the rule's ``fixable``
    #: graph outputs the fix changes on purpose (the interface check skips them)
    changes_outputs: frozenset[str] = frozenset()
    #: dims the fix is about beyond its node's input dims (verification reports whether
    #: the probes ran them at two values of at least 2): a size it rebuilds elsewhere
    about: tuple[Any, ...] = ()


@dataclass(frozen=True)
class FixPlan(Generic[P]):
    rule: Rule[P]
    params: P
    anchor: Anchor
    applicability: Applicability
    changes_outputs: frozenset[str] = frozenset()
    about: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Detection:
    """A finding plus what stays in-process: its anchor and fix plan."""

    finding: Finding
    anchor: Anchor
    plan: FixPlan[Any] | None = None

    def replace_finding(self, finding: Finding) -> Detection:
        return Detection(finding, self.anchor, self.plan)


@dataclass(frozen=True)
class Miss:
    """Why a rule did not fire on one candidate node."""

    graph: str
    node: str
    op_type: str
    reason: str
    at: str | None
    depth: int


@dataclass(frozen=True)
class Case:
    """A small model in ONNX text (``onnx.parser`` syntax) for a rule's own tests.

    ``dims`` gives probe values for the dynamic dims when the fixed model is run;
    ``reference`` computes the expected outputs from the inputs (the semantics
    the fix restores); without it, a fix is only checked to run and keep shapes.
    """

    text: str
    name: str = ""
    dims: Mapping[str, Sequence[int]] = field(default_factory=dict)
    reference: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    #: an interface contract to lint with (a built-in profile name), for TG201
    expect: str | None = None

    def model(self) -> onnx.ModelProto:
        return onnx.parser.parse_model(self.text)


class RewriteRejected(Exception):
    """A rewrite that failed its own semantic check; nothing is applied."""


class Rule(Generic[P]):
    """Base class of every rule; the subclass's docstring is its documentation."""

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    #: other severities a finding of this rule may have (WB103: an error when it pins a dim)
    severities: ClassVar[tuple[Severity, ...]] = ()
    summary: ClassVar[str]
    family: ClassVar[str] = ""
    #: the best applicability this rule's fixes can have (``None``: never fixes)
    fixable: ClassVar[Applicability | None] = None
    #: for a rule that fixes only some of what it finds: which ones, and what to do about
    #: the others (a repair that leaves one says so instead of a generic "not recognised")
    no_fix: ClassVar[str] = ""
    #: op types a node rule looks at (``None``: the rule overrides :meth:`detect`)
    ops: ClassVar[frozenset[str] | None] = None
    #: message templates (eslint's messageIds), filled by :meth:`msg`
    messages: ClassVar[Mapping[str, str]] = {}
    #: codes of rules whose findings on the same node this rule's finding replaces
    supersedes: ClassVar[tuple[str, ...]] = ()
    #: a generic rule yields to any other rule's error on the same node
    generic: ClassVar[bool] = False
    #: its findings downstream of another rule's error are consequences of it (a wrong
    #: repeat shape makes every later size condition fail) and are not shown
    cascades: ClassVar[bool] = False
    valid: ClassVar[tuple[Case, ...]] = ()
    invalid: ClassVar[tuple[Case, ...]] = ()

    @property
    def docs(self) -> str:
        return inspect.cleandoc(type(self).__doc__ or "")

    def __repr__(self) -> str:
        return f"<rule {self.code} {self.name}>"

    # -- detection ---------------------------------------------------------------------------

    def detect(self, ctx: Context) -> Iterator[Detection]:
        for g, node in ctx.by_op(self.ops or frozenset()):
            m = self.match(ctx, g, node)
            if m:
                det = self.found(ctx, g, node, m.get())
                if det is not None:
                    yield det

    def match(self, ctx: Context, g: GraphCtx, node: onnx.NodeProto) -> Match[Any]:
        return fail("this rule looks at whole graphs, not single nodes")

    def found(
        self, ctx: Context, g: GraphCtx, node: onnx.NodeProto, evidence: Any
    ) -> Detection | None:
        raise NotImplementedError(self.code)

    @property
    def per_node(self) -> bool:
        """Whether the rule decides node by node (:meth:`match`), and so has a reason for
        each node it did not fire on; a rule that overrides :meth:`detect` alone looks at
        whole graphs, even when it names the op types it reports on."""
        return self.ops is not None and type(self).match is not Rule.match

    def explain(self, ctx: Context) -> list[Miss]:
        """Every candidate node this rule did not fire on, with the reason, nearest first."""
        misses = []
        if self.ops is None or not self.per_node:
            return []
        for g, node in ctx.by_op(self.ops):
            m = self.match(ctx, g, node)
            if not m:
                misses.append(
                    Miss(
                        g.path,
                        node.name or f"<{node.op_type}>",
                        node.op_type,
                        m.reason or "",
                        m.node,
                        m.depth,
                    )
                )
        return sorted(misses, key=lambda m: -m.depth)

    # -- building findings -------------------------------------------------------------------

    def msg(self, message_id: str, **fields: object) -> str:
        return self.messages[message_id].format(**fields)

    def report(
        self,
        ctx: Context,
        g: GraphCtx,
        node: onnx.NodeProto | None,
        message: str,
        *,
        inputs: Sequence[str] = (),
        label: str | None = None,
        op_type: str | None = None,
        fix: Fix[P] | None = None,
        advice: str | None = None,
        severity: Severity | None = None,
    ) -> Detection:
        loc = ctx.location(g, node, inputs, label=label, op_type=op_type)
        plan = None
        info = None
        if fix is not None:
            assert self.fixable is not None, f"{self.code} declares no fix"
            applic = fix.applicability or self.fixable
            info = FixInfo(fix.title, applic)
            plan = FixPlan(
                self, fix.params, Anchor(g, node), applic, fix.changes_outputs, fix.about
            )
        finding = Finding(
            rule=self.code,
            name=self.name,
            severity=severity or self.severity,
            message=message,
            fix=info,
            advice=advice,
            **loc,
        )
        return Detection(finding, Anchor(g, node), plan)

    # -- fixing ------------------------------------------------------------------------------

    def apply(self, editor: RuleEditor, plan: FixPlan[P]) -> str | None:
        """Edit the model; return what the rewrite was checked against, if anything."""
        raise NotImplementedError(f"{self.code} has no fix")
