"""The plain-text progress bar ``handgrad certify`` draws on stderr."""

from __future__ import annotations

import shutil
from typing import TextIO

__all__: list[str] = []


class _Progress:
    """A plain-text progress bar on a stream: ``[#####.....]  57/264  label``."""

    def __init__(self, total: int, stream: TextIO | None, width: int = 28) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.width = width
        self.base = 0
        self.done = 0
        self.label = ""
        self._last = ""

    def job(self, label: str) -> None:
        self.base = self.done
        self.label = label
        self.draw()

    def update(self, done_in_job: int, _total_in_job: int) -> None:
        self.done = self.base + done_in_job
        self.draw()

    def finish_job(self, examples: int) -> None:
        self.done = self.base + examples

    def draw(self) -> None:
        if self.stream is None:
            return
        frac = min(self.done / self.total, 1.0)
        fill = round(frac * self.width)
        line = f"[{'#' * fill}{'.' * (self.width - fill)}] {min(self.done, self.total):>4}/{self.total}  {self.label}"
        line = line[:max(40, shutil.get_terminal_size((100, 24)).columns - 1)]  # one terminal line: \r redraws it
        if line != self._last:
            self.stream.write("\r" + line.ljust(len(self._last)))
            self.stream.flush()
            self._last = line

    def close(self) -> None:
        if self.stream is not None and self._last:
            self.stream.write("\r" + " " * len(self._last) + "\r")
            self.stream.flush()

