"""onnxruntime session creation alone (the floor for any verification that runs the model)."""

import sys

import onnxruntime as ort

ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
