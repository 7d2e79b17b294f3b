"""Text output for people, rendered with rich (plain when not a terminal).

rich is imported inside the functions: JSON, SARIF and GitHub output never pay
for it, and only ``onnxfix rule`` pays for its Markdown renderer (80 ms).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from onnxfix.report.safe import visible

if TYPE_CHECKING:
    from rich.console import Console

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


class _SafeConsole:
    """A console whose printed strings are made visible first (:mod:`onnxfix.report.safe`):
    every line of text output may carry a name the model chose."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.console.print(*(visible(o) if isinstance(o, str) else o for o in objects), **kwargs)


class Options:
    """How text output looks (set once from the command line)."""

    #: auto (colour on a terminal, honouring NO_COLOR), always, never
    color = "auto"
    #: findings and failures only: no summary, notes or verification steps (ruff's -q)
    quiet = False


class _PlainConsole:
    """Text output where rich would add nothing (not a terminal, no colour forced): lines
    are written as they are, without importing rich (30 ms, a tenth of a small lint).
    Anything but a string (a table, Markdown) still goes through rich."""

    is_terminal = False

    def __init__(self) -> None:
        self._rich: Any = None

    @property
    def console(self) -> _PlainConsole:
        return self

    def print(self, *objects: Any, style: str | None = None, **kwargs: Any) -> None:
        if not kwargs and all(isinstance(o, str) for o in objects):
            sys.stdout.write(" ".join(visible(o) for o in objects) + "\n")
            return
        if self._rich is None:
            self._rich = _rich_console()
        self._rich.print(*objects, style=style, **kwargs)


def _plain() -> bool:
    """Whether rich would print plain text, one line per line: not a terminal (a terminal
    gets word wrapping even without colour), no ``--color always``, and none of the
    variables that make rich treat a pipe as a terminal."""
    if Options.color == "always" or any(
        v in os.environ for v in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    ):
        return False
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream: let rich decide
        return False


def _console() -> Any:
    return _PlainConsole() if _plain() else _rich_console()


def _rich_console() -> Any:
    from rich.console import Console

    kwargs: dict[str, Any] = {}
    if Options.color == "always":
        kwargs["force_terminal"] = True
    elif Options.color == "never":
        kwargs["no_color"] = True
        kwargs["color_system"] = None
    console = Console(highlight=False, markup=False, emoji=False, **kwargs)
    # on a terminal long lines wrap at word boundaries; piped, one finding stays one line
    # (grep-able). markup and emoji codes off: messages carry names and PyTorch code
    # (`x[mask] = v`), and a node named ':smile:' is not a smiley
    console.soft_wrap = not console.is_terminal
    return _SafeConsole(console)


def _file(console: Any, path: str) -> None:
    """The path, once, above its findings (eslint's grouping)."""
    console.print(visible(path), style="bold underline")


def _finding(console: Any, path: str | None, f: Any) -> None:
    """One finding; under its file's heading when ``path`` is None."""
    if isinstance(console, _PlainConsole):
        lead = f"{visible(path)} " if path is not None else "  "
        where = visible(f"[{f.graph}] {f.node} ({f.op_type})  ")
        console.print(f"{lead}{where}{f.rule} {f.severity.value}: {visible(f.message)}")
        _finding_details(console, path, f)
        return
    from rich.padding import Padding
    from rich.text import Text

    wrapped = path is None and console.console.is_terminal
    head = Text()
    if path is not None:
        head.append(visible(path), style="bold")
        head.append(" ")
    elif not wrapped:
        head.append("  ")
    head.append(visible(f"[{f.graph}] {f.node} ({f.op_type})  "))
    head.append(f"{f.rule} ", style=_STYLE[f.severity.value])
    head.append(f"{f.severity.value}: ", style=_STYLE[f.severity.value])
    head.append(visible(f.message))
    # under a heading: indented, and so are the lines a terminal wraps it into
    console.print(Padding(head, (0, 0, 0, 2)) if wrapped else head)
    _finding_details(console, path, f)


def _finding_details(console: Any, path: str | None, f: Any) -> None:
    pad = "    " if path is not None else "      "
    if f.scope:
        console.print(f"{pad}PyTorch scope: {f.scope}")
    if f.source:
        console.print(f"{pad}source: {f.source}")
    if f.fix is not None:
        console.print(f"{pad}fix ({f.fix.applicability.value}): {f.fix.title}", style="green")
    if f.advice:
        console.print(f"{pad}in PyTorch: {f.advice}", style="dim")


