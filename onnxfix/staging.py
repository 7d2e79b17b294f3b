"""Data files on disk, without onnx: the checks on a location a model names, and the
copies of weights a repair stages beside its output.

Apart from :mod:`onnxfix.io` because none of it needs ``onnx``: a repair starts copying
the weights (:func:`start_early`) before ``import onnx`` and the analysis, which take
0.15-0.2 s of every process (measured), and the copy of a 1.2 GB model is most of what
a repair costs.  The location rules (:func:`check_location`) are the ones
:func:`onnxfix.io.validate_external_data` applies: a file copied early is one the load
would accept, and the copy is used only if the load names the same files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from onnxfix import progress


class LocationError(Exception):
    """An external-data location that is refused, with a message fit for one line."""


def check_location(base: Path, loc: str, where: str) -> tuple[Path, int]:
    """The file an external-data location names, resolved and checked, and its size.

    A location must be relative, stay inside the model's folder (``base``) once links
    are resolved, and name a regular file with a single hard link.  ``where`` starts
    each message (``external data of tensor 'w'``)."""
    if not loc:
        raise LocationError(f"{where} has no location")
    if "\x00" in loc:  # no file system takes it; os calls would raise ValueError
        raise LocationError(f"{where} has a location with a NUL byte (refused)")
    if os.path.isabs(loc) or loc.startswith(("/", "\\")) or (len(loc) > 1 and loc[1] == ":"):
        raise LocationError(f"{where} uses an absolute location '{loc}' (refused)")
    parts = Path(loc.replace("\\", "/")).parts
    if ".." in parts:
        raise LocationError(f"{where} points outside the model folder '{loc}' (refused)")
    target = base / loc
    try:
        resolved = target.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise LocationError(f"{where}: file '{loc}' not found") from None
    if base != resolved.parent and base not in resolved.parents:
        raise LocationError(f"{where}: '{loc}' resolves outside the model folder (refused)")
    if target.is_symlink():
        raise LocationError(f"{where}: '{loc}' is a symbolic link (refused)")
    st = os.stat(resolved)
    if not stat.S_ISREG(st.st_mode):
        raise LocationError(f"{where}: '{loc}' is not a regular file")
    if st.st_nlink > 1:
        raise LocationError(f"{where}: '{loc}' has several hard links (refused)")
    return resolved, st.st_size


def tmp_in(folder: Path, suffix: str) -> Path:
    """A temporary file named after this process (``.onnxfix-<pid>-*``), so that a later
    run can tell one left by a process that no longer exists (a SIGKILL, the OOM killer)."""
    fd, name = tempfile.mkstemp(prefix=f".onnxfix-{os.getpid()}-", suffix=suffix, dir=folder)
    os.close(fd)
    return Path(name)


class Staged:
    """The data files of a model being copied beside the output in a background thread,
    started as soon as a repair knows it will write (weights copy while the graph is
    analysed and fixed: the copy is done in the kernel, so it needs no Python time).

    Each copy lands in a temporary file named like :func:`write_atomic`'s and is flushed
    to disk (``fsync``) in the same thread.  :meth:`target` names a copy's file,
    :meth:`wait` returns once the copies are complete, :meth:`finish` once they are on
    disk and shown to hold their sources' bytes; :meth:`discard` stops the copy and
    removes every temporary file, whatever state it reached.  Nothing is visible under
    the output's name until :func:`write_atomic` renames it.

    A verification may read the weights from the sources while they are being copied
    (onnxruntime builds its session meanwhile): :meth:`finish` is what makes that the
    same as reading the copies (see :func:`_same_bytes`).
    """

    def __init__(self, sources: dict[str, Path], folder: Path) -> None:
        import threading

        self.sources = dict(sources)
        self.folder = folder
        #: each source as it was when the copy began: it must be so when the copy is used
        self.before = {loc: os.stat(p) for loc, p in self.sources.items()}  # before any file
        self.total = sum(st.st_size for st in self.before.values())
        self.tmp: dict[str, Path] = {}
        try:
            for loc in self.sources:
                self.tmp[loc] = tmp_in(folder, ".data")
        except OSError:
            self._remove()
            raise
        self.done = 0
        self.error: OSError | None = None
        self._stop = False
        self._copied = threading.Event()
        self._thread = threading.Thread(target=self._run, name="onnxfix-stage", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for loc, src in self.sources.items():
                copy_bytes(src, self.tmp[loc], report=self._count, stop=lambda: self._stop)
            self._copied.set()
            for tmp in self.tmp.values():
                if self._stop:
                    return
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
        except OSError as exc:
            self.error = exc
        finally:
            self._copied.set()

    def _count(self, n: int) -> None:
        self.done += n

    def target(self, loc: str) -> Path | None:
        """The temporary file ``loc`` is copied to (None if it is not staged here); it is
        complete once :meth:`wait` returns."""
        return self.tmp.get(loc)

    def wait(self) -> None:
        """Return once every copy is complete (not yet flushed); raises the copy's
        OSError."""
        while True:  # said at least once, then every 0.2 s until the copy is complete
            progress.phase(_copying(self.done, self.total))
            if self._copied.wait(0.2):
                break
        if self.error is not None:
            raise self.error
        progress.phase(_copying(self.done, self.total))

    def discard(self) -> None:
        """Stop copying and remove the temporary files that were not moved into place."""
        self._stop = True
        self._thread.join()
        self._remove()

    def _remove(self) -> None:
        for tmp in self.tmp.values():
            with contextlib.suppress(OSError):
                tmp.unlink()

    def finish(self) -> None:
        """Wait until every copy is on disk and holds its source's bytes; raises OSError
        (the copy's, or :func:`_same_bytes`'s)."""
        self.wait()
        self._thread.join()
        if self.error is not None:
            raise self.error
        for loc, src in self.sources.items():
            _same_bytes(src, self.before[loc], self.tmp[loc])


#: blocks compared between a copy and its source, and their size: 4 MB read from the
#: page cache, about 2 ms for any file size
_SPOTS, _SPOT = 64, 64 * 2**10


def _same_bytes(src: Path, before: os.stat_result, copy: Path) -> None:
    """Raise OSError unless ``copy`` holds the bytes ``src`` held when its copy began.

    The kernel copied them (``copy_file_range``, or sendfile); what could still differ is
    a source that changed during the copy or after it (a verification may have read the
    source instead of the copy), and a copy that ended short.  So: the source is the same
    file with the same size, modification and change times as then (what ``make`` and
    ``rsync`` trust), the copy has its size, and 64 blocks spread over both, the first and
    the last included, are equal (a copy gone wrong in a way that keeps its length)."""
    now = os.stat(src)
    same = ("st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")
    if any(getattr(now, k) != getattr(before, k) for k in same):
        raise OSError(f"'{src.name}' changed while it was copied")
    size = before.st_size
    if os.stat(copy).st_size != size:
        raise OSError(f"the copy of '{src.name}' does not have its size")
    last = max(size - _SPOT, 0)
    with open(src, "rb") as a, open(copy, "rb") as b:
        for offset in sorted({last * k // (_SPOTS - 1) for k in range(_SPOTS)}):
            a.seek(offset)
            b.seek(offset)
            if a.read(_SPOT) != b.read(_SPOT):
                raise OSError(
                    f"the copy of '{src.name}' differs from it in the block at byte {offset}"
                )


#: bytes per copy call: the status line moves every 64 MB
_CHUNK = 64 * 2**20


def _copying(done: int, total: int) -> str:
    """The status line while weights are copied."""
    return f"copying weights ({done / 2**20:.0f} of {total / 2**20:.0f} MB)"


def _write_back(fd: int, offset: int, n: int) -> None:
    """Start writing a copied chunk to disk now, and let its pages go once written.

    Without this the whole copy stays dirty in memory until ``fsync``, whose writeback
    then ran beside onnxruntime's session and slowed it by 0.6-1.6 s on a 1.2 GB model
    (measured on 2 cores: the session took 2.7-3.6 s with a writeback beside it, 2.0-2.2 s
    without).  ``POSIX_FADV_DONTNEED`` on dirty pages starts their writeback without
    waiting for it, so the disk works while the graph is analysed; ``fsync`` is left
    with the tail.  The copy is not read again but for :func:`_same_bytes`' blocks."""
    with contextlib.suppress(AttributeError, OSError):  # no fadvise here: fsync does it all
        os.posix_fadvise(fd, offset, n, os.POSIX_FADV_DONTNEED)


