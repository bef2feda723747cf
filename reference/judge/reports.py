"""The judge's reports: one case's :class:`Report` (with its :class:`TensorCheck` rows and
:class:`Mismatch` lines) and the :class:`Certificate` of a backward over many cases."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["Certificate", "Mismatch", "Report", "TensorCheck"]


@dataclass
class TensorCheck:
    """One comparison pair on one parameter tensor.

    ``max_abs`` is the largest |hand - reference|, ``max_rel`` that over the tensor's largest
    |reference| entry, ``ratio`` the largest |difference| / budget (above 1 is a mismatch), and
    ``worst`` the element (article notation) where that ratio is reached.
    """

    pair: str
    tensor: str
    max_abs: float
    max_rel: float
    ratio: float
    worst: str
    ok: bool
    n_bad: int = 0


@dataclass
class Mismatch:
    """The worst element of a failing tensor, with every source's value there."""

    pair: str
    tensor: str
    index: tuple[int, ...]
    element: str
    values: dict[str, float]
    budget: float
    ratio: float
    n_bad: int

    def sentence(self) -> str:
        vals = ", ".join(f"{k} = {v:.17g}" for k, v in self.values.items())
        return (f"{self.pair} disagree on dL/d{self.element} ({self.tensor}[{', '.join(map(str, self.index))}]): "
                f"{vals}; |difference| is {self.ratio:.3g} x its budget {self.budget:.3g}"
                f" ({self.n_bad} element{'s' if self.n_bad != 1 else ''} of {self.tensor} over budget)")


@dataclass
class Report:
    """The referee's verdict on one case. ``ok`` is True only for ``certified``."""

    architecture: str
    dtype: str
    m: int
    verdict: str
    checks: list[TensorCheck] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reproduce: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict == "certified"

    def tensors(self) -> list[str]:
        seen: list[str] = []
        for c in self.checks:
            if c.tensor not in seen:
                seen.append(c.tensor)
        return seen

    def per_tensor(self) -> dict[str, dict[str, float]]:
        """Per tensor: max abs and relative error and the worst error-to-budget ratio over pairs."""
        out: dict[str, dict[str, float]] = {}
        for c in self.checks:
            if not c.pair.startswith("hand"):
                continue
            d = out.setdefault(c.tensor, {"max_abs": 0.0, "max_rel": 0.0, "ratio": 0.0})
            d["max_abs"] = max(d["max_abs"], c.max_abs)
            d["max_rel"] = max(d["max_rel"], c.max_rel)
            d["ratio"] = max(d["ratio"], c.ratio)
        return out

    def text(self) -> str:
        lines = [f"{self.verdict.upper()}: {self.architecture}, {self.dtype}, batch m = {self.m}"]
        for mm in self.mismatches:
            lines.append("  error: " + mm.sentence())
        for n in self.notes:
            lines.append("  note: " + n)
        if self.checks:
            lines.append(f"  {'tensor':<7}{'pair':<28}{'max abs err':>13}{'max rel err':>13}{'err/budget':>12}")
            for c in self.checks:
                flag = "" if c.ok else "  <-- " + c.worst
                lines.append(f"  {c.tensor:<7}{c.pair:<28}{c.max_abs:>13.3e}{c.max_rel:>13.3e}{c.ratio:>12.3g}{flag}")
        if self.reproduce:
            lines.append("  reproduce: " + self.reproduce)
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"### {self.verdict}: `{self.architecture}`, {self.dtype}, m = {self.m}", ""]
        for mm in self.mismatches:
            lines.append(f"- **error**: {mm.sentence()}")
        for n in self.notes:
            lines.append(f"- note: {n}")
        if self.checks:
            lines += ["", "| tensor | pair | max abs err | max rel err | err / budget | ok |",
                      "|---|---|---:|---:|---:|---|"]
            for c in self.checks:
                lines.append(f"| {c.tensor} | {c.pair} | {c.max_abs:.3e} | {c.max_rel:.3e} | {c.ratio:.3g} | "
                             f"{'yes' if c.ok else 'NO: ' + c.worst} |")
        if self.reproduce:
            lines += ["", f"Reproduce: `{self.reproduce}`"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return _jsonable(d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        return self.text()


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    return x


@dataclass
class Certificate:
    """The outcome of certifying one backward over many cases."""

    subject: str
    architecture: str
    dtype: str
    oracles: tuple[str, ...]
    cases: int = 0
    certified: int = 0
    inconclusive: int = 0
    per_tensor: dict[str, dict[str, float]] = field(default_factory=dict)
    failure: Report | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None and self.certified > 0

    def add(self, report: Report) -> None:
        self.cases += 1
        if report.verdict == "inconclusive":
            self.inconclusive += 1
            return
        if report.ok:
            self.certified += 1
            for k, d in report.per_tensor().items():
                agg = self.per_tensor.setdefault(k, {"max_abs": 0.0, "max_rel": 0.0, "ratio": 0.0})
                for key in agg:
                    agg[key] = max(agg[key], d[key])
        for n in report.notes:
            if n not in self.notes and len(self.notes) < 10 and report.ok:
                self.notes.append(n)

    def text(self) -> str:
        status = "CERTIFIED" if self.ok else "NOT CERTIFIED"
        lines = [f"{status}: {self.subject} on {self.architecture}, {self.dtype}",
                 f"  {self.cases} cases drawn: {self.certified} certified, {self.inconclusive} inconclusive "
                 f"(skipped), oracles {', '.join(self.oracles)}, {self.seconds:.1f} s"]
        if self.per_tensor:
            lines.append(f"  {'tensor':<8}{'max abs err':>13}{'max rel err':>13}{'worst err/budget':>18}")
            for k, d in self.per_tensor.items():
                lines.append(f"  {k:<8}{d['max_abs']:>13.3e}{d['max_rel']:>13.3e}{d['ratio']:>18.3g}")
        for n in self.notes:
            lines.append("  note: " + n)
        if self.failure is not None:
            lines.append("  The smallest failing case hypothesis found:")
            lines += ["    " + line for line in self.failure.text().splitlines()]
        elif self.certified == 0:
            lines.append("  no case could be decided: nothing is certified")
        return "\n".join(lines)

    def markdown(self) -> str:
        status = "certified" if self.ok else "**NOT certified**"
        lines = [f"## {self.subject}: {status}", "",
                 f"`{self.architecture}`, {self.dtype}; {self.cases} cases, {self.certified} certified, "
                 f"{self.inconclusive} inconclusive; oracles: {', '.join(self.oracles)}; {self.seconds:.1f} s", ""]
        if self.per_tensor:
            lines += ["| tensor | max abs err | max rel err | worst err / budget |", "|---|---:|---:|---:|"]
            lines += [f"| {k} | {d['max_abs']:.3e} | {d['max_rel']:.3e} | {d['ratio']:.3g} |"
                      for k, d in self.per_tensor.items()]
        for n in self.notes:
            lines.append(f"- note: {n}")
        if self.failure is not None:
            lines += ["", self.failure.markdown()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "architecture": self.architecture, "dtype": self.dtype,
                "oracles": list(self.oracles), "ok": self.ok, "cases": self.cases,
                "certified": self.certified, "inconclusive": self.inconclusive,
                "per_tensor": self.per_tensor, "notes": self.notes, "seconds": self.seconds,
                "failure": self.failure.to_dict() if self.failure is not None else None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        return self.text()