def print_lint(results: list[Any], errors: list[tuple[str, str]]) -> None:
    console = _console()
    total = {"error": 0, "warning": 0, "info": 0}
    safe = unsafe = 0
    for r in results:
        if r.findings or (r.notes and not Options.quiet):
            _file(console, r.path)
        for note in [] if Options.quiet else r.notes:
            console.print(f"  note: {note}", style="dim")
        for f in r.findings:
            _finding(console, None, f)
            total[f.severity.value] += 1
            if f.fix is not None:
                safe += f.fix.applicability.value == "safe"
                unsafe += f.fix.applicability.value == "unsafe"
    for path, problem in errors:
        console.print(f"{path}: could not be read: {problem}", style="bold red")
    if Options.quiet:
        return
    n = len(results) + len(errors)
    head = f"{n} file{'s' * (n != 1)} checked" + (f" ({len(errors)} unreadable)" if errors else "")
    if not any(total.values()):
        # an unreadable file was not checked: "no problems found" would claim it was
        console.print(head if errors else f"{head}: no problems found", style="bold")
        return
    fixes = f"{safe} fixable with `onnxfix repair`" + (
        f", {unsafe} more with `--unsafe-fixes`" if unsafe else ""
    )
    console.print(
        f"{head}: {total['error']} error(s), {total['warning']} warning(s), "
        f"{total['info']} info; {fixes}",
        style="bold",
    )


def statistics(results: list[Any]) -> list[dict[str, Any]]:
    """Findings counted per rule, most frequent first (``lint --statistics``)."""
    from collections import Counter

    from onnxfix import registry

    counts = Counter(f.rule for r in results for f in r.findings)
    fixable = {f.rule for r in results for f in r.findings if f.fix is not None}
    out = []
    for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        rule = registry.get(code)
        out.append(
            {
                "code": code,
                "name": rule.name if rule else code,
                "count": n,
                "fixable": code in fixable,
            }
        )
    return out


def print_statistics(results: list[Any], errors: list[tuple[str, str]]) -> None:
    console = _console()
    rows = statistics(results)
    width = max((len(str(r["count"])) for r in rows), default=1)
    for r in rows:
        mark = "[*]" if r["fixable"] else "   "
        console.print(f"{r['count']:>{width}}  {r['code']:<6} {mark} {r['name']}")
    for path, problem in errors:
        console.print(f"{path}: could not be read: {problem}", style="bold red")
    if not Options.quiet:
        total = sum(r["count"] for r in rows)
        n = len(results) + len(errors)
        console.print(f"{total} finding(s) in {n} file{'s' * (n != 1)}", style="bold")


def print_repair(result: Any, dry_run: bool) -> None:
    console = _console()
    done = result.written and not result.error
    verb = "fixed" if done else "would fix"
    for f in result.fixed:
        console.print(f"{verb} {f.rule} at {f.node} ({f.op_type}): {f.fix.title}", style="green")
    for f, checked in [] if Options.quiet else result.checks:
        console.print(f"  {f.rule} rewrite {checked}", style="dim")
    for f in result.remaining:
        _finding(console, result.input, f)
    ver = result.verification
    if ver is not None and not Options.quiet:
        for s in ver.steps:
            console.print(f"  verified {s.name}: {s.detail}", style="dim")
    for reason in result.reasons:
        console.print(f"not fixed: {reason}", style="yellow")
    _simplified(console, result)
    _diff(console, result)
    if result.error:  # the cause goes to stderr, once
        console.print(f"{result.input}: repair failed, nothing written", style="bold red")
    elif result.written:
        console.print(
            f"wrote {result.output} ({len(result.fixed)} fix(es), "
            f"{len(result.remaining)} finding(s) left)",
            style="bold",
        )
    elif dry_run:
        console.print(
            f"dry run: {len(result.fixed)} fix(es) would be applied; nothing written", style="bold"
        )
    elif not result.fixed:
        left = len(result.remaining)
        console.print(
            f"nothing to fix: nothing written ({left} finding(s) left)"
            if left
            else "nothing to fix: the model has no problems; nothing written",
            style="bold",
        )


