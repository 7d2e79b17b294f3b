"""Command line: ``onnxfix lint|repair|check|rules|rule``.

Exit codes are a contract for CI.  lint: 0 no error finding, 1 at least one,
2 could not run.  repair: 0 no error left (written if anything was fixed),
1 errors without an applicable fix remain, 2 failed (nothing written).
check: 0 passed, 1 failed, 2 could not run.  Every anticipated failure is one
line naming the file, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from onnxfix import __version__
from onnxfix.report.safe import visible

if TYPE_CHECKING:
    from onnxfix.contracts import Contract
    from onnxfix.forked import Forked
    from onnxfix.linter import LintResult
    from onnxfix.rule import Rule

EXIT_OK, EXIT_FINDINGS, EXIT_FAILURE = 0, 1, 2
FORMATS = ["text", "json", "sarif", "github"]


class UsageError(Exception):
    """A bad flag, config file or contract: one line and exit 2."""


def _options(args: argparse.Namespace) -> tuple[Any, list[str], list[str], Contract | None]:
    """(config, select, ignore, contract): command-line flags win over [tool.onnxfix]."""
    from onnxfix import config, contracts, registry

    try:
        if getattr(args, "isolated", False):
            cfg = config.Config()
        elif getattr(args, "config", None):
            cfg = config.load(Path(args.config), explicit=True)
        else:
            cfg = config.load()
    except config.ConfigError as exc:
        raise UsageError(f"config: {exc}") from None
    cli_select = _codes(getattr(args, "select", None))
    select = cli_select or cfg.select
    # flags win (ruff's rule): a rule selected on the command line is not ignored by the config
    ignore = _codes(getattr(args, "ignore", None)) or ([] if cli_select else cfg.ignore)
    bad = registry.unknown([*select, *ignore])
    if bad:
        raise UsageError(f"unknown rule code or prefix: {', '.join(bad)} (see `onnxfix rules`)")
    spec = getattr(args, "expect", None) or cfg.expect
    contract = None
    if spec:
        try:
            contract = contracts.load(spec)
        except contracts.ContractError as exc:
            raise UsageError(f"--expect {spec}: {exc}") from None
    return cfg, select, ignore, contract


def _codes(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [c.strip() for c in v.split(",") if c.strip()]
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # usage errors: exit 2
        self.print_usage(sys.stderr)
        print(f"onnxfix: error: {message}", file=sys.stderr)
        sys.exit(EXIT_FAILURE)


class _CommandParser(_Parser):
    """A command's parser: its examples (the epilog) keep their lines."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


