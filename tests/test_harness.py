"""Invariants every rule must keep, over every fixture (after eslint's RuleTester)."""

from __future__ import annotations

import onnx
import pytest

from onnxfix import api, context, registry
from onnxfix.findings import Applicability
from tests.conftest import FIXTURES, fixture_ids

RULES = registry.all_rules()


@pytest.mark.parametrize("entry", fixture_ids(), ids=lambda e: e["name"])
def test_detection_does_not_mutate(entry: dict) -> None:
    model = onnx.load(str(FIXTURES / entry["model"]))
    before = model.SerializeToString()
    ctx = context.build(model)
    for rule in RULES:
        list(rule.detect(ctx))
        rule.explain(ctx)
    assert model.SerializeToString() == before


@pytest.mark.parametrize("entry", fixture_ids(), ids=lambda e: e["name"])
def test_declared_fixability_matches(entry: dict) -> None:
    """A finding carries its rule's code, name and severity, and a fix only if the rule
    declares one, never better than declared."""
    model = onnx.load(str(FIXTURES / entry["model"]))
    ctx = context.build(model)
    order = [Applicability.SAFE, Applicability.UNSAFE, Applicability.DISPLAY_ONLY]
    for rule in RULES:
        for d in rule.detect(ctx):
            f = d.finding
            assert f.rule == rule.code and f.name == rule.name
            assert f.severity in (rule.severity, *rule.severities)
            assert (f.fix is None) == (d.plan is None)
            if f.fix is None:
                continue
            assert rule.fixable is not None, rule.code
            assert type(rule).apply is not registry.Rule.apply, rule.code
            assert order.index(f.fix.applicability) >= order.index(rule.fixable)
            assert d.plan is not None and d.plan.rule is rule


@pytest.mark.parametrize("entry", fixture_ids("positive"), ids=lambda e: e["name"])
def test_fixes_converge(entry: dict) -> None:
    model = onnx.load(str(FIXTURES / entry["model"]))
    fixed = api.apply_fixes(model, list(RULES), unsafe=True)
    again = api.apply_fixes(model, list(RULES), unsafe=True)
    assert again == [], "a second repair must change nothing"
    remaining = api.lint_model(model, list(RULES))[0]
    if fixed and not any(f.severity.value == "error" for f in remaining):
        onnx.checker.check_model(model, full_check=True)


def test_registry_unique_codes_and_names() -> None:
    codes = [r.code for r in RULES]
    names = [r.name for r in RULES]
    assert len(set(codes)) == len(codes) and len(set(names)) == len(names)
    for r in RULES:
        assert r.code[:2].isalpha() and r.code[2:].isdigit()
        assert r.name == r.name.lower() and " " not in r.name
