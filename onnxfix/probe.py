"""Probe inputs: the dynamic dims of a model's inputs, and values that fit each input.

Which dim values to probe at is planned in :mod:`onnxfix.plan`; this module
turns a setting into arrays, using each input's role (:mod:`onnxfix.roles`),
and reads stored reference cases.
"""

from __future__ import annotations

import math
import os

import numpy as np
import onnx

from onnxfix.roles import Role
from onnxfix.roles import infer as infer_roles
from onnxfix.shapes.propagate import dynamic_input_dims, input_dim_key


class ProbeError(Exception):
    """Inputs that cannot be made (a dtype we cannot feed)."""


#: Probe settings whose inputs would hold more elements than this are shrunk.
MAX_PROBE_ELEMENTS = 50_000_000


def input_symbols(model: onnx.ModelProto) -> list[str]:
    """Dynamic dims of the graph inputs, in order of first appearance."""
    return list(dict.fromkeys(key for key, _vi, _axis in dynamic_input_dims(model)))


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


def input_shapes(model: onnx.ModelProto, setting: dict[str, int]) -> dict[str, list[int]]:
    init = {t.name for t in model.graph.initializer}
    out = {}
    for vi in model.graph.input:
        if vi.name in init:
            continue
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = [
            setting[k] if (k := input_dim_key(vi.name, i, d)) is not None else d.dim_value
            for i, d in enumerate(dims)
        ]
    return out


def make_inputs(
    model: onnx.ModelProto,
    setting: dict[str, int],
    seed: int = 0,
    roles: dict[str, Role] | None = None,
) -> dict[str, np.ndarray] | None:
    """Inputs for one setting, with values that fit each input's role (see
    :mod:`onnxfix.roles`); None if they would exceed :data:`MAX_PROBE_ELEMENTS`."""
    rng = np.random.default_rng(seed)
    roles = roles if roles is not None else infer_roles(model)
    shapes = input_shapes(model, setting)
    if sum(math.prod(s) for s in shapes.values()) > MAX_PROBE_ELEMENTS:
        return None
    longest = max((v for v in setting.values()), default=1)
    feeds: dict[str, np.ndarray] = {}
    for vi in model.graph.input:
        if vi.name not in shapes:
            continue
        dtype = _NP.get(vi.type.tensor_type.elem_type)
        if dtype is None:
            raise ProbeError(f"input '{vi.name}' has a dtype onnxfix cannot feed")
        shape = shapes[vi.name]
        role = roles.get(vi.name, Role("data"))
        feeds[vi.name] = np.asarray(_values(rng, role, shape, dtype, longest), dtype=dtype)
    return feeds


def _values(
    rng: np.random.Generator, role: Role, shape: list[int], dtype: type, longest: int
) -> np.ndarray:
    if role.kind == "mask":
        return _prefix_mask(rng, shape, role.pad_is_one).astype(dtype)
    if role.kind == "lengths":
        n = math.prod(shape)
        lens = rng.integers(max(1, longest // 2), longest + 1, size=n)
        if n:
            lens[0] = longest  # one full-length row, as a padded batch has
        return lens.reshape(shape).astype(dtype)
    if role.kind == "index":
        return rng.integers(0, role.bound or 4, size=shape).astype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 4, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _prefix_mask(rng: np.random.Generator, shape: list[int], pad_is_one: bool) -> np.ndarray:
    """Each row valid up to a length along the last axis; the first row full."""
    if not shape:
        return np.asarray(not pad_is_one)
    t = shape[-1]
    rows = math.prod(shape[:-1])
    lens = rng.integers(max(1, t // 2), t + 1, size=rows) if t else np.zeros(rows, int)
    if rows:
        lens[0] = t
    valid = np.arange(t)[None, :] < lens[:, None]
    mask = ~valid if pad_is_one else valid
    return mask.reshape(shape)


def load_reference(
    path: str | os.PathLike[str],
) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Cases from an ``.npz`` with keys ``<case>/in/<name>`` and ``<case>/out/<name>``;
    anything else is refused in one line (:class:`onnxfix.io.ModelError`)."""
    from onnxfix.io import ModelError

    cases: dict[str, tuple[dict, dict]] = {}
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):
            raise ValueError("it is not a NumPy file (no .npz or .npy header)")
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("it holds one array, not cases")
        with z:
            for key in z.files:
                case, kind, name = [*key.split("/", 2), "", ""][:3]
                if kind not in ("in", "out") or not name:
                    raise ValueError(f"key '{key}' is not <case>/in/<name> or <case>/out/<name>")
                feeds, outs = cases.setdefault(case, ({}, {}))
                (feeds if kind == "in" else outs)[name] = z[key]
    except OSError as exc:
        raise ModelError(path, f"reference cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # numpy's refusals: pickled data, not a zip, bad header...
        raise ModelError(path, f"is not a reference .npz: {exc}".splitlines()[0][:300]) from None
    return [cases[k] for k in sorted(cases)]


def setting_of(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, int]:
    """The value each dynamic dim takes in a set of inputs."""
    setting: dict[str, int] = {}
    for vi in model.graph.input:
        arr = feeds.get(vi.name)
        if arr is None:
            continue
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            key = input_dim_key(vi.name, i, d)
            if key is not None and i < arr.ndim:
                setting[key] = int(arr.shape[i])
    return setting
