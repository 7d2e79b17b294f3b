"""Regenerating the fixtures with the exporters that made them reproduces the committed
files and the manifest's claims about onnxruntime."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

torch = pytest.importorskip("torch")
sys.path.insert(0, str(ROOT))


def _check(version: str) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "fixtures/make_fixtures.py"), "--check", "--torch", version],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 problem(s)" in res.stdout


@pytest.mark.torch
def test_fixtures_regenerate_identically() -> None:
    assert torch.__version__.startswith("2.13.0"), "fixtures are pinned to torch 2.13.0"
    _check("2.13.0")


def test_torch201_fixtures_regenerate_identically() -> None:
    """The WeNet #2517 fixtures, exported by torch 2.0.1 itself (in its own environment)."""
    from fixtures import make_fixtures

    if make_fixtures.env_python("2.0.1") is None:
        pytest.skip("torch 2.0.1 environment absent (build it: fixtures/envs/torch201.sh)")
    _check("2.0.1")
