"""The wheel installs onnxfix and onnxfix.rules, and no top-level `rules` module."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_wheel_has_only_onnxfix_top_level(tmp_path: Path) -> None:
    """Built from a clean copy (an in-tree build/ folder keeps files a wheel no longer has),
    the wheel holds every module of onnxfix/ and rules/, and nothing else at the top."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "fixtures", "benchmarks", "__pycache__"
        ),
    )
    out = tmp_path / "wheel"
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
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("onnxfix-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"onnxfix"}
    want = {
        f"onnxfix/{p.relative_to(ROOT / 'onnxfix').as_posix()}"
        for p in (ROOT / "onnxfix").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    want |= {
        f"onnxfix/rules/{p.relative_to(ROOT / 'rules').as_posix()}"
        for p in (ROOT / "rules").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert want - names == set(), "modules missing from the wheel"
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


def test_without_onnxruntime_lint_works_and_repair_says_how_to_get_it(tmp_path: Path) -> None:
    """onnxruntime is the `runtime` extra: lint never imports it; repair and check say in
    one line how to get it (a finder that hides it stands in for an install without it)."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'onnxruntime' or name.startswith('onnxruntime.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(hide))
    model = ROOT / "fixtures/where_broadcast/mask_rank1_op12.onnx"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "onnxfix", *args], capture_output=True, text=True, env=env
        )

    assert run("lint", str(model)).returncode == 1
    for args in (("repair", str(model), str(tmp_path / "o.onnx")), ("check", str(model))):
        res = run(*args)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert 'pip install "onnxfix[runtime]"' in res.stderr
    res = run("repair", str(model), str(tmp_path / "o.onnx"), "--no-verify")
    assert res.returncode == 0 and (tmp_path / "o.onnx").exists()
