"""Command line: ``onnxfix lint|repair|rules|rule``.

Exit codes are a contract for CI.  lint: 0 no error finding, 1 at least one,
2 could not run.  repair: 0 written and verified with no error left, 1 written
and verified but errors without a safe fix remain, 2 nothing written.
Every anticipated failure is one line naming the file, never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from typing import Any

from onnxfix import __version__

EXIT_OK, EXIT_FINDINGS, EXIT_FAILURE = 0, 1, 2
FORMATS = ["text", "json", "sarif", "github"]


class UsageError(Exception):
    """A bad flag, config file or contract: one line and exit 2."""


def _options(args: argparse.Namespace) -> tuple[object, list[str], list[str], object]:
    """(config, select, ignore, contract): command-line flags win over [tool.onnxfix]."""
    from onnxfix import config, contracts

    try:
        cfg = config.load()
    except config.ConfigError as exc:
        raise UsageError(f"config: {exc}") from None
    select = _codes(getattr(args, "select", None)) or cfg.select
    ignore = _codes(getattr(args, "ignore", None)) or cfg.ignore
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
    def error(self, message: str) -> None:  # usage errors are exit 2, one line
        self.print_usage(sys.stderr)
        print(f"onnxfix: error: {message}", file=sys.stderr)
        sys.exit(EXIT_FAILURE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="onnxfix", description="Lint and safely repair exported ONNX models.")
    p.add_argument("--version", action="version", version=f"onnxfix {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    lint = sub.add_parser("lint", help="report problems (reads no weights)")
    lint.add_argument("models", nargs="+", metavar="MODEL")
    lint.add_argument("--format", choices=FORMATS, default="text")
    lint.add_argument("--select", action="append", help="rule codes or prefixes to run")
    lint.add_argument("--ignore", action="append", help="rule codes or prefixes to skip")
    lint.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                      help="lint files in N processes (0: one per core)")
    lint.add_argument("--expect", metavar="SPEC",
                      help="interface contract: a .toml/.json file or a built-in profile "
                      "(wenet-encoder-chunk, wenet-ctc, hubert-features)")

    rep = sub.add_parser("repair", help="apply fixes, verify, write atomically")
    rep.add_argument("input", metavar="IN")
    rep.add_argument("output", metavar="OUT", nargs="?")
    rep.add_argument("--dry-run", action="store_true", help="print what would change")
    rep.add_argument("--unsafe-fixes", action="store_true", help="also apply unsafe fixes")
    rep.add_argument("--select", action="append")
    rep.add_argument("--ignore", action="append")
    rep.add_argument("--reference", metavar="NPZ",
                     help="inputs/outputs to compare with (<case>/in/<name>, <case>/out/<name>)")
    rep.add_argument("--no-verify", action="store_true",
                     help="skip what runs the model (onnxruntime session, probe runs); the "
                     "checker, strict inference, interface check and re-lint still run")
    rep.add_argument("--format", choices=["text", "json"], default="text")
    rep.add_argument("--expect", metavar="SPEC", help="interface contract, as for lint")
    rep.add_argument("--output", action="append", metavar="NAME=VALUE", dest="outputs",
                     help="declare graph output NAME as the existing value VALUE "
                     "(re-declares the outputs of a cut graph)")

    chk = sub.add_parser("check", help="pre-deployment check: lint, load and run in onnxruntime")
    chk.add_argument("model", metavar="MODEL")
    chk.add_argument("--dims", nargs="+", metavar="SYM=V1,V2",
                     help="probe values per dynamic dim, e.g. T=1,37,400 B=1,3 (every "
                     "combination runs); default: distinct values other than 1")
    chk.add_argument("--reference", metavar="NPZ", help="inputs and outputs to reproduce")
    chk.add_argument("--expect", metavar="SPEC", help="interface contract, as for lint")
    chk.add_argument("--select", action="append")
    chk.add_argument("--ignore", action="append")
    chk.add_argument("--provider", action="append", metavar="NAME",
                     help="onnxruntime execution provider to run on (repeat for a priority "
                     "list; default CPUExecutionProvider)")
    chk.add_argument("--format", choices=FORMATS, default="text")

    rules = sub.add_parser("rules", help="list the rules")
    rules.add_argument("--format", choices=["text", "json"], default="text")
    one = sub.add_parser("rule", help="show a rule's documentation")
    one.add_argument("code")
    return p


def _lint(args: argparse.Namespace) -> int:
    from onnxfix import registry, report

    cfg, select, ignore, contract = _options(args)
    results, errors = [], []
    jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
    task = functools.partial(_lint_one, select=select, ignore=ignore, contract=contract)
    if jobs > 1 and len(args.models) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(jobs, len(args.models))) as pool:
            outcomes = list(pool.map(task, args.models, chunksize=4))
    else:
        outcomes = [task(p) for p in args.models]
    for path, (result, problem) in zip(args.models, outcomes):
        if result is not None:
            result.findings = cfg.adjust(path, result.findings)  # type: ignore[attr-defined]
            results.append(result)
        else:
            errors.append((path, problem))
            print(f"onnxfix: {path}: {problem}", file=sys.stderr)
    if args.format == "json":
        print(report.lint_json(results, errors))
    elif args.format == "sarif":
        print(report.sarif([(r.path, r.findings) for r in results],
                           list(registry.all_rules())))
    elif args.format == "github":
        print(report.github([(r.path, r.findings) for r in results],
                            [report.annotation(p, "error", "onnxfix", m) for p, m in errors]))
    else:
        report.print_lint(results, errors)
    if errors:
        return EXIT_FAILURE
    return EXIT_FINDINGS if any(r.errors for r in results) else EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from onnxfix import api, registry, report
    from onnxfix.io import ModelError
    from onnxfix.verify import ProviderError

    cfg, select, ignore, contract = _options(args)
    dims = dict(cfg.dims)  # type: ignore[attr-defined]
    for spec in args.dims or []:
        sym, sep, values = spec.partition("=")
        try:
            dims[sym] = [int(v) for v in values.split(",") if v]
        except ValueError:
            dims[sym] = []
        if not sep or not sym or not dims[sym] or min(dims[sym]) < 1:
            raise UsageError(f"--dims takes SYM=V1,V2,... with positive integers, got '{spec}'")
    try:
        with _busy(f"checking {args.model}: lint, load, probe runs"):
            result = api.check(args.model, dims=dims or None, reference=args.reference,
                               expect=contract, select=select, ignore=ignore,  # type: ignore[arg-type]
                               providers=args.provider)
    except ModelError as exc:
        print(f"onnxfix: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except ProviderError as exc:
        raise UsageError(str(exc)) from None
    result.lint.findings = cfg.adjust(args.model, result.lint.findings)  # type: ignore[attr-defined]
    failures = [r for r in result.runs if not r.ok]
    if args.format == "json":
        print(report.check_json(result))
    elif args.format == "sarif":
        print(report.sarif([(result.path, result.lint.findings)], list(registry.all_rules()),
                           [report.sarif_runtime(result.path, r) for r in failures]))
    elif args.format == "github":
        print(report.github([(result.path, result.lint.findings)],
                            [report.annotation(result.path, "error", report.run_title(r),
                                               report.describe_run(r)) for r in failures]))
    else:
        report.print_check(result)
    return result.exit_code


def _busy(message: str) -> Any:
    """A spinner on stderr for work that takes seconds; nothing when not a terminal."""
    import contextlib

    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(message)


def _lint_one(path: str, select: list[str], ignore: list[str], contract: object
              ) -> tuple[object | None, str]:
    """Lint one file; picklable both ways so that ``-j`` can run it in a worker."""
    from onnxfix import api
    from onnxfix.io import ModelError

    try:
        result = api.lint(path, select=select, ignore=ignore, expect=contract)  # type: ignore[arg-type]
    except ModelError as exc:
        return None, exc.problem
    for f in result.findings:  # protobuf objects stay in the worker
        f.node_ref = f.graph_ref = None
        if f.fix is not None:
            f.fix.params = {}
    return result, ""


def _repair(args: argparse.Namespace) -> int:
    from onnxfix import api, report
    from onnxfix.io import ModelError

    _cfg, select, ignore, contract = _options(args)

    if args.output is None and not args.dry_run:
        print("onnxfix: error: repair needs OUT (or --dry-run)", file=sys.stderr)
        return EXIT_FAILURE
    outputs = {}
    for spec in args.outputs or []:
        name, sep, value = spec.partition("=")
        if not sep or not name or not value:
            print(f"onnxfix: error: --output takes NAME=VALUE, got '{spec}'", file=sys.stderr)
            return EXIT_FAILURE
        outputs[name] = value
    try:
        with _busy(f"repairing {args.input}: fixing, copying weights, verifying"):
            result = api.repair(
                args.input, args.output, select=select, ignore=ignore,
                unsafe_fixes=args.unsafe_fixes, dry_run=args.dry_run, reference=args.reference,
                verify_probe=not args.no_verify, outputs=outputs, expect=contract,  # type: ignore[arg-type]
            )
    except ModelError as exc:
        print(f"onnxfix: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.format == "json":
        print(report.repair_json(result))
    else:
        report.print_repair(result, args.dry_run)
    if result.error:
        print(f"onnxfix: {args.input}: {result.error}", file=sys.stderr)
    if args.dry_run:
        return EXIT_OK if not result.error else EXIT_FAILURE
    return result.exit_code


def _rules(args: argparse.Namespace) -> int:
    from onnxfix import registry, report

    rules = list(registry.all_rules())
    if args.format == "json":
        import json

        print(json.dumps({"version": report.SCHEMA_VERSION, "rules": [
            {"code": r.code, "name": r.name, "severity": r.severity.value, "family": r.family,
             "fix": r.fixable.value if r.fixable else None, "summary": r.summary, "docs": r.docs}
            for r in rules]}, indent=2))
    else:
        report.print_rules(rules)
    return EXIT_OK


def _rule(args: argparse.Namespace) -> int:
    from onnxfix import registry, report

    rule = registry.get(args.code)
    if rule is None:
        print(f"onnxfix: error: no rule '{args.code}' (see `onnxfix rules`)", file=sys.stderr)
        return EXIT_FAILURE
    report.print_rule(rule)
    return EXIT_OK


def _terminate(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C so that every `finally` removes its temporary files.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    args = build_parser().parse_args(argv)
    handler = {"lint": _lint, "repair": _repair, "check": _check, "rules": _rules,
               "rule": _rule}[args.command]
    try:
        return handler(args)
    except UsageError as exc:
        print(f"onnxfix: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("onnxfix: interrupted; nothing written", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:
        print(f"onnxfix: internal error: {type(exc).__name__}: {exc}".splitlines()[0],
              file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