def _parents() -> dict[str, _CommandParser]:
    """Flags several commands share, declared once (argparse parent parsers)."""
    rules = _CommandParser(add_help=False)
    rules.add_argument(
        "--select",
        action="append",
        metavar="CODES",
        help="rule codes or prefixes to run, comma-separated or repeated "
        "(WB is the family, WB102 one rule, ALL every rule)",
    )
    rules.add_argument(
        "--ignore", action="append", metavar="CODES", help="rule codes or prefixes to skip"
    )
    rules.add_argument(
        "--expect",
        metavar="SPEC",
        help="interface contract: a .toml/.json file or a built-in profile "
        "(wenet-encoder-chunk, wenet-ctc, hubert-features)",
    )
    reference = _CommandParser(add_help=False)
    reference.add_argument(
        "--reference",
        metavar="NPZ",
        help="inputs and outputs to reproduce (<case>/in/<name>, <case>/out/<name> in an .npz)",
    )
    out = _CommandParser(add_help=False)
    out.add_argument(
        "-o",
        "--output-file",
        metavar="FILE",
        help="write the report to FILE instead of standard output",
    )
    out.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print findings and failures only: no summary, notes or verification steps",
    )
    out.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="colour in text output (auto: on a terminal, unless NO_COLOR is set)",
    )
    conf = out.add_mutually_exclusive_group()
    conf.add_argument(
        "--config",
        metavar="FILE",
        help="read settings from FILE (a pyproject.toml with [tool.onnxfix], or a TOML "
        "file with the same keys at the top) instead of searching for pyproject.toml",
    )
    conf.add_argument("--isolated", action="store_true", help="ignore every configuration file")
    return {"rules": rules, "reference": reference, "output": out}


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="onnxfix", description="Lint and safely repair exported ONNX models.")
    p.add_argument("--version", action="version", version=f"onnxfix {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_CommandParser)
    par = _parents()

    lint = sub.add_parser(
        "lint",
        parents=[par["rules"], par["output"]],
        help="report problems (reads no weights)",
        description="Report problems; reads no weight bytes and never imports onnxruntime.",
        epilog=_examples(
            "onnxfix lint model.onnx",
            "onnxfix lint models/ --format sarif -o onnxfix.sarif",
            "onnxfix lint model.onnx --select WB,RP --statistics",
            "onnxfix lint model.onnx --explain WB102",
        ),
    )
    lint.add_argument("models", nargs="+", metavar="MODEL", help="ONNX model files")
    lint.add_argument("--format", choices=FORMATS, default="text", help="output format")
    lint.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="lint files in N processes (0: one per core)",
    )
    lint.add_argument(
        "--annotate",
        metavar="OUT",
        help="also write a copy of the (one) model whose offending nodes carry their "
        "findings in doc_string and metadata_props, as Netron shows them; OUT must be in "
        "the model's folder when it has external data (the copy points at the same data)",
    )
    lint.add_argument(
        "--exit-zero",
        action="store_true",
        help="exit 0 even when errors are found (2 still means a file could not be read)",
    )
    lint.add_argument(
        "--statistics",
        action="store_true",
        help="print how many findings each rule has instead of the findings (text or json)",
    )
    lint.add_argument(
        "--explain",
        metavar="CODE",
        help="say where rule CODE fired and why it did not fire on every other "
        "node it looks at (nearest miss first)",
    )

    rep = sub.add_parser(
        "repair",
        parents=[par["rules"], par["reference"], par["output"]],
        help="apply fixes, verify, write atomically",
        epilog=_examples(
            "onnxfix repair model.onnx fixed.onnx",
            "onnxfix repair model.onnx --dry-run --diff",
            "onnxfix repair model.onnx fixed.onnx --reference model.npz --simplify",
            "onnxfix repair cut.onnx fixed.onnx --output logits=/decoder/Add_output_0",
        ),
        description="Apply fixes, verify the result, write it atomically; "
        "nothing is written if nothing was fixed or verification fails.",
    )
    rep.add_argument(
        "input", metavar="IN", help="the model to repair (never modified unless it is also OUT)"
    )
    rep.add_argument("output", metavar="OUT", nargs="?", help="where the repaired model goes")
    rep.add_argument("--dry-run", action="store_true", help="print what would change")
    rep.add_argument("--unsafe-fixes", action="store_true", help="also apply unsafe fixes")
    rep.add_argument(
        "--diff",
        action="store_true",
        help="show what changed node by node (- removed, + added), with the op counts, "
        "file sizes and time",
    )
    rep.add_argument(
        "--simplify",
        action="store_true",
        help="run onnxsim on the repaired model (in memory) and keep its result only if it "
        "verifies, keeps every dynamic dim and matches the unsimplified repair; needs "
        'the extra: pip install "onnxfix[simplify]"',
    )
    rep.add_argument(
        "--no-verify",
        action="store_true",
        help="skip what runs the model (onnxruntime session, probe runs); the "
        "checker, strict inference, interface check and re-lint still run",
    )
    rep.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    rep.add_argument(
        "--output",
        action="append",
        metavar="NAME=VALUE",
        dest="outputs",
        help="declare graph output NAME as the existing value VALUE "
        "(re-declares the outputs of a cut graph)",
    )

    chk = sub.add_parser(
        "check",
        parents=[par["rules"], par["reference"], par["output"]],
        help="pre-deployment check: lint, load and run in onnxruntime",
        description="Lint, load in onnxruntime and run at probe settings.",
        epilog=_examples(
            "onnxfix check model.onnx",
            "onnxfix check model.onnx --dims T=1,37,400 B=1,3",
            "onnxfix check encoder.onnx --reference encoder.npz --format github",
            "onnxfix check optimized.onnx --against model.onnx",
        ),
    )
    chk.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="ONNX model files or folders (searched for *.onnx) to check",
    )
    chk.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="check N models at a time (0: one per core); each runs its probes in its "
        "own child process",
    )
    chk.add_argument(
        "--dims",
        nargs="+",
        metavar="SYM=V1,V2",
        help="probe values per dynamic dim, e.g. T=1,37,400 B=1,3 (every "
        "combination runs); default: distinct values other than 1",
    )
    chk.add_argument(
        "--provider",
        action="append",
        metavar="NAME",
        help="onnxruntime execution provider to run on (repeat for a priority "
        "list; default CPUExecutionProvider)",
    )
    chk.add_argument(
        "--against",
        metavar="ORIGINAL",
        help="the model this one was made from (before onnxsim/onnxslim/...): the interface "
        "must be the same, every dynamic dim still dynamic, and the outputs must match "
        "ORIGINAL's at planned probes; a mismatch names the first differing value",
    )
    chk.add_argument(
        "--atol",
        type=float,
        metavar="X",
        help="absolute tolerance when comparing outputs (default per dtype: 1e-4, 1e-2 for fp16)",
    )
    chk.add_argument(
        "--rtol",
        type=float,
        metavar="X",
        help="relative tolerance when comparing outputs (default 1e-3 with --against, else 0)",
    )
    chk.add_argument("--format", choices=FORMATS, default="text", help="output format")

    shp = sub.add_parser(
        "shapes",
        parents=[par["output"]],
        help="the symbolic shape of every value, the dims the graph derives, and where "
        "each symbol comes from",
        description="Show the symbolic shape of every value of the main graph (or of one "
        "node's inputs and outputs), the dims the graph derives from its inputs, and the "
        "input axes each symbol comes from. Reads no weights.",
        epilog=_examples(
            "onnxfix shapes model.onnx", "onnxfix shapes model.onnx --node /encoder/Where"
        ),
    )
    shp.add_argument("model", metavar="MODEL", help="the ONNX model")
    shp.add_argument("--node", metavar="NAME", help="only this node's inputs and outputs")
    shp.add_argument("--format", choices=["text", "json"], default="text", help="output format")

    rules = sub.add_parser(
        "rules",
        help="list the rules",
        description="List every rule: code, name, severity, whether it has a fix.",
        epilog=_examples("onnxfix rules", "onnxfix rules --format json"),
    )
    rules.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    one = sub.add_parser(
        "rule",
        help="show a rule's documentation",
        description="Show a rule's own documentation: what, why, an example, fix safety.",
        epilog=_examples("onnxfix rule WB102", "onnxfix rule where-mask-left-aligned"),
    )
    one.add_argument("code", help="a rule code (WB102) or name (where-mask-left-aligned)")
    return p


