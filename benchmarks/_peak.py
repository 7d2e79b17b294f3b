"""Run a command; report its wall time and the peak of the summed resident memory of its
whole process tree (the parent and every probe child at once), polled every 20 ms.

Usage: ``python benchmarks/_peak.py CMD ARGS...`` -> prints one JSON line on stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> int:
    start = time.monotonic()
    proc = subprocess.Popen(sys.argv[1:])
    peak = 0
    while proc.poll() is None:
        peak = max(peak, sum(_rss_kb(p) for p in _tree(proc.pid)))
        time.sleep(0.02)
    wall = time.monotonic() - start
    print(
        json.dumps(
            {"wall_s": round(wall, 2), "peak_tree_mb": peak // 1024, "exit": proc.returncode}
        ),
        file=sys.stderr,
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
