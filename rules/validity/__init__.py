"""Validity rules (VA): what ONNX itself can prove wrong before any runtime sees the model."""
