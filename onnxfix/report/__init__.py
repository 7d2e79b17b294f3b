"""Reporters: turn findings into text for people, JSON/SARIF for tools, annotations for CI.

One table per command maps an output format to its renderer, so the CLI never
branches on formats and a new format is one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from onnxfix.report.check import describe_run, run_title, sarif_interface, sarif_runtime
from onnxfix.report.github import annotation, github
from onnxfix.report.json import SCHEMA_VERSION, check_json, lint_json, repair_json
from onnxfix.report.sarif import sarif
from onnxfix.report.text import (
    print_check,
    print_check_summary,
    print_lint,
    print_repair,
    print_rule,
    print_rules,
)

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


def _check_extra_sarif(result: Any) -> list[dict[str, Any]]:
    return [sarif_interface(result.path, p) for p in result.interface] + [
        sarif_runtime(result.path, r) for r in result.runs if not r.ok
    ]


def _check_extra_github(result: Any) -> list[str]:
    return [annotation(result.path, "error", "interface", p) for p in result.interface] + [
        annotation(result.path, "error", run_title(r), describe_run(r))
        for r in result.runs
        if not r.ok
    ]


def _check_json(results: list[Any], errors: list[tuple[str, str]]) -> None:
    """One model: its document (unchanged since v0.1); several: a list of them."""
    import json

    if len(results) == 1 and not errors:
        _out(check_json(results[0]))
        return
    doc = {
        "version": SCHEMA_VERSION,
        "checks": [json.loads(check_json(r)) for r in results],
        "unreadable": [{"path": p, "problem": m} for p, m in errors],
    }
    _out(json.dumps(doc, indent=2))


def _check_text(results: list[Any], errors: list[tuple[str, str]]) -> None:
    for r in results:
        print_check(r)
    if errors or len(results) > 1:
        print_check_summary(results, errors)


_CHECK: dict[str, Callable[[list[Any], list[tuple[str, str]]], None]] = {
    "text": _check_text,
    "json": _check_json,
    "sarif": lambda results, errors: _out(
        sarif(
            [(r.path, r.lint.findings) for r in results],
            _rules(),
            [x for r in results for x in _check_extra_sarif(r)],
            unreadable=errors,
        )
    ),
    "github": lambda results, errors: _out(
        github(
            [(r.path, r.lint.findings) for r in results],
            [x for r in results for x in _check_extra_github(r)]
            + [annotation(p, "error", "onnxfix", m) for p, m in errors],
        )
    ),
}
LINT_FORMATS = list(_LINT)
CHECK_FORMATS = list(_CHECK)


def render_lint(fmt: str, results: list[Any], errors: list[tuple[str, str]]) -> None:
    _LINT[fmt](results, errors)


def render_statistics(fmt: str, results: list[Any], errors: list[tuple[str, str]]) -> None:
    """``lint --statistics``: counts per rule (text), or the same as JSON."""
    from onnxfix.report.text import print_statistics, statistics

    if fmt == "json":
        import json

        _out(
            json.dumps(
                {
                    "version": SCHEMA_VERSION,
                    "statistics": statistics(results),
                    "unreadable": [{"path": p, "problem": m} for p, m in errors],
                },
                indent=2,
            )
        )
    elif fmt == "text":
        print_statistics(results, errors)
    else:
        raise ValueError(f"--statistics prints text or json, not {fmt}")


def render_check(fmt: str, results: list[Any], errors: list[tuple[str, str]]) -> None:
    _CHECK[fmt](results, errors)
