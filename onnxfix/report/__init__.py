"""Reporters: turn findings into text for people, JSON/SARIF for tools, annotations for CI.

One table per command maps an output format to its renderer, so the CLI never
branches on formats and a new format is one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from onnxfix.report.check import describe_run, run_title, sarif_runtime
from onnxfix.report.github import annotation, github
from onnxfix.report.json import SCHEMA_VERSION, check_json, lint_json, repair_json
from onnxfix.report.sarif import sarif
from onnxfix.report.text import print_check, print_lint, print_repair, print_rule, print_rules

__all__ = [
    "CHECK_FORMATS",
    "LINT_FORMATS",
    "SCHEMA_VERSION",
    "annotation",
    "check_json",
    "describe_run",
    "github",
    "lint_json",
    "print_check",
    "print_lint",
    "print_repair",
    "print_rule",
    "print_rules",
    "render_check",
    "render_lint",
    "repair_json",
    "run_title",
    "sarif",
    "sarif_runtime",
]


def _rules() -> list[Any]:
    from onnxfix import registry

    return list(registry.all_rules())


def _out(text: str) -> None:
    print(text)


_LINT: dict[str, Callable[[list[Any], list[tuple[str, str]]], None]] = {
    "text": print_lint,
    "json": lambda results, errors: _out(lint_json(results, errors)),
    "sarif": lambda results, errors: _out(
        sarif([(r.path, r.findings) for r in results], _rules(), unreadable=errors)
    ),
    "github": lambda results, errors: _out(
        github(
            [(r.path, r.findings) for r in results],
            [annotation(p, "error", "onnxfix", m) for p, m in errors],
        )
    ),
}
_CHECK: dict[str, Callable[[Any], None]] = {
    "text": print_check,
    "json": lambda result: _out(check_json(result)),
    "sarif": lambda result: _out(
        sarif(
            [(result.path, result.lint.findings)],
            _rules(),
            [sarif_runtime(result.path, r) for r in result.runs if not r.ok],
        )
    ),
    "github": lambda result: _out(
        github(
            [(result.path, result.lint.findings)],
            [
                annotation(result.path, "error", run_title(r), describe_run(r))
                for r in result.runs
                if not r.ok
            ],
        )
    ),
}
LINT_FORMATS = list(_LINT)
CHECK_FORMATS = list(_CHECK)


def render_lint(fmt: str, results: list[Any], errors: list[tuple[str, str]]) -> None:
    _LINT[fmt](results, errors)


def render_check(fmt: str, result: Any) -> None:
    _CHECK[fmt](result)
