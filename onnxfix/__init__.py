"""onnxfix: lint and safely repair exported ONNX models.

``onnxfix.lint``, ``onnxfix.repair`` and ``onnxfix.check`` are the Python API (see
:mod:`onnxfix.api`);
they are loaded on first use so that ``import onnxfix`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "check", "lint", "repair"]


def __getattr__(name: str) -> Any:
    if name in ("lint", "repair", "check"):
        from onnxfix import api

        return getattr(api, name)
    raise AttributeError(name)
