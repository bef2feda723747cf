"""The report files of ``handgrad certify``: ``handgrad-report.md``, ``.json`` and ``.png``.

The Markdown and the JSON are the run's :class:`~handgrad.reference.judge.reports.RunSummary`
rendered (one ``to_dict``, see Note [One dict per report] in :mod:`handgrad.reference.judge.reports`);
this module only decides the file names, draws the chart and writes the files. What the run
declared beyond the architecture (the user's conventions, the policy, the quorum: see
:mod:`handgrad.reference.cli.declarations`) is added by :class:`DeclaredRunSummary`, to the JSON's
``settings`` and under the Markdown's settings line, and sealed in the same hash.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..judge.reports import RunSummary, content_hash

__all__ = ["REPORT_STEM", "DeclaredRunSummary", "ReportDirError", "check_report_dir", "report_paths",
           "write_reports"]

REPORT_STEM = "handgrad-report"


class ReportDirError(ValueError):
    """A report folder that cannot be written; the message is one sentence naming ``--report-dir``."""


@dataclass
class DeclaredRunSummary(RunSummary):
    """A :class:`RunSummary` that also says what the run declared: ``declared`` (the
    :meth:`~handgrad.reference.cli.declarations.Declared.to_dict` of the run) goes into
    ``settings["declared"]`` of the JSON, sealed by the same ``sha256``; ``declared_text`` (one line,
    empty when only defaults were used) is printed under the Markdown's settings line."""

    declared: dict[str, Any] = field(default_factory=dict)
    declared_text: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.declared:
            d["settings"]["declared"] = self.declared
            d["sha256"] = content_hash(d)
        return d

    def markdown(self) -> str:
        text = super().markdown()
        if not self.declared_text:
            return text
        head, sep, rest = text.partition("\nSettings: ")
        line, _, tail = rest.partition("\n")
        return f"{head}{sep}{line}\n\nDeclared: {self.declared_text}.\n{tail}"


def check_report_dir(text: str) -> Path:
    """The report folder ``text``, created if missing and shown to be writable by creating (and
    removing) a temporary file in it, *before* a run starts; existing report files must be writable
    too. Raises :class:`ReportDirError` saying why not."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ReportDirError(f"--report-dir {text!r} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".handgrad-write-check-"):
            pass
    except OSError as exc:
        raise ReportDirError(f"--report-dir {text!r} cannot be written ({_reason(exc)}); choose another "
                             "folder, or --no-report") from None
    for p in report_paths(path):
        if p.exists() and (not p.is_file() or not os.access(p, os.W_OK)):
            raise ReportDirError(f"--report-dir {text!r}: {p.name} exists and cannot be overwritten")
    return path


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def report_paths(report_dir: Path) -> tuple[Path, Path, Path]:
    """The Markdown, JSON and PNG paths of a report in ``report_dir``."""
    md, js, png = (report_dir / f"{REPORT_STEM}.{ext}" for ext in ("md", "json", "png"))
    return md, js, png


def write_reports(report_dir: Path, summary: RunSummary) -> tuple[list[Path], list[str]]:
    """Write the chart (when matplotlib is there and a case was decided), then the Markdown and JSON
    of ``summary`` (whose ``chart`` is set to the chart's file name) into ``report_dir``, created if
    missing. Returns the paths written and notes on what was left out. ``OSError`` propagates."""
    report_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path, png_path = report_paths(report_dir)
    summary.chart = None
    notes: list[str] = []
    chart = _write_chart(summary, png_path, notes)
    if chart:
        summary.chart = png_path.name
    md_path.write_text(summary.markdown(), encoding="utf-8")
    json_path.write_text(summary.to_json() + "\n", encoding="utf-8")
    return [md_path, json_path] + ([png_path] if chart else []), notes


def _write_chart(summary: RunSummary, png_path: Path, notes: list[str]) -> bool:
    from .plot import matplotlib_available, plot_error_budget

    ratios = {s.name: s.ratios() for s in summary.subjects if s.ratios()}
    if not ratios:
        notes.append("no per-tensor ratios to chart (no case was decided)")
        return False
    if not matplotlib_available():
        notes.append("matplotlib is not installed: no chart (pip install 'handgrad[plots]')")
        return False
    plot_error_budget(ratios, png_path)
    return True
