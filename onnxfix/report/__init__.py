"""Reporters: turn findings into text for people or JSON for tools."""

from onnxfix.report.json import SCHEMA_VERSION, lint_json, repair_json
from onnxfix.report.text import print_lint, print_repair, print_rule, print_rules

__all__ = [
    "SCHEMA_VERSION", "lint_json", "print_lint", "print_repair", "print_rule", "print_rules",
    "repair_json",
]
