from __future__ import annotations

from collections.abc import Iterator

from onnxfix import contracts
from onnxfix.context import Context
from onnxfix.findings import Severity
from onnxfix.rule import Case, Detection, Rule
from onnxfix.rules.truncated_graph._common import FAMILY, docs


class InterfaceMismatch(Rule[None]):
    __doc__ = docs(
        "Checks the model's inputs and outputs against an interface contract (`--expect` "
        "with a TOML/JSON file or a built-in profile: "
        + ", ".join(sorted(contracts.PROFILES))
        + "): missing, extra, renamed, wrong dtype, wrong rank, frozen where dynamic.",
        "Exporters drop inputs whose branch was not taken (WeNet's CPU export drops "
        "`required_cache_size` and `att_mask` when left_chunks <= 0), freeze dims that were "
        "meant to be dynamic (`dynamic_axes` naming only the batch), and rename outputs. None "
        "of that is an ONNX error; the runtime that feeds the model fails.",
        "input 'feats' axis 1 is frozen at 400 where dynamic 'L' is expected:\n"
        "  expected float32 [B, L], model has float32 [seq, 400]",
        "No fix: re-export with the intended `input_names`/`dynamic_axes`.",
    )
    code = "TG201"
    name = "interface-mismatch"
    severity = Severity.ERROR
    summary = "Inputs/outputs differ from the interface contract (--expect)"
    family = FAMILY

    def detect(self, ctx: Context) -> Iterator[Detection]:
        contract = ctx.contract
        if not isinstance(contract, contracts.Contract):
            return
        for kind, name, msg in contracts.differences(contract, ctx.model):
            yield self.report(
                ctx,
                ctx.main,
                None,
                f"{msg} (contract '{contract.name}')",
                label=f"<{kind[:-1]} {name}>",
                op_type="GraphInput" if kind == "inputs" else "GraphOutput",
                advice="re-export with the input_names/output_names/dynamic_axes the runtime needs",
            )

    invalid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, 400] feats) => (float[B, T, 8] x) {
                 s = Constant<value = int64[3] {0, -1, 8}>()
                 x = Reshape(feats, s) }""",
            "the time axis frozen at 400",
            expect="hubert-features",
        ),
    )
    valid = (
        Case(
            """<ir_version: 8, opset_import: ["" : 17]>
             g (float[B, L] feats) => (float[B, T, 8] x) {
                 s = Constant<value = int64[3] {0, -1, 8}>()
                 x = Reshape(feats, s) }""",
            "the interface the profile asks for",
            expect="hubert-features",
        ),
    )
