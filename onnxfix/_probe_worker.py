"""The probe child when it cannot be forked: reads a pickled :class:`~onnxfix.runner.Job`
on stdin, writes pickled outcomes (then None) on stdout."""

from __future__ import annotations

import pickle
import sys


def main() -> None:
    from onnxfix import runner

    job = pickle.load(sys.stdin.buffer)
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing printed by a library may corrupt the stream
    for msg in runner.outcomes_of(job):
        pickle.dump(msg, out)
        out.flush()


if __name__ == "__main__":
    main()
