"""Repeat rules (RP): lowerings of ``torch.repeat_interleave`` that compute the wrong thing.

The TorchScript exporter lowers ``repeat_interleave(x, repeats, dim)`` three ways:
``Unsqueeze -> Tile -> Reshape`` for int repeats (correct); one
``Unsqueeze -> Expand -> Reshape`` chain per ``Split`` slice, joined by
``Concat``, for a 1-D repeats tensor (and, in torch 2.0.1, for int repeats);
a ``Loop`` over ``SplitToSequence`` for repeats computed from a size.  The last
two bake a Reshape target whose ``0`` copies the axis *after* the inserted one
— the repeat count instead of T — so the result has the wrong shape (WeNet
issue #2517: multi-query attention's key/value heads).  Each rule rebuilds
what the pattern means (input, axis, repeats), evaluates the pattern's shape
symbolically, and compares it with what ``repeat_interleave`` returns.
"""
