"""cp of a model and its data file (the floor for any repair that keeps the weights)."""

import shutil
import sys
from pathlib import Path

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copyfile(src, dst)
shutil.copyfile(src.with_name(src.name + ".data"), dst.with_name(dst.name + ".data"))
