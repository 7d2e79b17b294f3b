"""Trace-baked sizes (TB): dims declared dynamic that the graph pins to one value.

Tracing turns Python numbers into constants: ``int(x.size(1))``, ``math.sqrt(n)``,
``numpy.arange(T)``, ``x.split([int(T) - 3, 3])``, a padding chosen by a Python
``if``, a buffer sliced with an int.  The model is declared dynamic, passes
onnx.checker, loads, runs at the traced size — and fails (or silently differs)
at every other size: "The input tensor cannot be reshaped to the requested
shape".  Each rule reads the conditions under which its ops run
(:mod:`onnxfix.shapes.conditions`) and reports those that pin an input dim.
"""
