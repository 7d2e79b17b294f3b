"""Conditions on input dims: normal forms, evaluation, and how conditions are classified."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxfix import context, plan, probe
from onnxfix.shapes import d_add, d_floordiv, d_mul, evaluate, named
from onnxfix.shapes.conditions import Condition, classify
from onnxfix.shapes.dims import evaluate_array

S, N, T, L, B = named("s37"), named("n"), named("T"), named("L"), named("B")


def _cond(lhs, rhs, kind: str = "broadcast") -> Condition:
    return Condition(None, onnx.NodeProto(), lhs, rhs, kind, "test")  # type: ignore[arg-type]


def test_floor_division_identities() -> None:
    # ⌊⌊x/2⌋/2⌋ = ⌊x/4⌋ and (x + 4)//2 = x//2 + 2: equal sizes get equal forms
    a = d_add(1, d_floordiv(d_floordiv(d_add(-1, S), 2), 2))
    b = d_add(d_floordiv(d_add(S, -1), 4), 1)
    assert a == b
    assert d_floordiv(d_add(T, 4), 2) == d_add(d_floordiv(T, 2), 2)
    assert d_floordiv(d_mul(32, N), N) == 32
    assert d_mul(2, d_add(T, 1)) == d_add(d_mul(2, T), 2)


@pytest.mark.parametrize(
    "lhs,rhs",
    [
        # the two always-true conditions WB103 warned about on transformers' Speech2Text and
        # SpeechT5 encoders (dynamo exporter)
        (
            d_add(1, d_floordiv(d_floordiv(d_add(-1, S), 2), 2)),
            d_add(d_floordiv(d_add(S, -1), 4), 1),
        ),
        (d_floordiv(d_mul(32, N), N), 32),
    ],
)
def test_always_true_conditions_are_dropped(lhs, rhs) -> None:
    assert classify(_cond(lhs, rhs)).status == "always"


def test_classification() -> None:
    assert classify(_cond(T, 20)).status == "pins"
    assert classify(_cond(T, 20)).values == (20,)
    frames = d_floordiv(L, 8)  # the frames of a stride-8 encoder, decoded back to 8 each
    total = d_mul(B, L)
    v = classify(_cond(d_mul(8, d_mul(B, frames)), total, "eq"))
    assert v.status == "residue" and v.symbol == "L" and v.modulus == 8
    assert classify(_cond(d_mul(B, T), 80, "eq")).status == "finite"
    # a relation between inputs is something probes respect, not a bug
    v = classify(_cond(named("F"), d_add(d_floordiv(L, 10), -1)))
    assert v.status == "relation" and v.symbol == "F"
    # an upper bound (a positional table of 512, sliced to the input) is not a pin
    from onnxfix.shapes import derived

    assert classify(_cond(T, derived("slice", 512, T))).status == "bounded"


def test_a_condition_the_sample_misses_is_never_only_if_no_combination_holds() -> None:
    # T//13 + B%4 == B holds at 230 of the 65,025 combinations in 2..256, none of them
    # in the 200 sampled: that is not "fails at every size" (it was reported so)
    from onnxfix.shapes import d_mod

    lhs = d_add(d_floordiv(T, 13), d_mod(B, 4))
    b, t = np.meshgrid(np.arange(2, 257), np.arange(2, 257), indexing="ij")
    assert (t // 13 + b % 4 == b).sum() == 230
    assert classify(_cond(lhs, B)).status == "dense"
    # a condition on two dims that holds nowhere (odd == even) is still "never"
    odd = d_add(d_add(d_mul(2, B), d_mul(2, T)), 1)
    assert classify(_cond(odd, d_mul(2, d_mul(B, T)), "eq")).status == "never"


def test_vectorised_evaluation_agrees_with_scalar() -> None:
    d = d_add(d_floordiv(d_mul(3, d_add(L, -7)), 4), d_mul(B, 2))
    ls, bs = np.arange(2, 60), np.arange(3, 61)
    arr = evaluate_array(d, {"L": ls, "B": bs}, len(ls))
    assert arr is not None
    assert [evaluate(d, {"L": int(a), "B": int(b)}) for a, b in zip(ls, bs)] == arr.tolist()


def test_planner_sets_an_input_dim_the_graph_relates() -> None:
    m = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[B, L] x, bool[B, F] m) => (float[B, F, 4] y) {
            ws = Constant<value = int64[3] {4, 1, 10}>()
            w = ConstantOfShape<value = float[1] {0.5}>(ws)
            one = Constant<value = int64[1] {1}>()
            x3 = Unsqueeze(x, one)
            c = Conv<strides = [10]>(x3, w)
            ct = Transpose<perm = [0, 2, 1]>(c)
            two = Constant<value = int64[1] {2}>()
            mu = Unsqueeze(m, two)
            z = Constant<value = float {0.0}>()
            y = Where(mu, z, ct) }""")
    ctx = context.build(m)
    p = plan.plan(ctx, probe.input_symbols(m))
    for s in p.settings:
        assert s.dims["F"] == (s.dims["L"] - 10) // 10 + 1
        assert s.dims["F"] >= 2


