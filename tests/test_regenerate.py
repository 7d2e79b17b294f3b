"""Regenerating the fixtures with torch==2.13.0 reproduces the committed files and the
manifest's claims about onnxruntime."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

torch = pytest.importorskip("torch")


@pytest.mark.torch
def test_fixtures_regenerate_identically() -> None:
    assert torch.__version__.startswith("2.13.0"), "fixtures are pinned to torch 2.13.0"
    res = subprocess.run(
        [sys.executable, str(ROOT / "fixtures/make_fixtures.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 problem(s)" in res.stdout