def _lint(args: argparse.Namespace) -> int:
    from onnxfix import report

    cfg, select, ignore, contract = _options(args)
    if args.explain:
        return _explain(args)
    results, errors = [], []
    given = list(args.models)
    args.models = _expand(given)
    if not args.models:
        raise UsageError(f"no .onnx file found in {', '.join(given)}")
    jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
    task = functools.partial(_lint_one, select=select, ignore=ignore, contract=contract)
    if jobs > 1 and len(args.models) > 1:
        outcomes = _in_workers(task, args.models, jobs)
    else:
        last = len(args.models) - 1
        outcomes = [
            task(p, retain=_LEAVING_WITH if k == last else None) for k, p in enumerate(args.models)
        ]
    for path, (result, problem) in zip(args.models, outcomes):
        if result is not None:
            result.findings = cfg.adjust(path, result.findings)
            results.append(result)
        else:
            errors.append((path, problem))
            print(f"onnxfix: {visible(path)}: {visible(problem)}", file=sys.stderr)
    if args.annotate:
        _annotate(args, results)
    if args.statistics:
        if args.format not in ("text", "json"):
            raise UsageError("--statistics prints text or json")
        report.render_statistics(args.format, results, errors)
    else:
        report.render_lint(args.format, results, errors)
    if errors:
        return EXIT_FAILURE
    if args.exit_zero:
        return EXIT_OK
    return EXIT_FINDINGS if any(r.errors for r in results) else EXIT_OK


