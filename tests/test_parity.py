"""``check --against``: an optimized model is still the exported one; ``repair --simplify``:
onnxsim as a verified step."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxfix import api, parity
from tests.conftest import FIXTURES, MANIFEST

VALID = FIXTURES / "where_broadcast/hubert_features_only_op17.onnx"
BROKEN = FIXTURES / "where_broadcast/hubert_extract_features_op17_fp32.onnx"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def test_an_unchanged_copy_passes(cli, tmp_path: Path) -> None:
    copy = _copy(VALID, tmp_path / "copy.onnx")
    res = cli("check", str(copy), "--against", str(VALID))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"interface against {VALID}: same" in res.stdout
    assert "outputs compared with the original model (2 settings)" in res.stdout


def test_a_frozen_dynamic_dim_is_caught_with_its_axis(cli, tmp_path: Path) -> None:
    """What onnxslim did to a HuBERT export: every dynamic dim frozen to the size it saw."""
    m = onnx.load(str(VALID))
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 1024
    frozen = tmp_path / "frozen.onnx"
    onnx.save(m, str(frozen))
    res = cli("check", str(frozen), "--against", str(VALID))
    assert res.returncode == 1
    name = m.graph.input[0].name
    assert (
        f"input '{name}' axis 1 is fixed to 1024; it is dynamic (L) in the original" in res.stdout
    )
    assert res.stdout.strip().endswith("FAIL")
    sarif = cli("check", str(frozen), "--against", str(VALID), "--format", "sarif")
    assert '"ruleId": "interface"' in sarif.stdout and sarif.returncode == 1


def _consumer_of_weight(m: onnx.ModelProto) -> tuple[onnx.TensorProto, onnx.NodeProto]:
    """The last MatMul weight of the encoder and the node that reads it."""
    inits = {t.name: t for t in m.graph.initializer}
    for n in reversed(m.graph.node):
        if n.op_type == "MatMul" and n.input[1] in inits:
            return inits[n.input[1]], n
    raise AssertionError("no MatMul with a weight")


def test_a_changed_value_is_caught_and_its_first_node_named(cli, tmp_path: Path) -> None:
    m = onnx.load(str(VALID))
    weight, node = _consumer_of_weight(m)
    arr = numpy_helper.to_array(weight)
    weight.CopyFrom(numpy_helper.from_array((arr * 1.5 + 0.1).astype(arr.dtype), weight.name))
    changed = tmp_path / "changed.onnx"
    onnx.save(m, str(changed))
    res = cli("check", str(changed), "--against", str(VALID), "--format", "json")
    assert res.returncode == 1
    import json

    doc = json.loads(res.stdout)
    bad = [r for r in doc["runs"] if not r["ok"]]
    assert bad and bad[0]["mismatch"]
    assert bad[0]["first_difference"].startswith(
        f"value '{node.output[0]}' made by node '{node.name}' (MatMul) differs by up to"
    )


def test_an_original_with_errors_needs_a_reference(cli, tmp_path: Path) -> None:
    repaired = tmp_path / "fixed.onnx"
    assert cli("repair", str(BROKEN), str(repaired)).returncode == 0
    res = cli("check", str(repaired), "--against", str(BROKEN))
    assert res.returncode == 2
    assert "it has errors (WB102)" in res.stdout and "pass --reference" in res.stdout
    ref = BROKEN.with_suffix(".npz")
    res = cli("check", str(repaired), "--against", str(BROKEN), "--reference", str(ref))
    assert res.returncode == 0, res.stdout
    assert "compared with --reference instead" in res.stdout


def test_interface_differences_in_words() -> None:
    a = onnx.load(str(VALID))
    b = onnx.ModelProto()
    b.CopyFrom(a)
    b.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    del b.graph.output[-1]
    problems, _ = parity.interface(a, b)
    assert any("has dtype float16; the original's is float32" in p for p in problems)
    assert any(p.endswith("is gone") and p.startswith("output") for p in problems)


def test_simplify_without_onnxsim_is_one_line(cli, tmp_path: Path, monkeypatch) -> None:
    # a sitecustomize that hides onnxsim, as if the extra were not installed
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "onnxsim.py").write_text("raise ImportError('hidden for the test')\n")
    monkeypatch.setenv("PYTHONPATH", str(hide))
    res = cli("repair", str(BROKEN), str(tmp_path / "out.onnx"), "--simplify")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        'onnxfix: error: --simplify needs onnxsim: pip install "onnxfix[simplify]" (or onnxsim)'
    )
    assert not (tmp_path / "out.onnx").exists()


BROKEN_FIXTURES = [e for e in MANIFEST if e["kind"] == "positive"]


@pytest.mark.parametrize("entry", BROKEN_FIXTURES, ids=[e["name"] for e in BROKEN_FIXTURES])
def test_simplify_keeps_the_repair_and_every_dynamic_dim(entry: dict, tmp_path: Path) -> None:
    pytest.importorskip("onnxsim")
    src = FIXTURES / entry["model"]
    ref = FIXTURES / entry["reference"] if entry.get("reference") else None
    plain, simple = tmp_path / "plain.onnx", tmp_path / "simple.onnx"
    first = api.repair(src, plain, reference=ref)
    if not first.written:
        pytest.skip(f"repair writes nothing here ({first.error or 'no safe fix'})")
    res = api.repair(src, simple, reference=ref, simplify=True)
    assert res.written, res.error
    assert res.simplified or res.simplify_skipped
    problems, _ = parity.interface(onnx.load(str(plain)), onnx.load(str(simple)))
    assert problems == []
    gate = api.check(simple, against=plain)
    if gate.exit_code == 2 and ref is not None:
        # stateful models (WeNet's caches and offsets) only run on consistent inputs:
        # made-up probe values cannot settle it, the exported model's inputs can
        assert "made up" in (gate.inconclusive or ""), gate.inconclusive
        gate = api.check(simple, against=plain, reference=ref)
    assert gate.exit_code == 0, (gate.interface, [r.error for r in gate.runs], gate.inconclusive)
    assert gate.compared_with and "the original model" in gate.compared_with
    if res.simplified:  # "306 → 199 nodes (Constant −86, ...)": what onnxsim changed
        before = len(onnx.load(str(plain), load_external_data=False).graph.node)
        after = len(onnx.load(str(simple), load_external_data=False).graph.node)
        assert res.simplified.startswith(f"{before} → {after} nodes")


def test_simplify_writes_external_data_for_an_external_data_model(tmp_path: Path) -> None:
    pytest.importorskip("onnxsim")
    m = onnx.load(str(BROKEN))
    src = tmp_path / "in" / "model.onnx"
    src.parent.mkdir()
    onnx.save(m, str(src), save_as_external_data=True, location="model.data", size_threshold=0)
    out = tmp_path / "out.onnx"
    res = api.repair(src, out, simplify=True)
    assert res.written and res.simplified, (res.error, res.simplify_skipped)
    written = onnx.load(str(out), load_external_data=False)
    locations = {
        e.value for t in written.graph.initializer for e in t.external_data if e.key == "location"
    }
    assert locations == {"out.onnx.data"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out.onnx", "out.onnx.data"]
    assert np.isfinite(res.verification.max_abs_diff)  # type: ignore[union-attr]
