"""Models of the bug class that the fixtures never showed: other ranks, opsets, masks
computed in the graph, a Where inside an If.  Each is repaired and checked against
PyTorch's left-aligned mask semantics computed here with numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxfix import api
from tests import models


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _left_aligned(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    y = x.copy()
    y[mask] = 0  # numpy's boolean indexing is PyTorch's
    return y


def _repair(model: onnx.ModelProto, tmp_path: Path) -> Path:
    src, out = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(model, str(src))
    assert api.lint(src).errors, "the bug must be reported"
    res = api.repair(src, out)
    assert res.exit_code == 0, res.error
    assert api.lint(out).findings == []
    return out


CASES = [
    # data shape (symbols or ints), mask rank, opset
    (["B", "T", 7], 2, 11),
    (["B", "T", 7], 2, 13),
    (["B", "T", 7], 1, 18),
    (["B", 3, "T", 4], 2, 14),
    (["B", 3, "T", 4], 3, 21),
    (["T", 9], 1, 16),
    ([4, 6, 5], 2, 17),
]


@pytest.mark.parametrize(("shape", "mask_rank", "opset"), CASES)
@pytest.mark.parametrize("x_first", [False, True])
def test_rank_and_opset_variants(
    tmp_path: Path, shape: list, mask_rank: int, opset: int, x_first: bool
) -> None:
    out = _repair(models.mask_where(shape, mask_rank, opset, x_first), tmp_path)
    sess = _session(out)
    rng = np.random.default_rng(0)
    for values in ({"B": 2, "T": 5}, {"B": 3, "T": 11}):
        dims = [values.get(d, d) if isinstance(d, str) else d for d in shape]
        x = rng.standard_normal(dims).astype(np.float32)
        mask = rng.random(dims[:mask_rank]) < 0.4
        (y,) = sess.run(None, {"x": x, "mask": mask})
        want = np.where(
            np.reshape(mask, mask.shape + (1,) * (len(dims) - mask_rank)),
            x if x_first else 0,
            0 if x_first else x,
        )
        if not x_first:
            assert np.array_equal(y, _left_aligned(x, mask))
        assert np.array_equal(y, want.astype(np.float32))


@pytest.mark.parametrize("opset", [13, 17])
def test_mask_computed_from_lengths(tmp_path: Path, opset: int) -> None:
    model = models.lengths_mask(opset)
    found = api.lint(model).findings
    assert [f.rule for f in found] == ["WB102"], [f.message for f in found]
    assert "[N, S]" in found[0].message and "[N, S, 6]" in found[0].message
    out = _repair(model, tmp_path)
    sess = _session(out)
    rng = np.random.default_rng(1)
    for n, s in ((2, 5), (3, 9)):
        x = rng.standard_normal((n, s, 6)).astype(np.float32)
        lengths = rng.integers(1, s + 1, size=n).astype(np.int64)
        (y,) = sess.run(None, {"x": x, "lengths": lengths})
        pad = np.arange(s)[None, :] >= lengths[:, None]
        assert np.array_equal(y, _left_aligned(x, pad))


def test_where_inside_if_branch(tmp_path: Path) -> None:
    model = models.where_in_if(17)
    (f,) = api.lint(model).findings
    assert f.rule == "WB102" and f.graph == "main//If:then_branch" and f.node == "/then/Where"
    out = _repair(model, tmp_path)
    sess = _session(out)
    rng = np.random.default_rng(2)
    for b, t in ((2, 4), (3, 7)):
        x = rng.standard_normal((b, t, 5)).astype(np.float32)
        mask = rng.random((b, t)) < 0.5
        (y,) = sess.run(None, {"x": x, "mask": mask, "flag": np.array(True)})
        assert np.array_equal(y, _left_aligned(x, mask))
        (y2,) = sess.run(None, {"x": x, "mask": mask, "flag": np.array(False)})
        assert np.array_equal(y2, x)


def test_broadcastable_mask_not_flagged() -> None:
    # cond [T, 7] on x [B, T, 7] is valid right-aligned broadcasting: not the bug
    m = models.mask_where(["B", "T", 7], 2, 17)
    m.graph.input[1].type.tensor_type.shape.dim[0].dim_param = "T"
    m.graph.input[1].type.tensor_type.shape.dim[1].ClearField("dim_param")
    m.graph.input[1].type.tensor_type.shape.dim[1].dim_value = 7
    assert api.lint(m).findings == []