_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox"}


def _annotate(args: argparse.Namespace, results: list[LintResult]) -> None:
    """``lint --annotate OUT``: the linted model, its findings written onto their nodes."""
    from onnxfix import io, views

    if len(args.models) != 1 or len(results) != 1:
        raise UsageError("--annotate takes exactly one readable model")
    loaded = io.load(args.models[0])
    out = Path(args.annotate)
    if loaded.uses_external_data and out.resolve().parent != loaded.path.resolve().parent:
        raise UsageError(
            "--annotate: the model has external data; write OUT in its folder "
            f"({loaded.path.parent}) so the copy can point at the same data"
        )
    if out.resolve() == loaded.path.resolve():
        raise UsageError("--annotate: OUT must not be the model itself")
    marked = views.annotate(loaded.model, results[0].findings)
    try:
        io.write_graph_atomic(loaded.model, out)
    except io.ModelError as exc:
        raise UsageError(f"--annotate: {exc}") from None
    print(
        f"onnxfix: wrote {visible(str(out))}: {marked} node(s) annotated",
        file=sys.stderr,
    )


def _expand(paths: list[str]) -> list[str]:
    """Files as given; directories searched for ``*.onnx`` (hidden and environment folders
    skipped), in sorted order so output never depends on the file system's order."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
                out += [
                    os.path.join(root, f)
                    for f in sorted(files)
                    if f.endswith(".onnx") and not f.startswith(".onnxfix-")
                ]
        else:
            out.append(p)
    return out


def _explain(args: argparse.Namespace) -> int:
    from onnxfix import linter
    from onnxfix.io import ModelError

    rule = _named_rule(args.explain)
    fired_any = False
    for path in args.models:
        try:
            fired, misses = linter.explain(path, rule.code)
        except ModelError as exc:
            print(f"onnxfix: {visible(exc)}", file=sys.stderr)
            return EXIT_FAILURE
        for f in fired:
            fired_any = True
            why = f"; no fix here: {rule.no_fix}" if f.fix is None and rule.no_fix else ""
            print(visible(f"{path}: {rule.code} fired at {f.node} ({f.op_type}){why}"))
        if not rule.per_node:
            print(visible(f"{path}: {rule.code} looks at whole graphs; it has no per-node reasons"))
        elif not misses and not fired:
            print(
                visible(
                    f"{path}: no {'/'.join(sorted(rule.ops or ()))} node for {rule.code} to look at"
                )
            )
        for m in misses[:10]:
            where = f" (at {m.at})" if m.at and m.at != m.node else ""
            print(
                visible(
                    f"{path}: {rule.code} did not fire at {m.node} ({m.op_type}): {m.reason}{where}"
                )
            )
        if len(misses) > 10:
            print(visible(f"{path}: ... and {len(misses) - 10} more {rule.code} candidates"))
    return EXIT_FINDINGS if fired_any else EXIT_OK


def _needs_runtime(what: str) -> None:
    """repair (verified) and check run models in onnxruntime, an extra since lint never
    imports it: without it, one line saying how to get it (found without importing it: a
    parent that imported it could no longer fork its probe processes cheaply)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise UsageError(
            f'{what} runs the model in onnxruntime: pip install "onnxfix[runtime]" (or '
            "onnxruntime)" + (", or pass --no-verify" if what == "repair" else "")
        )


