"""Running a model in onnxruntime in a child process, with memory and time limits.

A broken model can ask for anything: a Where that broadcasts [401, 401, 1024]
through 24 layers grew past 9 GB in 19 s and ignored Ctrl-C when it ran in the
same process.  Here every session lives in a child process; the parent polls
its resident memory and the clock, kills it when a limit is passed, and kills
it at once when the parent is interrupted.  Results stream back one run at a
time, so a kill keeps what was learned before it.

The child is forked when this process never imported onnxruntime (the CLI: a
fork is then clean and cheap); otherwise it is a fresh interpreter running
:mod:`onnxfix._probe_worker` (a process that created sessions has runtime
threads a fork would copy half-alive, and a fork server or spawn would
re-import the caller's main module).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

#: the child's resident memory is checked this often (seconds)
_POLL = 0.05


@dataclass(frozen=True)
class Run:
    """One run to make: a setting (inputs made in the child) or a stored reference case."""

    setting: dict[str, int]
    seed: int = 0
    reference_case: int | None = None


@dataclass(frozen=True)
class Job:
    model: str
    runs: tuple[Run, ...]
    #: a model whose outputs are the expected ones at the same inputs
    compare_with: str | None = None
    #: an .npz of stored cases (``Run.reference_case`` indexes it)
    reference: str | None = None
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    #: stop at the first failed run (a gate stops at the first failure that explains itself)
    stop_on_failure: bool = False
    #: outputs whose values are not compared (a fix changed them on purpose)
    skip_outputs: frozenset[str] = frozenset()
    #: check declared output dims against the setting (symbolic names too)
    declared_dims: bool = True
    #: the model whose inputs (names, dims, roles) the probe feeds: the original, when an
    #: optimized model is compared with it (``check --against``)
    inputs_from: str | None = None
    #: (atol, rtol) instead of the per-dtype defaults
    tolerance: tuple[float | None, float] | None = None
    #: on a mismatch, find the first intermediate value that differs (both models)
    bisect: bool = False
    #: the model to compare with, serialised, when it exists only in memory; its external
    #: data lies beside ``compare_with`` (``repair --simplify``: the unsimplified repair)
    compare_model: bytes | None = None
    #: ``model``'s weights are read from another folder: (folder, ((location in ``model``,
    #: location there), ...)).  A repair's candidate is verified while its data files are
    #: still being copied from that folder (:class:`onnxfix.io.Candidate`).
    weights_from: tuple[str, tuple[tuple[str, str], ...]] | None = None
    #: let kernels copy constant weights into their packed layout when the session is
    #: built (onnxruntime's default, as deployed; ``check`` keeps it).  A repair's
    #: verification turns it off: see :func:`session`.
    prepack: bool = True


@dataclass
class Outcome:
    run: Run | None
    ok: bool
    #: what went wrong: "load" (no session), "runtime" (onnxruntime refused a run),
    #: "compare" (ran, but outputs differ), "limit" (memory or time), "tool" (our bug)
    kind: str = ""
    error: str | None = None
    setting: dict[str, int] = field(default_factory=dict)
    max_abs_diff: float | None = None
    compared: bool = False
    #: the other model failed at these inputs (it cannot be the reference here)
    other_error: str | None = None
    #: on a mismatch: the first value, in graph order, that differs between the models
    first_difference: str | None = None
    #: the outputs were compared with the other model's (``compare_with``)
    compared_other: bool = False


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    seconds: float

    @staticmethod
    def for_model(weights_bytes: int) -> Limits:
        """The model's weights once and a half (a session copies them), plus 1 GB for
        activations at probe sizes; a minute plus a minute per GB of weights."""
        gb = weights_bytes / 2**30
        return Limits(int(1024 + 1.5 * weights_bytes / 2**20), 60 + 60 * gb)


class _Channel:
    """Outcomes streaming from the child, the same way for a forked child (a pipe) and for
    a worker subprocess (pickles on its stdout, read by a thread)."""

    def __init__(self, job: Job) -> None:
        self.released = False
        self.queue: queue.Queue[Any] = queue.Queue()
        if sys.platform.startswith("linux") and "onnxruntime" not in sys.modules:
            # never imported onnxruntime (the CLI): a fork is clean and cheap
            ctx = mp.get_context("fork")
            self.conn, child = ctx.Pipe(duplex=False)
            self.proc: Any = ctx.Process(target=_child, args=(job, child), daemon=True)
            self.proc.start()
            child.close()
            self.pid = self.proc.pid
            self.forked = True
        else:
            # a process that created sessions has runtime threads a fork would copy
            # half-alive; a fork server or spawn would re-import the caller's main module
            # (a script without a __main__ guard, stdin, a notebook): a fresh interpreter
            # running the worker module does neither
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "onnxfix._probe_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            assert self.proc.stdin is not None
            self.proc.stdin.write(pickle.dumps(job))
            self.proc.stdin.close()
            self.pid = self.proc.pid
            self.forked = False
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.proc.stdout
        try:
            while True:
                self.queue.put(pickle.load(stream))
        except Exception:
            self.queue.put(EOFError)
        finally:
            stream.close()

    def get(self, timeout: float) -> Any:
        """The next outcome, None at the end, EOFError if the child died, TimeoutError."""
        if self.forked:
            if not self.conn.poll(timeout):
                raise TimeoutError
            try:
                return self.conn.recv()
            except EOFError:
                return EOFError
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None

    def alive(self) -> bool:
        return self.proc.is_alive() if self.forked else self.proc.poll() is None

    def release(self) -> None:
        """The child said all it had to say: stop it without waiting for it to free its
        sessions; a daemon thread reaps it (no zombie, no warning about a process still
        running), and this process goes on at once."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        if self.forked:
            self.conn.close()
        reap = self.proc.join if self.forked else self.proc.wait
        threading.Thread(target=reap, name="onnxfix-reap", daemon=True).start()
        self.released = True

    def stop(self) -> None:
        """Kill the child if it still runs (interrupted, over a limit, or done: see
        :meth:`release` for a child that finished) and reap it."""
        if self.released:
            return
        if self.alive():
            self.proc.kill()
        if self.forked:
            self.proc.join(timeout=2)
            self.conn.close()
        else:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def execute(job: Job, limits: Limits) -> list[Outcome]:
    """Run ``job`` in a child process within ``limits``; never raises for the model's faults."""
    with Started(job, limits) as started:
        return started.outcomes()


