"""The rule registry: a flat map from stable code to rule.

Rules live in :mod:`onnxfix.rules`, one module per rule inside a package per
family.  The registry imports them and collects every concrete subclass of
:class:`~onnxfix.rule.Rule` a module defines; it refuses duplicate codes and
names, so a code, once published, always means the same thing.  The registry
depends on the rules, never the reverse.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from onnxfix.rule import Rule


class RegistryError(Exception):
    pass


class UnknownCodes(ValueError):
    """Codes or prefixes that select no rule: a typo must not turn a gate into a pass."""

    def __init__(self, codes: list[str]) -> None:
        self.codes = codes
        super().__init__(", ".join(codes))


def _modules() -> Iterable[Any]:
    import onnxfix.rules as pkg

    for info in sorted(pkgutil.walk_packages(pkg.__path__, "onnxfix.rules."), key=lambda m: m.name):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        yield importlib.import_module(info.name)


@lru_cache(maxsize=1)
def all_rules() -> tuple[Rule[Any], ...]:
    rules: dict[str, Rule[Any]] = {}
    names: set[str] = set()
    for mod in _modules():
        for _name, cls in inspect.getmembers(mod, inspect.isclass):
            if (
                cls.__module__ != mod.__name__
                or not issubclass(cls, Rule)
                or "code" not in cls.__dict__
            ):
                continue
            rule = cls()
            if rule.code in rules:
                raise RegistryError(f"duplicate rule code {rule.code}")
            if rule.name in names:
                raise RegistryError(f"duplicate rule name {rule.name}")
            rules[rule.code] = rule
            names.add(rule.name)
    return tuple(sorted(rules.values(), key=lambda r: r.code))


def get(code_or_name: str) -> Rule[Any] | None:
    key = code_or_name.strip()
    for r in all_rules():
        if r.code.lower() == key.lower() or r.name == key:
            return r
    return None


def _selects(rule: Rule[Any], key: str) -> bool:
    return key == "ALL" or rule.code.upper().startswith(key) or rule.name.upper() == key


def unknown(codes: Iterable[str]) -> list[str]:
    """The codes, prefixes or names in ``codes`` that select no rule at all."""
    rules = all_rules()
    return [c for c in codes if c and not any(_selects(r, c.upper()) for r in rules)]


def select(
    select: Iterable[str] | None = None, ignore: Iterable[str] | None = None
) -> list[Rule[Any]]:
    """Rules chosen by code prefix (``WB`` selects the family, ``WB102`` one rule, ``ALL``
    every rule); an unknown code raises :class:`UnknownCodes`."""
    sel = [s.upper() for s in select or [] if s]
    ign = [s.upper() for s in ignore or [] if s]
    bad = unknown([*sel, *ign])
    if bad:
        raise UnknownCodes(bad)
    out = []
    for r in all_rules():
        if sel and not any(_selects(r, s) for s in sel):
            continue
        if any(_selects(r, s) for s in ign):
            continue
        out.append(r)
    return out
