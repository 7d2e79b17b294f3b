"""Reporters: turn findings into text for people, JSON/SARIF for tools, annotations for CI."""

from onnxfix.report.check import describe_run, run_title, sarif_runtime
from onnxfix.report.github import annotation, github
from onnxfix.report.json import SCHEMA_VERSION, check_json, lint_json, repair_json
from onnxfix.report.sarif import sarif
from onnxfix.report.text import print_check, print_lint, print_repair, print_rule, print_rules

__all__ = [
    "SCHEMA_VERSION", "annotation", "check_json", "describe_run", "github", "lint_json",
    "print_check", "print_lint", "print_repair", "print_rule", "print_rules", "repair_json",
    "run_title", "sarif", "sarif_runtime",
]
