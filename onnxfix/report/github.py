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
    lines = []
    for path, findings in files:
        for f in findings:
            where = f"{f.node} ({f.op_type})" + (f", PyTorch scope {f.scope}" if f.scope else "")
            msg = f"{where}: {f.message}" + (f"\nIn PyTorch: {f.advice}" if f.advice else "")
            lines.append(annotation(path, f.severity.value, f"{f.rule} {f.name}", msg))
    lines += extra or []
    return "\n".join(lines)