def _reference_usage(args: argparse.Namespace) -> None:
    """A --reference that is not an .npz of cases: one line and exit 2, before any work."""
    if getattr(args, "reference", None):
        from onnxfix.io import ModelError
        from onnxfix.probe import load_reference

        try:
            load_reference(args.reference)
        except ModelError as exc:
            raise UsageError(f"--reference {exc.path}: {exc.problem}") from None


def _check(args: argparse.Namespace) -> int:
    from onnxfix import report

    _needs_runtime("check")
    _reference_usage(args)

    cfg, select, ignore, contract = _options(args)
    dims = dict(cfg.dims)
    for spec in args.dims or []:
        sym, sep, values = spec.partition("=")
        try:
            dims[sym] = [int(v) for v in values.split(",") if v]
        except ValueError:
            dims[sym] = []
        if not sep or not sym or not dims[sym] or min(dims[sym]) < 1:
            raise UsageError(f"--dims takes SYM=V1,V2,... with positive integers, got '{spec}'")
    given = list(args.models)
    models = _expand(given)
    if not models:
        raise UsageError(f"no .onnx file found in {', '.join(given)}")
    task = functools.partial(
        _check_one,
        dims=dims or None,
        reference=args.reference,
        expect=contract,
        select=select,
        ignore=ignore,
        providers=args.provider,
        against=args.against,
        atol=args.atol,
        rtol=args.rtol,
    )
    jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
    with _busy(f"checking {len(models)} model(s)"):
        if jobs > 1 and len(models) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=min(jobs, len(models))) as pool:
                outcomes = list(pool.map(task, models))
        else:
            outcomes = [task(m) for m in models]
    results, errors = [], []
    for path, (result, problem) in zip(models, outcomes):
        if problem is not None and problem.startswith("usage: "):
            raise UsageError(problem.removeprefix("usage: "))
        if result is None:
            errors.append((path, problem or "?"))
            print(f"onnxfix: {visible(path)}: {visible(problem or '?')}", file=sys.stderr)
            continue
        result.lint.findings = cfg.adjust(path, result.lint.findings)
        results.append(result)
    if results or len(models) > 1:  # one unreadable model: its line on stderr says it all
        report.render_check(args.format, results, errors)
    if errors:
        return EXIT_FAILURE
    return max((r.exit_code for r in results), default=EXIT_OK)


def _check_one(path: str, **kwargs: Any) -> tuple[Any, str | None]:
    """(result, None), or (None, why the model could not be checked); a usage problem
    (an unknown --dims name, a missing provider) comes back as ``usage: ...``."""
    from onnxfix import gate
    from onnxfix.io import ModelError

    try:
        return gate.check(path, **kwargs), None
    except ModelError as exc:
        return None, exc.problem
    except (gate.ProviderError, gate.DimsError) as exc:
        return None, f"usage: {exc}"


@contextlib.contextmanager
def _busy(message: str) -> Iterator[None]:
    """A status line on stderr for work that takes seconds: the phase being run (reported
    through :mod:`onnxfix.progress`) and the time so far; nothing when not a terminal."""
    if not sys.stderr.isatty():
        yield
        return
    import threading
    import time

    from rich.console import Console

    from onnxfix import progress

    started = time.monotonic()
    now = {"phase": ""}
    done = threading.Event()
    with Console(stderr=True, markup=False, emoji=False, highlight=False).status(message) as status:

        def show() -> None:
            phase = f": {now['phase']}" if now["phase"] else ""
            status.update(visible(f"{message}{phase} ({time.monotonic() - started:.0f} s)"))

        def tick() -> None:
            while not done.wait(0.5):
                show()

        def listen(text: str) -> None:
            now["phase"] = text
            show()

        timer = threading.Thread(target=tick, daemon=True)
        timer.start()
        try:
            with progress.listening(listen):
                yield
        finally:
            done.set()


