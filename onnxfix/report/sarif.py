"""SARIF 2.1.0 for code scanning: rule metadata comes from the rules' own docs."""

from __future__ import annotations

import json
from typing import Any

from onnxfix import __version__

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def _rule_meta(rule: Any) -> dict[str, Any]:
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.summary},
        "help": {"text": rule.docs, "markdown": rule.docs},
        "defaultConfiguration": {"level": _LEVEL[rule.severity.value]},
        "properties": {"family": rule.family, "fix": rule.fixable.value if rule.fixable else None},
    }


def _result(path: str, f: Any, index: dict[str, int]) -> dict[str, Any]:
    logical = [{"name": f.node, "kind": "function", "fullyQualifiedName": f"{f.graph}/{f.node}"}]
    if f.scope:
        logical.append({"name": f.scope, "kind": "module"})
    text = f.message + (f"\nIn PyTorch: {f.advice}" if f.advice else "")
    res: dict[str, Any] = {
        "ruleId": f.rule,
        "level": _LEVEL[f.severity.value],
        "message": {"text": text},
        "locations": [
            {
                "physicalLocation": {"artifactLocation": {"uri": path}},
                "logicalLocations": logical,
            }
        ],
        "properties": {"op_type": f.op_type, "graph": f.graph},
    }
    if f.rule in index:
        res["ruleIndex"] = index[f.rule]
    return res


def sarif(
    files: list[tuple[str, list[Any]]], rules: list[Any], extra: list[dict[str, Any]] | None = None
) -> str:
    """``files``: (path, findings); ``extra``: ready-made results (e.g. runtime failures)."""
    index = {r.code: i for i, r in enumerate(rules)}
    results = [_result(path, f, index) for path, findings in files for f in findings]
    results += extra or []
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "onnxfix",
                        "version": __version__,
                        "informationUri": "https://pypi.org/project/onnxfix/",
                        "rules": [_rule_meta(r) for r in rules],
                    }
                },
                "artifacts": [{"location": {"uri": path}} for path, _ in files],
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2)
