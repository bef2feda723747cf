"""The plain-text progress bar ``handgrad certify`` draws on stderr.

It counts architectures (jobs), which are known before the run, and the cases certified so far,
which are not: every architecture runs its traps (how many depends on its widths and loss) before
the ``--examples`` drawn cases, and undecided draws are redrawn. Within a job run in this process
the bar also moves by the job's own progress (``certify_backward``'s ``progress(done, total)``).
"""

from __future__ import annotations

import shutil
from typing import TextIO

__all__: list[str] = []


class _Progress:
    """``[#####.....]   3/51 architectures,   40 cases  label`` on a stream (None: draw nothing)."""

    def __init__(self, jobs: int, stream: TextIO | None, width: int = 28) -> None:
        self.jobs = max(jobs, 1)
        self.stream = stream
        self.width = width
        self.jobs_done = 0
        self.cases = 0
        self.in_job = (0, 1)
        self.label = ""
        self._last = ""

    def job(self, label: str) -> None:
        """A job starts (in this process): its label, no progress in it yet."""
        self.in_job = (0, 1)
        self.label = label
        self.draw()

    def update(self, done_in_job: int, total_in_job: int) -> None:
        """``certify_backward``'s progress callback: ``done_in_job`` of ``total_in_job`` cases."""
        self.in_job = (done_in_job, max(total_in_job, 1))
        self.draw()

    def finish_job(self, cases: int, label: str | None = None) -> None:
        """A job ended with ``cases`` cases run (its certificate's count)."""
        self.jobs_done += 1
        self.cases += cases
        self.in_job = (0, 1)
        if label is not None:
            self.label = label
        self.draw()

    def line(self) -> str:
        done, total = self.in_job
        frac = min((self.jobs_done + done / total) / self.jobs, 1.0)
        fill = round(frac * self.width)
        return (f"[{'#' * fill}{'.' * (self.width - fill)}] {self.jobs_done:>3}/{self.jobs} architectures, "
                f"{self.cases + done:>4} cases  {self.label}")

    def draw(self) -> None:
        if self.stream is None:
            return
        line = self.line()[:max(40, shutil.get_terminal_size((100, 24)).columns - 1)]  # one line: \r redraws it
        if line != self._last:
            self.stream.write("\r" + line.ljust(len(self._last)))
            self.stream.flush()
            self._last = line

    def close(self) -> None:
        if self.stream is not None and self._last:
            self.stream.write("\r" + " " * len(self._last) + "\r")
            self.stream.flush()