class Started:
    """A job whose child is already at work (building its session) while this process
    does something else: :meth:`outcomes` collects what it says; leaving the ``with``
    block, or :meth:`stop`, kills and reaps it if it still runs.  ``limits`` count from
    the start."""

    def __init__(self, job: Job, limits: Limits) -> None:
        self.limits = limits
        self.start = time.monotonic()
        self.channel = _Channel(job)

    def __enter__(self) -> Started:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.channel.stop()

    def outcomes(self) -> list[Outcome]:
        """Every outcome, as :func:`execute` returns them; the child is stopped after."""
        channel, limits = self.channel, self.limits
        outcomes: list[Outcome] = []
        finished = False
        try:
            while True:
                try:
                    msg = channel.get(_POLL)
                except TimeoutError:
                    msg = TimeoutError
                if msg is None:
                    finished = True
                    channel.release()
                    break
                if msg is EOFError:
                    break
                if msg is not TimeoutError:
                    outcomes.append(msg)
                    continue
                if not channel.alive():
                    continue  # drain what it sent before it ended
                limit = _over(channel.pid, limits, self.start)
                if limit:
                    outcomes.append(Outcome(None, False, "limit", limit))
                    break
        finally:
            channel.stop()
        if not finished and not any(o.kind == "limit" for o in outcomes):
            outcomes.append(Outcome(None, False, "runtime", "onnxruntime crashed the process"))
        return outcomes


def _over(pid: int | None, limits: Limits, start: float) -> str | None:
    if _rss_mb(pid) > limits.memory_mb:
        return f"the probe used more than {limits.memory_mb} MB"
    if time.monotonic() - start > limits.seconds:
        return f"the probe took more than {limits.seconds:.0f} s"
    return None


def _rss_mb(pid: int | None) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


# --- the child --------------------------------------------------------------------------------


def _runtime_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("onnxruntime")


def _first_line(exc: BaseException) -> str:
    """The runtime's message, bounded but long enough to hold the sentence after a C++
    signature; :func:`onnxfix.diagnose.shorten` makes it readable."""
    return str(exc).strip().replace("\n", " ")[:4000]


