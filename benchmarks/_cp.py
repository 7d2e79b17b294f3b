"""cp of a model and its data file (the floor for any repair that keeps the weights).

``--fsync`` also flushes both copies to disk, as a repair must before it renames them
into place (issue 15's floor: cp + fsync of both files)."""

import os
import shutil
import sys
from pathlib import Path

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
pairs = [(src, dst), (src.with_name(src.name + ".data"), dst.with_name(dst.name + ".data"))]
for a, b in pairs:
    shutil.copyfile(a, b)
    if "--fsync" in sys.argv[3:]:
        with open(b, "rb+") as fh:
            os.fsync(fh.fileno())
