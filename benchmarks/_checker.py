"""onnx.checker with full_check, by path (it then resolves external data itself)."""

import sys

import onnx

onnx.checker.check_model(sys.argv[1], full_check=True)