def _in_workers(task: Any, paths: list[str], jobs: int) -> list[Any]:
    """``task`` over ``paths`` in ``jobs`` processes: this one and ``jobs - 1`` forks that
    start with onnx and the rules already imported (a fresh interpreter pays ~0.3 s of
    imports, more than linting a small file), each given a share of the bytes to read
    (largest file first, to the least loaded).  A worker hands back its results as one
    pickle in an anonymous file (:class:`onnxfix.forked.Forked`); one that dies, or
    cannot be forked, has its files done here.  Where ``fork`` is missing, files are done
    one after another."""
    from onnxfix import linter, registry  # noqa: F401  (imported once, before the fork)
    from onnxfix.forked import Forked

    registry.all_rules()
    if not hasattr(os, "fork"):
        return [task(p) for p in paths]
    shares = _shares(paths, min(jobs, len(paths)))
    import gc

    # what is alive now (the libraries) is shared with the forks: out of the collector's
    # sight, its passes do not write to those pages and so do not copy them in each process
    gc.freeze()
    children: list[tuple[Forked | None, list[int]]] = []
    try:
        for share in shares[1:]:  # a fork refused: that share is done here
            children.append((Forked.start(_do_share, task, paths, share), share))
        results: dict[int, Any] = _do_share(task, paths, shares[0])
        while children:
            child, share = children.pop()
            results.update(_collect(child, share, task, paths))
    finally:
        for child, _share in children:  # interrupted: no worker outlives the command
            if child is not None:
                child.cancel()
        gc.unfreeze()  # a caller that goes on collects as before
    return [results[i] for i in range(len(paths))]


def _shares(paths: list[str], workers: int) -> list[list[int]]:
    """Indices of ``paths`` split into ``workers`` shares of about equal bytes."""
    sizes = []
    for i, p in enumerate(paths):
        try:
            sizes.append((os.path.getsize(p), i))
        except OSError:
            sizes.append((0, i))
    loads = [0] * workers
    shares: list[list[int]] = [[] for _ in range(workers)]
    for size, i in sorted(sizes, reverse=True):
        k = loads.index(min(loads))
        loads[k] += size + 4096  # a file costs something however small
        shares[k].append(i)
    return [sorted(s) for s in shares if s]


def _do_share(task: Any, paths: list[str], share: list[int]) -> dict[int, Any]:
    return {i: task(paths[i]) for i in share}


def _collect(child: Forked | None, share: list[int], task: Any, paths: list[str]) -> dict[int, Any]:
    """A worker's results; its files are done here if it gave none (it died mid-write,
    or was never forked)."""
    try:
        got = child.answer() if child is not None else None
        if isinstance(got, dict) and sorted(got) == share:
            return got
    except Exception:
        pass
    return _do_share(task, paths, share)


def _lint_one(
    path: str,
    select: list[str],
    ignore: list[str],
    contract: Contract | None,
    retain: list[object] | None = None,
) -> tuple[LintResult | None, str]:
    """Lint one file; picklable both ways so that ``-j`` can run it in a worker
    (findings are frozen data: no protobuf object crosses back).  ``retain``: see
    :func:`onnxfix.linter.lint`."""
    from onnxfix import linter
    from onnxfix.io import ModelError

    try:
        result = linter.lint(path, select=select, ignore=ignore, expect=contract, _retain=retain)
        return result, ""
    except ModelError as exc:
        return None, exc.problem


