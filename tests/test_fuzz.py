"""Bounded property-based fuzzing: mutated fixture models never make lint or repair raise
an uncaught exception, and repair never writes a model that does not verify."""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxfix import api
from onnxfix.io import ModelError
from tests.conftest import FIXTURES

SEEDS = [
    FIXTURES / "where_broadcast/mask_rank1_op12.onnx",
    FIXTURES / "where_broadcast/inverted_mask_op11.onnx",
    FIXTURES / "where_broadcast/vector_fill_scatternd_op13.onnx",
    FIXTURES / "repeat_pattern/repeat_tensor_axis0_op13.onnx",
    FIXTURES / "repeat_pattern/repeat_size_long_axis1_op13.onnx",
    FIXTURES / "truncated_graph/baked_length_op17.onnx",
]
BLOBS = {p: p.read_bytes() for p in SEEDS}


def _values(m: onnx.ModelProto) -> list[str]:
    return sorted({v for n in m.graph.node for v in (*n.input, *n.output) if v})


@st.composite
def mutated(draw: st.DrawFn) -> bytes:  # noqa: C901 - one branch per mutation
    seed = draw(st.sampled_from(SEEDS))
    blob = BLOBS[seed]
    kind = draw(
        st.sampled_from(
            [
                "cut_bytes",
                "flip_bytes",
                "drop_node",
                "rename",
                "dim",
                "attr",
                "drop_init",
                "dup_output",
            ]
        )
    )
    if kind == "cut_bytes":
        return blob[: draw(st.integers(0, len(blob)))]
    if kind == "flip_bytes":
        data = bytearray(blob)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    m = onnx.load_from_string(blob)
    nodes = m.graph.node
    if kind == "drop_node" and len(nodes):
        del nodes[draw(st.integers(0, len(nodes) - 1))]
    elif kind == "rename":
        vals = _values(m)
        old = draw(st.sampled_from(vals))
        new = draw(st.sampled_from([*vals, "fresh_name", ""]))
        for n in nodes:
            for i, v in enumerate(n.input):
                if v == old and draw(st.booleans()):
                    n.input[i] = new
    elif kind == "dim":
        vis = [*m.graph.input, *m.graph.output]
        vi = draw(st.sampled_from(vis))
        dims = vi.type.tensor_type.shape.dim
        if len(dims):
            d = dims[draw(st.integers(0, len(dims) - 1))]
            choice = draw(st.sampled_from(["int", "sym", "clear"]))
            if choice == "int":
                d.dim_value = draw(st.sampled_from([0, 1, 2, 7, 2**31 - 1]))
            elif choice == "sym":
                d.dim_param = draw(st.sampled_from(["T", "B", "Z"]))
            else:
                d.Clear()
    elif kind == "attr" and len(nodes):
        n = nodes[draw(st.integers(0, len(nodes) - 1))]
        ints = [a for a in n.attribute if a.type == onnx.AttributeProto.INT]
        if ints:
            draw(st.sampled_from(ints)).i = draw(st.integers(-5, 5))
    elif kind == "drop_init" and len(m.graph.initializer):
        del m.graph.initializer[draw(st.integers(0, len(m.graph.initializer) - 1))]
    elif kind == "dup_output" and len(nodes) > 1:
        a, b = draw(st.integers(0, len(nodes) - 1)), draw(st.integers(0, len(nodes) - 1))
        if nodes[a].output and nodes[b].output:
            nodes[b].output[0] = nodes[a].output[0]
    return m.SerializeToString()


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(mutated())
def test_mutated_models_never_crash_or_write_unverified(blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "m.onnx", Path(tmp) / "out.onnx"
        src.write_bytes(blob)
        try:
            api.lint(src)
        except ModelError:
            return  # a clear refusal is a valid answer
        res = api.repair(src, out)
        assert src.read_bytes() == blob, "the input must never change"
        if not res.written:
            assert not out.exists()
            return
        if res.fixed:  # anything onnxfix changed was verified: it loads and checks
            onnx.checker.check_model(str(out), full_check=True)
            ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        else:
            assert out.read_bytes() == blob  # nothing to fix: a byte-identical copy
        leftovers = [p.name for p in Path(tmp).iterdir() if p.name.startswith(".onnxfix-")]
        assert not leftovers
