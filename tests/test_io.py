"""Model I/O: external data stays inside the model folder and lint never reads weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxfix import io
from tests.models import IR, mask_where


def _with_external(folder: Path, n: int = 1 << 20, location: str = "w.data") -> Path:
    """The mask bug plus a weight stored as external data (n floats)."""
    m = mask_where(["B", "T", 16], 2, 17)
    w = numpy_helper.from_array(np.ones((n // 16, 16), np.float32), "w")
    m.graph.initializer.append(w)
    m.graph.node.append(helper.make_node("MatMul", ["y", "w2"], ["z"], name="/MatMul"))
    m.graph.initializer.append(numpy_helper.from_array(np.ones((16, 16), np.float32), "w2"))
    m.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["B", "T", 16]))
    path = folder / "model.onnx"
    onnx.save(m, str(path), save_as_external_data=True, location=location, size_threshold=1024)
    return path


def test_lint_reads_no_weight_bytes(tmp_path: Path) -> None:
    """Count the bytes the lint process reads (rchar) against a 64 MB data file."""
    path = _with_external(tmp_path, n=16 << 20)
    data = tmp_path / "w.data"
    assert data.stat().st_size >= 64 << 20
    code = (
        "import json, sys; from onnxfix import api;"
        f"r = api.lint({str(path)!r});"
        "io = dict(l.split(': ') for l in open('/proc/self/io').read().splitlines());"
        "print(json.dumps({'rules': [f.rule for f in r.findings], 'rchar': int(io['rchar'])}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["rules"] == ["WB102"]
    assert res["rchar"] < data.stat().st_size // 2, res


def test_repair_keeps_external_layout(tmp_path: Path, cli) -> None:
    path = _with_external(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    res = cli("repair", str(path), str(out_dir / "fixed.onnx"))
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(out_dir)) == ["fixed.onnx", "fixed.onnx.data"]
    fixed = onnx.load(str(out_dir / "fixed.onnx"), load_external_data=False)
    locs = {
        e.value for t in fixed.graph.initializer for e in t.external_data if e.key == "location"
    }
    assert locs == {"fixed.onnx.data"}
    weights = onnx.load(str(out_dir / "fixed.onnx"))  # with its external data
    w = {t.name: numpy_helper.to_array(t) for t in weights.graph.initializer}
    assert w["w"].shape == (65536, 16) and (w["w"] == 1).all()
    assert cli("lint", str(out_dir / "fixed.onnx")).returncode == 0


@pytest.mark.parametrize("location", ["../outside.data", "/etc/passwd", "sub/../../x.data"])
def test_external_data_outside_folder_refused(tmp_path: Path, location: str, cli) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    path = _with_external(inner)
    m = onnx.load(str(path), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save(m, str(path))
    (tmp_path / "outside.data").write_bytes(b"\0" * (4 << 20))
    for args in (["lint", str(path)], ["repair", str(path), str(inner / "o.onnx")]):
        res = cli(*args)
        assert res.returncode == 2 and "refused" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert not (inner / "o.onnx").exists()


def test_symlinked_and_hardlinked_data_refused(tmp_path: Path) -> None:
    path = _with_external(tmp_path)
    data = tmp_path / "w.data"
    outside = tmp_path.parent / f"{tmp_path.name}_secret.data"
    data.rename(outside)
    data.symlink_to(outside)
    with pytest.raises(io.ModelError, match=r"outside the model folder|symbolic link"):
        io.load(path)
    data.unlink()
    os.link(outside, data)
    with pytest.raises(io.ModelError, match="hard links"):
        io.load(path)
    outside.unlink()


def test_offset_past_end_refused(tmp_path: Path) -> None:
    path = _with_external(tmp_path)
    with open(tmp_path / "w.data", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(io.ModelError, match="past the end"):
        io.load(path)


def test_failed_verification_leaves_nothing(tmp_path: Path) -> None:
    m = mask_where(["B", "T", 4], 2, 17)
    out = tmp_path / "o.onnx"

    def boom(_cand: io.Candidate) -> None:
        raise RuntimeError("verification said no")

    with pytest.raises(RuntimeError):
        io.write_atomic(m, out, verify=boom)
    (tmp_path / "src").mkdir()
    src = _with_external(tmp_path / "src")
    ext = onnx.load(str(src), load_external_data=False)
    with pytest.raises(RuntimeError):
        io.write_atomic(ext, out, external_from=src.parent, verify=boom)
    assert os.listdir(tmp_path) == ["src"]


def test_read_only_output_folder(tmp_path: Path, cli) -> None:
    from tests.conftest import FIXTURES

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    src = FIXTURES / "where_broadcast/mask_rank1_op12.onnx"
    try:
        res = cli("repair", str(src), str(ro / "o.onnx"))
        if os.access(ro, os.W_OK):  # root ignores permissions: the write then succeeds
            assert res.returncode == 0
        else:
            assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    finally:
        ro.chmod(0o755)


def test_ir_version_stamped_models_load(tmp_path: Path) -> None:
    m = mask_where(["B", "T", 4], 2, 17)
    assert m.ir_version == IR


def test_copy_bytes_is_exact_with_and_without_copy_file_range(tmp_path, monkeypatch) -> None:
    import os as _os

    from onnxfix import io as fio
    from onnxfix import staging

    src = tmp_path / "w.data"
    blob = bytes(range(256)) * 5000 + b"tail"
    src.write_bytes(blob)
    monkeypatch.setattr(staging, "_CHUNK", 4096)  # many chunks
    fio.copy_bytes(src, tmp_path / "a.data")
    assert (tmp_path / "a.data").read_bytes() == blob

    def refuse(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(_os, "copy_file_range", refuse)
    fio.copy_bytes(src, tmp_path / "b.data")
    assert (tmp_path / "b.data").read_bytes() == blob


def _corrupt(tmp_path: Path, model: onnx.ModelProto, marker: bytes) -> Path:
    """The model written with ``marker`` (a name in it) replaced by invalid UTF-8 of the same
    length: proto2 strings are not validated on parse, so the file still parses."""
    data = model.SerializeToString()
    assert data.count(marker) == 1
    path = tmp_path / "bad.onnx"
    path.write_bytes(data.replace(marker, b"\xff" * len(marker)))
    return path


def _loop_model(body_dim: int = 4) -> onnx.ModelProto:
    body = helper.make_graph(
        [helper.make_node("Identity", ["v_in"], ["v_out"], name="QQbodyQQ")],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [body_dim]),
        ],
        [
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [body_dim]),
        ],
    )
    node = helper.make_node("Loop", ["n", "", "x"], ["y"], name="XXloopXX", body=body)
    node.metadata_props.add(key="MMkeyMM", value="v")
    g = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("n", TensorProto.INT64, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["DDimDD"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["OutDim"])],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR)


@pytest.mark.parametrize(
    ("marker", "what"),
    [
        (b"XXloopXX", "a node's name"),
        (b"QQbodyQQ", "a node's name"),  # inside a Loop body
        (b"DDimDD", "a dim name"),
        (b"MMkeyMM", "metadata of node"),
    ],
)
def test_invalid_utf8_names_refused_in_one_line(tmp_path: Path, marker: bytes, what: str) -> None:
    path = _corrupt(tmp_path, _loop_model(), marker)
    with pytest.raises(io.ModelError, match=f"is corrupted: {what}.* is not valid UTF-8"):
        io.load(path)


def test_dim_below_minus_one_in_a_subgraph_refused(tmp_path: Path) -> None:
    path = tmp_path / "neg.onnx"
    onnx.save(_loop_model(body_dim=-3), str(path))
    with pytest.raises(io.ModelError, match=r"'v_in' declares dim -3 at axis 0 \(negative\)"):
        io.load(path)


def test_external_tensor_in_a_mistyped_attribute_is_checked(tmp_path: Path) -> None:
    """onnx.load reads an attribute's tensor whatever the attribute's declared type, so a
    location hidden there is validated like any other."""
    m = _loop_model()
    t = helper.make_tensor("hidden", TensorProto.FLOAT, [1], [0.0])
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="../outside.bin")
    attr = helper.make_attribute("count", 3)  # an INT attribute that also carries a tensor
    attr.t.CopyFrom(t)
    m.graph.node[0].attribute.append(attr)
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    with pytest.raises(io.ModelError, match="points outside the model folder"):
        io.load(path)


def test_one_stat_per_external_file(tmp_path: Path, monkeypatch) -> None:
    """Hundreds of tensors naming one file: the file is resolved and checked once."""
    path = _with_external(tmp_path, n=1 << 12)
    m = onnx.load(str(path), load_external_data=False)
    for k in range(200):
        t = helper.make_tensor(f"extra{k}", TensorProto.FLOAT, [1], [0.0])
        t.data_location = TensorProto.EXTERNAL
        t.ClearField("float_data")
        for key, value in (("location", "w.data"), ("offset", "0"), ("length", "4")):
            t.external_data.add(key=key, value=value)
        m.graph.initializer.append(t)
    path.write_bytes(m.SerializeToString())
    calls: list[str] = []
    real = io._external_file

    def counting(*args):
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(io, "_external_file", counting)
    assert io.load(path).external_files == [(tmp_path / "w.data").resolve()]
    assert calls == ["w.data"]


def test_staged_weights_land_exactly_and_leave_nothing(tmp_path: Path) -> None:
    """Weights copied in the background (a repair starts them while it analyses) land byte
    for byte; a verification that fails, or a copy that is thrown away, leaves nothing."""
    (tmp_path / "src").mkdir()
    src = _with_external(tmp_path / "src")
    ext = onnx.load(str(src), load_external_data=False)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "o.onnx"

    def boom(cand: io.Candidate) -> None:
        assert [p.parent for p in cand.data] == [out_dir]
        raise RuntimeError("verification said no")

    staged = io.Staged({"w.data": src.parent / "w.data"}, out_dir)
    with pytest.raises(RuntimeError):
        io.write_atomic(ext, out, external_from=src.parent, verify=boom, staged=staged)
    staged.discard()
    assert os.listdir(out_dir) == []

    staged = io.Staged({"w.data": src.parent / "w.data"}, out_dir)
    staged.discard()  # nothing to write after all
    assert os.listdir(out_dir) == []

    seen: list[list[Path]] = []

    def complete_when_ready(cand: io.Candidate) -> None:
        cand.ready()  # the graph checks may come before; the weights are read after
        assert [p.read_bytes() for p in cand.data] == [(src.parent / "w.data").read_bytes()]
        seen.append(cand.data)

    staged = io.Staged({"w.data": src.parent / "w.data"}, out_dir)
    io.write_atomic(ext, out, external_from=src.parent, verify=complete_when_ready, staged=staged)
    staged.discard()
    assert seen == [list(staged.tmp.values())]  # verified on the staged copy itself
    assert sorted(os.listdir(out_dir)) == ["o.onnx", "o.onnx.data"]
    assert (out_dir / "o.onnx.data").read_bytes() == (src.parent / "w.data").read_bytes()
    ref = onnx.load(str(src))
    got = onnx.load(str(out))
    assert [numpy_helper.to_array(t).tobytes() for t in got.graph.initializer] == [
        numpy_helper.to_array(t).tobytes() for t in ref.graph.initializer
    ]


def test_a_verification_during_the_copy_reads_the_source_and_the_copy_must_match_it(
    tmp_path: Path,
) -> None:
    """While the weights are copied, a verification may read them from where they are
    copied from (:attr:`io.Candidate.sources`): nothing is then renamed unless each copy
    holds the bytes its source held when the copy began.  A source changed meanwhile, a
    copy that ended short and a copy with other bytes each fail the write and leave
    nothing; an unchanged one lands."""
    (tmp_path / "src").mkdir()
    src = _with_external(tmp_path / "src")
    data = src.parent / "w.data"
    ext = onnx.load(str(src), load_external_data=False)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "o.onnx"
    original = data.read_bytes()

    def spoil(how: str) -> Callable[[io.Candidate], None]:
        def verify(cand: io.Candidate) -> None:
            assert cand.sources is not None
            folder, moves = cand.sources
            assert folder == src.parent and list(moves.values()) == ["w.data"]
            assert list(moves) == [p.name for p in cand.data]  # the names the graph uses
            cand.ready()
            (copy,) = cand.data
            if how == "source changed":
                with open(data, "r+b") as fh:
                    fh.seek(len(original) // 2)
                    fh.write(b"\x01")
            elif how == "copy short":
                with open(copy, "r+b") as fh:
                    fh.truncate(len(original) - 1)
            elif how == "copy differs":
                with open(copy, "r+b") as fh:
                    fh.write(b"\x01")

        return verify

    for how, said in (
        ("source changed", "'w.data' changed while it was copied"),
        ("copy short", "does not have its size"),
        ("copy differs", "differs from it in the block at byte 0"),
    ):
        data.write_bytes(original)
        staged = io.Staged({"w.data": data}, out_dir)
        with pytest.raises(io.ModelError, match=said):
            io.write_atomic(ext, out, external_from=src.parent, verify=spoil(how), staged=staged)
        staged.discard()
        assert os.listdir(out_dir) == [], how
    data.write_bytes(original)
    staged = io.Staged({"w.data": data}, out_dir)
    io.write_atomic(ext, out, external_from=src.parent, verify=spoil("nothing"), staged=staged)
    staged.discard()
    assert (out_dir / "o.onnx.data").read_bytes() == original
    # weights copied here (no staged copy) are complete when named: no sources
    got: list[io.Candidate] = []
    io.write_atomic(ext, out_dir / "p.onnx", external_from=src.parent, verify=got.append)
    assert got[0].sources is None and got[0].data[0].parent == out_dir


def test_a_probe_session_reads_its_weights_where_the_job_says(tmp_path: Path) -> None:
    """``runner.Job.weights_from``: the candidate's graph names temporary data files still
    being written; the session reads the same locations' bytes from the source folder.
    Here the candidate's own data file holds zeros, so outputs equal to the source model's
    show that the source was read."""
    from onnxfix import runner

    w = numpy_helper.from_array(np.arange(256, dtype=np.float32).reshape(16, 16) / 256, "w")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="/MatMul")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 16])],
        [w],
    )
    src = tmp_path / "src"
    src.mkdir()
    model = src / "m.onnx"
    onnx.save(
        helper.make_model(g, ir_version=IR, opset_imports=[helper.make_opsetid("", 17)]),
        str(model),
        save_as_external_data=True,
        location="m.data",
        size_threshold=0,
    )
    cand_dir = tmp_path / "cand"
    cand_dir.mkdir()
    graph = onnx.load(str(model), load_external_data=False)
    io.relocate(graph, {"m.data": ".onnxfix-1-tmp.data"})
    onnx.save(graph, str(cand_dir / "c.onnx"))
    size = (src / "m.data").stat().st_size
    (cand_dir / ".onnxfix-1-tmp.data").write_bytes(b"\0" * size)
    run = runner.Run({"B": 3}, seed=0)
    limits = runner.Limits.for_model(size)
    (own,) = runner.execute(runner.Job(str(cand_dir / "c.onnx"), (run,), str(model)), limits)
    assert own.kind == "compare"  # its own file holds zeros, not the weights
    moves = ((".onnxfix-1-tmp.data", "m.data"),)
    job = runner.Job(str(cand_dir / "c.onnx"), (run,), str(model), weights_from=(str(src), moves))
    (read,) = runner.execute(job, limits)
    assert read.ok and read.compared and read.max_abs_diff == 0.0


def _children() -> set[int]:
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        pids |= {int(p) for p in (task / "children").read_text().split()}
    return pids


def test_graph_checks_during_the_session_still_come_first(tmp_path: Path) -> None:
    """With :attr:`io.Candidate.sources` the probe child builds its session while the
    graph checks run: a candidate the checker refuses (onnxruntime would refuse it too)
    is reported at the checker, and the child is stopped and reaped."""
    from onnxfix import verify

    w = numpy_helper.from_array(np.ones((16, 16), np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["y"], name="/a"),
        helper.make_node("Relu", ["x"], ["y"], name="/b"),  # "y" twice: not SSA
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 16])],
        [w],
    )
    bad = helper.make_model(g, ir_version=IR, opset_imports=[helper.make_opsetid("", 17)])
    (tmp_path / "src").mkdir()
    onnx.save(bad, str(tmp_path / "src/m.onnx"), save_as_external_data=True, location="m.data")
    cand = tmp_path / "c.onnx"
    graph = onnx.load(str(tmp_path / "src/m.onnx"), load_external_data=False)
    io.relocate(graph, {"m.data": ".onnxfix-1-x.data"})
    onnx.save(graph, str(cand))
    (tmp_path / ".onnxfix-1-x.data").write_bytes(b"")  # still being copied
    before = _children()
    with pytest.raises(verify.VerificationError) as err:
        verify.verify(
            None,
            graph,
            cand,
            ready=lambda: None,
            sources=(tmp_path / "src", {".onnxfix-1-x.data": "m.data"}),
        )
    assert err.value.step == "checker", err.value
    assert _children() <= before


def test_the_wire_walk_finds_what_the_load_validates(tmp_path: Path) -> None:
    """``staging.external_locations`` reads the data files from the protobuf bytes without
    onnx: the same list ``io.load`` validates, for one file, several, and none; bytes that
    are not a model raise ValueError (the early copy is then simply not started)."""
    from onnxfix import staging

    for location in ("w.data", "sub/w.bin"):
        folder = tmp_path / location.replace("/", "_")
        folder.mkdir()
        (folder / "sub").mkdir()
        path = _with_external(folder, location=location)
        assert staging.external_locations(path.read_bytes()) == io.load(path).locations
    many = onnx.load(str(path))  # each tensor in a file of its own
    onnx.external_data_helper.convert_model_to_external_data(many, all_tensors_to_one_file=False)
    onnx.save(many, str(tmp_path / "many.onnx"))
    assert len(io.load(tmp_path / "many.onnx").locations) > 1
    assert staging.external_locations((tmp_path / "many.onnx").read_bytes()) == (
        io.load(tmp_path / "many.onnx").locations
    )
    inline = tmp_path / "inline.onnx"
    onnx.save(mask_where(["B", "T", 16], 2, 17), str(inline))
    assert staging.external_locations(inline.read_bytes()) == []
    for bad in (path.read_bytes()[:-7], b"\xff" * 40, bytes([0x3A, 0x80])):
        with pytest.raises(ValueError):
            staging.external_locations(bad)


def test_a_copy_started_before_the_load_is_used_or_thrown_away(tmp_path: Path) -> None:
    """``staging.start_early`` copies the weights before onnx has read the model; the
    repair uses that copy when the validated model names exactly those files (no second
    copy is started), and otherwise throws it away and leaves nothing behind."""
    from onnxfix import repairer, staging

    (tmp_path / "src").mkdir()
    src = _with_external(tmp_path / "src")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "o.onnx"
    early = staging.start_early(src, out)
    assert early is not None and early.sources == {"w.data": src.parent.resolve() / "w.data"}
    started: list[object] = []
    real = repairer._stage
    repairer._stage = lambda *a: started.append(a) or real(*a)  # type: ignore[assignment]
    try:
        result = repairer.repair(src, out, verify_probe=False, early=early)
    finally:
        repairer._stage = real  # type: ignore[assignment]
        early.discard()  # as the command line does: a copy moved into place stays
    assert result.error is None and result.written and started == []
    assert sorted(os.listdir(out_dir)) == ["o.onnx", "o.onnx.data"]
    assert (out_dir / "o.onnx.data").read_bytes() == (src.parent / "w.data").read_bytes()

    other = tmp_path / "other"
    other.mkdir()
    wrong = staging.start_early(_with_external(other, location="else.data"), out_dir / "p.onnx")
    assert wrong is not None
    result = repairer.repair(src, out_dir / "p.onnx", verify_probe=False, early=wrong)
    wrong.discard()
    assert result.error is None and result.written
    assert sorted(os.listdir(out_dir)) == ["o.onnx", "o.onnx.data", "p.onnx", "p.onnx.data"]
    assert (out_dir / "p.onnx.data").read_bytes() == (src.parent / "w.data").read_bytes()


def test_nothing_is_copied_early_that_the_load_would_refuse(tmp_path: Path) -> None:
    """The early copy applies the load's location rules: a data file outside the model's
    folder, a symbolic link, a hard-linked file or a missing one is not copied at all."""
    from onnxfix import staging

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    outside = tmp_path / "secret.data"
    outside.write_bytes(b"\0" * 4096)
    for k, make in enumerate(("escape", "symlink", "hardlink", "missing")):
        folder = tmp_path / f"m{k}"
        folder.mkdir()
        path = _with_external(folder, location="w.data")
        data = folder / "w.data"
        if make == "escape":
            m = onnx.load(str(path), load_external_data=False)
            for t in m.graph.initializer:
                for e in t.external_data:
                    if e.key == "location":
                        e.value = "../secret.data"
            onnx.save(m, str(path))
        elif make == "symlink":
            data.unlink()
            data.symlink_to(outside)
        elif make == "hardlink":
            os.link(data, folder / "again.data")
        else:
            data.unlink()
        with pytest.raises(io.ModelError):
            io.load(path)
        assert staging.start_early(path, out_dir / "o.onnx") is None
        assert os.listdir(out_dir) == []


def test_repair_that_fails_verification_leaves_no_staged_weights(tmp_path: Path, cli) -> None:
    """The weights start copying as soon as the model is read; a verification that
    then fails (here: outputs differ from the --reference) removes the copy too."""
    path = _with_external(tmp_path)
    feeds = {
        "x": np.ones((2, 3, 16), np.float32),
        "mask": np.array([[True, False, False], [False, False, True]]),
    }
    m = onnx.load(str(path), load_external_data=False)
    assert [vi.name for vi in m.graph.input][:2] == ["x", "mask"], "the model's inputs"
    npz = tmp_path / "ref.npz"
    wrong = {"case0/out/y": np.full((2, 3, 16), 7, np.float32)}  # not what the model computes
    np.savez(npz, **{f"case0/in/{k}": v for k, v in feeds.items()}, **wrong)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    res = cli("repair", str(path), str(out_dir / "fixed.onnx"), "--reference", str(npz))
    assert res.returncode == 2 and "verification failed" in res.stdout + res.stderr, res
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("kind", ["onnx", "npy", "keys", "missing"])
def test_a_reference_that_is_not_one_is_refused_in_one_line(tmp_path: Path, cli, kind) -> None:
    path = _with_external(tmp_path)
    ref = tmp_path / f"ref.{kind}"
    if kind == "onnx":
        ref = path
    elif kind == "npy":
        np.save(tmp_path / "ref.npy", np.ones(3))
        ref = tmp_path / "ref.npy"
    elif kind == "keys":
        np.savez(tmp_path / "ref.npz", x=np.ones(3))
        ref = tmp_path / "ref.npz"
    for cmd in (["repair", str(path), str(tmp_path / "o.onnx")], ["check", str(path)]):
        res = cli(*cmd, "--reference", str(ref))
        assert res.returncode == 2, res
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"onnxfix: error: --reference {ref}"), lines
    assert not (tmp_path / "o.onnx").exists()


def test_repair_with_nothing_to_fix_copies_nothing(tmp_path: Path, cli) -> None:
    path = _with_external(tmp_path)
    fixed = tmp_path / "fixed.onnx"
    assert cli("repair", str(path), str(fixed)).returncode == 0
    out_dir = tmp_path / "again"
    out_dir.mkdir()
    res = cli("repair", str(fixed), str(out_dir / "o.onnx"))
    assert res.returncode == 0, res.stderr
    assert os.listdir(out_dir) == []


def test_the_scan_knows_whether_inference_needs_a_safe_copy(tmp_path: Path) -> None:
    """A declared -1 dim anywhere (here in a Loop body) makes ONNX's inference run on a
    copy without it; the load-time scan tells, so the analysis need not walk again."""
    path = tmp_path / "m.onnx"
    onnx.save(_loop_model(body_dim=-1), str(path))
    loaded = io.load(path)
    assert loaded.table is not None and loaded.table.minus_one
    assert io.inference_safe(loaded.model, loaded.table) is not loaded.model
    onnx.save(_loop_model(), str(path))
    loaded = io.load(path)
    assert loaded.table is not None and not loaded.table.minus_one
    assert io.inference_safe(loaded.model, loaded.table) is loaded.model
    assert [r[3] for r in loaded.table] == ["Loop"]  # the main graph's nodes only


def test_inference_reads_the_bytes_the_model_came_from_once(tmp_path: Path) -> None:
    """``load(keep_source=True)`` keeps the file's bytes for ONNX's inference (no second
    serialisation); the first inference takes them, and its answer is the model's own.
    With a declared -1 dim the safe copy is inferred instead, never the raw bytes."""
    from onnxfix import context

    path = tmp_path / "m.onnx"
    for body_dim in (4, -1):
        onnx.save(_loop_model(body_dim=body_dim), str(path))
        loaded = io.load(path, keep_source=True)
        assert loaded.table is not None and loaded.table.source == path.read_bytes()
        from_source = context.infer(loaded.model, loaded.table)
        assert loaded.table.source is None  # let go as soon as inference had it
        from_model = context.infer(loaded.model)
        assert [m.SerializeToString() if m else None for m in from_source[:1]] == [
            m.SerializeToString() if m else None for m in from_model[:1]
        ]
        assert from_source[1:] == from_model[1:]
    assert io.load(path).table.source is None  # type: ignore[union-attr]


def test_an_earlier_location_entry_is_never_read(tmp_path: Path, cli) -> None:
    """A tensor whose external data names a location twice is read from the last one (as
    onnx and onnxruntime read it, and as it was validated); repair used to copy the file
    the first one named, from outside the model folder, into the output folder."""
    (tmp_path / "secret.bin").write_bytes(b"SECRET-OUTSIDE-THE-MODEL-FOLDER")
    (tmp_path / "m").mkdir()
    path = _with_external(tmp_path / "m")
    m = onnx.load(str(path), load_external_data=False)
    for t in m.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            entries = [(e.key, e.value) for e in t.external_data]
            del t.external_data[:]
            t.external_data.add(key="location", value="../secret.bin")
            for key, value in entries:
                t.external_data.add(key=key, value=value)
    path.write_bytes(m.SerializeToString())
    assert io.load(path).locations == ["w.data"]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    res = cli("repair", str(path), str(out_dir / "fixed.onnx"), "--no-verify")
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(out_dir)) == ["fixed.onnx", "fixed.onnx.data"]
    assert b"SECRET" not in (out_dir / "fixed.onnx.data").read_bytes()
    fixed = onnx.load(str(out_dir / "fixed.onnx"), load_external_data=False)
    locs = {
        e.value for t in fixed.graph.initializer for e in t.external_data if e.key == "location"
    }
    assert locs == {"fixed.onnx.data"}


def test_prepacking_is_skipped_by_a_repairs_probes_and_kept_by_check(
    tmp_path: Path, monkeypatch
) -> None:
    """A repair's verification builds its sessions with ``session.disable_prepacking``
    (the packed copies are most of session creation on a large model and serve only
    repeated runs); ``check``, the deployment guard, builds them as onnxruntime does by
    default.  The option reaches the session (:func:`runner.session`), and each command's
    job asks for the right one."""
    from onnxfix import api, runner

    path = _with_external(tmp_path, n=4096)
    for prepack, want in ((False, "1"), (True, "")):
        sess = runner.session(str(path), ["CPUExecutionProvider"], prepack=prepack)
        try:
            value = sess.get_session_options().get_session_config_entry(
                "session.disable_prepacking"
            )
        except RuntimeError:  # onnxruntime raises for a key never set
            value = ""
        assert value == want, (prepack, value)

    jobs: list[runner.Job] = []
    real = runner._Channel

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, job: runner.Job) -> None:
            jobs.append(job)
            super().__init__(job)

    monkeypatch.setattr(runner, "_Channel", Recording)
    result = api.repair(path, tmp_path / "out.onnx")
    assert result.written and jobs and all(not j.prepack for j in jobs)
    jobs.clear()
    api.check(tmp_path / "out.onnx")
    assert jobs and all(j.prepack for j in jobs)
