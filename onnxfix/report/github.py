"""GitHub Actions workflow commands: findings appear inline on the pull request."""

from __future__ import annotations

from typing import Any

from onnxfix.report.safe import visible

_CMD = {"error": "error", "warning": "warning", "info": "notice"}


def _escape(text: str, prop: bool = False) -> str:
    """A workflow-command value: the command's own escapes, then every other control
    character made visible (a raw ESC would still reach the log viewer)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return visible(text)


def annotation(path: str, level: str, title: str, message: str) -> str:
    return (
        f"::{_CMD[level]} file={_escape(path, True)},title={_escape(title, True)}::"
        f"{_escape(message)}"
    )


def github(files: list[tuple[str, list[Any]]], extra: list[str] | None = None) -> str:
    """One annotation per finding, then a summary notice: GitHub shows a limited number of
    annotations per step, and the summary keeps the count of the rest."""
    lines = []
    counts: dict[str, int] = {}
    for path, findings in files:
        for f in findings:
            where = f"{f.node} ({f.op_type})" + (f", PyTorch scope {f.scope}" if f.scope else "")
            msg = f"{where}: {f.message}" + (f"\nIn PyTorch: {f.advice}" if f.advice else "")
            lines.append(annotation(path, f.severity.value, f"{f.rule} {f.name}", msg))
            counts[f.rule] = counts.get(f.rule, 0) + 1
    lines += extra or []
    total = sum(counts.values())
    per_rule = ", ".join(f"{code} x{n}" for code, n in sorted(counts.items()))
    lines.append(
        f"::notice title=onnxfix summary::{total} finding(s) in {len(files)} file(s)"
        + (f": {_escape(per_rule)}" if per_rule else "")
        + (f"; {len(extra)} other annotation(s)" if extra else "")
    )
    return "\n".join(lines)
