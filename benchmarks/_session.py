"""onnxruntime session creation alone (the floor for any verification that runs the model).

``--no-prepack`` builds the session a repair's verification builds
(``session.disable_prepacking``, see ``onnxfix.runner.session``): printed beside the
verified-repair row for information, not as its floor."""

import sys

import onnxruntime as ort

opts = ort.SessionOptions()
if "--no-prepack" in sys.argv[2:]:
    opts.add_session_config_entry("session.disable_prepacking", "1")
ort.InferenceSession(sys.argv[1], opts, providers=["CPUExecutionProvider"])
