"""Model I/O: external data stays inside the model folder and lint never reads weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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

    def boom(_tmp: Path) -> None:
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

    src = tmp_path / "w.data"
    blob = bytes(range(256)) * 5000 + b"tail"
    src.write_bytes(blob)
    monkeypatch.setattr(fio, "_CHUNK", 4096)  # many chunks
    fio.copy_bytes(src, tmp_path / "a.data")
    assert (tmp_path / "a.data").read_bytes() == blob

    def refuse(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(_os, "copy_file_range", refuse)
    fio.copy_bytes(src, tmp_path / "b.data")
    assert (tmp_path / "b.data").read_bytes() == blob
