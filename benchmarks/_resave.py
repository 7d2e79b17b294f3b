"""What a tool built on onnx.load/onnx.save pays to write a repaired big model."""

import sys
from pathlib import Path

import onnx

m = onnx.load(sys.argv[1])
out = Path(sys.argv[2])
data = out.with_name(out.name + ".data")
data.unlink(missing_ok=True)  # onnx.save appends to an existing data file
onnx.save(m, str(out), save_as_external_data=True, location=data.name)
