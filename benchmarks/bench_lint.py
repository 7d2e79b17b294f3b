"""Lint a ~1.2 GB external-data HuBERT (the padding-mask bug included) and time it.

Usage: ``python benchmarks/bench_lint.py [--layers 24] [--dim 1024] [--runs 3]``

The model is exported by our own HuBERT reproduction (fixtures/exporters/hubert.py)
at HuBERT-large-like size (24 layers, d=1024, ffn 4096: ~300M parameters) and saved
with external data under ``benchmarks/out/`` (never committed).  Each measurement is
a whole process; wall time is the median of several runs, peak memory is the child's
max RSS, and bytes read is the kernel's ``rchar`` for the process — so "lint reads no
weights" is a measurement, not a promise.  Needs torch==2.13.0 to generate the model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"


def generate(path: Path, layers: int, dim: int) -> None:
    sys.path.insert(0, str(ROOT))
    import warnings

    import onnx
    import torch

    from fixtures.exporters import hubert

    torch.manual_seed(0)
    conv = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2  # fairseq's extractor
    model = hubert.HubertModel(conv_layers=conv, dim=dim, heads=16, ffn=4 * dim, layers=layers)
    model.eval()
    adapter = hubert.ExtractFeaturesAdapter(model, output_layer=layers)
    feats, mask = hubert.padded_batch(1, 16000, seed=0)
    tmp = path.with_suffix(".inline.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            adapter,
            (feats, mask),
            str(tmp),
            dynamo=False,
            opset_version=17,
            input_names=["feats", "padding_mask"],
            output_names=["x", "padding_mask_out"],
            dynamic_axes={
                "feats": {0: "B", 1: "L"},
                "padding_mask": {0: "B", 1: "L"},
                "x": {0: "B", 1: "T"},
            },
        )
    m = onnx.load(str(tmp))
    onnx.save(
        m, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=1024
    )
    tmp.unlink()


def measure(cmd: list[str]) -> dict[str, float]:
    """Wall time, peak RSS (MB) and bytes read (rchar, MB) of one child process."""
    code = (
        "import runpy, sys, atexit\n"
        "def _io():\n"
        "    io = dict(l.split(': ') for l in open('/proc/self/io').read().splitlines())\n"
        "    st = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines())\n"
        "    sys.stderr.write('RCHAR=' + io['rchar'] + '\\n')\n"
        "    sys.stderr.write('HWM=' + st['VmHWM'].split()[0] + '\\n')\n"
        "atexit.register(_io)\n"
        f"sys.argv = {cmd!r}\n"
        f"runpy.run_path({cmd[0]!r}, run_name='__main__') if {cmd[0]!r}.endswith('.py') "
        f"else runpy.run_module({cmd[0]!r}, run_name='__main__', alter_sys=True)\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _, status, _usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read() if proc.stderr else ""
    out = proc.stdout.read() if proc.stdout else ""

    def field(key: str) -> int:
        return next((int(x.split("=")[1]) for x in err.splitlines() if x.startswith(key)), -1)

    # VmHWM, not ru_maxrss: a forked child inherits the parent's maxrss until it execs
    return {
        "wall": wall,
        "rss_mb": field("HWM=") / 1024,
        "read_mb": field("RCHAR=") / 2**20,
        "exit": os.waitstatus_to_exitcode(status),
        "out": out,
    }


def median_of(cmd: list[str], runs: int) -> dict[str, float]:
    results = [measure(cmd) for _ in range(runs)]
    return {
        "wall": statistics.median(r["wall"] for r in results),
        "rss_mb": max(r["rss_mb"] for r in results),
        "read_mb": statistics.median(r["read_mb"] for r in results),
        "exit": results[-1]["exit"],
        "out": results[-1]["out"],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    folder = OUT / f"hubert_l{args.layers}_d{args.dim}"
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model.onnx"
    if not model.exists():
        t = time.perf_counter()
        generate(model, args.layers, args.dim)
        print(f"generated {model} in {time.perf_counter() - t:.1f} s")
    data_mb = (folder / "model.onnx.data").stat().st_size / 2**20
    floor = HERE / "_floor.py"
    checker = HERE / "_checker.py"
    out_dir = folder / "out"
    out_dir.mkdir(exist_ok=True)
    fixed = out_dir / "fixed.onnx"
    rows = {
        "floor: onnx.load (no weights) + infer_shapes": [str(floor), str(model)],
        "onnx.checker.check_model(full_check=True)": [str(checker), str(model)],
        "onnxfix lint": ["onnxfix", "lint", str(model), "--format", "json"],
        "cp of model + data": [str(HERE / "_cp.py"), str(model), str(out_dir / "cp.onnx")],
        "onnx.load with weights + onnx.save as external data": [
            str(HERE / "_resave.py"),
            str(model),
            str(out_dir / "resaved.onnx"),
        ],
        "onnxfix repair --no-verify": ["onnxfix", "repair", str(model), str(fixed), "--no-verify"],
        "onnxruntime InferenceSession creation": [str(HERE / "_session.py"), str(model)],
        "onnxfix repair (verified: checker, inference, session, probes)": [
            "onnxfix",
            "repair",
            str(model),
            str(fixed),
        ],
    }
    results = {
        name: median_of(cmd, 1 if "verified" in name else args.runs) for name, cmd in rows.items()
    }
    lint = results["onnxfix lint"]
    findings = json.loads(lint["out"])["files"][0]["findings"] if lint["out"] else []
    print(f"\nmodel: {model.name}, external data {data_mb:.0f} MB, median of {args.runs} runs\n")
    print("| what | wall (s) | peak RSS (MB) | read (MB) |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['wall']:.2f} | {r['rss_mb']:.0f} | {r['read_mb']:.1f} |")
    base = results["floor: onnx.load (no weights) + infer_shapes"]["wall"]
    print(
        f"\nlint / floor = {lint['wall'] / base:.2f}; lint exit {lint['exit']}; "
        f"findings: {[(f['rule'], f['node']) for f in findings]}"
    )
    cp = results["cp of model + data"]["wall"]
    nv = results["onnxfix repair --no-verify"]
    print(f"repair --no-verify / cp = {nv['wall'] / cp:.2f} (exit {nv['exit']})")
    (OUT / "lint_results.json").write_text(
        json.dumps(
            {
                "data_mb": data_mb,
                "results": {
                    k: {kk: vv for kk, vv in v.items() if kk != "out"} for k, v in results.items()
                },
                "findings": [(f["rule"], f["node"]) for f in findings],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