def test_planner_grows_a_length_until_a_deep_conv_stack_yields_frames() -> None:
    """Seven strided convs (fairseq's extractor has seven): at small L every frame count
    is 0 or negative, and doubling L once changes nothing; the plan must keep growing."""
    convs = "\n".join(
        f"w{i}s = Constant<value = int64[3] {{1, 1, 3}}>()\n"
        f"w{i} = ConstantOfShape<value = float[1] {{0.5}}>(w{i}s)\n"
        f"h{i + 1} = Conv<strides = [2]>(h{i}, w{i})"
        for i in range(7)
    )
    m = onnx.parser.parse_model(f"""<ir_version: 8, opset_import: ["" : 17]>
        g (float[B, 1, L] h0) => (float[B, 1, T] h7) {{
            {convs}
        }}""")
    ctx = context.build(m)
    p = plan.plan(ctx, probe.input_symbols(m))
    frames = [evaluate(ctx.main.shape("h7")[2], s.dims) for s in p.settings]
    assert all(f is not None and f >= 2 for f in frames) and frames[0] != frames[1], frames


def test_planner_stops_for_a_size_no_length_raises_and_not_for_one_that_steps() -> None:
    """A size that no input size raises (an empty Slice: 0 for any T) is given up on at
    once, and reported; growing T for it ran to T = 2**20 (an Emformer's check ended in
    "inputs too large to probe").  A size a doubling leaves where it is but a larger
    input raises (2 + (-3 + T // 10) // 2: 1 at T=14 and at T=28, 3 at T=56) is grown
    until it is 2, and nothing claims it stays below 2."""
    m = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[B, T] x) => (float[B, E] e, float[B, F] y) {
            s = Constant<value = int64[1] {3}>()
            ax = Constant<value = int64[1] {1}>()
            e = Slice(x, s, s, ax)
            ws = Constant<value = int64[3] {1, 1, 10}>()
            w = ConstantOfShape<value = float[1] {0.5}>(ws)
            one = Constant<value = int64[1] {1}>()
            x3 = Unsqueeze(x, one)
            c = Conv<strides = [10]>(x3, w)
            w2s = Constant<value = int64[3] {1, 1, 3}>()
            w2 = ConstantOfShape<value = float[1] {0.5}>(w2s)
            c2 = Conv<strides = [2]>(c, w2)
            c3 = Conv<pads = [2, 2]>(c2, w2)
            y = Squeeze(c3, one) }""")
    ctx = context.build(m)
    p = plan.plan(ctx, probe.input_symbols(m))
    frames = ctx.main.shape("y")[1]
    assert ctx.main.shape("e")[1] not in (None, 0)  # symbolic: an empty slice of T
    for s in p.settings:
        assert s.dims["T"] < 1000, s.dims
        assert evaluate(frames, s.dims) >= 2, s.dims
    (note,) = [n for n in p.notes if "stay below 2" in n]
    assert note.startswith("1 derived dim(s)")


def test_the_stored_sample_is_the_generators() -> None:
    """Conditions on several dims are evaluated at a stored sample (importing numpy.random
    cost 12 ms a lint): it is the seeded generator's draws, row by row, and a
    classification with it equals one drawn afresh."""
    import random

    from onnxfix.shapes import _sample

    assert random.Random(0).randrange(2**31) == _sample.SEED
    gen = np.random.default_rng(_sample.SEED)
    drawn = np.stack([gen.integers(2, 257, size=_sample.SIZE) for _ in range(_sample.ROWS)])
    stored = _sample.rows(_sample.ROWS)
    assert stored is not None and np.array_equal(stored, drawn)
    assert _sample.rows(_sample.ROWS + 1) is None
    frames = d_floordiv(L, 8)
    cond = _cond(d_mul(8, d_mul(B, frames)), d_mul(B, L), "eq")
    assert classify(cond) == classify(cond, rng=random.Random(0))


def test_conditions_that_compare_the_same_dims_are_classified_once(monkeypatch) -> None:
    """A deep encoder repeats its conditions layer after layer: ``classified`` gives each
    the verdict ``classify`` gives it, and classifies each distinct comparison once."""
    from onnxfix.shapes import conditions

    conds = [_cond(T, 20), _cond(T, 20), _cond(d_mul(B, T), 80, "eq"), _cond(T, 20, "eq")] * 3
    want = [classify(c) for c in conds]
    calls: list[Condition] = []
    real = conditions.classify
    monkeypatch.setattr(
        conditions, "classify", lambda c, inputs=None: calls.append(c) or real(c, inputs)
    )
    got = list(conditions.classified(conds))
    assert [v for _, v in got] == want and [c for c, _ in got] == conds
    assert len(calls) == 3
