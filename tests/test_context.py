"""PyTorch provenance: scopes from TorchScript names and dynamo metadata, kept by fixes."""

from __future__ import annotations

from onnx import helper

from onnxfix import api, registry
from onnxfix.context import scope_of, source_of
from tests.models import mask_where


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