def _repair_usage(args: argparse.Namespace) -> dict[str, str]:
    """The usage errors of ``repair`` (before any work), and its ``--output`` pairs."""
    if args.output is None and not args.dry_run:
        raise UsageError("repair needs OUT (or --dry-run)")
    if not args.dry_run and not args.no_verify:
        _needs_runtime("repair")
    _reference_usage(args)
    outputs = {}
    for spec in args.outputs or []:
        name, sep, value = spec.partition("=")
        if not sep or not name or not value:
            raise UsageError(f"--output takes NAME=VALUE, got '{spec}'")
        outputs[name] = value
    if args.simplify:
        from onnxfix import simplify

        try:
            simplify.available()
        except simplify.SimplifyUnavailable as exc:
            raise UsageError(str(exc)) from None
    return outputs


def _repair(args: argparse.Namespace) -> int:
    early = None
    if args.output is not None and not args.dry_run and not args.simplify:
        # the weights start copying before onnx is even imported (onnxfix.staging)
        from onnxfix import staging

        early = staging.start_early(args.input, args.output)
    try:
        return _repair_with(args, early)
    finally:
        if early is not None:  # removes whatever the repair did not move into place
            early.discard()


def _repair_with(args: argparse.Namespace, early: Any) -> int:
    from onnxfix import repairer, report
    from onnxfix.io import ModelError

    _cfg, select, ignore, contract = _options(args)
    outputs = _repair_usage(args)
    import time

    started = time.perf_counter()
    try:
        with _busy(f"repairing {args.input}"):
            result = repairer.repair(
                args.input,
                args.output,
                select=select,
                ignore=ignore,
                unsafe_fixes=args.unsafe_fixes,
                dry_run=args.dry_run,
                reference=args.reference,
                verify_probe=not args.no_verify,
                outputs=outputs,
                expect=contract,
                simplify=args.simplify,
                diff=args.diff,
                early=early,
            )
    except ModelError as exc:
        print(f"onnxfix: {visible(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    if result.stale_removed:
        print(
            f"onnxfix: removed {len(result.stale_removed)} temporary file(s) an interrupted "
            f"onnxfix left: {visible(', '.join(result.stale_removed))}",
            file=sys.stderr,
        )
    if args.format == "json":
        print(report.repair_json(result))
    else:
        report.print_repair(result, args.dry_run)
        if args.diff:
            print(visible(_sizes(args.input, result, time.perf_counter() - started)))
    if result.error:
        print(
            f"onnxfix: {args.input}: repair failed, nothing written: {result.error}",
            file=sys.stderr,
        )
    if args.dry_run and result.error is None and result.fixed:
        return EXIT_FINDINGS  # like ruff --diff: something would change
    return result.exit_code


def _sizes(src: str, result: Any, seconds: float) -> str:
    """``size 4.1 MB → 4.1 MB; 2.3 s``: the model and its data files, before and after."""
    from onnxfix import io

    def total(path: str) -> str:
        try:
            loaded = io.load(path)
        except io.ModelError:
            return "?"
        n = loaded.path.stat().st_size + sum(f.stat().st_size for f in loaded.external_files)
        return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.1f} KB"

    after = total(result.output) if result.written and result.output else None
    size = f"size {total(src)}" + (f" → {after}" if after else " (nothing written)")
    return f"  {size}; {seconds:.1f} s"


def _rules(args: argparse.Namespace) -> int:
    from onnxfix import registry, report

    rules = list(registry.all_rules())
    if args.format == "json":
        import json

        print(
            json.dumps(
                {
                    "version": report.SCHEMA_VERSION,
                    "rules": [
                        {
                            "code": r.code,
                            "name": r.name,
                            "severity": r.severity.value,
                            "family": r.family,
                            "fix": r.fixable.value if r.fixable else None,
                            "summary": r.summary,
                            "docs": r.docs,
                        }
                        for r in rules
                    ],
                },
                indent=2,
            )
        )
    else:
        report.print_rules(rules)
    return EXIT_OK


