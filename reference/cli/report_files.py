"""The report files of ``handgrad certify``: ``handgrad-report.md``, ``.json`` and ``.png``."""

from __future__ import annotations

import argparse
import json
import math
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import handgrad as hg

if TYPE_CHECKING:
    from .certify_cmd import _Subject

__all__ = ["REPORT_STEM"]

REPORT_STEM = "handgrad-report"


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.3g}"


def _demote(markdown: str) -> str:
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def _write_reports(report_dir: Path, subjects: Sequence[_Subject], args: argparse.Namespace, examples: int,
                   oracles: Sequence[str], seconds: float, ok: bool) -> tuple[list[Path], list[str]]:
    report_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path, png_path = (report_dir / f"{REPORT_STEM}.{ext}" for ext in ("md", "json", "png"))
    notes: list[str] = []
    written: list[Path] = []
    chart = False
    from .plot import matplotlib_available, plot_error_budget

    ratios = {s.name: s.ratios() for s in subjects if s.ratios()}
    if not ratios:
        notes.append("no per-tensor ratios to chart (no case was decided)")
    elif not matplotlib_available():
        notes.append("matplotlib is not installed: no chart (pip install 'handgrad[plots]')")
    else:
        plot_error_budget(ratios, png_path)
        chart = True
    command = "handgrad " + shlex.join(args.argv)
    settings = {"dtype": args.dtype, "examples_per_architecture": examples, "seed": args.seed,
                "oracles": list(oracles), "vary_shapes": bool(args.vary_shapes)}
    lines = ["# handgrad certification report", "",
             f"Command: `{command}` (handgrad {hg.__version__}).", "",
             f"Settings: {args.dtype}, {examples} hypothesis-drawn cases per architecture, seed {args.seed}, "
             f"oracles {', '.join(oracles)}; {seconds:.1f} s.", "",
             ("**Verdict: every subject is certified.**" if ok else
              "**Verdict: NOT certified** -- " + ", ".join(s.name for s in subjects if not s.ok) + "."), "",
             "| subject | architectures | cases | certified | inconclusive | worst err / budget | status |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for s in subjects:
        lines.append(f"| {s.name} | {len(s.archs)} | {s.cases} | {s.certified} | {s.inconclusive} | "
                     f"{_fmt_ratio(s.worst())} | {'certified' if s.ok else '**' + s.status + '**'} |")
    lines += ["", "A case is *certified* when the hand gradient agrees with every reference (SymPy closed "
              "forms, JAX, finite differences) within its derived rounding budget (`reference/tolerance.py`); "
              "*inconclusive* cases (a pre-activation within rounding reach of a kink, or oracles that "
              "disagree among themselves) are skipped, never counted as certified."]
    if chart:
        lines += ["", f"![worst error-to-budget ratio per tensor]({png_path.name})", "",
                  "Each bar is the worst |hand - reference| / budget over every case, reference and element "
                  "of that tensor; the dashed line is the budget (ratio 1)."]
    for s in subjects:
        lines += ["", f"## {s.name}", ""]
        for c in s.certificates:
            body = _demote(c.markdown()).splitlines()
            body[0] = f"### `{c.architecture}`: " + ("certified" if c.ok else "**NOT certified**")
            body = [line.removeprefix(f"`{c.architecture}`, ") for line in body]
            lines += [*body, ""]
    md_path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    data = {"tool": "handgrad", "version": hg.__version__, "command": command, "settings": settings, "ok": ok,
            "seconds": seconds,
            "subjects": [{"subject": s.name, "kind": s.kind, "status": s.status, "ok": s.ok,
                          "architectures": ["-".join(map(str, a[0])) + " " + "/".join(a[1]) + f", {a[2]}"
                                            + ("" if a[3] else " (unfused)") for a in s.archs],
                          "cases": s.cases, "certified": s.certified, "inconclusive": s.inconclusive,
                          "worst_ratio": s.worst(), "per_tensor_ratio": s.ratios(),
                          "certificates": [c.to_dict() for c in s.certificates]} for s in subjects],
            "chart": png_path.name if chart else None}
    json_path.write_text(json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    written += [md_path, json_path] + ([png_path] if chart else [])
    return written, notes

