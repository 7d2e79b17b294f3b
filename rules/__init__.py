"""onnxfix rules: one module per rule family, each exporting ``RULES``.

Installed as ``onnxfix.rules`` (never as a top-level ``rules`` package).
"""
