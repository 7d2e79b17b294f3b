"""The CLI contract a CI user relies on: typos are errors, flags win, output is stable."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import FIXTURES

HUBERT = FIXTURES / "where_broadcast/hubert_extract_features_op17_fp32.onnx"
STRIPPED = FIXTURES / "truncated_graph/hubert_stripped_initializer_op17.onnx"


def test_unknown_codes_are_usage_errors(cli, tmp_path: Path) -> None:
    res = cli("lint", str(HUBERT), "--select", "XX999")
    assert res.returncode == 2 and "XX999" in res.stderr
    (tmp_path / "pyproject.toml").write_text('[tool.onnxfix]\nselect = ["WB999"]\n')
    res = cli("lint", str(HUBERT), cwd=tmp_path)
    assert res.returncode == 2 and "WB999" in res.stderr
    assert cli("lint", str(HUBERT), "--select", "ALL").returncode == 1
    res = cli("rule", "XX999")
    assert res.returncode == 2 and "no rule 'XX999'" in res.stderr


def test_broken_pyproject_is_an_error_naming_file_and_line(cli, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.onnxfix]\nselect = ["WB"]\nignore = = 3\n')
    res = cli("lint", str(HUBERT), cwd=tmp_path)
    assert res.returncode == 2 and "pyproject.toml" in res.stderr and "line" in res.stderr


def test_command_line_select_wins_over_config_ignore(cli, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent("""
        [tool.onnxfix]
        ignore = ["WB102"]
    """)
    )
    res = cli("lint", str(HUBERT), "--select", "WB102", "--format", "json", cwd=tmp_path)
    assert [f["rule"] for f in json.loads(res.stdout)["files"][0]["findings"]] == ["WB102"]


def test_paths_are_never_markup(cli, tmp_path: Path) -> None:
    folder = tmp_path / "[v2] [" / "b] été #1 %"  # the path holds "[/b]"
    folder.mkdir(parents=True)
    model = folder / "model.onnx"
    shutil.copy(HUBERT, model)
    res = cli("lint", str(model))
    assert res.returncode == 1 and str(model) in res.stdout
    out = folder / "fixed.onnx"
    res = cli("repair", str(model), str(out))
    assert res.returncode == 0 and str(out) in res.stdout, res.stderr
    res = cli("check", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(cli("lint", str(model), "--format", "sarif").stdout)
    uri = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert " " not in uri["uri"] and "#" not in uri["uri"] and uri["uri"].isascii()
    assert "%5B" in uri["uri"]
    rule = cli("rule", "WB102")
    assert "x[mask] = v" in rule.stdout


def test_output_does_not_depend_on_hash_seeds(tmp_path: Path) -> None:
    outputs = set()
    for seed in ("0", "1", "2", "42", "1000", "31337"):
        env = dict(os.environ, PYTHONHASHSEED=seed, COLUMNS="200")
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "onnxfix",
                "lint",
                str(STRIPPED),
                str(HUBERT),
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        outputs.add(res.stdout)
    assert len(outputs) == 1


def test_lint_a_directory_counts_unreadable_files(cli, tmp_path: Path) -> None:
    shutil.copy(HUBERT, tmp_path / "a.onnx")
    (tmp_path / "sub").mkdir()
    shutil.copy(HUBERT, tmp_path / "sub" / "b.onnx")
    (tmp_path / "sub" / "broken.onnx").write_bytes(b"not a model")
    res = cli("lint", str(tmp_path))
    assert res.returncode == 2
    assert "3 files checked (1 unreadable)" in res.stdout and "broken.onnx" in res.stdout
    doc = json.loads(cli("lint", str(tmp_path), "--format", "json").stdout)
    assert len(doc["files"]) == 3 and any("error" in f for f in doc["files"])
    sarif = json.loads(cli("lint", str(tmp_path), "--format", "sarif").stdout)
    notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert len(notes) == 1 and "broken.onnx" in notes[0]["message"]["text"]
    empty = tmp_path / "empty"
    empty.mkdir()
    res = cli("lint", str(empty))
    assert res.returncode == 2 and "no .onnx file" in res.stderr and res.stdout == ""


def test_dry_run_exits_1_when_something_would_change(cli, tmp_path: Path) -> None:
    res = cli("repair", str(HUBERT), "--dry-run")
    assert res.returncode == 1 and "would fix WB102" in res.stdout
    clean = FIXTURES / "where_broadcast/masked_fill_unsqueezed_op17.onnx"
    assert cli("repair", str(clean), "--dry-run").returncode == 0


def test_github_output_ends_with_a_summary(cli) -> None:
    res = cli("lint", str(HUBERT), "--format", "github")
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("::notice title=onnxfix summary::") and "WB102 x1" in last


def test_explain_says_why_a_rule_did_not_fire(cli) -> None:
    fixed_like = FIXTURES / "where_broadcast/masked_fill_unsqueezed_op17.onnx"
    res = cli("lint", str(fixed_like), "--explain", "WB102")
    assert res.returncode == 0
    assert "WB102 did not fire at /Where (Where): the operands broadcast" in res.stdout
    res = cli("lint", str(HUBERT), "--explain", "where-mask-left-aligned")
    assert res.returncode == 1 and "WB102 fired at /encoder/Where (Where)" in res.stdout
    assert cli("lint", str(HUBERT), "--explain", "NOPE").returncode == 2


def test_explain_of_a_whole_graph_rule_does_not_contradict_itself(cli) -> None:
    """WB103 names the op types it reports on but decides over the whole graph: it has no
    per-node reasons, so a node it fired at is never also one it "did not fire at"; a
    finding it cannot fix says why."""
    model = FIXTURES / "trace_baked/baked_numpy_mask_op17.onnx"
    res = cli("lint", str(model), "--explain", "WB103")
    assert "WB103 fired at /Where (Where); no fix here: only a size" in res.stdout
    assert "did not fire" not in res.stdout
    assert "WB103 looks at whole graphs" in res.stdout


# --- conventions users bring from ruff ------------------------------------------------------


def test_exit_zero_and_quiet(cli) -> None:
    res = cli("lint", str(HUBERT), "--exit-zero")
    assert res.returncode == 0 and "WB102 error" in res.stdout
    quiet = cli("lint", str(HUBERT), "-q")
    assert quiet.returncode == 1
    assert "WB102 error" in quiet.stdout and "file checked" not in quiet.stdout
    assert "file checked" in cli("lint", str(HUBERT)).stdout
    # --exit-zero never hides a file that could not be read
    res = cli("lint", str(HUBERT), str(HUBERT.with_suffix(".npz")), "--exit-zero")
    assert res.returncode == 2


def test_statistics_counts_per_rule(cli) -> None:
    folder = FIXTURES / "where_broadcast"
    res = cli("lint", str(folder), "--statistics")
    assert res.returncode == 1
    rows = [line.split() for line in res.stdout.splitlines()[:-1]]
    counts = {r[1]: int(r[0]) for r in rows}
    doc = json.loads(cli("lint", str(folder), "--format", "json").stdout)
    want: dict[str, int] = {}
    for f in doc["files"]:
        for finding in f["findings"]:
            want[finding["rule"]] = want.get(finding["rule"], 0) + 1
    assert counts == want
    stats = json.loads(cli("lint", str(folder), "--statistics", "--format", "json").stdout)
    assert {s["code"]: s["count"] for s in stats["statistics"]} == want
    assert cli("lint", str(folder), "--statistics", "--format", "sarif").returncode == 2


def test_output_file_holds_the_report(cli, tmp_path: Path) -> None:
    out = tmp_path / "report.sarif"
    res = cli("lint", str(HUBERT), "--format", "sarif", "-o", str(out))
    assert res.returncode == 1 and res.stdout == ""
    doc = json.loads(out.read_text())
    assert doc["runs"][0]["results"][0]["ruleId"] == "WB102"
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # readable like any new file
    assert [p.name for p in tmp_path.iterdir()] == ["report.sarif"]
    res = cli("lint", str(HUBERT), "-o", str(tmp_path / "missing" / "r.txt"))
    assert res.returncode == 2 and "--output-file" in res.stderr


def test_config_file_and_isolated(cli, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.onnxfix]\nignore = ["WB"]\n')
    assert cli("lint", str(HUBERT), cwd=tmp_path).returncode == 0  # the config ignores WB
    assert cli("lint", str(HUBERT), "--isolated", cwd=tmp_path).returncode == 1
    other = tmp_path / "strict.toml"
    other.write_text('select = ["WB102"]\nseverity = { WB102 = "warning" }\n')
    res = cli("lint", str(HUBERT), "--config", str(other), cwd=tmp_path)
    assert res.returncode == 0 and "WB102 warning" in res.stdout
    res = cli("lint", str(HUBERT), "--config", str(other), "--isolated")
    assert res.returncode == 2  # one or the other


def test_color_always_and_never(cli) -> None:
    always = cli("lint", str(HUBERT), "--color", "always").stdout
    never = cli("lint", str(HUBERT), "--color", "never").stdout
    assert "\x1b[" in always and "\x1b[" not in never
    assert "WB102" in never


def test_check_takes_several_models_and_jobs(cli, tmp_path: Path) -> None:
    good = tmp_path / "good.onnx"
    assert cli("repair", str(HUBERT), str(good)).returncode == 0
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    res = cli("check", str(good), str(HUBERT), "-j", "2")
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"{good}: PASS" in res.stdout and f"{HUBERT}: FAIL" in res.stdout
    assert "2 models checked: 1 passed, 1 failed, 0 could not be verified" in res.stdout
    res = cli("check", str(good), str(junk), "--format", "json")
    assert res.returncode == 2
    doc = json.loads(res.stdout)
    assert [c["passed"] for c in doc["checks"]] == [True]
    assert doc["unreadable"][0]["path"] == str(junk)
    sarif = json.loads(cli("check", str(good), str(junk), "--format", "sarif").stdout)
    notes = sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert any(str(junk.name) in n["message"]["text"] or "junk" in json.dumps(n) for n in notes)


def test_every_command_and_flag_has_help_and_examples(cli) -> None:
    for command in ("lint", "repair", "check", "shapes", "rules", "rule"):
        text = cli(command, "--help").stdout
        assert "examples:\n  onnxfix " + command in text, command
        # argparse prints a flag without help as its bare name: every option line says more
        lines = text.split("options:", 1)[1].split("examples:", 1)[0].splitlines()
        for i, line in enumerate(lines):
            if line.startswith("  -") and len(line.split()) <= 3 and len(line) < 24:
                nxt = lines[i + 1] if i + 1 < len(lines) else ""
                assert nxt.startswith(" " * 10), (command, line)


def test_long_work_reports_its_phases(tmp_path: Path) -> None:
    """The status line on a terminal shows the phase being run (onnxfix.progress); the
    API and piped output show nothing."""
    from onnxfix import api, progress

    seen: list[str] = []
    model = tmp_path / "in.onnx"
    import onnx

    onnx.save(onnx.load(str(HUBERT)), str(model), save_as_external_data=True, location="w.data")
    with progress.listening(seen.append):
        res = api.repair(model, tmp_path / "out.onnx")
    assert res.written
    assert seen[:2] == ["reading the graph", "analysing and fixing"]
    copies = [p for p in seen if p.startswith("copying weights (")]
    # the copy starts in the background once a fix is found; the line says how far it got
    assert re.fullmatch(r"copying weights \(\d+ of \d+ MB\)", copies[0]), copies
    assert copies[-1].split("(")[1].split(" of ")[0] == copies[-1].split(" of ")[1][:-4]
    assert seen.index("verifying: checker and strict shape inference") < seen.index(
        "verifying: onnxruntime load and 2 probe run(s)"
    )
    progress.phase("nobody listens")  # no listener: nothing happens


def test_findings_are_grouped_under_their_file(cli) -> None:
    """eslint's layout: the path once, its findings indented below; piped output keeps a
    finding on one line whatever its length (terminals wrap at word boundaries)."""
    many = FIXTURES / "repeat_pattern/wenet_gqa_torch201_op13.onnx"
    res = cli("lint", str(many), str(HUBERT))
    lines = res.stdout.splitlines()
    assert lines.count(str(many)) == 1 and lines.count(str(HUBERT)) == 1
    findings = [line for line in lines if line.startswith("  [main] ")]
    assert len(findings) >= 5
    assert not any(str(many) in line for line in findings)
    where = next(line for line in findings if "WB102 error" in line)
    assert where.rstrip().endswith("B == T (or one is 1)")  # the whole message, one line


def test_workers_split_by_bytes_and_a_dead_worker_is_made_up_for(tmp_path: Path) -> None:
    """``-j``: each file is done exactly once, results come back in the given order, and a
    worker that dies has its files done by the parent (no result is lost or invented)."""
    from onnxfix import cli

    parent = os.getpid()
    paths = []
    for i, size in enumerate([5000, 10, 10, 3000, 10, 2500]):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"x" * size)
        paths.append(str(p))
    shares = cli._shares(paths, 2)
    assert sorted(i for s in shares for i in s) == list(range(6))
    assert [sum(os.path.getsize(paths[i]) for i in s) for s in shares] == [5020, 5510]

    def task(p: str) -> tuple[str, bool]:
        if p.endswith("f3") and os.getpid() != parent:
            os._exit(3)  # the worker holding f3 (not the parent's share) dies
        return p, os.getpid() == parent

    got = cli._in_workers(task, paths, 2)
    assert [p for p, _ in got] == paths
    assert 3 in shares[1] and 0 in shares[0]
    assert all(here for _, here in got), "the dead worker's whole share was done here"

    def fine(p: str) -> tuple[str, bool]:
        return p, os.getpid() == parent

    got = cli._in_workers(fine, paths, 2)
    assert [p for p, _ in got] == paths
    assert [here for _, here in got] == [i in shares[0] for i in range(6)]


def test_names_are_printed_as_they_are(cli, tmp_path: Path) -> None:
    """Names with rich's emoji or markup syntax are printed literally: a file named
    ':smile:.onnx' was shown with a smiley."""
    import onnx

    from tests.models import mask_where

    m = mask_where(["B", "T", 4], 2, 17)
    m.graph.node[0].name = "/:smile:/[bold]x[/bold]/Where"  # its scope line too
    path = tmp_path / ":smile:[b].onnx"
    onnx.save(m, str(path))
    res = cli("lint", str(path))
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert lines[0] == str(path), lines
    assert "PyTorch scope: :smile:/[bold]x[/bold]" in res.stdout, res.stdout


def test_a_reader_that_goes_away_leaves_the_exit_code_alone(tmp_path: Path) -> None:
    """``onnxfix lint ... | head``: once the reader has closed the pipe the rest of the
    report is dropped, with no "internal error", and the command ends with its own exit
    code (1: errors found; a repair whose report is cut short still wrote its file)."""
    models = sorted(str(p) for p in (FIXTURES / "library").glob("*.onnx"))

    def cut_short(*args: str) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "onnxfix", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(20)
        proc.stdout.close()  # as `head -c 20` does
        err = proc.stderr.read()
        proc.wait(timeout=300)
        return subprocess.CompletedProcess(args, proc.returncode, b"", err)

    for fmt in ("text", "json", "sarif"):
        res = cut_short("lint", "--format", fmt, *models)
        assert res.returncode == 1, (fmt, res.stderr)
        assert b"internal error" not in res.stderr, (fmt, res.stderr)
    out = tmp_path / "fixed.onnx"
    res = cut_short("repair", "--diff", str(HUBERT), str(out))
    assert res.returncode == 0 and out.exists(), res.stderr
    assert b"internal error" not in res.stderr
