"""Findings: what a rule reports, in the shape every reporter and the JSON contract use.

A :class:`Finding` is frozen data: reporters, the JSON contract and worker
processes see nothing else.  What a fix needs in-process (node references,
typed parameters) travels beside it in a :class:`onnxfix.rule.Detection`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FixInfo:
    """The fix a finding offers, as reporters show it."""

    title: str
    applicability: Applicability


@dataclass(frozen=True)
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
    inputs: tuple[tuple[str, str], ...] = ()
    fix: FixInfo | None = None
    #: advice for the PyTorch code that produced the pattern
    advice: str | None = None

    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.graph, self.node)

    def replace(self, **changes: Any) -> Finding:
        return dataclasses.replace(self, **changes)

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
