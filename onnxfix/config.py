"""Project configuration: ``[tool.onnxfix]`` in the nearest ``pyproject.toml``.

Looked up from the working directory upward, like ruff.  Command-line flags win
over the file.  Keys::

    [tool.onnxfix]
    select = ["WB", "RP"]                  # rule codes or prefixes
    ignore = ["WB103"]
    expect = "contracts/encoder.toml"      # default --expect (relative to this file)
    severity = { WB103 = "error" }         # per-rule severity overrides
    dims = { T = [37, 400], B = [3] }      # default probe dims for `onnxfix check`

    [tool.onnxfix.per-file-ignores]
    "models/legacy/*.onnx" = ["TG104"]
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxfix.findings import Finding, Severity


class ConfigError(Exception):
    pass


@dataclass
class Config:
    path: Path | None = None
    select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    expect: str | None = None
    severity: dict[str, Severity] = field(default_factory=dict)
    dims: dict[str, list[int]] = field(default_factory=dict)
    per_file_ignores: dict[str, list[str]] = field(default_factory=dict)

    def ignored_for(self, model: str) -> list[str]:
        """Rule codes/prefixes ignored for ``model`` by per-file-ignores."""
        base = self.path.parent if self.path else Path.cwd()
        p = Path(model).resolve()
        try:
            rel = p.relative_to(base.resolve()).as_posix()
        except ValueError:
            rel = p.as_posix()
        out: list[str] = []
        for pattern, codes in self.per_file_ignores.items():
            if fnmatch.fnmatch(rel, pattern) or fnmatch.fnmatch(Path(model).as_posix(), pattern):
                out += codes
        return out

    def adjust(self, model: str, findings: list[Finding]) -> list[Finding]:
        """Apply per-file ignores and severity overrides to one file's findings."""
        ignored = [c.upper() for c in self.ignored_for(model)]
        kept = [f for f in findings if not any(f.rule.upper().startswith(c) for c in ignored)]
        return [
            f.replace(severity=self.severity[f.rule]) if f.rule in self.severity else f
            for f in kept
        ]


def find(start: Path | None = None) -> Path | None:
    d = (start or Path.cwd()).resolve()
    for folder in (d, *d.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            import tomllib  # here: 4.8 ms of start-up where no pyproject.toml is found

            try:
                data = tomllib.loads(candidate.read_text())
            except tomllib.TOMLDecodeError as exc:  # a broken config must not turn checks off
                raise ConfigError(f"{candidate}: not valid TOML: {exc}") from None
            except OSError:
                continue
            if "onnxfix" in data.get("tool", {}):
                return candidate
    return None


def _strs(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"[tool.onnxfix] {key} must be a list of strings")
    return value


def load(path: Path | None = None, explicit: bool = False) -> Config:
    """The configuration in ``path``, or found from the working directory upward.

    A file named with ``--config`` (``explicit``) may hold ``[tool.onnxfix]`` or the
    same keys at its top level (an ``onnxfix.toml``)."""
    path = path or find()
    if path is None:
        return Config()
    import tomllib

    try:
        whole = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    data = whole.get("tool", {}).get("onnxfix", {})
    if explicit and "tool" not in whole:
        data = whole
    unknown = set(data) - {"select", "ignore", "expect", "severity", "dims", "per-file-ignores"}
    if unknown:
        raise ConfigError(f"{path}: unknown [tool.onnxfix] keys {sorted(unknown)}")
    cfg = Config(path=path)
    cfg.select = _strs(data.get("select", []), "select")
    cfg.ignore = _strs(data.get("ignore", []), "ignore")
    if "expect" in data:
        exp = data["expect"]
        cfg.expect = exp if not os.path.exists(path.parent / exp) else str(path.parent / exp)
    for code, level in data.get("severity", {}).items():
        try:
            cfg.severity[code.upper()] = Severity(level)
        except ValueError:
            raise ConfigError(
                f"{path}: severity of {code} must be error, warning or info"
            ) from None
    for sym, values in data.get("dims", {}).items():
        if not isinstance(values, list) or not all(isinstance(v, int) and v > 0 for v in values):
            raise ConfigError(f"{path}: dims.{sym} must be a list of positive integers")
        cfg.dims[sym] = values
    for pattern, codes in data.get("per-file-ignores", {}).items():
        cfg.per_file_ignores[pattern] = _strs(codes, f"per-file-ignores.{pattern}")
    return cfg
