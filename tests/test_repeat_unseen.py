"""repeat_interleave lowerings the fixtures never showed: other ranks, axes, opsets,
uniform and uneven repeats, repeats built from sizes.  Exported live with torch 2.13,
repaired, and compared with numpy.repeat (the semantics of torch.repeat_interleave)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from onnxfix import api

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


class Rep(torch.nn.Module):
    def __init__(self, dim: int, repeats: tuple[int, ...] | None, uniform: int = 3) -> None:
        super().__init__()
        self.dim, self.repeats, self.uniform = dim, repeats, uniform

    def forward(self, x):
        if self.repeats is None:  # from a size, int64 so that the Loop body type-checks
            reps = torch.full((x.size(self.dim),), self.uniform, dtype=torch.long)
        else:
            reps = torch.tensor(list(self.repeats))
        return torch.repeat_interleave(x, reps, dim=self.dim) * 2.0


CASES = [
    # shape at export, repeat dim, dynamic axis, repeats (None: from a size), opset
    ((3, 5), 0, 1, (2, 2, 2), 11),
    ((3, 5), 0, 1, (1, 4, 2), 13),
    ((2, 3, 5), 1, 2, (3, 3, 3), 17),
    ((2, 4, 5, 6), 1, 2, (2, 2, 2, 2), 13),
    ((2, 4, 5, 6), 1, 2, (1, 2, 3, 1), 16),
    ((2, 2, 5, 6), -3, 2, (4, 4), 13),
    ((2, 5, 3), 1, 1, None, 13),
    ((4, 5, 6, 2), 2, 1, None, 15),
]


@pytest.mark.torch
@pytest.mark.parametrize(("shape", "dim", "dyn", "repeats", "opset"), CASES)
def test_unseen_lowerings_repaired(tmp_path: Path, shape, dim, dyn, repeats, opset) -> None:
    src, out = tmp_path / "in.onnx", tmp_path / "out.onnx"
    x = torch.randn(*shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Rep(dim, repeats),
            (x,),
            str(src),
            dynamo=False,
            opset_version=opset,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {dyn: "T"}},
        )
    findings = api.lint(src).findings
    rules = {f.rule for f in findings}
    assert rules & {"RP101", "RP102", "RP103"} or not _broken(src, shape, dyn, dim, repeats), (
        "a lowering that onnxruntime gets wrong was not reported",
        [f.message for f in findings],
    )
    res = api.repair(src, out)
    assert res.error is None and res.written
    assert api.lint(out).errors == []
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for t in (7, 11):
        dims = list(shape)
        dims[dyn] = t
        arr = rng.standard_normal(dims).astype(np.float32)
        reps = repeats if repeats is not None else 3
        want = np.repeat(arr, reps, axis=dim) * 2.0
        (got,) = sess.run(None, {"x": arr})
        assert got.shape == want.shape and np.allclose(got, want)


def _broken(path: Path, shape, dyn: int, dim: int, repeats) -> bool:
    """Does onnxruntime fail, or return something other than numpy.repeat?"""
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        dims = list(shape)
        dims[dyn] = 7
        arr = np.ones(dims, np.float32)
        (got,) = sess.run(None, {"x": arr})
        want = np.repeat(arr, repeats if repeats is not None else 3, axis=dim) * 2.0
        return got.shape != want.shape
    except Exception:
        return True