def _rule(args: argparse.Namespace) -> int:
    from onnxfix import report

    report.print_rule(_named_rule(args.code))
    return EXIT_OK


def _shapes(args: argparse.Namespace) -> int:
    from onnxfix import io, linter, registry, views

    try:
        loaded = io.load(args.model)
    except io.ModelError as exc:
        print(f"onnxfix: {visible(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    _found, ctx = linter.analyse(loaded.model, registry.select(None, None), None)
    try:
        view = views.shapes(ctx, args.node)
    except KeyError:
        raise UsageError(f"no node named '{args.node}' in the main graph") from None
    if args.format == "json":
        import json

        from onnxfix.report import SCHEMA_VERSION

        print(json.dumps({"version": SCHEMA_VERSION, "path": args.model, **view}, indent=2))
    else:
        for line in views.render_shapes(view):
            print(visible(line))
    return EXIT_OK


def _named_rule(code: str) -> Rule[Any]:
    """The rule a command names (``rule``, ``--explain``); an unknown code is a usage error."""
    from onnxfix import registry

    rule = registry.get(code)
    if rule is None:
        raise UsageError(f"no rule '{code}' (see `onnxfix rules`)")
    return rule


@contextlib.contextmanager
def _report_to(path: str | None) -> Iterator[None]:
    """Standard output goes to ``path`` (``-o``); diagnostics stay on standard error.  The
    file is written whole or not at all (a temporary file moved into place)."""
    if path is None:
        yield
        return
    import tempfile

    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".onnxfix-report-", dir=target.resolve().parent)
    except OSError as exc:
        raise UsageError(f"--output-file {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh, contextlib.redirect_stdout(fh):
            yield
        from onnxfix.io import new_file_mode

        os.chmod(tmp, new_file_mode())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _terminate(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C so that every `finally` removes its temporary files.
    raise KeyboardInterrupt


#: set by :func:`entry`: the analysis of the last file linted, kept because the process
#: leaves without taking it apart; ``None`` when :func:`main` runs inside a caller
_LEAVING_WITH: list[object] | None = None


class _Unread:
    """Standard output whose reader may go away (``onnxfix lint m.onnx | head``): what is
    no longer read is dropped, and the command still ends with its own exit code (the
    gate's answer, or "written" for a repair whose report was cut short), not with an
    internal error.  Everything else is the stream's."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.gone = False

    def _went(self) -> None:
        self.gone = True
        with contextlib.suppress(OSError, ValueError):  # later flushes write nowhere
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, self._stream.fileno())
            os.close(quiet)

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return int(self._stream.write(text))
            except BrokenPipeError:
                self._went()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._went()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def entry() -> NoReturn:
    """The ``onnxfix`` command: :func:`main`, then leave at once.  Output is flushed and
    every file written is closed by then; what is skipped is the interpreter taking apart
    the analysis object by object (0.14 s after linting a 100k-node graph, measured)."""
    global _LEAVING_WITH
    _LEAVING_WITH = []
    sys.stdout = _Unread(sys.stdout)
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # the reader went away (`| head`): nothing to say
        pass
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    args = build_parser().parse_args(argv)
    handler = {
        "lint": _lint,
        "repair": _repair,
        "check": _check,
        "rules": _rules,
        "rule": _rule,
        "shapes": _shapes,
    }[args.command]
    from onnxfix.report.text import Options

    Options.color = getattr(args, "color", "auto")
    Options.quiet = getattr(args, "quiet", False)
    try:
        with _report_to(getattr(args, "output_file", None)):
            return handler(args)
    except UsageError as exc:
        print(f"onnxfix: error: {visible(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("onnxfix: interrupted; nothing written", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:
        print(
            f"onnxfix: internal error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr
        )
        if os.environ.get("ONNXFIX_TRACEBACK"):  # for bug reports and the fuzz benchmark
            import traceback

            traceback.print_exc()
        return EXIT_FAILURE


if __name__ == "__main__":
    entry()
