"""Broadcast rules (WB): operands that cannot broadcast, and PyTorch mask indexing
exported as ``Where``.

The TorchScript exporter lowers ``x[mask] = v`` (mask of lower rank than
``x``) to ``Where(mask, v, x)``.  PyTorch's boolean indexing lines the mask up
with the *leading* axes of ``x``; ONNX broadcasting lines shapes up from the
*right*.  With dynamic dims nothing fails until run time, and onnx.checker,
strict shape inference and ``polygraphy check lint`` all pass the model.
"""
