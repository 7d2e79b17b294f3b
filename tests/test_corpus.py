"""No false positives on real models: every model in the onnx wheel's backend test data."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from onnxfix import api

DATA = Path(onnx.__file__).parent / "backend/test/data"
MODELS = sorted(DATA.rglob("*.onnx"))


def test_corpus_has_models() -> None:
    assert len(MODELS) >= 100, DATA


def test_backend_corpus_lints_clean_in_parallel(cli) -> None:
    res = cli("lint", "-j", "2", "--format", "json", *map(str, MODELS))
    doc = json.loads(res.stdout)
    assert len(doc["files"]) == len(MODELS)
    errors = [
        (f["path"], x["rule"], x["message"])
        for f in doc["files"]
        for x in f["findings"]
        if x["severity"] == "error"
    ]
    unreadable = [f for f in doc["files"] if "error" in f]
    assert errors == [] and unreadable == []
    assert res.returncode == 0


@pytest.mark.parametrize("model", MODELS[::7], ids=lambda p: p.parent.name)
def test_repair_changes_nothing(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    res = api.repair(model, out)
    assert res.fixed == [] and res.exit_code == 0
    assert not out.exists(), "nothing fixed: nothing written"
