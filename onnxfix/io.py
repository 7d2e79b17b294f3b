"""Model I/O: the only place that reads or writes model files.

Every path a model names (external data) is validated here before any library
touches it, because the libraries underneath do not all check: onnxruntime
reads hard-linked data files, onnxsim and onnx-graphsurgeon resolve
locations the model chooses.  Lint loads the graph without weight bytes;
repair loads weights only after their locations are proven safe.  Writes go
to a temporary file in the destination folder and are renamed into place, so
a failure or a kill never leaves a partial model behind.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import onnx
from google.protobuf.message import DecodeError

from onnxfix.staging import LocationError, Staged, check_location, copy_bytes
from onnxfix.staging import tmp_in as _tmp_in


class ModelError(Exception):
    """A model that cannot be used, with a message fit for one line of output."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class LoadedModel:
    """A parsed model and where it came from."""

    path: Path
    model: onnx.ModelProto
    #: External data files used by the model, as validated absolute paths.
    external_files: list[Path] = field(default_factory=list)
    #: their locations as the model names them (relative to its folder)
    locations: list[str] = field(default_factory=list)
    #: the main graph's nodes as read at load (valid while the model is not edited)
    table: NodeTable | None = None

    @property
    def uses_external_data(self) -> bool:
        return bool(self.external_files)


def iter_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor stored in a graph and its subgraphs (initializers and attributes)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from iter_tensors(attr.g)
            for sub in attr.graphs:
                yield from iter_tensors(sub)


def _external_info(tensor: onnx.TensorProto) -> dict[str, str]:
    """A tensor's external-data entries; a key given twice keeps its last value, as
    ``onnx`` and onnxruntime read it."""
    return {e.key: e.value for e in tensor.external_data}


def _locations(tensors: list[onnx.TensorProto]) -> list[str]:
    """The data files ``tensors`` are read from, as validated and as readers see them (an
    earlier ``location`` entry of the same tensor is not one of them)."""
    return sorted({loc for t in tensors if (loc := _external_info(t).get("location"))})


