"""SARIF 2.1.0 for code scanning: rule metadata comes from the rules' own docs."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from onnxfix import __version__

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
HELP = "https://github.com/onnxfix/onnxfix/blob/main/README.md"


def uri(path: str) -> str:
    """A path as a SARIF ``uri-reference``: spaces, ``%``, ``#`` and non-ASCII encoded."""
    return urllib.parse.quote(path.replace("\\", "/"), safe="/:@!$&'()*+,;=-._~")


def _first_section(docs: str) -> str:
    """The rule's "What it does" paragraph, as plain text."""
    body = docs.split("## What it does", 1)[-1].split("##", 1)[0]
    return " ".join(body.split())


_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def _rule_meta(rule: Any) -> dict[str, Any]:
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": _first_section(rule.docs) or rule.summary},
        "helpUri": f"{HELP}#{rule.code.lower()}",
        "help": {"text": rule.docs, "markdown": rule.docs},
        "defaultConfiguration": {"level": _LEVEL[rule.severity.value]},
        "properties": {"family": rule.family, "fix": rule.fixable.value if rule.fixable else None},
    }


def _result(path: str, f: Any, index: dict[str, int]) -> dict[str, Any]:
    import hashlib  # here: 2.5 ms of start-up that other formats never need

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
                "physicalLocation": {"artifactLocation": {"uri": uri(path)}},
                "logicalLocations": logical,
            }
        ],
        # stable across runs and edits elsewhere in the model: rule, graph and node
        "partialFingerprints": {
            "onnxfix/v1": hashlib.sha256(f"{f.rule}\0{f.graph}\0{f.node}".encode()).hexdigest()[:32]
        },
        "properties": {"op_type": f.op_type, "graph": f.graph},
    }
    if f.rule in index:
        res["ruleIndex"] = index[f.rule]
    return res


def sarif(
    files: list[tuple[str, list[Any]]],
    rules: list[Any],
    extra: list[dict[str, Any]] | None = None,
    unreadable: list[tuple[str, str]] | None = None,
) -> str:
    """``files``: (path, findings); ``extra``: ready-made results (e.g. runtime failures);
    ``unreadable``: (path, problem) of files that could not be linted."""
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
                "artifacts": [{"location": {"uri": uri(path)}} for path, _ in files],
                "results": results,
                "invocations": [
                    {
                        "executionSuccessful": not unreadable,
                        "toolExecutionNotifications": [
                            {
                                "level": "error",
                                "message": {"text": f"{path}: {problem}"},
                                "locations": [
                                    {"physicalLocation": {"artifactLocation": {"uri": uri(path)}}}
                                ],
                            }
                            for path, problem in unreadable or []
                        ],
                    }
                ],
            }
        ],
    }
    return json.dumps(doc, indent=2)
