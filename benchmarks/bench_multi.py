"""Many files at once: the onnx wheel's 149 backend models, and copies of a big graph.

Usage: ``python benchmarks/bench_multi.py [--runs 3]``

Times ``onnxfix lint`` as whole processes over (a) the 149 models of
``onnx/backend/test/data`` in one call, with ``-j 1`` and ``-j 2``, and (b) the
HuBERT-large graph from ``bench_lint.py`` listed 8 times, with ``-j 1`` and
``-j 2`` (cores: 2).  With ``--polygraphy`` it also times ``polygraphy check lint``
on the big model once (if polygraphy is installed; it is not a dependency).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import onnx

HERE = Path(__file__).resolve().parent
BIG = HERE / "out/hubert_l24_d1024/model.onnx"


def wall(cmd: list[str], runs: int) -> tuple[float, int]:
    times, code = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        code = subprocess.run(cmd, capture_output=True).returncode
        times.append(time.perf_counter() - t)
    return statistics.median(times), code


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--polygraphy", action="store_true")
    args = ap.parse_args()
    exe = [sys.executable, "-m", "onnxfix", "lint", "--format", "json"]
    corpus = sorted(
        str(p) for p in (Path(onnx.__file__).parent / "backend/test/data").rglob("*.onnx")
    )
    rows = []
    for jobs in (1, 2):
        t, code = wall([*exe, "-j", str(jobs), *corpus], args.runs)
        rows.append((f"lint {len(corpus)} backend models, -j {jobs}", t, code))
    if BIG.exists():
        for jobs in (1, 2):
            t, code = wall([*exe, "-j", str(jobs), *[str(BIG)] * 8], args.runs)
            rows.append((f"lint HuBERT-large graph x8, -j {jobs}", t, code))
        poly = shutil.which("polygraphy", path=str(Path(sys.executable).parent))
        if args.polygraphy and poly:
            t, code = wall([poly, "check", "lint", str(BIG)], 1)
            rows.append(("polygraphy check lint, HuBERT-large (1 run)", t, code))
    print("| what | wall (s) | exit |\n|---|---|---|")
    for name, t, code in rows:
        print(f"| {name} | {t:.2f} | {code} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
