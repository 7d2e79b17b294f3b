"""Interface contracts: what a runtime needs from a model's inputs and outputs.

A contract is a small TOML or JSON file (or a built-in profile name)::

    [inputs.feats]
    dtype = "float32"
    shape = ["B", "L"]        # a string is a dynamic dim, an int a fixed one, "*" anything

    [inputs.padding_mask]
    dtype = "bool"
    shape = ["B", "L"]
    optional = true           # may be absent; if present it must match

    [outputs.x]
    dtype = "float32"
    shape = ["B", "T", "*"]

Exporters drop inputs whose path a Python branch removed at trace time, rename
things, and freeze dims that were meant to be dynamic; none of that is an ONNX
error, so only a contract can catch it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

_DTYPES = {
    "float32": onnx.TensorProto.FLOAT,
    "float": onnx.TensorProto.FLOAT,
    "float16": onnx.TensorProto.FLOAT16,
    "float64": onnx.TensorProto.DOUBLE,
    "bfloat16": onnx.TensorProto.BFLOAT16,
    "int64": onnx.TensorProto.INT64,
    "int32": onnx.TensorProto.INT32,
    "int8": onnx.TensorProto.INT8,
    "uint8": onnx.TensorProto.UINT8,
    "bool": onnx.TensorProto.BOOL,
}
_NAMES: dict[int, str] = {v: k for k, v in reversed(list(_DTYPES.items()))}


class ContractError(Exception):
    """A contract that cannot be read; the CLI turns it into exit code 2."""


@dataclass
class Port:
    name: str
    dtype: int | None
    shape: list[int | str] | None
    optional: bool = False


@dataclass
class Contract:
    name: str
    inputs: list[Port] = field(default_factory=list)
    outputs: list[Port] = field(default_factory=list)


def dtype_name(code: int) -> str:
    return _NAMES.get(code, onnx.TensorProto.DataType.Name(code).lower() if code else "?")


def _ports(section: dict[str, Any], where: str) -> list[Port]:
    ports = []
    for name, spec in section.items():
        if not isinstance(spec, dict):
            raise ContractError(f"{where}.{name} must be a table")
        dt = spec.get("dtype")
        if dt is not None and dt not in _DTYPES:
            raise ContractError(f"{where}.{name}: unknown dtype '{dt}'")
        shape = spec.get("shape")
        if shape is not None and (
            not isinstance(shape, list) or not all(isinstance(d, int | str) for d in shape)
        ):
            raise ContractError(f"{where}.{name}: shape must be a list of ints and strings")
        ports.append(
            Port(name, _DTYPES[dt] if dt else None, shape, bool(spec.get("optional", False)))
        )
    return ports


def from_dict(data: dict[str, Any], name: str) -> Contract:
    unknown = set(data) - {"inputs", "outputs", "name"}
    if unknown:
        raise ContractError(f"unknown sections {sorted(unknown)}")
    return Contract(
        data.get("name", name),
        _ports(data.get("inputs", {}), "inputs"),
        _ports(data.get("outputs", {}), "outputs"),
    )


# Built-in profiles for the exports we reproduce.
_WENET_CHUNK = {
    "inputs": {
        "chunk": {"dtype": "float32", "shape": [1, "T", "*"]},
        "offset": {"dtype": "int64", "shape": []},
        "required_cache_size": {"dtype": "int64", "shape": []},
        "att_cache": {"dtype": "float32", "shape": ["*", "*", "T_CACHE", "*"]},
        "cnn_cache": {"dtype": "float32", "shape": ["*", 1, "*", "*"]},
        "att_mask": {"dtype": "bool", "shape": [1, 1, "T_ADD_T_CACHE"]},
    },
    "outputs": {
        "output": {"dtype": "float32", "shape": [1, "T", "*"]},
        "r_att_cache": {"dtype": "float32", "shape": ["*", "*", "T_CACHE", "*"]},
        "r_cnn_cache": {"dtype": "float32", "shape": ["*", 1, "*", "*"]},
    },
}
PROFILES: dict[str, dict[str, Any]] = {
    "wenet-encoder-chunk": _WENET_CHUNK,
    "wenet-ctc": {
        "inputs": {"hidden": {"dtype": "float32", "shape": [1, "T", "*"]}},
        "outputs": {"probs": {"dtype": "float32", "shape": [1, "T", "*"]}},
    },
    "hubert-features": {
        "inputs": {
            "feats": {"dtype": "float32", "shape": ["B", "L"]},
            "padding_mask": {"dtype": "bool", "shape": ["B", "L"], "optional": True},
        },
        "outputs": {
            "x": {"dtype": "float32", "shape": ["B", "T", "*"]},
            "padding_mask_out": {"dtype": "bool", "shape": ["B", "T"], "optional": True},
        },
    },
}


def load(spec: str | os.PathLike[str]) -> Contract:
    """A built-in profile by name, or a ``.toml``/``.json`` file."""
    key = str(spec)
    if key in PROFILES:
        return from_dict(PROFILES[key], key)
    path = Path(key)
    if not path.is_file():
        raise ContractError(
            f"no contract file '{key}' and no built-in profile of that name "
            f"(profiles: {', '.join(sorted(PROFILES))})"
        )
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            import tomllib

            data = tomllib.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise ContractError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError(f"{path}: a contract is a table of inputs and outputs")
    return from_dict(data, path.name)


def resolve(spec: str | os.PathLike[str] | Contract | None) -> Contract | None:
    """A contract given as a file, a profile name, an object, or nothing."""
    return spec if isinstance(spec, Contract | None) else load(spec)


def declared_dims(vi: onnx.ValueInfoProto) -> list[int | str] | None:
    """A value's declared dims (ints, symbol names, '?' for unnamed); None if no shape."""
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]