def copy_bytes(
    src: Path,
    dst: Path,
    report: Callable[[int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Copy a weights file byte for byte, saying how far it got: to ``report`` (bytes per
    step) if given, else to :mod:`onnxfix.progress`.  ``stop`` is asked between steps and
    ends the copy early (it is being thrown away).

    ``os.copy_file_range`` lets the kernel copy (and a filesystem with reflinks share the
    blocks instead); where it is not offered, ``shutil.copyfile`` (sendfile) does it."""
    total = src.stat().st_size
    done = 0

    def step(n: int) -> None:
        if report is not None:
            report(n)
        else:
            progress.phase(_copying(done, total))

    step(0)
    if not hasattr(os, "copy_file_range"):
        shutil.copyfile(src, dst)
        step(total)
        return
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        try:
            while done < total:
                if stop is not None and stop():
                    return
                n = os.copy_file_range(fin.fileno(), fout.fileno(), min(_CHUNK, total - done))
                if n == 0:
                    break
                _write_back(fout.fileno(), done, n)
                done += n
                step(n)
        except OSError:  # not supported between these files (EXDEV, EINVAL...): plain copy
            fin.seek(done)
            fout.seek(done)
            shutil.copyfileobj(fin, fout, _CHUNK)
            step(total - done)
            done = total
    if done != total or dst.stat().st_size != total:
        raise OSError(f"copied {done} of {total} bytes of {src.name}")


# --- copying before onnx is imported --------------------------------------------------------

#: a model file larger than this holds its weights inline: nothing to copy early
_EARLY_MAX = 64 * 2**20


def start_early(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Staged | None:
    """Start copying the data files the model at ``src`` names beside ``dst``, before
    anything has parsed it with onnx; None when there is nothing to copy or any doubt.
    The caller hands the copy to :func:`onnxfix.repairer.repair`, which uses it only if
    the validated model names exactly these files, and discards it in any case when done
    (:meth:`Staged.discard` leaves a file already moved into place alone)."""
    try:
        path = Path(src)
        if not path.is_file() or path.stat().st_size > _EARLY_MAX:
            return None
        locations = external_locations(path.read_bytes())
        folder = Path(dst).resolve().parent
        if not locations or not folder.is_dir() or not os.access(folder, os.W_OK):
            return None
        base = path.resolve().parent
        for loc in locations:
            check_location(base, loc, "")
        return Staged({loc: base / loc for loc in locations}, folder)
    except (OSError, ValueError, LocationError):
        return None


def external_locations(data: bytes) -> list[str]:
    """The distinct data files the initializers of a serialised ModelProto name, sorted,
    read from the protobuf wire format (``graph`` = 7; ``initializer`` = 5;
    ``external_data`` = 13 with ``key`` = 1, ``value`` = 2; ``data_location`` = 14, where
    1 is EXTERNAL).  Later entries win, as in a parsed message.  Raises ValueError on bytes
    that are not such a message.  Tensors in node attributes are not looked at: a model
    whose load finds more files than these gets a copy started then."""
    found = set()
    for num, start, end in _messages(data, 0, len(data)):
        if num != 7:
            continue
        for field, t0, t1 in _messages(data, start, end):
            if field != 5:
                continue
            external, location = False, ""
            for f, v0, v1 in _messages(data, t0, t1, varints=(14,)):
                if f == 14:
                    external = v0 == 1
                elif f == 13:
                    entry = {k: data[a:b] for k, a, b in _messages(data, v0, v1)}
                    if entry.get(1) == b"location":
                        location = entry.get(2, b"").decode()
            if external and location:
                found.add(location)
    return sorted(found)


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _messages(
    data: bytes, i: int, end: int, varints: tuple[int, ...] = ()
) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field in ``data[i:end]``; for
    a field in ``varints``, (number, value, 0).  Other fields are skipped."""
    while i < end:
        key, i = _varint(data, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            if num in varints:
                yield num, value, 0
        elif wire == 2:
            n, i = _varint(data, i)
            if i + n > end:
                raise ValueError("field runs past its message")
            yield num, i, i + n
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    if i != end:
        raise ValueError("field runs past its message")
