"""The views no peer offers: `shapes`, `repair --diff`, `lint --annotate`."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from onnxfix.views import ANNOTATION_KEY
from tests.conftest import FIXTURES

HUBERT = FIXTURES / "where_broadcast/hubert_extract_features_op17_fp32.onnx"
MASK = FIXTURES / "where_broadcast/mask_rank1_op12.onnx"


def test_shapes_of_one_node_with_derived_dims_and_symbols(cli) -> None:
    res = cli("shapes", str(HUBERT), "--node", "/encoder/Where")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "B: 'feats' axis 0, 'padding_mask' axis 0" in out
    assert "L: 'feats' axis 1, 'padding_mask' axis 1" in out
    assert "T = (1 + ((-3 + (L // 10)) // 2))  (named by a graph output)" in out
    assert "/encoder/Cast_output_0" in out and "[B, T]" in out
    assert "/post_extract_proj/Add_output_0" in out and "[B, T, 48]" in out
    doc = json.loads(cli("shapes", str(HUBERT), "--format", "json").stdout)
    values = {v["value"]: v for v in doc["values"]}
    assert values["feats"]["shape"] == "[B, L]" and values["feats"]["made_by"] == "input"
    assert values["x"]["shape"] == "[B, T, 48]"
    res = cli("shapes", str(HUBERT), "--node", "nope")
    assert res.returncode == 2 and "no node named 'nope'" in res.stderr


def test_repair_diff_shows_the_changed_nodes(cli, tmp_path: Path) -> None:
    res = cli("repair", str(MASK), str(tmp_path / "out.onnx"), "--diff")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    removed = [line.strip() for line in lines if line.strip().startswith("- ")]
    added = [line.strip() for line in lines if line.strip().startswith("+ ")]
    assert removed == ["- y = Where(/Cast_output_0, /Constant_output_0, /proj/Gemm_output_0)"]
    assert added == [
        "+ /Where/onnxfix_unsqueeze_output_0 = Unsqueeze(/Cast_output_0, axes=[1])",
        "+ y = Where(/Where/onnxfix_unsqueeze_output_0, /Constant_output_0, /proj/Gemm_output_0)",
    ]
    assert "  ops: 4 → 5 nodes (Unsqueeze +1)" in lines
    assert any(line.startswith("  size ") and " KB → " in line for line in lines), lines
    dry = cli("repair", str(MASK), "--dry-run", "--diff", "--format", "json")
    assert dry.returncode == 1
    assert any(d.startswith("+ ") for d in json.loads(dry.stdout)["diff"])


def test_annotate_writes_findings_onto_their_nodes(cli, tmp_path: Path) -> None:
    out = tmp_path / "annotated.onnx"
    res = cli("lint", str(HUBERT), "--annotate", str(out))
    assert res.returncode == 1 and "1 node(s) annotated" in res.stderr
    m = onnx.load(str(out))
    where = next(n for n in m.graph.node if n.name == "/encoder/Where")
    assert where.doc_string.startswith("WB102 error: Where condition")
    assert {p.key for p in where.metadata_props} >= {ANNOTATION_KEY}
    original = onnx.load(str(HUBERT))
    assert len(m.graph.node) == len(original.graph.node)
    assert len(m.graph.initializer) == len(original.graph.initializer)
    res = cli("lint", str(HUBERT), str(MASK), "--annotate", str(out))
    assert res.returncode == 2 and "exactly one" in res.stderr


def test_a_declared_minus_one_dim_before_a_slice_does_not_abort(cli, tmp_path: Path) -> None:
    """fuzz 1-7051: ONNX's shape inference aborts the process (a C++ assertion) when a
    dim declared -1 (Paddle2ONNX's "dynamic") reaches a Slice; onnxruntime runs the model."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    consts = [
        numpy_helper.from_array(np.array([0], np.int64), "st"),
        numpy_helper.from_array(np.array([2], np.int64), "en"),
        numpy_helper.from_array(np.array([1], np.int64), "ax"),
    ]
    g = helper.make_graph(
        [helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"], name="s")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", -1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        consts,
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    for args in (("lint", str(path)), ("check", str(path)), ("shapes", str(path))):
        res = cli(*args)
        assert res.returncode in (0, 1, 2) and res.returncode >= 0, (args, res.returncode)
        assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert cli("lint", str(path)).returncode == 0
    assert cli("check", str(path)).returncode == 0
