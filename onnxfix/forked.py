"""One call in a forked child, its answer back as a pickle through an anonymous file.

Two things run beside the process that asked for them: ``lint -j``'s workers (a share
of the files each, :func:`onnxfix.cli._in_workers`) and ONNX's shape inference while a
model is scanned (:class:`onnxfix.context.EarlyInference`).  Both need the same:

- a fork that may be refused (no fork on this platform, EAGAIN, ENOMEM, no descriptor
  left, other threads running that a child would copy half-alive): then there is no
  child, and the caller does the work itself;
- an answer of any size (a 42 MB inferred model) that needs no reader while the child
  writes it, and no file to clean up whatever happens;
- a child that leaves without running this process's cleanup handlers;
- a child that is not wanted, or whose wait is interrupted, killed and reaped.

(The probe runner's children stream several answers over a pipe and are watched for
memory and time: :mod:`onnxfix.runner`.)
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
from collections.abc import Callable
from typing import Any


class Forked:
    """A forked child computing one call; :meth:`answer` is its return value."""

    def __init__(self, pid: int, out: Any) -> None:
        self.pid = pid
        self.out = out
        #: the child's exit status once reaped (``os.waitpid``'s)
        self.status: int | None = None

    @classmethod
    def start(cls, fn: Callable[..., Any], *args: Any, quiet: bool = False) -> Forked | None:
        """A child running ``fn(*args)``, or None where none can be had.  ``quiet``: the
        child's stdout and stderr go to /dev/null (and faulthandler's dump with them):
        a C++ abort's text would land amid this process's report."""
        import threading

        if not hasattr(os, "fork") or threading.active_count() > 1:
            return None
        try:
            out = _anonymous_file()
        except OSError:
            return None
        try:
            pid = os.fork()
        except OSError:
            out.close()
            return None
        if pid == 0:  # the child: the answer into the file, then leave without cleanup
            code = 1
            try:
                if quiet:
                    _silence()
                pickle.dump(fn(*args), out, protocol=5)
                out.flush()
                code = 0
            finally:
                os._exit(code)
        return cls(pid, out)

    def wait(self) -> int:
        """The child's exit status, once it has ended; an interrupt while waiting (or
        anything else that ends the wait) kills and reaps the child first."""
        if self.status is None:
            try:
                self.status = os.waitpid(self.pid, 0)[1]
            except BaseException:
                self.cancel()
                raise
        return self.status

    def signal(self) -> str | None:
        """The name of the signal that ended the child, if one did."""
        status = self.wait()
        return signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else None

    def answer(self) -> Any:
        """``fn``'s return value; raises if the child gave none (it died or failed)."""
        try:
            if self.wait() != 0:
                raise ChildProcessError(f"the child ended with status {self.status}")
            self.out.seek(0)
            return pickle.load(self.out)
        finally:
            self.out.close()

    def cancel(self) -> None:
        """Stop the child (its answer is not wanted) and reap it."""
        if self.status is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                self.status = os.waitpid(self.pid, 0)[1]
        self.out.close()

    def __del__(self) -> None:  # a caller that never asked: no child is left behind
        if self.status is None:
            with contextlib.suppress(Exception):
                self.cancel()


def _anonymous_file() -> Any:
    """A file with no name: in memory where Linux offers it, else a temporary file."""
    import tempfile

    if hasattr(os, "memfd_create"):
        return open(os.memfd_create("onnxfix-forked"), "w+b")
    return tempfile.TemporaryFile()


def _silence() -> None:
    import faulthandler

    faulthandler.disable()  # its dump goes to a descriptor of its own
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.close(quiet)
