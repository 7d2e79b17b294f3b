"""The wheel installs onnxfix and onnxfix.rules, and no top-level `rules` module."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_wheel_has_only_onnxfix_top_level(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("onnxfix-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"onnxfix"}
    assert "onnxfix/rules/where_broadcast.py" in names
    assert "onnxfix/report/json.py" in names
    assert not any(n.startswith(("tests/", "fixtures/", "rules/")) for n in names)


def test_lint_does_not_import_onnxruntime_or_torch() -> None:
    from tests.conftest import FIXTURES

    code = (
        "import sys; from onnxfix import api;"
        f"api.lint({str(FIXTURES / 'where_broadcast/mask_rank1_op12.onnx')!r});"
        "print(sorted(m for m in ('onnxruntime', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