def _check_regular_input(path: Path) -> None:
    if not os.path.lexists(path):
        raise ModelError(path, "file not found")
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ModelError(path, f"cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelError(path, "is a directory, not an ONNX model file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(path, "is not a regular file (device, FIFO or socket)")
    if st.st_size == 0:
        raise ModelError(path, "is empty, not an ONNX model")
    if not os.access(path, os.R_OK):
        raise ModelError(path, "cannot be read (permission denied)")


def validate_external_data(
    model: onnx.ModelProto, model_path: Path, tensors: list[onnx.TensorProto]
) -> list[Path]:
    """Check every external-data reference and return the files they name.

    A location must be relative, stay inside the model's folder once links are
    resolved, name a regular file with a single hard link, and the declared
    offset/length must lie inside it.  Only ``stat`` is used: no weight bytes
    are read here.  Each distinct location is resolved and stat'ed once (a model
    names one file from hundreds of tensors).  ``tensors``: the model's tensors with
    external data (:func:`load`'s walk finds them).
    """
    base = model_path.resolve().parent
    files: dict[Path, int] = {}
    sizes: dict[str, tuple[Path, int]] = {}  # location -> (resolved file, size)
    for tensor in tensors:
        info = _external_info(tensor)
        loc = info.get("location", "")
        where = f"external data of tensor '{tensor.name}'"
        if loc not in sizes:
            sizes[loc] = _external_file(model_path, base, loc, where)
        resolved, size = sizes[loc]
        try:
            offset = int(info.get("offset", "0") or 0)
            length = int(info["length"]) if info.get("length") else None
        except ValueError:
            raise ModelError(model_path, f"{where}: offset/length are not integers") from None
        if offset < 0 or (length is not None and length < 0):
            raise ModelError(model_path, f"{where}: negative offset or length")
        end = offset + (length or 0)
        if offset > size or end > size:
            raise ModelError(
                model_path,
                f"{where}: offset/length ({offset}+{length}) past the end of '{loc}' "
                f"({size} bytes)",
            )
        files[resolved] = size
    return sorted(files)


def _external_file(model_path: Path, base: Path, loc: str, where: str) -> tuple[Path, int]:
    """The file an external-data location names, resolved and checked, and its size
    (:func:`onnxfix.staging.check_location`'s rules)."""
    try:
        return check_location(base, loc, where)
    except LocationError as exc:
        raise ModelError(model_path, str(exc)) from None


def load(
    path: str | os.PathLike[str],
    *,
    keep_source: bool = False,
    on_read: Callable[[bytes], Pending | None] | None = None,
) -> LoadedModel:
    """Parse a model and validate its external data; weight bytes stay on disk.

    Nothing here needs the weights: lint reads the graph, and repair copies the
    data files as bytes (:func:`write_atomic`).  ``keep_source``: the file's bytes are
    kept on the node table (:attr:`NodeTable.source`) for the analysis's inference,
    which would otherwise serialise the model again.  ``on_read`` is given the bytes
    before they are parsed and may start work on them (the analysis's inference in a
    child process, :class:`onnxfix.context.EarlyInference`); it is kept on the node table
    (:attr:`NodeTable.early`), and cancelled if the model turns out unusable.
    """
    p = Path(path)
    _check_regular_input(p)
    try:
        with open(p, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ModelError(p, f"cannot be read ({exc.strerror})") from None
    early = on_read(data) if on_read is not None else None
    keep_source = keep_source and early is None
    try:
        model = onnx.ModelProto()
        try:
            model.ParseFromString(data)
        except (DecodeError, RuntimeError, ValueError) as exc:
            if "MaxDepth" in str(exc):
                raise ModelError(p, "nests subgraphs deeper than protobuf can parse") from None
            raise ModelError(
                p, "is not an ONNX model (protobuf parse failed: truncated or not ONNX)"
            ) from None
        if not model.HasField("graph") or (
            not model.graph.node and not model.graph.input and not model.graph.output
        ):
            raise ModelError(p, "is not an ONNX model (no graph found)")
        if model.ir_version <= 0:
            raise ModelError(p, "is not an ONNX model (no IR version)")
        tensors: list[onnx.TensorProto] = []
        table = NodeTable()
        table.early = early
        if keep_source:
            table.source = data
        del data
        bad = _scan(model, tensors, table)
        if bad is not None:
            raise ModelError(p, bad)
        external = validate_external_data(model, p, tensors)
        return LoadedModel(p, model, external, _locations(tensors), table)
    except BaseException:
        if early is not None:
            early.cancel()
        raise


def _negative_dims(
    g: onnx.GraphProto,
) -> Iterator[tuple[onnx.ValueInfoProto, int, onnx.TensorShapeProto.Dimension]]:
    """(value, axis, dim) of every declared dim with a negative value, in ``g`` and its
    subgraphs."""
    for vi in (*g.input, *g.output, *g.value_info):
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value < 0:
                yield vi, axis, d
    for n in g.node:
        for a in n.attribute:
            for sub in [a.g] if a.HasField("g") else list(a.graphs):
                yield from _negative_dims(sub)


def has_negative_dims(model: onnx.ModelProto) -> bool:
    return next(_negative_dims(model.graph), None) is not None


def inference_safe(model: onnx.ModelProto, table: NodeTable | None = None) -> onnx.ModelProto:
    """``model`` as ONNX's shape inference may see it: a declared ``-1`` dim (Paddle2ONNX's
    "dynamic") that reaches a Slice aborts the whole process in onnx 1.23 (a failed C++
    assertion: no exception to catch), so such dims become unknown in a copy.  The
    model itself is returned when it has none (no copy).  ``table``: the model's scan at
    load, which already knows."""
    if not (table.minus_one if table is not None else has_negative_dims(model)):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for _vi, _axis, d in _negative_dims(copy.graph):
        d.Clear()
    return copy


#: (node, inputs, outputs, op type, domain) per node of a graph, as read by the scan: the
#: analysis of the model as loaded starts from these instead of reading every node again
class NodeTable(list[tuple[onnx.NodeProto, tuple[str, ...], tuple[str, ...], str, str]]):
    #: whether some declared dim, in any graph, is -1 (Paddle2ONNX's "dynamic"): ONNX's
    #: inference then needs a copy without them (:func:`inference_safe`), and the scan
    #: already looked at every dim
    minus_one: bool = False
    #: the bytes the model was parsed from, when :func:`load` was asked to keep them: ONNX's
    #: inference takes bytes, and serialising the model again for it cost 0.08-0.1 s of a
    #: 100k-node lint (measured).  Taken by the first inference (:func:`take_source`).
    source: bytes | None = None
    #: what :func:`load`'s ``on_read`` started with the bytes (the analysis's inference)
    early: Pending | None = None

    def take_source(self) -> bytes | None:
        """The model's bytes, once: they are let go as soon as inference has them."""
        source, self.source = self.source, None
        return source

    def take_early(self) -> Pending | None:
        early, self.early = self.early, None
        return early


class Pending(Protocol):
    """Work started on a model's bytes before they were parsed; stopped if never used."""

    def cancel(self) -> None: ...


def _scan(
    model: onnx.ModelProto, external: list[onnx.TensorProto], table: NodeTable | None = None
) -> str | None:
    """One walk over the whole model before any analysis: the first problem that makes it
    unusable, or None; the tensors with external data are appended to ``external``.

    * A name-like field that protobuf handed back as bytes (invalid UTF-8): ONNX uses
      proto2 strings, which are not validated on parse, so a flipped byte in a name
      survives parsing and would surface as ``bytes`` deep inside analysis.
    * A declared dim below -1: invalid ONNX, and ONNX's own shape inference aborts the
      whole process on it (a failed C++ assertion in onnx 1.23).  (-1 is what
      Paddle2ONNX writes for a dynamic dim: kept.)

    Every attribute is looked at, whatever its declared type, as ``onnx.load`` does when
    it reads external data: a tensor hidden in a mistyped attribute is still checked.
    """
    if not all(isinstance(o.domain, str) for o in model.opset_import):
        return "is corrupted: an opset domain is not valid UTF-8 text"
    return _scan_graph(model.graph, external, table)


def _text(*values: object) -> bool:
    return all(isinstance(v, str) for v in values)


def _stored(t: onnx.TensorProto, external: list[onnx.TensorProto]) -> bool:
    """Whether a stored tensor's external-data entries are text; appends it to
    ``external`` if its data is outside the model."""
    entries = t.external_data  # most tensors have none: no generator to build for them
    if entries and not _text(*(x for e in entries for x in (e.key, e.value))):
        return False
    if t.data_location == _EXTERNAL:
        external.append(t)
    return True


def _scan_graph(  # noqa: C901 - every name-like field and stored tensor of a graph
    g: onnx.GraphProto,
    external: list[onnx.TensorProto],
    table: NodeTable | None = None,
    main: bool = True,
) -> str | None:
    corrupt = "is corrupted: {} is not valid UTF-8 text"
    for vi in (*g.input, *g.output, *g.value_info):
        if not isinstance(vi.name, str):
            return corrupt.format("a value name")
        for axis, d in enumerate(vi.type.tensor_type.shape.dim):
            if not isinstance(d.dim_param, str):
                return corrupt.format(f"a dim name of '{vi.name}'")
            if d.dim_value < 0:
                if d.dim_value < -1:
                    return (
                        f"is invalid: '{vi.name}' declares dim {d.dim_value} at axis {axis} "
                        "(negative)"
                    )
                if table is not None:
                    table.minus_one = True
    for t in g.initializer:
        if not isinstance(t.name, str):
            return corrupt.format("an initializer name")
        if not _stored(t, external):
            return corrupt.format(f"the external data entry of '{t.name}'")
    for sparse in g.sparse_initializer:
        for t in (sparse.values, sparse.indices):
            if t.data_location == _EXTERNAL:
                external.append(t)
    for n in g.node:
        ins, outs, op, domain = tuple(n.input), tuple(n.output), n.op_type, n.domain
        try:  # join refuses bytes in C: the common case costs one call per field
            "".join((n.name, op, domain, *ins, *outs))
        except TypeError:
            return corrupt.format("a node's name, type or value names")
        if table is not None and main:
            table.append((n, ins, outs, op, domain))
        for prop in n.metadata_props:
            if not _text(prop.key, prop.value):
                return corrupt.format(f"metadata of node '{n.name}'")
        for a in n.attribute:
            if not isinstance(a.name, str):
                return corrupt.format(f"an attribute name of node '{n.name}'")
            tensors = [a.t] if a.HasField("t") else []
            tensors += a.tensors
            for t in tensors:
                if not _stored(t, external):
                    return corrupt.format(f"the external data entry of '{t.name}'")
            subs = [a.g] if a.HasField("g") else []
            subs += a.graphs
            for sub in subs:
                found = _scan_graph(sub, external, table, False)
                if found:
                    return found
    return None


_STALE = re.compile(r"^\.onnxfix-(\d+)-.+\.(onnx|data)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(folder: Path) -> list[Path]:
    """Remove temporary files that a killed onnxfix left in ``folder``; return them."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in sorted(names):
        m = _STALE.match(name)
        if m is None or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        try:
            (folder / name).unlink()
            removed.append(folder / name)
        except OSError:
            continue
    return removed


def _final_mode(out: Path) -> int:
    """The mode the written file gets: that of the file it replaces, else what a new file
    gets under the umask (the temporary file's 0600 would hide the model from a service
    running as another user)."""
    try:
        return stat.S_IMODE(os.stat(out).st_mode)
    except OSError:
        return new_file_mode()


def new_file_mode() -> int:
    """The mode ``open`` gives a new file under the current umask (0644 under 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(
    model: onnx.ModelProto,
    out: str | os.PathLike[str],
    *,
    external_from: Path | None = None,
    verify: Callable[[Candidate], None] | None = None,
    externalize: bool = False,
    staged: Staged | None = None,
) -> None:
    """Serialise ``model`` next to ``out`` and move it into place.

    ``verify`` is called with the model as written under temporary names
    (:class:`Candidate`) before anything is renamed; if it raises, the temporary files are
    removed and ``out`` is untouched.

    With ``external_from`` the model still points at external data files in
    that folder (its weights were never loaded): each file is copied byte for
    byte (``copyfile`` uses ``sendfile``; nothing is decoded) to
    ``<out name>.data`` (``.data1``, ``.data2``... for several), under a
    temporary name until verification has passed.  Offsets are kept, so the
    layout of the input is kept.

    With ``externalize`` the weights held in memory (``raw_data`` of 1 KB or more) are
    written to one ``<out name>.data`` file instead of into the protobuf: a model read
    with external data is written with external data.

    ``staged``: copies of the data files started earlier (:class:`Staged`), used instead
    of copying them here.
    """
    out = Path(out)
    folder = out.resolve().parent
    if not folder.is_dir():
        raise ModelError(out, "output folder does not exist")
    if not os.access(folder, os.W_OK):
        raise ModelError(out, "output folder is not writable")
    tmp_model = _tmp_in(folder, ".onnx")
    tmp_data: dict[str, Path] = {}  # original location -> temporary copy
    try:
        model = _copy_for_external(model)
        external: list[onnx.TensorProto] = []
        locations = _stage_weights(
            model, out, folder, external_from, externalize, tmp_data, staged, external
        )
        _write_fsync(tmp_model, model.SerializeToString())
        if verify is not None:
            verify(_candidate(tmp_model, tmp_data, locations, staged, external_from))
        if staged is not None:
            staged.finish()  # fsync'd while the model was verified; the same bytes as its source
        if locations:
            finals = (
                {locations[0]: f"{out.name}.data"}
                if len(locations) == 1
                else {loc: f"{out.name}.data{i + 1}" for i, loc in enumerate(locations)}
            )
            _relocate(external, {tmp.name: finals[loc] for loc, tmp in tmp_data.items()})
            flushed = set(staged.tmp.values()) if staged is not None else set()
            for tmp in tmp_data.values():
                if tmp in flushed:  # the staging thread flushed it (finish() waited for it)
                    continue
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
            _write_fsync(tmp_model, model.SerializeToString())
            for loc, tmp in tmp_data.items():
                os.chmod(tmp, _final_mode(folder / finals[loc]))
                os.replace(tmp, folder / finals[loc])
            tmp_data.clear()
        os.chmod(tmp_model, _final_mode(out))
        os.replace(tmp_model, out)
    except OSError as exc:
        raise ModelError(out, f"could not be written ({exc.strerror or exc})") from None
    finally:
        for leftover in (tmp_model, *tmp_data.values()):
            if leftover.exists():
                leftover.unlink()


def _stage_weights(
    model: onnx.ModelProto,
    out: Path,
    folder: Path,
    external_from: Path | None,
    externalize: bool,
    tmp_data: dict[str, Path],
    staged: Staged | None,
    external: list[onnx.TensorProto],
) -> list[str]:
    """Put the weights' bytes in temporary files beside ``out``: copied from the external
    data files in ``external_from``, or moved out of memory (``externalize``).  The model
    is pointed at the temporary names; returns the original locations, and appends the
    tensors stored outside to ``external`` (one walk over the model)."""
    if externalize:
        moved = _tmp_in(folder, ".data")
        tmp_data[moved.name] = moved
        if not _externalize(model, moved):
            moved.unlink()
            del tmp_data[moved.name]
    external += (t for t in iter_tensors(model.graph) if t.data_location == _EXTERNAL)
    locations = _locations(external)
    for loc in locations:
        if loc in tmp_data:  # written here from memory (externalize)
            continue
        if external_from is None:
            raise ModelError(out, "internal error: external data without a source folder")
        copying = staged.target(loc) if staged is not None else None
        if copying is not None and copying.parent == folder:
            tmp_data[loc] = copying
        else:
            tmp = _tmp_in(folder, ".data")
            tmp_data[loc] = tmp
            copy_bytes(external_from / loc, tmp)
    _relocate(external, {loc: tmp_data[loc].name for loc in locations})
    return locations


@dataclass(frozen=True)
class Candidate:
    """A model as :func:`write_atomic` has written it beside the output, under temporary
    names, for its ``verify`` callback."""

    #: the graph
    path: Path
    #: its external data files
    data: list[Path]
    #: returns once ``data`` are complete (raises the copy's error): the checks that read
    #: only the graph need not wait for it
    ready: Callable[[], None]
    #: while ``data`` are still being copied (a :class:`Staged` copy): the folder they are
    #: copied from, and each location ``path`` names -> the location in that folder of the
    #: file it is a copy of.  A session may read the weights there before ``ready``: the
    #: copies are shown to hold the same bytes before anything is renamed
    #: (:meth:`Staged.finish`).
    sources: tuple[Path, dict[str, str]] | None = None


def _candidate(
    tmp_model: Path,
    tmp_data: dict[str, Path],
    locations: list[str],
    staged: Staged | None,
    external_from: Path | None,
) -> Candidate:
    """``tmp_model`` for verification; with its sources if every data file it names is
    a staged copy (a file copied or written here is complete already)."""
    if staged is None:
        return Candidate(tmp_model, list(tmp_data.values()), _ready)
    sources = None
    if (
        external_from is not None
        and locations
        and len(tmp_data) == len(locations)
        and all(
            staged.target(loc) == tmp_data[loc] and staged.sources[loc] == external_from / loc
            for loc in locations
        )
    ):
        sources = (external_from, {tmp_data[loc].name: loc for loc in locations})
    return Candidate(tmp_model, list(tmp_data.values()), staged.wait, sources)


def _ready() -> None:
    """Data files written here are complete as soon as they are named."""


def _externalize(model: onnx.ModelProto, data: Path, threshold: int = 1024) -> int:
    """Move in-memory initializers of ``threshold`` bytes or more into ``data`` (4 KB
    aligned, as onnx.save does); return how many moved."""
    moved = 0
    with open(data, "wb") as fh:
        for t in model.graph.initializer:  # as onnx.save: attribute tensors stay inline
            if not t.HasField("raw_data") or len(t.raw_data) < threshold:
                continue
            offset = fh.tell()
            pad = -offset % 4096
            fh.write(b"\0" * pad)
            offset += pad
            fh.write(t.raw_data)
            t.ClearField("raw_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            del t.external_data[:]
            for key, value in (("location", data.name), ("offset", str(offset))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
            entry = t.external_data.add()
            entry.key, entry.value = "length", str(fh.tell() - offset)
            moved += 1
    return moved


def write_graph_atomic(model: onnx.ModelProto, out: str | os.PathLike[str]) -> None:
    """Write ``model`` as it is, external-data references unchanged (they must resolve from
    ``out``'s folder): a temporary file moved into place, with a new file's mode."""
    out = Path(out)
    tmp = _tmp_in(out.resolve().parent, ".onnx")
    try:
        _write_fsync(tmp, model.SerializeToString())
        os.chmod(tmp, _final_mode(out))
        os.replace(tmp, out)
    except OSError as exc:
        raise ModelError(out, f"could not be written ({exc.strerror or exc})") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_fsync(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _copy_for_external(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def relocate(model: onnx.ModelProto, moves: dict[str, str]) -> None:
    """Point ``model``'s external data at other files: location -> new location."""
    _relocate([t for t in iter_tensors(model.graph) if t.data_location == _EXTERNAL], moves)


def _relocate(tensors: list[onnx.TensorProto], moves: dict[str, str]) -> None:
    """Point the external-data locations of ``tensors`` at their new names (every
    ``location`` entry of a tensor, so none is left naming another file)."""
    for tensor in tensors:
        new = moves.get(_external_info(tensor).get("location", ""))
        if new is None:
            continue
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = new


_EXTERNAL = onnx.TensorProto.EXTERNAL
