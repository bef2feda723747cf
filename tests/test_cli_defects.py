"""The CLI's known defects (issue 9, item 7), one test each: every one failed before its fix."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from handgrad.reference.cli import main

TESTS = Path(__file__).resolve().parent
USER = ["--backward", "user_backward_example:correct", "--arch", "2-2-1", "--activation", "sigmoid"]


def _one_line_error(err: str, *pieces: str) -> None:
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("handgrad certify: error: "), err
    for piece in pieces:
        assert piece in err, err


# -- --report-dir ----------------------------------------------------------------------------------

def test_unwritable_report_dir_is_refused_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder below a regular file cannot be created (even by root): exit 2 before any case runs."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    rc = main(["certify", "--losses", "squared_error", "--examples", "1", "--report-dir", str(blocker / "reports")])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    _one_line_error(captured.err, "--report-dir", "cannot be written")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_report_dir_is_refused_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        rc = main(["certify", "--losses", "squared_error", "--examples", "1", "--report-dir", str(locked)])
    finally:
        locked.chmod(0o700)
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    _one_line_error(captured.err, "cannot be written")


def test_a_report_that_fails_at_the_end_loses_no_result(in_tests_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The folder passes the check, then the disk refuses the files: the table and the verdict are
    printed already, the error is one line, the exit code is 2."""
    import handgrad.reference.cli.certify_cmd as certify_cmd

    def refuse(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(certify_cmd, "write_reports", refuse)
    rc = main(["certify", *USER, "--examples", "2", "--report-dir", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 2
    assert "user_backward_example:correct" in captured.out and "CERTIFIED: all 1 subject(s)" in captured.out
    _one_line_error(captured.err, "results above are complete", "No space left on device")


# -- the console's legend ------------------------------------------------------------------------

def test_the_table_says_what_was_certified_and_what_the_ratio_means(in_tests_dir: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certify", *USER, "--examples", "2", "--no-report", "--oracles", "sympy,jax"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("user_backward_example:correct"))
    legend = lines[row + 1]
    assert legend.startswith("checked: your backward user_backward_example:correct (not handgrad's), "
                             "against SymPy, JAX;"), legend
    assert "worst err/budget: the largest |hand - reference| / derived rounding budget" in legend
    assert main(["certify", "--losses", "squared_error", "--examples", "1", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "checked: handgrad's own backward for each activation and loss above, against SymPy, JAX, " \
           "finite differences;" in out


# -- a reader that goes away (| head) ----------------------------------------------------------

@pytest.mark.parametrize("argv", [["demo"], ["demo", "--steps", "5000", "--print-every", "1"]],
                         ids=["flush-at-exit", "while-printing"])
def test_a_closed_pipe_ends_quietly(argv: list[str]) -> None:
    """``handgrad demo | head -1``: the reader closes the pipe after one line (or before any); the
    command ends with 141 (128 + SIGPIPE) and no traceback, at exit or in the middle of its output."""
    import subprocess

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with subprocess.Popen([sys.executable, "-m", "handgrad.reference.cli", *argv], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        if len(argv) > 1:
            assert proc.stdout.readline().startswith(b"iteration   0")
        proc.stdout.close()
        err = proc.stderr.read().decode()
        rc = proc.wait(timeout=120)
    assert rc == 141, err
    assert err == "", err


# -- limits: --jobs, --examples, demo --steps ----------------------------------------------------

def test_jobs_above_the_cores_are_capped_with_a_warning(in_tests_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import handgrad.reference.cli.limits as limits

    monkeypatch.setattr(limits, "usable_cores", lambda: 1)  # one core: the capped run stays in-process
    assert main(["certify", *USER, "--examples", "2", "--no-report", "--jobs", "64", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err == ("handgrad certify: warning: --jobs 64 is more than the 1 core(s) this process may use; "
                   "using 1 worker(s)\n"), err
    assert limits.cap_jobs(2, cores=4) == (2, None)
    assert limits.cap_jobs(9, cores=4)[0] == 4


@pytest.mark.parametrize(("argv", "pieces"), [
    (["certify", "--examples", "1000000000"], ["needs --long", "years", "at ~0.05 s a case"]),
    (["certify", *USER, "--examples", "200000"], ["200,000 cases (200,000 on each of 1 architecture(s))",
                                                  "at least 2.8 h", "needs --long"]),
    (["demo", "--steps", "100000000"], ["--steps 100000000 would take about", "GB of trajectory",
                                        "at most 1,000,000 steps"]),
], ids=["examples-billion", "examples-user", "demo-steps"])
def test_huge_runs_are_refused_with_an_estimate(argv: list[str], pieces: list[str], in_tests_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err and captured.err.count("\n") == 1
    for piece in pieces:
        assert piece in captured.err, captured.err


def test_long_allows_a_large_run_and_estimates_it() -> None:
    from handgrad.reference.cli.limits import MAX_CASES, UsageError, check_case_count

    assert check_case_count(10, 3, 1, long=False) is None  # 1.5 s: nothing to say
    with pytest.raises(UsageError, match="needs --long"):
        check_case_count(MAX_CASES, 2, 1, long=False)
    note = check_case_count(MAX_CASES, 2, 2, long=True)
    assert note == "200,000 cases (100,000 on each of 2 architecture(s)), at least 83 min at ~0.05 s a case"


# -- the progress bar's labels ---------------------------------------------------------------------

def test_progress_labels_tell_fused_from_unfused(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The bce pool has tanh/sigmoid twice, fused and unfused: the bar names them apart, as the
    certificates do (on a terminal wide enough that the bar's line is not cut)."""
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["certify", "--losses", "bce", "--examples", "1", "--no-report", "--progress", "--jobs", "1",
                 "--oracles", "sympy,jax"]) == 0
    import re

    drawn = [m.group(1).strip() for part in capsys.readouterr().err.split("\r")
             if (m := re.match(r"\[[#.]+\]\s+\d+/\d+ architectures,\s+\d+ cases  (.*)", part)) is not None]
    labels = list(dict.fromkeys(drawn))
    assert labels == ["loss bce: 3-4-3 tanh/sigmoid, bce (fused)", "loss bce: 3-4-3 tanh/softmax, bce",
                      "loss bce: 3-4-3 tanh/sigmoid, bce"], labels


# -- prove: a function the exact arithmetic does not have ------------------------------------------

_PLUGIN = '''
import numpy as np
import handgrad as hg


def _definition(z, ops):
    return np.{fn}(z)


hg.register_activation(hg.Activation("{name}", _definition, lambda z: np.{fn}(z),
                                     derivative=lambda z, a: {derivative}))
'''


@pytest.mark.parametrize(("fn", "derivative", "says"), [
    ("floor", "0.0 * z", "np.floor is not supported by the exact arithmetic"),  # UnsupportedOperation
    ("sinc", "np.cos(np.pi * z) / z - np.sinc(z) / z", "uses np.sinc, which the proof's exact arithmetic"),
])
def test_prove_names_an_unsupported_function(fn: str, derivative: str, says: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A user's activation whose definition calls a numpy function the exact arithmetic lacks:
    one line naming it, exit 2 (not a TypeError traceback, exit 1, which reads as "not proved")."""
    import handgrad as hg

    name, module = f"user_{fn}", f"cli_defects_plugin_{fn}"
    (tmp_path / f"{module}.py").write_text(_PLUGIN.format(fn=fn, name=name, derivative=derivative))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        rc = main(["prove", "--import", module, "--arch", "2-2-1", "--activation", f"{name},identity"])
    finally:
        sys.modules.pop(module, None)
        if name in hg.activation_names():
            hg.unregister_activation(name)
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    err = captured.err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("handgrad prove: error: "), err
    assert f"cannot prove activation '{name}': " in err and says in err, err


# -- derive and prove default to the article's sigmoid --------------------------------------------

@pytest.mark.parametrize("command", [["derive", "--weight", "w_11^(2)"], ["prove", "--network-only"]])
def test_activation_defaults_to_the_articles_sigmoid(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command[0], "--arch", "2-3-1", *command[1:]]) == 0
    default = capsys.readouterr().out
    assert "2-3-1 sigmoid/sigmoid, squared_error" in default
    assert main([command[0], "--arch", "2-3-1", "--activation", "sigmoid", *command[1:]]) == 0
    explicit = capsys.readouterr().out
    strip = (lambda s: re.sub(r"[0-9.]+ s\b", "", s)) if command[0] == "prove" else (lambda s: s)
    assert strip(default) == strip(explicit)


# -- --help is light ---------------------------------------------------------------------------------

def test_help_imports_no_heavy_library() -> None:
    """``handgrad --help`` (and each command's) loads neither hypothesis, SymPy, JAX nor matplotlib:
    measured on ``sys.modules`` in a fresh interpreter."""
    import json
    import subprocess

    code = ("import contextlib, io, json, sys\n"
            "from handgrad.reference.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    codes = [main([*c, '--help']) for c in ([], ['certify'], ['derive'], ['prove'], ['demo'])]\n"
            "heavy = ('hypothesis', 'sympy', 'jax', 'matplotlib', 'mpmath', 'symengine')\n"
            "print(json.dumps([codes, sorted(m for m in sys.modules if m.split('.')[0] in heavy)]))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    codes, heavy = json.loads(run.stdout)
    assert codes == [0, 0, 0, 0, 0] and heavy == []


def test_chart_validates_ncols_with_the_shared_helper(tmp_path: Path) -> None:
    from handgrad.reference.cli.plot import plot_error_budget

    with pytest.raises(TypeError, match="ncols must be an int"):
        plot_error_budget({"s": {"W1": 0.1}}, tmp_path / "x.png", ncols=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ncols must be >= 1"):
        plot_error_budget({"s": {"W1": 0.1}}, tmp_path / "x.png", ncols=0)
