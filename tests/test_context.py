"""PyTorch provenance: scopes from TorchScript names and dynamo metadata, kept by fixes."""

from __future__ import annotations

import pytest
from onnx import helper

from onnxfix import api, registry
from onnxfix.context import scope_of, source_of
from tests.models import mask_where, mismatched_add


def test_torchscript_scope_from_name() -> None:
    n = helper.make_node("Where", ["a", "b", "c"], ["y"], name="/encoder/layers.0/Where_3")
    assert scope_of(n) == "encoder/layers.0"
    assert scope_of(helper.make_node("Where", ["a"], ["y"], name="/Where")) == "<top>"
    assert scope_of(helper.make_node("Where", ["a"], ["y"], name="node_Where_3")) is None


def _dynamo_meta(node) -> None:
    node.metadata_props.add(
        key="pkg.torch.onnx.name_scopes", value="['', 'encoder', 'layers.0', 'index_put']"
    )
    node.metadata_props.add(
        key="pkg.torch.onnx.stack_trace",
        value='File "model.py", line 6, in forward\n    x[mask] = 0',
    )


def test_dynamo_scope_and_source_from_metadata() -> None:
    n = helper.make_node("Where", ["a", "b", "c"], ["y"], name="node_Where_3")
    _dynamo_meta(n)
    assert scope_of(n) == "encoder/layers.0"
    assert source_of(n) == "x[mask] = 0"


def test_fix_keeps_metadata_and_tags_inserted_nodes() -> None:
    m = mask_where(["B", "T", 4], 2, 17)
    _dynamo_meta(m.graph.node[0])
    (f,) = api.lint(m).findings
    assert f.scope == "encoder/layers.0" and f.source == "x[mask] = 0"
    api.apply_fixes(m, f_rules := list(registry.all_rules()))
    assert f_rules
    where = next(n for n in m.graph.node if n.op_type == "Where")
    assert {p.key for p in where.metadata_props} == {
        "pkg.torch.onnx.name_scopes",
        "pkg.torch.onnx.stack_trace",
    }
    inserted = [n for n in m.graph.node if n.op_type in ("Unsqueeze", "Constant")]
    for n in inserted:
        meta = {p.key: p.value for p in n.metadata_props}
        assert meta["onnxfix.rule"] == "WB102"
        assert meta["pkg.torch.onnx.name_scopes"].endswith("'index_put']")
        assert n.name.startswith("/model/enc/Where_7/onnxfix_unsqueeze")


def test_an_analysis_is_freed_by_reference_counting_alone() -> None:
    """No reference cycle keeps an analysis alive: with the collector paused (as it is
    while onnxfix analyses), dropping the context frees every graph's maps at once.  A
    cycle held a 100k-node graph's analysis (millions of objects) until a full
    collection, which cost 0.56 s."""
    import gc
    import weakref

    from onnxfix import context
    from tests.models import where_in_if

    was = gc.isenabled()
    gc.disable()
    try:
        ctx = context.build(where_in_if(17))
        assert len(ctx.graphs) == 3  # the main graph and both branches
        refs = [weakref.ref(g) for g in ctx.graphs] + [weakref.ref(g.shapes) for g in ctx.graphs]
        del ctx
        assert [r() for r in refs] == [None] * len(refs)
    finally:
        if was:
            gc.enable()


def test_an_inference_started_at_load_answers_as_one_run_here(tmp_path, monkeypatch) -> None:
    """``EarlyInference`` runs ONNX's inference in a forked child while the model is
    parsed and scanned; its answer (inferred model, strict error, fallback error) is the
    one an inference in this process gives, and no child is left."""
    import os

    import onnx

    from onnxfix import context, io

    monkeypatch.setattr(context, "FORK_AT", 0)  # these models are small
    for name, model in (("mask", mask_where(["B", "T", 16], 2, 17)), ("bad", mismatched_add())):
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        loaded = io.load(path, on_read=context.EarlyInference.start)
        early = loaded.table.early if loaded.table is not None else None
        assert isinstance(early, context.EarlyInference)
        got = context.infer(loaded.model, loaded.table)
        want = context.infer(loaded.model)
        assert got[1:] == want[1:] and (name == "mask") == (got[1] is None)
        assert got[0] is not None and want[0] is not None
        assert got[0].SerializeToString() == want[0].SerializeToString()
        assert early.child.status is not None  # reaped
        try:
            os.waitpid(early.child.pid, os.WNOHANG)
            raise AssertionError("the child is still there")
        except ChildProcessError:
            pass


def test_a_crash_of_the_inference_child_is_a_failed_inference(tmp_path, monkeypatch) -> None:
    """ONNX's inference can abort its process (a C++ assertion).  In the child that is
    reported as the inference's failure and the analysis goes on with its own shapes."""
    import os
    import signal

    import onnx

    from onnxfix import context, linter

    monkeypatch.setattr(context, "FORK_AT", 0)
    monkeypatch.setattr(context, "_infer_bytes", lambda data: os.kill(os.getpid(), signal.SIGABRT))
    path = tmp_path / "m.onnx"
    onnx.save(mask_where(["B", "T", 16], 2, 17), str(path))
    result = linter.lint(path)
    assert result.notes == ["shape inference failed: ONNX's shape inference crashed (SIGABRT)"]
    assert [f.rule for f in result.findings] == ["WB102"]  # found on our own shapes


