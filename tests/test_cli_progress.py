"""The progress bar counts what is known before the run (architectures) and what was run (cases,
traps included), never a total of cases it cannot know."""

from __future__ import annotations

import io

import pytest
from handgrad.reference.cli.progress import _Progress


def _last(stream: io.StringIO) -> str:
    return stream.getvalue().split("\r")[-1].rstrip()


def test_the_bar_counts_architectures_and_the_cases_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a terminal wide enough that the line is not cut
    out = io.StringIO()
    bar = _Progress(4, out, width=8)
    bar.job("loss bce: 3-4-3 tanh/sigmoid, bce (fused)")
    bar.update(8, 16)  # half of the first job, run here
    assert _last(out) == "[#.......]   0/4 architectures,    8 cases  loss bce: 3-4-3 tanh/sigmoid, bce (fused)"
    bar.finish_job(17)  # a redrawn case: the certificate's count, not the plan's
    bar.finish_job(15, "done: loss bce: 3-4-3 tanh/softmax, bce")  # a worker's job
    assert _last(out) == "[####....]   2/4 architectures,   32 cases  done: loss bce: 3-4-3 tanh/softmax, bce"
    bar.finish_job(16)
    bar.finish_job(16)
    assert _last(out).startswith("[########]   4/4 architectures,   64 cases")


def test_no_stream_draws_nothing() -> None:
    bar = _Progress(2, None)
    bar.job("x")
    bar.finish_job(3)
    bar.close()
    assert bar.cases == 3 and bar.jobs_done == 1
