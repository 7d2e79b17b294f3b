"""Probe runs: which dim values to run a model at, and inputs that fit.

One module for the probe ladder, used by repair's verification and by
``onnxfix check``.  Every dynamic dim gets a *distinct* value other than 1:
1 is what hides broadcasting bugs (it is why ``polygraphy check lint`` passes
the HuBERT model), and equal values hide a swapped axis.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import onnx

# --- probe inputs --------------------------------------------------------------------------


class ProbeError(Exception):
    """Inputs that cannot be made (a dtype we cannot feed)."""


#: Rungs of the probe ladder.  Each gives two settings (base + 2i, base + 2i + 1),
#: so symbols never share a value and never take 1.
PROBE_BASES = (3, 17, 61, 401, 1601)
#: Probe settings whose inputs would hold more elements than this are skipped.
MAX_PROBE_ELEMENTS = 50_000_000


def input_symbols(model: onnx.ModelProto) -> list[str]:
    """Dynamic dims of the graph inputs; an unnamed dynamic dim gets its own key."""
    init = {t.name for t in model.graph.initializer}
    syms: list[str] = []
    for vi in model.graph.input:
        if vi.name in init:
            continue
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value"):
                continue
            key = d.dim_param or f"{vi.name}:{i}"
            if key not in syms:
                syms.append(key)
    return syms


def probe_ladder(symbols: Sequence[str]) -> list[tuple[dict[str, int], dict[str, int]]]:
    rungs = []
    for base in PROBE_BASES:
        a = {s: base + 2 * i for i, s in enumerate(symbols)}
        b = {s: base + 2 * i + 1 for i, s in enumerate(symbols)}
        rungs.append((a, b))
    return rungs


_NP = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.BOOL: np.bool_,
    onnx.TensorProto.INT16: np.int16,
}


def make_inputs(
    model: onnx.ModelProto, setting: dict[str, int], seed: int = 0
) -> dict[str, np.ndarray] | None:
    rng = np.random.default_rng(seed)
    init = {t.name for t in model.graph.initializer}
    feeds: dict[str, np.ndarray] = {}
    total = 0
    for vi in model.graph.input:
        if vi.name in init:
            continue
        tt = vi.type.tensor_type
        shape = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                shape.append(d.dim_value)
            else:
                shape.append(setting[d.dim_param or f"{vi.name}:{i}"])
        total += math.prod(shape)
        if total > MAX_PROBE_ELEMENTS:
            return None
        dtype = _NP.get(tt.elem_type)
        if dtype is None:
            raise ProbeError(f"input '{vi.name}' has a dtype onnxfix cannot feed")
        if dtype == np.bool_:
            arr = rng.random(shape) < 0.2
        elif np.issubdtype(dtype, np.integer):
            arr = rng.integers(0, 4, size=shape).astype(dtype)
        else:
            arr = rng.standard_normal(shape).astype(dtype)
        feeds[vi.name] = np.asarray(arr, dtype=dtype)  # 0-d draws come back as scalars
    return feeds


def load_reference(
    path: str | os.PathLike[str],
) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Cases from an ``.npz`` with keys ``<case>/in/<name>`` and ``<case>/out/<name>``."""
    cases: dict[str, tuple[dict, dict]] = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            case, kind, name = key.split("/", 2)
            feeds, outs = cases.setdefault(case, ({}, {}))
            (feeds if kind == "in" else outs)[name] = z[key]
    return [cases[k] for k in sorted(cases)]


def setting_of(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, int]:
    """The value each dynamic dim takes in a set of inputs."""
    setting: dict[str, int] = {}
    for vi in model.graph.input:
        arr = feeds.get(vi.name)
        if arr is None:
            continue
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if not d.HasField("dim_value") and i < arr.ndim:
                setting[d.dim_param or f"{vi.name}:{i}"] = int(arr.shape[i])
    return setting