def outcomes_of(job: Job) -> Iterator[Outcome | None]:
    """What the child sends: each outcome, then None; a bug of ours is a "tool" outcome,
    never reported as the model's fault."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        work = _work(job)
        for outcome in work:
            yield outcome
            if outcome is None:  # the end, said while ``work`` still holds the sessions
                return
            if job.stop_on_failure and not outcome.ok:
                break
    except BaseException as exc:
        yield Outcome(None, False, "tool", f"{type(exc).__name__}: {_first_line(exc)}")
    yield None


def _child(job: Job, conn: Any) -> None:
    # Everything the child has to say goes through ``conn``.  Holding the caller's stdout
    # and stderr would keep a pipe reading them (``onnxfix repair ... | tee``, a CI step)
    # open until this process has exited, and a process frees its memory before it
    # closes its files: 1.2 GB of session took the reader 1-2 s more.
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    os.close(quiet)
    try:
        for msg in outcomes_of(job):
            conn.send(msg)
    finally:
        conn.close()


def session(
    path: str,
    providers: Sequence[str],
    model: Any = None,
    folder: str | None = None,
    prepack: bool = True,
) -> Any:
    """A session on ``path``, or on ``model`` (an edited copy of it, a ModelProto) whose
    external data stays in ``path``'s folder (or ``folder``): nothing is written next to
    the user's files.

    ``prepack=False`` sets ``session.disable_prepacking``: the CPU kernels (MatMul, Gemm,
    Conv, ...) then keep each constant weight as it is in the file instead of copying it
    into their packed layout while the session is built, and pack per call.  The graph,
    its optimizations and the kernels are the same; what is skipped is a copy made so that
    many runs go faster, which a few probe runs do not need.  On the 1.2 GB HuBERT-large
    model, session creation took 0.2 s instead of 2.0-2.3 s (the packed copies are 1.8 s
    of it, and as much memory again as the weights), and each probe run 0.2-0.45 s
    instead of 0.1 s."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise ValueError(
            f"execution provider {', '.join(missing)} is not available in this "
            f"onnxruntime (available: {', '.join(available)})"
        )
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    if not prepack:
        opts.add_session_config_entry("session.disable_prepacking", "1")
    if model is None:
        return ort.InferenceSession(path, opts, providers=list(providers))
    opts.add_session_config_entry(
        "session.model_external_initializers_file_folder_path",
        folder or os.path.dirname(os.path.abspath(path)),
    )
    return ort.InferenceSession(model.SerializeToString(), opts, providers=list(providers))


def _work(job: Job) -> Any:  # noqa: C901 - one outcome per way a run can end
    import onnx

    from onnxfix import io, probe, verify

    try:
        model = onnx.load(job.model, load_external_data=False)
        if job.weights_from is None:
            sess = session(job.model, job.providers, prepack=job.prepack)
        else:
            folder, moves = job.weights_from
            io.relocate(model, dict(moves))  # the probes below read only its dims
            sess = session(job.model, job.providers, model, folder, job.prepack)
    except ValueError as exc:
        yield Outcome(None, False, "tool", str(exc))
        return
    except Exception as exc:
        yield Outcome(None, False, "load" if _runtime_error(exc) else "tool", _first_line(exc))
        return
    other = None
    other_error = None
    if job.compare_with is not None:
        try:
            in_memory = onnx.load_from_string(job.compare_model) if job.compare_model else None
            other = session(job.compare_with, job.providers, in_memory, prepack=job.prepack)
        except Exception as exc:
            other_error = _first_line(exc)
    feeder = onnx.load(job.inputs_from, load_external_data=False) if job.inputs_from else model
    roles = probe.infer_roles(feeder)
    atol, rtol = job.tolerance if job.tolerance is not None else (None, 0.0)
    cases = probe.load_reference(job.reference) if job.reference else []
    names = [o.name for o in sess.get_outputs()]
    for run in job.runs:
        want = None
        if run.reference_case is not None:
            feeds, want = cases[run.reference_case]
            setting = probe.setting_of(model, feeds)
        else:
            setting = run.setting
            made = probe.make_inputs(feeder, setting, run.seed, roles)
            if made is None:
                # a limit, like memory and time: the setting asks too much (--dims), not a bug
                yield Outcome(
                    run,
                    False,
                    "limit",
                    f"its inputs would hold more than {probe.MAX_PROBE_ELEMENTS:,} elements",
                    setting,
                )
                continue
            feeds = made
        try:
            got = dict(zip(names, sess.run(names, feeds)))
        except Exception as exc:
            kind = "runtime" if _runtime_error(exc) else "tool"
            yield Outcome(run, False, kind, _first_line(exc), setting)
            continue
        out = Outcome(run, True, setting=setting)
        try:
            verify.check_output_dims(
                model, setting, got, symbolic=job.declared_dims and run.reference_case is None
            )
            theirs = None
            if other is not None:
                try:
                    theirs = dict(zip(names, other.run(names, feeds)))
                except Exception as exc:
                    out.other_error = _first_line(exc)
            diffs = [  # stored outputs, then the other model's
                verify.compare(got, expected, job.skip_outputs, atol, rtol)
                for expected in (want, theirs)
                if expected is not None
            ]
            if diffs:
                out.max_abs_diff, out.compared = max(diffs), True
            out.compared_other = theirs is not None
        except verify.VerificationError as exc:
            out = Outcome(run, False, "compare", exc.detail, setting)
            if job.bisect and job.compare_with is not None and exc.step == "compare":
                from onnxfix import parity

                out.first_difference = parity.first_difference(
                    job.model, job.compare_with, feeds, job.providers, atol, rtol
                )
        if other_error is not None:
            out.other_error = other_error
        yield out
    # Said while the sessions still exist: freeing a session's weights takes 0.1 s per GB,
    # which the parent need not wait for (it stops this process without waiting).
    yield None


def weights_bytes(path: str, external_files: list[Any]) -> int:
    """Bytes of weights a session will hold: the file and its external data files."""
    return os.path.getsize(path) + sum(os.path.getsize(f) for f in external_files)
