"""The floor for any structural linter: parse without weights, infer shapes."""

import sys

import onnx

m = onnx.load(sys.argv[1], load_external_data=False)
onnx.shape_inference.infer_shapes(m, data_prop=True)
