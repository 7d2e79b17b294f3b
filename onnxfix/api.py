"""The Python API: lint, repair and check, returning typed results.

The CLI is a thin layer over these functions; tests and other tools call them
directly.  The pipelines live in :mod:`onnxfix.linter`, :mod:`onnxfix.repairer` and
:mod:`onnxfix.gate`; nothing here imports onnxruntime.
"""

from __future__ import annotations

from onnxfix.fixer import FixFailed, FixRun, NonConvergence, apply_fixes, run_fixes
from onnxfix.gate import CheckResult, ProbeRun, check
from onnxfix.linter import LintResult, analyse, explain, lint, lint_model
from onnxfix.repairer import RepairResult, repair

__all__ = [
    "CheckResult",
    "FixFailed",
    "FixRun",
    "LintResult",
    "NonConvergence",
    "ProbeRun",
    "RepairResult",
    "analyse",
    "apply_fixes",
    "check",
    "explain",
    "lint",
    "lint_model",
    "repair",
    "run_fixes",
]
