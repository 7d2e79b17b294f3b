"""The rule registry: a flat map from stable code to rule module.

Rules are plain modules in :mod:`onnxfix.rules`; each module exports a
``RULES`` list of :class:`Rule`.  Codes are checked for uniqueness on load so
that a code, once published, always means the same thing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from onnxfix.findings import Applicability, Finding, Severity

if TYPE_CHECKING:
    import onnx

    from onnxfix.context import Context
    from onnxfix.edit import EditContext


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    summary: str
    #: the rule's documentation: what, why, example, fix safety (Markdown)
    docs: str
    #: the best applicability this rule's fixes can have (``None``: never fixes)
    fixable: Applicability | None
    detect: Callable[[Context], Iterable[Finding]]
    fix: Callable[[onnx.ModelProto, Finding, EditContext], None] | None = None
    family: str = ""
    #: a generic rule yields to a specific rule's error on the same node
    generic: bool = False


class RegistryError(Exception):
    pass


@lru_cache(maxsize=1)
def all_rules() -> tuple[Rule, ...]:
    import onnxfix.rules as pkg

    rules: dict[str, Rule] = {}
    names: set[str] = set()
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"onnxfix.rules.{info.name}")
        for rule in getattr(mod, "RULES", []):
            if rule.code in rules:
                raise RegistryError(f"duplicate rule code {rule.code}")
            if rule.name in names:
                raise RegistryError(f"duplicate rule name {rule.name}")
            rules[rule.code] = rule
            names.add(rule.name)
    return tuple(sorted(rules.values(), key=lambda r: r.code))


def get(code_or_name: str) -> Rule | None:
    key = code_or_name.strip()
    for r in all_rules():
        if r.code.lower() == key.lower() or r.name == key:
            return r
    return None


def select(select: Iterable[str] | None = None, ignore: Iterable[str] | None = None) -> list[Rule]:
    """Rules chosen by code prefix (``WB`` selects the family, ``WB102`` one rule)."""
    sel = [s.upper() for s in select or [] if s]
    ign = [s.upper() for s in ignore or [] if s]
    out = []
    for r in all_rules():
        if sel and not any(r.code.upper().startswith(s) or r.name.upper() == s for s in sel):
            continue
        if any(r.code.upper().startswith(s) or r.name.upper() == s for s in ign):
            continue
        out.append(r)
    return out