def test_an_inference_not_wanted_is_stopped(tmp_path, monkeypatch) -> None:
    """A model that turns out unusable after the child started, or a declared -1 dim
    (the child read the raw model; the safe copy is inferred here instead), or an
    analysis that never asks: the child is killed and reaped."""
    import os
    import time
    import weakref

    import onnx

    from onnxfix import context, io

    monkeypatch.setattr(context, "FORK_AT", 0)
    started: list[tuple[int, weakref.ref[context.EarlyInference]]] = []

    parent, real = os.getpid(), context._infer_bytes

    def slow(data: bytes):
        if os.getpid() != parent:  # the children hang; this process infers as usual
            time.sleep(30)
        return real(data)

    def start(data: bytes):
        e = context.EarlyInference.start(data)
        assert e is not None
        started.append((e.child.pid, weakref.ref(e)))
        return e

    monkeypatch.setattr(context, "_infer_bytes", slow)
    bad = tmp_path / "bad.onnx"
    onnx.save(mask_where(["B", "T", 16], 2, 17), str(bad))
    bad.write_bytes(bad.read_bytes()[:-9])
    t = time.monotonic()
    with pytest.raises(io.ModelError):
        io.load(bad, on_read=start)
    path = tmp_path / "m.onnx"
    m = mask_where(["B", "T", 16], 2, 17)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -1  # Paddle2ONNX's dynamic
    onnx.save(m, str(path))
    loaded = io.load(path, on_read=start)
    assert loaded.table is not None and loaded.table.minus_one
    inferred, _strict, err = context.infer(loaded.model, loaded.table)
    assert inferred is not None and err is None  # the safe copy, here
    loaded = io.load(path, on_read=start)
    del loaded
    import gc

    gc.collect()
    assert time.monotonic() - t < 10  # none was waited for
    assert len(started) == 3
    for pid, ref in started:
        assert ref() is None
        with pytest.raises(ChildProcessError):  # reaped: not a zombie
            os.waitpid(pid, os.WNOHANG)


def test_the_standard_ops_that_hold_graphs_are_the_schemas_ones() -> None:
    """``context._GRAPH_OPS`` stands for the schema registry (its first use costs 14 ms):
    it must name every standard op with a graph attribute in any opset of this onnx."""
    import onnx.defs

    from onnxfix import context

    kinds = (onnx.defs.OpSchema.AttrType.GRAPH, onnx.defs.OpSchema.AttrType.GRAPHS)
    holding = {
        s.name
        for s in onnx.defs.get_all_schemas_with_history()
        if s.domain in ("", "ai.onnx") and any(a.type in kinds for a in s.attributes.values())
    }
    assert holding == context._GRAPH_OPS


def test_no_fork_no_descriptor_means_inference_here(tmp_path, monkeypatch) -> None:
    """A fork or a file that cannot be had (EAGAIN, EMFILE) leaves the inference to this
    process: the same findings, no error."""
    import errno
    import os

    import onnx

    from onnxfix import context, forked, linter

    monkeypatch.setattr(context, "FORK_AT", 0)
    path = tmp_path / "m.onnx"
    onnx.save(mask_where(["B", "T", 16], 2, 17), str(path))
    want = [f.rule for f in linter.lint(path).findings]

    def refuse(*a: object) -> int:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refuse)
    assert context.EarlyInference.start(path.read_bytes()) is None
    assert [f.rule for f in linter.lint(path).findings] == want == ["WB102"]
    monkeypatch.undo()
    monkeypatch.setattr(context, "FORK_AT", 0)
    monkeypatch.setattr(forked, "_anonymous_file", refuse)
    assert context.EarlyInference.start(path.read_bytes()) is None
    assert [f.rule for f in linter.lint(path).findings] == want


def test_an_interrupt_while_waiting_for_the_inference_stops_the_child(monkeypatch) -> None:
    """Ctrl-C (or SIGTERM, which the command turns into the same) while the answer is
    awaited: the child is killed and reaped, and the interrupt goes on."""
    import os
    import signal
    import time

    from onnxfix import context

    monkeypatch.setattr(context, "FORK_AT", 0)
    parent, real = os.getpid(), context._infer_bytes
    monkeypatch.setattr(
        context,
        "_infer_bytes",
        lambda data: time.sleep(30) if os.getpid() != parent else real(data),
    )
    early = context.EarlyInference.start(mask_where(["B", "T", 16], 2, 17).SerializeToString())
    assert early is not None

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    t = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            early.result()
    finally:
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - t < 5 and early.child.status is not None
    with pytest.raises(ChildProcessError):
        os.waitpid(early.child.pid, os.WNOHANG)
