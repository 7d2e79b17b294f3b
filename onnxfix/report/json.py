"""The machine-readable contract.  Bump :data:`SCHEMA_VERSION` on any breaking change."""

from __future__ import annotations

import json
from typing import Any

SCHEMA_VERSION = "1"


def lint_json(results: list[Any], errors: list[tuple[str, str]]) -> str:
    files = [
        {"path": r.path, "findings": [f.to_json() for f in r.findings], "notes": r.notes}
        for r in results
    ]
    files += [{"path": p, "error": msg, "findings": []} for p, msg in errors]
    return json.dumps({"version": SCHEMA_VERSION, "files": files}, indent=2)


def repair_json(result: Any) -> str:
    ver = result.verification
    doc = {
        "version": SCHEMA_VERSION,
        "input": result.input,
        "output": result.output,
        "written": result.written,
        "fixed": [f.to_json() for f in result.fixed],
        "remaining": [f.to_json() for f in result.remaining],
        "verification": None
        if ver is None
        else {
            "steps": [{"name": s.name, "detail": s.detail} for s in ver.steps],
            "settings": ver.settings,
            "compared_with": ver.compared_with,
            "max_abs_diff": ver.max_abs_diff,
            "rewrites": ver.rewrites,
        },
        "checks": [{"rule": f.rule, "node": f.node, "checked": c} for f, c in result.checks],
        "reasons": result.reasons,
        "error": result.error,
        "simplified": result.simplified,
        "diff": result.diff,
        "op_counts": result.op_counts,
        "simplify_skipped": result.simplify_skipped,
    }
    return json.dumps(doc, indent=2)


def check_json(result: Any) -> str:
    doc = {
        "version": SCHEMA_VERSION,
        "path": result.path,
        "passed": result.passed,
        "exit_code": result.exit_code,
        "inconclusive": result.inconclusive,
        "findings": [f.to_json() for f in result.lint.findings],
        "load_error": result.load_error,
        "runs": [
            {
                "setting": r.setting,
                "ok": r.ok,
                "error": r.error,
                "node": r.node,
                "scope": r.scope,
                "explained_by": r.explained_by,
                "max_abs_diff": r.max_abs_diff,
                "derived": r.derived,
                "doubtful": r.doubtful,
                "mismatch": r.mismatch,
                "first_difference": r.first_difference,
            }
            for r in result.runs
        ],
        "notes": result.notes,
        "against": result.against,
        "interface": result.interface,
        "compared_with": result.compared_with,
    }
    return json.dumps(doc, indent=2)
