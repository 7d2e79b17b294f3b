"""Truncated graphs and interface contracts beyond the fixtures: subgraph scopes, contract
files, re-declared outputs, and the CLI's handling of bad contracts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from onnxfix import api, verify
from tests.conftest import FIXTURES
from tests.models import IR

HUBERT = FIXTURES / "where_broadcast/hubert_extract_features_op17_fp32.onnx"
FROZEN = FIXTURES / "where_broadcast/hubert_frozen_time_op14.onnx"
CUT = FIXTURES / "truncated_graph/hubert_cut_after_layer0_op17.onnx"


def _rules(path_or_model, **kw) -> list[tuple[str, str]]:
    return [(f.rule, f.node) for f in api.lint(path_or_model, **kw).findings]


def test_profiles_accept_the_exports_they_describe() -> None:
    assert [r for r in _rules(HUBERT, expect="hubert-features") if r[0] == "TG201"] == []
    wenet = FIXTURES / "repeat_pattern/wenet_gqa_int_op13.onnx"
    assert [r for r in _rules(wenet, expect="wenet-encoder-chunk") if r[0] == "TG201"] == []


def test_frozen_time_axis_is_caught(cli) -> None:
    res = cli("lint", str(FROZEN), "--expect", "hubert-features", "--format", "json")
    found = [f for f in json.loads(res.stdout)["files"][0]["findings"] if f["rule"] == "TG201"]
    assert {f["node"] for f in found} == {"<input feats>", "<input padding_mask>", "<output x>"}
    assert "frozen at 400 where dynamic 'L' is expected" in found[0]["message"]
    assert "expected float32 [B, L], model has float32 [seq, 400]" in found[0]["message"]


def test_contract_files_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[inputs.feats]\ndtype = "float16"\nshape = ["B", "L"]\n'
        '[inputs.padding_mask]\ndtype = "bool"\nshape = ["B", "L"]\n'
        '[outputs.features]\ndtype = "float32"\nshape = ["B", "T", "*"]\n'
        '[outputs.padding_mask_out]\nshape = ["B", "T"]\n'
    )
    msgs = [f.message for f in api.lint(HUBERT, expect=toml).findings if f.rule == "TG201"]
    assert any("wrong dtype" in m and "feats" in m for m in msgs)
    assert any("'features' renamed to 'x'" in m for m in msgs)
    js = tmp_path / "c.json"
    js.write_text(
        json.dumps(
            {
                "inputs": {"feats": {"dtype": "float32", "shape": ["B"]}, "padding_mask": {}},
                "outputs": {"x": {}, "padding_mask_out": {}},
            }
        )
    )
    msgs = [f.message for f in api.lint(HUBERT, expect=js).findings if f.rule == "TG201"]
    assert len(msgs) == 1 and "wrong rank" in msgs[0]


def test_bad_contract_is_exit_2(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[inputs.x]\ndtype = 'complex512'\n")
    for spec in (str(bad), "no-such-profile"):
        res = cli("lint", str(HUBERT), "--expect", spec)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr


def test_redeclare_output_of_a_cut_graph(cli, tmp_path: Path) -> None:
    """Point a new output at layer 0's result, drop the dangling one, compare with PyTorch."""
    m = onnx.load(str(CUT))
    last = [n for n in m.graph.node if n.name.startswith("/encoder/layers.0/")][-1].output[0]
    out = tmp_path / "layer0.onnx"
    res = cli(
        "repair",
        str(CUT),
        str(out),
        "--output",
        f"layer0={last}",
        "--unsafe-fixes",
        "--reference",
        str(CUT.with_suffix(".npz")),
        "--format",
        "json",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    fixed = onnx.load(str(out))
    assert [o.name for o in fixed.graph.output] == ["padding_mask_out", "layer0"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for feeds, want in verify.load_reference(CUT.with_suffix(".npz")):
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        # layer 0's output is [T, B, C]; PyTorch's extract_features(output_layer=1) returns it
        # transposed
        assert np.allclose(got["layer0"].transpose(1, 0, 2), want["x"], atol=1e-4)
        assert np.array_equal(got["padding_mask_out"], want["padding_mask_out"])


def test_redeclare_unknown_value_fails_cleanly(cli, tmp_path: Path) -> None:
    res = cli("repair", str(CUT), str(tmp_path / "o.onnx"), "--output", "y=nope")
    assert res.returncode == 2 and "no value 'nope'" in res.stderr
    assert not (tmp_path / "o.onnx").exists()


def _if_model(then_reads: str, then_out_defined: bool = True) -> onnx.ModelProto:
    then_nodes = [helper.make_node("Identity", [then_reads], ["t_out"], name="/then/Identity")]
    then_g = helper.make_graph(
        then_nodes if then_out_defined else [],
        "then",
        [],
        [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, None)],
    )
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["e_out"], name="/else/Id")],
        "else",
        [],
        [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, None)],
    )
    g = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="/Relu"),
            helper.make_node(
                "If", ["c"], ["y"], name="/If", then_branch=then_g, else_branch=else_g
            ),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
    )
    return helper.make_model(g, ir_version=IR, opset_imports=[helper.make_opsetid("", 17)])


def test_subgraph_reads_outer_scope() -> None:
    # the then-branch reads 'r' from the main graph: defined, used, and Relu is not dead
    assert _rules(_if_model("r")) == []
    found = _rules(_if_model("missing"))
    assert ("TG102", "/then/Identity") in found
    assert ("TG101", "<output t_out>") in _rules(_if_model("r", then_out_defined=False))


def test_duplicate_and_empty_names() -> None:
    g = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["y"], name="/A"),
            helper.make_node("Neg", ["x"], ["y"], name="/B"),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("", TensorProto.FLOAT, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    m = helper.make_model(g, ir_version=IR, opset_imports=[helper.make_opsetid("", 17)])
    msgs = [f.message for f in api.lint(m).findings if f.rule == "TG106"]
    assert any("'y' is written by Neg" in s for s in msgs)
    assert any("empty name" in s for s in msgs)


def test_dead_nodes_pruned_and_verified(tmp_path: Path) -> None:
    src = FIXTURES / "truncated_graph/hubert_dead_nodes_op17.onnx"
    out = tmp_path / "o.onnx"
    res = api.repair(src, out, reference=src.with_suffix(".npz"))
    assert res.exit_code == 0
    assert not [n for n in onnx.load(str(out)).graph.node if n.name.startswith("/debug/")]


def test_redeclaring_an_output_with_a_value_of_another_shape_says_what_is_needed(
    cli, tmp_path: Path
) -> None:
    """Was: raw checker text ("Inferred shape and existing shape differ in dimension 2")."""
    cut = FIXTURES / "truncated_graph/hubert_cut_after_layer0_op17.onnx"
    res = cli(
        "repair",
        str(cut),
        str(tmp_path / "o.onnx"),
        "--output",
        "x=/encoder/layers.0/Add_1_output_0",
    )
    assert res.returncode == 2 and not (tmp_path / "o.onnx").exists()
    assert "'x' is declared [B, T, 48] but the value is [?, ?, 64]; pick a value of that shape" in (
        res.stderr
    )
