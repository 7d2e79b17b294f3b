"""Fuzz the CLI at scale: thousands of mutated models through ``lint`` and ``repair``.

Usage: ``python benchmarks/fuzz.py [--cases 10000] [--seed 0] [--jobs 2]``

Each case takes a shipped fixture (our reproductions and the real transformers /
torchaudio / torch 2.0.1 exports under ``fixtures/``), applies one or more
structure-aware mutations (dropped, duplicated or reordered nodes, rewired inputs,
changed dims, attributes, dtypes, op types, opsets, subgraph bodies, external-data
fields) or flips/cuts bytes, and runs ``onnxfix lint`` then ``onnxfix repair`` on it
through :func:`onnxfix.cli.main` in a forked process (the libraries are imported
once, in the parent).  A case is a finding when:

- the CLI printed an internal error (a traceback of ours) or raised;
- it ran longer than ``--timeout`` seconds (a hang) or over ``--memory-mb`` (it is
  killed: unbounded memory);
- an exit code was outside 0/1/2;
- repair changed its input, left a temporary file, wrote after exit 2, wrote when it
  fixed nothing, or wrote a model that the full checker or onnxruntime refuses.

Every case is reproducible from ``--seed`` and its index (``--only I``).  Findings are
saved under ``benchmarks/out/fuzz/`` (model and report) so that each can become a
regression case in ``tests/fuzz_cases/``.  Not run in CI: 10,000 cases take tens of
minutes on two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # for the seeds; onnxfix is the installed one (a snapshot can be fuzzed
# while the tree is edited: pip install it into its own venv)

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime  # noqa: E402  (imported once here, so each forked case is cheap)
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from onnxfix import cli  # noqa: E402
from onnxfix import verify as _verify  # noqa: E402, F401  (preload)

SEEDS = sorted(p for p in (ROOT / "fixtures").glob("*/*.onnx"))
Mutation = Callable[[random.Random, onnx.ModelProto, Path], str]


# --- mutations ------------------------------------------------------------------------------


def _graphs(g: onnx.GraphProto) -> list[onnx.GraphProto]:
    out = [g]
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out += _graphs(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sub in a.graphs:
                    out += _graphs(sub)
    return out


def _node(r: random.Random, m: onnx.ModelProto) -> tuple[onnx.GraphProto, int] | None:
    gs = [g for g in _graphs(m.graph) if len(g.node)]
    if not gs:
        return None
    g = r.choice(gs)
    return g, r.randrange(len(g.node))


def _values(g: onnx.GraphProto) -> list[str]:
    vals = {v for n in g.node for v in (*n.input, *n.output) if v}
    vals |= {i.name for i in g.input} | {t.name for t in g.initializer}
    return sorted(vals)


def drop_node(r: random.Random, m: onnx.ModelProto, _f: Path) -> str:
    at = _node(r, m)
    if at is None:
        return "noop"
    g, i = at
    del g.node[i]
    return f"drop node {i}"


def dup_node(r: random.Random, m: onnx.ModelProto, _f: Path) -> str:
    at = _node(r, m)
    if at is None:
        return "noop"
    g, i = at
    copy = onnx.NodeProto()
    copy.CopyFrom(g.node[i])
    g.node.insert(r.randrange(len(g.node) + 1), copy)
    return f"duplicate node {i}"


def swap_nodes(r: random.Random, m: onnx.ModelProto, _f: Path) -> str:
    at = _node(r, m)
    if at is None or len(at[0].node) < 2:
        return "noop"
    g, i = at
    j = r.randrange(len(g.node))
    a, b = onnx.NodeProto(), onnx.NodeProto()
    a.CopyFrom(g.node[i])
    b.CopyFrom(g.node[j])
    g.node[i].CopyFrom(b)
    g.node[j].CopyFrom(a)
    return f"swap nodes {i} {j}"


def rewire(r: random.Random, m: onnx.ModelProto, _f: Path) -> str:
    at = _node(r, m)
    if at is None:
        return "noop"
    g, i = at
    n = g.node[i]
    pool = [*_values(g), "", "fresh_value", n.output[0] if n.output else "x"]
    if n.input and r.random() < 0.8:
        k = r.randrange(len(n.input))
        n.input[k] = r.choice(pool)
        return f"rewire input {k} of node {i}"
    if n.output:
        k = r.randrange(len(n.output))
        n.output[k] = r.choice(pool)
        return f"rewire output {k} of node {i}"
    return "noop"


def change_dim(r: random.Random, m: onnx.ModelProto, _f: Path) -> str:
    vis = [*m.graph.input, *m.graph.output, *m.graph.value_info]
    if not vis:
        return "noop"
    vi = r.choice(vis)
    tt = vi.type.tensor_type
    dims = tt.shape.dim
    choice = r.choice(["int", "sym", "clear", "add", "remove", "noshape"])
    if choice == "noshape":
        tt.ClearField("shape")
    elif choice == "add":
        dims.add().dim_param = r.choice(["T", "B", "N"])
    elif choice == "remove" and len(dims):
        del dims[r.randrange(len(dims))]
    elif len(dims):
        d = dims[r.randrange(len(dims))]
        if choice == "int":
            d.dim_value = r.choice([0, 1, 2, 3, 7, 400, 2**31 - 1, 2**62, -1, -5])
        elif choice == "sym":
            d.dim_param = r.choice(["T", "B", "Z", "", "T*2", "\x1b[2K", "é"])
        else:
            d.Clear()
    return f"dim {choice} on {vi.name!r}"


def change_attr(r: random.Random, m: onnx.ModelProto, _f: Path) -> str:  # noqa: C901 - one branch per attribute type
    at = _node(r, m)
    if at is None:
        return "noop"
    g, i = at
    n = g.node[i]
    if not n.attribute or r.random() < 0.15:
        n.attribute.append(
            helper.make_attribute(r.choice(["axis", "to", "bogus"]), r.randint(-3, 9))
        )
        return f"add attribute to node {i}"
    a = r.choice(list(n.attribute))
    kind = a.type
    if r.random() < 0.15:
        n.attribute.remove(a)
        return f"drop attribute {a.name} of node {i}"
    if kind == onnx.AttributeProto.INT:
        a.i = r.choice([-(2**40), -5, -1, 0, 1, 2, 3, 17, 2**40])
    elif kind == onnx.AttributeProto.INTS:
        del a.ints[:]
        a.ints.extend(r.choice([-1, 0, 1, 2, 5, 2**33]) for _ in range(r.randint(0, 5)))
    elif kind == onnx.AttributeProto.FLOAT:
        a.f = r.choice([0.0, -1.0, float("nan"), float("inf"), 1e30])
    elif kind == onnx.AttributeProto.TENSOR:
        arr = numpy_helper.to_array(a.t)
        flat = arr.reshape(-1).copy()
        if flat.size:
            flat[r.randrange(flat.size)] = (
                r.choice([0, -1, 2, 10**6]) if arr.dtype.kind in "iu" else np.nan
            )
        a.t.CopyFrom(numpy_helper.from_array(flat.reshape(arr.shape), a.t.name))
        if r.random() < 0.3:
            a.t.dims.append(r.choice([0, 3, 2**40]))
    elif kind == onnx.AttributeProto.GRAPH:
        sub = a.g
        if sub.output and r.random() < 0.5:
            del sub.output[r.randrange(len(sub.output))]
        elif sub.node:
            del sub.node[r.randrange(len(sub.node))]
    elif kind == onnx.AttributeProto.STRING:
        a.s = r.choice([b"", b"bogus", b"\xff\xfe", b"NOTSET"])
    else:
        a.type = r.choice([onnx.AttributeProto.INT, onnx.AttributeProto.FLOATS])
    return f"attribute {a.name} of node {i}"


_DTYPES = [
    TensorProto.FLOAT,
    TensorProto.FLOAT16,
    TensorProto.DOUBLE,
    TensorProto.INT64,
    TensorProto.INT32,
    TensorProto.BOOL,
    TensorProto.STRING,
    TensorProto.UNDEFINED,
    TensorProto.BFLOAT16,
    999,
]


def change_dtype(r: random.Random, m: onnx.ModelProto, _f: Path) -> str:
    where = r.choice(["io", "init", "cast"])
    if where == "init" and len(m.graph.initializer):
        t = r.choice(list(m.graph.initializer))
        t.data_type = r.choice(_DTYPES)
        return f"dtype of initializer {t.name!r}"
    if where == "cast":
        casts = [n for g in _graphs(m.graph) for n in g.node if n.op_type == "Cast"]
        if casts:
            n = r.choice(casts)
            for a in n.attribute:
                if a.name == "to":
                    a.i = r.choice(_DTYPES)
            return f"Cast to of {n.name!r}"
    vis = [*m.graph.input, *m.graph.output]
    if not vis:
        return "noop"
    vi = r.choice(vis)
    vi.type.tensor_type.elem_type = r.choice(_DTYPES)
    return f"dtype of {vi.name!r}"


def change_op(r: random.Random, m: onnx.ModelProto, _f: Path) -> str:
    at = _node(r, m)
    if at is None:
        return "noop"
    g, i = at
    n = g.node[i]
    n.op_type = r.choice(["Where", "Reshape", "Expand", "Add", "Identity", "Loop", "Bogus", ""])
    if r.random() < 0.2:
        n.domain = r.choice(["com.microsoft", "ai.onnx.ml", "bogus.domain"])
    return f"op type of node {i} -> {n.op_type}"


def change_opset(r: random.Random, m: onnx.ModelProto, _f: Path) -> str:
    if r.random() < 0.3:
        m.ir_version = r.choice([0, 1, 3, 7, 10, 11, 99])
        return f"ir_version {m.ir_version}"
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = r.choice([1, 7, 9, 11, 13, 17, 18, 21, 25, 99])
            return f"opset {o.version}"
    return "noop"


def change_initializer(r: random.Random, m: onnx.ModelProto, _f: Path) -> str:
    if not len(m.graph.initializer):
        return "noop"
    t = r.choice(list(m.graph.initializer))
    choice = r.choice(["dims", "truncate", "clear", "rename", "segment"])
    if choice == "dims":
        if len(t.dims):
            t.dims[r.randrange(len(t.dims))] = r.choice([0, 1, 3, 2**31, -2])
        else:
            t.dims.append(r.choice([0, 2, 2**40]))
    elif choice == "truncate" and t.raw_data:
        t.raw_data = t.raw_data[: r.randrange(len(t.raw_data) + 1)]
    elif choice == "clear":
        t.ClearField("raw_data")
    elif choice == "rename":
        t.name = r.choice(["", *_values(m.graph)[:20]])
    else:
        t.segment.begin, t.segment.end = 0, 5
    return f"initializer {choice}"


def external_data(r: random.Random, m: onnx.ModelProto, folder: Path) -> str:
    """Move an initializer to external data, then break one of its fields."""
    inits = [t for t in m.graph.initializer if t.raw_data]
    if not inits:
        return "noop"
    t = r.choice(inits)
    payload = t.raw_data
    (folder / "w.data").write_bytes(payload)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    fields = {"location": "w.data", "offset": "0", "length": str(len(payload))}
    choice = r.choice(["ok", "location", "offset", "length", "checksum", "extra", "missing"])
    if choice == "location":
        fields["location"] = r.choice(
            ["../../etc/passwd", "/etc/passwd", "", "nope.data", "w.data\x00x", ".", "w.data/.."]
        )
    elif choice == "offset":
        fields["offset"] = r.choice(["-1", "99999999999", "abc", str(len(payload) + 1)])
    elif choice == "length":
        fields["length"] = r.choice(["-4", "0", str(len(payload) * 1000), "1e3", ""])
    elif choice == "checksum":
        fields["checksum"] = "0" * 40
    elif choice == "extra":
        fields["bogus_key"] = "1"
    elif choice == "missing":
        (folder / "w.data").unlink()
    for k, v in fields.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    if r.random() < 0.2:
        t.data_location = TensorProto.DEFAULT
    return f"external data: {choice}"


STRUCTURAL: list[Mutation] = [
    drop_node,
    dup_node,
    swap_nodes,
    rewire,
    change_dim,
    change_attr,
    change_dtype,
    change_op,
    change_opset,
    change_initializer,
    external_data,
]


def make_case(index: int, seed: int, folder: Path) -> tuple[Path, str]:
    """Write case ``index`` into ``folder``; the same (seed, index) gives the same bytes."""
    r = random.Random(f"{seed}:{index}")
    src = r.choice(SEEDS)
    blob = src.read_bytes()
    path = folder / "model.onnx"
    if r.random() < 0.15:
        data = bytearray(blob)
        if r.random() < 0.4:
            data = data[: r.randrange(len(data) + 1)]
            what = "cut bytes"
        else:
            for _ in range(r.randint(1, 16)):
                data[r.randrange(len(data))] = r.randrange(256)
            what = "flip bytes"
        path.write_bytes(bytes(data))
        return path, f"{src.name}: {what}"
    m = onnx.load_from_string(blob)
    done = []
    for _ in range(r.choice([1, 1, 1, 2, 3])):
        mutate = r.choice(STRUCTURAL)
        try:
            done.append(mutate(r, m, folder))
        except Exception as exc:  # an earlier mutation left something this one cannot read
            done.append(f"noop ({mutate.__name__} could not apply: {type(exc).__name__})")
    path.write_bytes(m.SerializeToString())
    return path, f"{src.name}: " + "; ".join(done)


# --- one case, in a forked child --------------------------------------------------------------


def _cli(argv: list[str]) -> tuple[int, str, float]:
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code if isinstance(exc.code, int) else 2
    except BaseException as exc:  # a crash of ours: the finding
        import traceback

        return -1, err.getvalue() + traceback.format_exc() + repr(exc), time.monotonic() - start
    return rc, err.getvalue(), time.monotonic() - start


def _loads(path: Path) -> str | None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return None


#: extra ``repair`` arguments (``--unsafe-fixes``), set from the command line before the
#: workers fork
REPAIR_EXTRA: list[str] = []


def run_case(index: int, seed: int, folder: Path) -> dict:
    path, what = make_case(index, seed, folder)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    problems: list[str] = []
    rc_lint, err_lint, t_lint = _cli(["lint", str(path), "--format", "json"])
    rc_rep, err_rep, t_rep = _cli(
        ["repair", str(path), str(folder / "out.onnx"), "--format", "json", *REPAIR_EXTRA]
    )
    for cmd, rc, err in (("lint", rc_lint, err_lint), ("repair", rc_rep, err_rep)):
        if rc not in (0, 1, 2):
            problems.append(f"{cmd}: exit {rc}")
        if "internal error" in err or "Traceback" in err:
            problems.append(f"{cmd}: crash: {err.strip()[-1500:]}")
    if hashlib.sha256(path.read_bytes()).hexdigest() != before:
        problems.append("repair changed its input")
    left = sorted(p.name for p in folder.iterdir() if p.name.startswith(".onnxfix-"))
    if left:
        problems.append(f"temporary files left: {left}")
    out = folder / "out.onnx"
    if out.exists():
        if rc_rep == 2:
            problems.append("repair wrote a model and exited 2")
        refused = _loads(out)
        if refused:
            problems.append(f"repair wrote a model that does not load: {refused}")
    return {
        "index": index,
        "case": what,
        "lint": rc_lint,
        "repair": rc_rep,
        "lint_s": round(t_lint, 3),
        "repair_s": round(t_rep, 3),
        "problems": problems,
    }


def _child(index: int, seed: int, folder: Path, result: Path, memory_mb: int) -> None:
    import resource

    # A bounded address space turns a runaway allocation into a MemoryError we report
    # (onnxruntime reserves address space for its threads: the bound is generous).
    limit = memory_mb * 4 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ["ONNXFIX_TRACEBACK"] = "1"
    rec = run_case(index, seed, folder)
    result.write_text(json.dumps(rec))


# --- the driver -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - one loop, one concern per branch
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds before a case is a hang")
    ap.add_argument("--memory-mb", type=int, default=3000, help="peak RSS that counts as unbounded")
    ap.add_argument("--only", type=int, nargs="*", help="run these case indexes only")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "fuzz")
    ap.add_argument(
        "--unsafe-fixes", action="store_true", help="repair with --unsafe-fixes too (TB101, WB103)"
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.unsafe_fixes:
        REPAIR_EXTRA.append("--unsafe-fixes")
    indexes = list(args.only) if args.only else list(range(args.cases))
    running: dict[int, tuple[int, Path, float]] = {}
    records: list[dict] = []
    start = time.monotonic()
    peak_kb = 0

    def finish(pid: int, status: int, usage: object) -> None:
        nonlocal peak_kb
        index, folder, t0 = running.pop(pid)
        maxrss = getattr(usage, "ru_maxrss", 0)
        peak_kb = max(peak_kb, maxrss)
        result = folder / "result.json"
        if result.exists():
            rec = json.loads(result.read_text())
        else:
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            try:
                what = make_case(index, args.seed, Path(tempfile.mkdtemp()))[1]
            except Exception as exc:
                what = f"(the case could not be made: {exc!r})"
            rec = {"index": index, "case": what, "problems": [f"the case process died ({sig=})"]}
        rec["seconds"] = round(time.monotonic() - t0, 2)
        rec["max_rss_mb"] = maxrss // 1024
        if rec["max_rss_mb"] > args.memory_mb:
            rec["problems"].append(f"peak RSS {rec['max_rss_mb']} MB")
        if rec["problems"]:
            keep = args.out / f"case-{args.seed}-{index}"
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(folder, keep)
            (keep / "report.json").write_text(json.dumps(rec, indent=1))
            print(f"FINDING {index}: {rec['case']}: {rec['problems'][0][:300]}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        records.append(rec)

    pending = list(indexes)
    while pending or running:
        while pending and len(running) < args.jobs:
            index = pending.pop(0)
            folder = Path(tempfile.mkdtemp(prefix="onnxfix-fuzz-"))
            pid = os.fork()
            if pid == 0:  # the case
                code = 0
                try:
                    _child(index, args.seed, folder, folder / "result.json", args.memory_mb)
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    code = 3
                os._exit(code)
            running[pid] = (index, folder, time.monotonic())
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for p, (index, _folder, t0) in list(running.items()):
                if now - t0 > args.timeout:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
                    _p, status, usage = os.wait4(p, 0)
                    finish(p, status, usage)
                    records[-1]["problems"].append(f"hang: over {args.timeout:.0f} s")
                    print(f"FINDING {index}: hang", flush=True)
            time.sleep(0.01)
            continue
        finish(pid, status, usage)
        if len(records) % 500 == 0:
            print(f"{len(records)} cases, {time.monotonic() - start:.0f} s", flush=True)
    wall = time.monotonic() - start
    found = [r for r in records if r["problems"]]
    summary = {
        "cases": len(records),
        "seed": args.seed,
        "seeds": len(SEEDS),
        "wall_s": round(wall, 1),
        "per_case_s": round(wall * args.jobs / max(len(records), 1), 3),
        "peak_rss_mb": peak_kb // 1024,
        "slowest_s": max((r.get("seconds", 0) for r in records), default=0),
        "lint_exit": dict(Counter(r.get("lint") for r in records)),
        "repair_exit": dict(Counter(r.get("repair") for r in records)),
        "mutations": dict(
            Counter(
                m.split(" ")[0] for r in records for m in r["case"].split(": ", 1)[1].split("; ")
            )
        ),
        "findings": [
            {"index": r["index"], "case": r["case"], "problems": r["problems"]} for r in found
        ],
    }
    (args.out / f"summary-{args.seed}.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "findings"}, indent=1))
    print(f"{len(found)} finding(s); details in {args.out}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
