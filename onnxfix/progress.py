"""What long work is doing now, for whoever shows it (the CLI's status line on a terminal).

Pipelines call :func:`phase` as they move on ("copying weights (1179 MB)", "onnxruntime:
loading and running probes"); nothing is shown unless a listener is set, so the API and
piped output stay silent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

_listener: Callable[[str], None] | None = None


def phase(text: str) -> None:
    if _listener is not None:
        _listener(text)


@contextmanager
def listening(listener: Callable[[str], None]) -> Iterator[None]:
    global _listener
    previous, _listener = _listener, listener
    try:
        yield
    finally:
        _listener = previous
