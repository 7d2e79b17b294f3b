"""The per-rule layer (after eslint's RuleTester and ruff's rule fixtures).

Each rule carries its own small cases (ONNX text, ``valid`` and ``invalid``).
Every case runs with that rule alone: valid cases give no finding; invalid
ones give findings whose messages and fix titles are snapshotted, and, for a
fixable rule, the fix is applied, its node diff snapshotted, the result checked
by onnx.checker, re-linted clean (fixes converge), and run in onnxruntime at
two settings of distinct dims against the case's reference semantics.
``pytest --snapshot-update`` rewrites the snapshots.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxfix import contracts, fixer, linter, probe, registry
from onnxfix.rule import Case, Rule

RULES = registry.all_rules()
CASES = [
    (r, kind, c)
    for r in RULES
    for kind, cs in (("valid", r.valid), ("invalid", r.invalid))
    for c in cs
]


def _id(item: tuple[Rule[Any], str, Case]) -> str:
    rule, kind, case = item
    return f"{rule.code}-{kind}-{case.name}"


def _contract(case: Case) -> contracts.Contract | None:
    return contracts.load(case.expect) if case.expect else None


def _nodes(m: onnx.ModelProto) -> list[str]:
    return [f"{n.op_type}({', '.join(n.input)}) -> {', '.join(n.output)}" for n in m.graph.node]


def node_diff(before: onnx.ModelProto, after: onnx.ModelProto) -> list[str]:
    a, b = _nodes(before), _nodes(after)
    return [f"- {x}" for x in a if x not in b] + [f"+ {x}" for x in b if x not in a]


def test_every_rule_has_cases() -> None:
    for r in RULES:
        assert r.invalid, f"{r.code} has no invalid case"
        assert r.valid, f"{r.code} has no valid case"
        if r.fixable is not None:
            assert any(c.reference is not None for c in r.invalid), (
                f"{r.code} fixes, but no invalid case checks the fix's result"
            )


@pytest.mark.parametrize("item", [c for c in CASES if c[1] == "valid"], ids=_id)
def test_valid_case(item: tuple[Rule[Any], str, Case]) -> None:
    rule, _, case = item
    found, _ = linter.analyse(case.model(), [rule], _contract(case))
    assert [d.finding.message for d in found] == []


@pytest.mark.parametrize("item", [c for c in CASES if c[1] == "invalid"], ids=_id)
def test_invalid_case(item: tuple[Rule[Any], str, Case], snapshot) -> None:
    rule, _, case = item
    model = case.model()
    found, _ = linter.analyse(model, [rule], _contract(case))
    assert found, f"{rule.code} did not fire on '{case.name}'"
    shot: dict[str, Any] = {
        "findings": [
            {
                "node": d.finding.node,
                "message": d.finding.message,
                "fix": d.finding.fix.title if d.finding.fix else None,
            }
            for d in found
        ]
    }
    if any(d.plan is not None for d in found):
        fixed = onnx.ModelProto()
        fixed.CopyFrom(model)
        run = fixer.run_fixes(fixed, [rule], unsafe=True, contract=_contract(case))
        assert run.fixed, f"{rule.code} offered a fix but applied none"
        assert not [f for f in run.after if f.rule == rule.code and f.fix is not None], (
            "the fix must remove what it fixed"
        )
        shot["diff"] = node_diff(model, fixed)
        shot["checked"] = [a.checked for a in run.applied if a.checked]
        onnx.checker.check_model(fixed, full_check=True)
        if case.reference is not None:
            _compare(fixed, case)
    snapshot(f"rules/{rule.code}/{slug(case.name)}", shot)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _compare(model: onnx.ModelProto, case: Case) -> None:
    """Run the fixed model at two settings of distinct dims against the case's reference."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = list(case.dims)
    settings = [dict(zip(names, combo)) for combo in zip(*(case.dims[n] for n in names))]
    assert len(settings) >= 2 or not names, "a case with dynamic dims needs two settings"
    for sym, values in case.dims.items():
        assert 1 not in values and len(set(values)) == len(values), sym
    for seed, setting in enumerate(settings or [{}]):
        feeds = probe.make_inputs(model, setting, seed)
        assert feeds is not None
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        want = case.reference(feeds)  # type: ignore[misc]
        for name, ref in want.items():
            assert got[name].shape == ref.shape, (name, setting)
            np.testing.assert_allclose(got[name], ref, rtol=1e-5, atol=1e-6)


def test_snapshot_names_are_unique() -> None:
    seen = [(r.code, slug(c.name)) for r, _, c in CASES]
    assert all(name for _, name in seen)
    assert len(seen) == len(set(seen))
