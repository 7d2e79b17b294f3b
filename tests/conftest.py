from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SNAPSHOTS = ROOT / "tests" / "snapshots"
MANIFEST = json.loads((FIXTURES / "MANIFEST.json").read_text())["fixtures"]


def fixture_ids(kind: str | None = None) -> list[dict]:
    return [e for e in MANIFEST if kind is None or e["kind"] == kind]


def corpus_findings(entry: dict) -> list[dict]:
    """The reviewed snapshot of what lint reports on a fixture (tests/snapshots/corpus.json,
    rewritten by `pytest --snapshot-update`)."""
    path = SNAPSHOTS / "corpus.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    return data.get(entry["name"], [])


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the installed command exactly as a user would."""
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "onnxfix", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def cli():
    return run_cli


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--snapshot-update",
        action="store_true",
        help="rewrite tests/snapshots/ from what the code does now (review the diff)",
    )


@pytest.fixture
def snapshot(request: pytest.FixtureRequest):
    """Compare with (or, with --snapshot-update, write) a JSON snapshot under tests/snapshots/."""
    update = request.config.getoption("--snapshot-update")

    def check(name: str, value: object) -> None:
        path = SNAPSHOTS / f"{name}.json"
        text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
            return
        assert path.exists(), f"no snapshot {path.relative_to(ROOT)}: run pytest --snapshot-update"
        want = json.loads(path.read_text())
        assert json.loads(text) == want, (
            f"{path.relative_to(ROOT)} differs: run `pytest --snapshot-update` and review the diff"
        )

    return check
