"""Describing probe runs of ``onnxfix check`` in every format."""

from __future__ import annotations

from typing import Any

from onnxfix.report.sarif import uri


def run_title(run: Any) -> str:
    if getattr(run, "mismatch", False):
        return "outputs differ"
    return "onnxruntime" + (f" ({run.explained_by})" if run.explained_by else "")


def sarif_interface(path: str, problem: str) -> dict[str, Any]:
    """An interface difference from ``check --against`` as a SARIF result."""
    return {
        "ruleId": "interface",
        "level": "error",
        "message": {"text": f"interface differs from the original: {problem}"},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri(path)}}}],
        "properties": {"source": "onnxfix check --against"},
    }


def describe_run(run: Any) -> str:
    if getattr(run, "mismatch", False):
        setting = ", ".join(f"{k}={v}" for k, v in run.setting.items()) or "static shapes"
        first = f"; first difference: {run.first_difference}" if run.first_difference else ""
        return f"outputs differ at {setting}: {run.error}{first}"
    where = ""
    if run.node:
        where = f" at {run.node}" + (f" (PyTorch scope {run.scope})" if run.scope else "")
    cause = f"; see {run.explained_by}" if run.explained_by else ""
    setting = ""
    if run.setting:
        setting = " with " + ", ".join(f"{k}={v}" for k, v in run.setting.items())
        if getattr(run, "derived", None):
            setting += " → " + ", ".join(f"{k}={v}" for k, v in run.derived.items())
    if getattr(run, "doubtful", None) and run.doubtful == run.error:  # a limit: no verdict
        return f"no result{setting}: {run.error}"
    doubt = f" ({run.doubtful})" if getattr(run, "doubtful", None) else ""
    return f"onnxruntime failed{setting}{where}{cause}{doubt}: {run.error}"


def sarif_runtime(path: str, run: Any) -> dict[str, Any]:
    logical = [{"name": run.node, "kind": "function"}] if run.node else []
    if run.scope:
        logical.append({"name": run.scope, "kind": "module"})
    res: dict[str, Any] = {
        "ruleId": run.explained_by
        or ("parity" if getattr(run, "mismatch", False) else "onnxruntime"),
        "level": "error",
        "message": {"text": describe_run(run)},
        "locations": [
            {
                "physicalLocation": {"artifactLocation": {"uri": uri(path)}},
                "logicalLocations": logical,
            }
        ],
        "properties": {"setting": run.setting, "source": "onnxruntime"},
    }
    return res
