"""Run time of repeat_interleave lowerings before and after `onnxfix repair`.

Usage: ``python benchmarks/bench_repeat.py [--runs 200]``

For every repeat_pattern fixture whose original runs in onnxruntime, and for a
Loop lowering at the size of the report (x[8, 512, 8], exported live with
torch 2.13), time ``session.run`` of the original and the repaired model on the
same inputs (median of --runs, after a warm-up) and print the ratio.  Models
whose original cannot run are listed with the reason; they have no "before".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import onnxruntime as ort

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from onnxfix import api, verify  # noqa: E402


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _time(sess: ort.InferenceSession, feeds: dict, runs: int) -> float:
    sess.run(None, feeds)
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feeds)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


def _loop_model(folder: Path) -> tuple[Path, dict]:
    import torch

    from fixtures.exporters import minimal

    path = folder / "loop_8x512x8.onnx"
    x = torch.randn(8, 512, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            minimal.Repeat(1, "size_long"),
            (x,),
            str(path),
            dynamo=False,
            opset_version=13,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {1: "T"}},
        )
    return path, {"x": x.numpy()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    manifest = json.loads((ROOT / "fixtures/MANIFEST.json").read_text())["fixtures"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        cases = []
        for e in manifest:
            if not e["model"].startswith("repeat_pattern/") or e["kind"] != "positive":
                continue
            feeds = verify.load_reference(ROOT / "fixtures" / e["reference"])[-1][0]
            cases.append(
                (
                    e["name"],
                    ROOT / "fixtures" / e["model"],
                    feeds,
                    ROOT / "fixtures" / e["reference"],
                )
            )
        path, feeds = _loop_model(tmpd)
        cases.append(("loop x[8, 512, 8] (report size)", path, feeds, None))
        for name, src, feeds, ref in cases:
            out = tmpd / f"{src.stem}.fixed.onnx"
            res = api.repair(src, out, reference=ref)
            if not res.written:
                rows.append((name, None, None, f"repair failed: {res.error}"))
                continue
            after = _time(_session(out), feeds, args.runs)
            try:
                before = _time(_session(src), feeds, args.runs)
                note = ""
            except Exception as exc:  # the broken originals: nothing to compare with
                before, note = None, str(exc).splitlines()[0][:70]
            rows.append((name, before, after, note))
    print(f"\nonnxruntime {ort.__version__}, 1 thread, median of {args.runs} runs\n")
    print("| model | original (ms) | repaired (ms) | speed-up |\n|---|---|---|---|")
    for name, before, after, note in rows:
        b = f"{before:.3f}" if before is not None else f"does not run ({note})"
        a = f"{after:.3f}" if after is not None else note
        ratio = f"{before / after:.1f}x" if before and after else "-"
        print(f"| {name} | {b} | {a} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
