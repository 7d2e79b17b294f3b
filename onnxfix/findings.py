"""Findings: what a rule reports, in the shape every reporter and the JSON contract use."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """``error`` fails at run time or gives wrong results; ``warning`` is risky or slow."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Applicability(StrEnum):
    """How far a fix can be trusted (after ruff): safe fixes are applied by default."""

    SAFE = "safe"
    UNSAFE = "unsafe"
    DISPLAY_ONLY = "display-only"


@dataclass
class Fix:
    title: str
    applicability: Applicability
    #: rule-specific parameters the rule's ``fix`` function needs (not serialised)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finding:
    rule: str
    name: str
    severity: Severity
    message: str
    graph: str
    node: str
    op_type: str
    scope: str | None = None
    source: str | None = None
    inputs: list[tuple[str, str]] = field(default_factory=list)
    fix: Fix | None = None
    #: advice for the PyTorch code that produced the pattern
    advice: str | None = None
    #: the node object, so a fix can find it without relying on names (not serialised)
    node_ref: Any = field(default=None, repr=False, compare=False)
    graph_ref: Any = field(default=None, repr=False, compare=False)

    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.graph, self.node)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "name": self.name,
            "severity": self.severity.value,
            "message": self.message,
            "node": self.node,
            "op_type": self.op_type,
            "graph": self.graph,
            "scope": self.scope,
            "inputs": [{"name": n, "shape": s} for n, s in self.inputs],
        }
        if self.source:
            out["source"] = self.source
        if self.advice:
            out["advice"] = self.advice
        out["fix"] = (
            {"title": self.fix.title, "applicability": self.fix.applicability.value}
            if self.fix
            else None
        )
        return out
