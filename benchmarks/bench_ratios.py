"""Issue 15's ratios in one command, each paired with its floor in the same run.

Usage: ``python benchmarks/bench_ratios.py [--pairs 3] [--curve] [--skip-big]``

Every measurement is a whole process.  Each ratio is the median over ``--pairs``
pairs of (subject, floor) run back to back, so a slow moment of the machine hits
both sides of a pair; a row whose subject takes under a second gets three times the
pairs (:data:`SHORT_FACTOR`).  Rows (target in brackets):

- lint of the 1.2 GB HuBERT-large model (``bench_lint.py`` makes it) / floor  [1.5]
- lint of a valid transformer-block graph of 10k and 100k nodes / floor  [2.0, 3.0]
- ``repair --no-verify`` of the 1.2 GB model / ``cp`` of model and data + fsync  [1.5]
- ``repair`` (verified) of the 1.2 GB model / onnxruntime session creation  [2.0]
  (a default session; the verification's own skips prepacking, and its creation time is
  printed after the rows, for information)
- ``lint -j 2`` / ``lint -j 1`` over the onnx wheel's 149 backend models  [< 1]

The floor for lint is ``onnx.load(..., load_external_data=False)`` plus
``onnx.shape_inference.infer_shapes`` (``_floor.py``).  ``--curve`` adds lint and
floor times from 1k to 1M nodes (the 1M-node graph takes a few GB).  Models are
written under ``benchmarks/out/`` (never committed).  onnxfix's bytecode is compiled
first, as an install does (:func:`bytecode` says why).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
BIG = OUT / "hubert_l24_d1024/model.onnx"
PY = sys.executable


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=False)
    return time.perf_counter() - t


#: a row whose subject takes under a second gets this many times the pairs: such a
#: process varies by up to 30% from run to run (start-up and imports; measured: a
#: median of 5 pairs of ``lint -j 2`` / ``-j 1`` ranged 0.78-0.98 within minutes)
SHORT_FACTOR = 3


def paired(subject: list[str], floor: list[str], pairs: int, setup=None) -> dict:
    ratios, subj, flo = [], [], []
    want = pairs
    while len(ratios) < want:
        if setup:
            setup()
        a = wall(subject)
        if setup:
            setup()
        b = wall(floor)
        subj.append(a)
        flo.append(b)
        ratios.append(a / b)
        if len(ratios) == pairs and statistics.median(subj) < 1.0:
            want = pairs * SHORT_FACTOR
    return {
        "subject_s": round(statistics.median(subj), 3),
        "floor_s": round(statistics.median(flo), 3),
        "ratio": round(statistics.median(ratios), 2),
        "pairs": len(ratios),
        "ratios": [round(r, 2) for r in ratios],
    }


def transformer(blocks: int, path: Path, d: int = 16, heads: int = 2) -> int:
    """A valid graph of pre-norm attention + MLP blocks with dynamic B, T; 22 nodes each."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def w(name: str, *shape: int) -> str:
        inits.append(numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
        return name

    w("ln_s", d)
    w("ln_b", d)
    inits.append(numpy_helper.from_array(np.array([0, 0, heads, d // heads], np.int64), "hshape"))
    inits.append(numpy_helper.from_array(np.array([0, 0, d], np.int64), "dshape"))
    x = "x"
    for i in range(blocks):
        p = f"b{i}_"

        def n(op: str, ins: list[str], p: str = p, **attrs) -> str:
            out = f"{p}{op}_{len(nodes)}"
            nodes.append(helper.make_node(op, ins, [out], name=f"/{out}", **attrs))
            return out

        h = n("LayerNormalization", [x, "ln_s", "ln_b"], axis=-1)
        q = n("MatMul", [h, w(p + "wq", d, d)])
        k = n("MatMul", [h, w(p + "wk", d, d)])
        v = n("MatMul", [h, w(p + "wv", d, d)])
        q = n("Transpose", [n("Reshape", [q, "hshape"])], perm=[0, 2, 1, 3])
        k = n("Transpose", [n("Reshape", [k, "hshape"])], perm=[0, 2, 3, 1])
        v = n("Transpose", [n("Reshape", [v, "hshape"])], perm=[0, 2, 1, 3])
        a = n("Softmax", [n("MatMul", [q, k])], axis=-1)
        o = n("Reshape", [n("Transpose", [n("MatMul", [a, v])], perm=[0, 2, 1, 3]), "dshape"])
        x = n("Add", [x, n("MatMul", [o, w(p + "wo", d, d)])])
        m = n(
            "Relu", [n("MatMul", [n("LayerNormalization", [x, "ln_s", "ln_b"]), w(p + "w1", d, d)])]
        )
        x = n("Add", [x, n("MatMul", [m, w(p + "w2", d, d)])])
    nodes.append(helper.make_node("Identity", [x], ["y"], name="/out"))
    g = helper.make_graph(
        nodes,
        "transformer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", d])],
        inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    if model.ByteSize() > 1_900_000_000:
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data")
    else:
        onnx.save(model, str(path))
    return len(nodes)


def graph_of(nodes: int) -> Path:
    path = OUT / f"transformer_{nodes}.onnx"
    if not path.exists():
        transformer(max(1, nodes // 22), path)
    return path


def lint_row(path: Path, pairs: int) -> dict:
    return paired(
        [PY, "-m", "onnxfix", "lint", str(path)], [PY, str(HERE / "_floor.py"), str(path)], pairs
    )


def bytecode() -> None:
    """Compile onnxfix's bytecode, as ``pip install`` does when it installs a package.

    An editable checkout run with ``PYTHONDONTWRITEBYTECODE=1`` (this machine sets it)
    compiles every module of ours from source on every run, because the bytecode it finds
    is stale and is never rewritten: about 30 ms a command (``-X importtime`` showed
    ``onnxfix.cli`` at 7.5 ms of its own, all of it ``compile``).  No installed copy pays
    that, and the floor does not: onnx was installed with its bytecode."""
    import compileall

    import onnxfix

    src = Path(onnxfix.__file__).resolve().parent
    for folder in (src, src.parent / "rules"):
        if folder.is_dir():
            compileall.compile_dir(str(folder), quiet=1)


def repair_rows(pairs: int, rows: dict[str, dict], info: dict[str, float]) -> None:
    """The two repair rows of the 1.2 GB model, and the verification's own session."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-", dir=OUT))
    out = tmp / "out.onnx"

    def clean() -> None:
        for p in tmp.iterdir():
            p.unlink()

    rows["repair --no-verify 1.2 GB / cp + fsync [<= 1.5]"] = paired(
        [PY, "-m", "onnxfix", "repair", str(BIG), str(out), "--no-verify"],
        [PY, str(HERE / "_cp.py"), str(BIG), str(out), "--fsync"],
        pairs,
        clean,
    )
    rows["repair (verified) 1.2 GB / session creation [<= 2.0]"] = paired(
        [PY, "-m", "onnxfix", "repair", str(BIG), str(out)],
        [PY, str(HERE / "_session.py"), str(BIG)],
        pairs,
        clean,
    )
    shutil.rmtree(tmp)
    # not a ratio: what the verification's own session costs (it skips prepacking,
    # onnxfix.runner.session); the row above keeps the floor, a default session
    walls = [wall([PY, str(HERE / "_session.py"), str(BIG), "--no-prepack"]) for _ in "abc"]
    info["session creation without prepacking, 1.2 GB (a repair's probe session)"] = round(
        statistics.median(walls), 3
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--curve", action="store_true", help="lint/floor from 1k to 1M nodes")
    ap.add_argument("--skip-big", action="store_true", help="skip the 1.2 GB model rows")
    args = ap.parse_args()
    bytecode()
    rows: dict[str, dict] = {}
    info: dict[str, float] = {}
    if not args.skip_big:
        if not BIG.exists():
            print(f"{BIG} is missing: run python benchmarks/bench_lint.py first", file=sys.stderr)
            return 2
        rows["lint 1.2 GB HuBERT-large / floor [<= 1.5]"] = lint_row(BIG, args.pairs)
    for n in (10_000, 100_000):
        rows[f"lint transformer {n // 1000}k nodes / floor [<= {2.0 if n == 10_000 else 3.0}]"] = (
            lint_row(graph_of(n), args.pairs)
        )
    if not args.skip_big:
        repair_rows(args.pairs, rows, info)
    backend = Path(onnx.__file__).parent / "backend/test/data"
    models = sorted(str(p) for p in backend.rglob("model.onnx"))
    if models:
        rows[f"lint -j 2 / -j 1 over {len(models)} backend models [< 1]"] = paired(
            [PY, "-m", "onnxfix", "lint", "-j", "2", *models],
            [PY, "-m", "onnxfix", "lint", "-j", "1", *models],
            args.pairs,
        )
    if args.curve:
        curve = {}
        for n in (1_000, 10_000, 100_000, 1_000_000):
            curve[n] = lint_row(graph_of(n), 1)
        rows["curve"] = curve  # type: ignore[assignment]
    print(json.dumps({**rows, "info": info}, indent=1))
    for name, r in rows.items():
        if "ratio" in r:
            print(
                f"{r['ratio']:>6}x  {name}  ({r['subject_s']} s vs {r['floor_s']} s, "
                f"{r['pairs']} pairs)"
            )
    for name, seconds in info.items():
        print(f"  {seconds} s  {name}  (median of 3; for information, no target)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