def _diff(console: Any, result: Any) -> None:
    if result.diff or result.op_counts:
        console.print("diff (- removed, + added):", style="bold")
        for line in result.diff:
            console.print(f"  {line}", style="red" if line.startswith("-") else "green")
        if result.op_counts:
            console.print(f"  ops: {result.op_counts}")


def _simplified(console: Any, result: Any) -> None:
    if result.simplified and result.written:
        console.print(f"simplified with onnxsim: {result.simplified}", style="green")
    if result.simplify_skipped:
        console.print(
            f"not simplified (the unsimplified repair is kept): {result.simplify_skipped}",
            style="yellow",
        )


def print_rules(rules: list[Any]) -> None:
    """A table on a terminal; piped, one line per rule in aligned columns, the summary
    whole (a table would cut it at 80 columns: `onnxfix rules | grep fix` must see it)."""
    rows = [
        (r.code, r.name, r.severity.value, r.fixable.value if r.fixable else "-", r.summary)
        for r in rules
    ]
    if _plain():
        head = ("code", "name", "severity", "fix", "summary")
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(4)]
        for row in [head, *rows]:
            cells = [c.ljust(w) for c, w in zip(row, widths)]
            sys.stdout.write(visible("  ".join([*cells, row[4]])) + "\n")
        return
    from rich.table import Table

    table = Table(title="onnxfix rules")
    for col in ("code", "name", "severity", "fix"):
        table.add_column(col, no_wrap=True)  # codes and names are identifiers: never cut
    table.add_column("summary")
    for row in rows:
        table.add_row(*row)
    _console().print(table)


def print_rule(rule: Any) -> None:
    from rich.markdown import Markdown

    console = _console()
    console.print(f"# {rule.code} {rule.name} ({rule.severity.value})", style="bold")
    console.print(rule.summary)
    console.print(Markdown(rule.docs))


def print_check(result: Any) -> None:
    from onnxfix.report.check import describe_run

    console = _console()
    _file(console, result.path)
    for f in result.lint.findings:
        _finding(console, None, f)
    errors = len(result.lint.errors)
    console.print(f"lint: {errors} error(s), {len(result.lint.findings) - errors} other finding(s)")
    if result.against is not None:
        console.print(
            f"interface against {result.against}: "
            + ("same" if not result.interface else f"{len(result.interface)} difference(s)")
        )
        for problem in result.interface:
            console.print(f"  {problem}", style="red")
    loaded = result.load_error is None and any(r.ok or r.error for r in result.runs)
    console.print(
        "onnxruntime load: "
        + ("ok" if loaded else "FAILED" if result.load_error else "not reached")
    )
    for r in result.runs:
        if r.ok:
            diff = f", max abs diff {r.max_abs_diff:.3g}" if r.max_abs_diff is not None else ""
            console.print(f"run {_setting(r)}: ok{diff}")
        else:
            console.print(describe_run(r), style="yellow" if r.doubtful else "red")
    if result.compared_with:
        console.print(f"outputs compared with {result.compared_with}")
    for note in [] if Options.quiet else result.notes:
        console.print(f"note: {note}", style="dim")
    verdict = {0: "PASS", 1: "FAIL", 2: "COULD NOT VERIFY"}[result.exit_code]
    if result.exit_code == 2 and result.inconclusive:
        console.print(result.inconclusive, style="yellow")
    console.print(
        f"{result.path}: {verdict}",
        style={0: "bold green", 1: "bold red", 2: "bold yellow"}[result.exit_code],
    )


def print_check_summary(results: list[Any], errors: list[tuple[str, str]]) -> None:
    """After several models: one line each way they ended, unreadable files counted."""
    console = _console()
    for path, problem in errors:
        console.print(f"{path}: could not be read: {problem}", style="bold red")
    if Options.quiet:
        return
    verdicts = [r.exit_code for r in results]
    n = len(results) + len(errors)
    console.print(
        f"{n} model{'s' * (n != 1)} checked: {verdicts.count(0)} passed, {verdicts.count(1)} "
        f"failed, {verdicts.count(2)} could not be verified"
        + (f", {len(errors)} unreadable" if errors else ""),
        style="bold",
    )


def _setting(run: Any) -> str:
    base = ", ".join(f"{k}={v}" for k, v in run.setting.items()) or "static shapes"
    if run.derived:
        base += " → " + ", ".join(f"{k}={v}" for k, v in run.derived.items())
    return base
