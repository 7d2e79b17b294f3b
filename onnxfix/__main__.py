from onnxfix.cli import entry

entry()