def model_ports(model: onnx.ModelProto, kind: str) -> list[tuple[str, int, list[int | str]]]:
    """(name, dtype, shape) of the model's inputs (initializers excluded) or outputs."""
    init = {t.name for t in model.graph.initializer}
    vis = model.graph.input if kind == "inputs" else model.graph.output
    out = []
    for vi in vis:
        if kind == "inputs" and vi.name in init:
            continue
        out.append((vi.name, vi.type.tensor_type.elem_type, declared_dims(vi) or []))
    return out


def fmt(dtype: int | None, shape: list[int | str] | None) -> str:
    s = "[" + ", ".join(str(d) for d in shape) + "]" if shape is not None else "[...]"
    return f"{dtype_name(dtype) if dtype else '*'} {s}"


def differences(contract: Contract, model: onnx.ModelProto) -> list[tuple[str, str, str]]:  # noqa: C901 - one check per way a port can differ
    """(kind, port name, explanation) for each way the model breaks the contract."""
    out: list[tuple[str, str, str]] = []
    for kind in ("inputs", "outputs"):
        want = getattr(contract, kind)
        have = model_ports(model, kind)
        have_by = {n: (dt, sh) for n, dt, sh in have}
        want_names = {p.name for p in want}
        extra = [h for h in have if h[0] not in want_names]
        singular = kind[:-1]
        for port in want:
            if port.name not in have_by:
                if port.optional:
                    continue
                # a renamed port: same position's extra entry with the same dtype and rank
                twin = next(
                    (
                        h
                        for h in extra
                        if (port.dtype in (None, h[1]))
                        and (port.shape is None or len(port.shape) == len(h[2]))
                    ),
                    None,
                )
                if twin is not None:
                    extra.remove(twin)
                    out.append(
                        (
                            kind,
                            port.name,
                            f"{singular} '{port.name}' renamed to "
                            f"'{twin[0]}': expected {fmt(port.dtype, port.shape)}, model "
                            f"has '{twin[0]}' {fmt(twin[1], twin[2])}",
                        )
                    )
                else:
                    out.append(
                        (
                            kind,
                            port.name,
                            f"{singular} '{port.name}' missing: expected "
                            f"{fmt(port.dtype, port.shape)}, the model has no such "
                            f"{singular} (an exporter drops inputs whose path a Python "
                            "branch removed at trace time)"
                            if kind == "inputs"
                            else f"{singular} '{port.name}' missing: expected "
                            f"{fmt(port.dtype, port.shape)}",
                        )
                    )
                continue
            dt, sh = have_by[port.name]
            side = f"expected {fmt(port.dtype, port.shape)}, model has {fmt(dt, sh)}"
            if port.dtype is not None and dt != port.dtype:
                out.append(
                    (kind, port.name, f"{singular} '{port.name}' has the wrong dtype: {side}")
                )
                continue
            if port.shape is None:
                continue
            if len(sh) != len(port.shape):
                out.append(
                    (kind, port.name, f"{singular} '{port.name}' has the wrong rank: {side}")
                )
                continue
            for i, (w, h) in enumerate(zip(port.shape, sh)):
                if w == "*":
                    continue
                if isinstance(w, str) and isinstance(h, int):
                    out.append(
                        (
                            kind,
                            port.name,
                            f"{singular} '{port.name}' axis {i} is frozen "
                            f"at {h} where dynamic '{w}' is expected: {side}",
                        )
                    )
                    break
                if isinstance(w, int) and isinstance(h, int) and w != h:
                    out.append(
                        (
                            kind,
                            port.name,
                            f"{singular} '{port.name}' axis {i} is {h} "
                            f"where {w} is expected: {side}",
                        )
                    )
                    break
        for name, dt, sh in extra:
            out.append(
                (
                    kind,
                    name,
                    f"{singular} '{name}' {fmt(dt, sh)} is not in the contract"
                    + (
                        " (a runtime that follows the contract will not feed it)"
                        if kind == "inputs"
                        else ""
                    ),
                )
            )
    return out
