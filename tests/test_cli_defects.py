"""The CLI's known defects (issue 9, item 7), one test each: every one failed before its fix."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from handgrad.reference.cli import main

TESTS = Path(__file__).resolve().parent
USER = ["--backward", "user_backward_example:correct", "--arch", "2-2-1", "--activation", "sigmoid"]


@pytest.fixture
def in_tests_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from tests/ (where the user modules live), restoring sys.path and sys.modules after."""
    monkeypatch.chdir(TESTS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("user_backward_example", "user_plugin_example"):
        if name in sys.modules:
            monkeypatch.delitem(sys.modules, name)
    return TESTS


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
    assert legend.startswith("certified: your backward user_backward_example:correct (not handgrad's), "
                             "against SymPy, JAX;"), legend
    assert "worst err/budget: the largest |hand - reference| / derived rounding budget" in legend
    assert main(["certify", "--losses", "squared_error", "--examples", "1", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "certified: handgrad's own backward for each activation and loss above, against SymPy, JAX, " \
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
