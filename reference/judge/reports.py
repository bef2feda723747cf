r"""The judge's reports: one case (:class:`Report`), one backward over many cases
(:class:`Certificate`), and a whole command-line run (:class:`RunSummary`).

Note [One dict per report]: every class here has ONE ``to_dict()``; its text, Markdown and JSON
are all rendered from that dict (``to_json`` is ``json.dumps`` of it, ``text``/``markdown`` read
nothing else), so the three can never disagree. A container renders its parts from *their* dicts
at the heading level it needs (``markdown(level=...)``): nobody patches another object's
Markdown. :func:`jsonable` is the one conversion to JSON types (numpy scalars, tuples,
non-finite floats as strings).

Every top-level dict carries ``provenance`` (the handgrad, numpy, SymPy and JAX versions, read from
the installed metadata without importing SymPy or JAX; the call or command; the seed) and a
``sha256`` of its own content: the hash of its canonical JSON without the ``sha256`` field
(:func:`content_hash`), so a cited certificate can be checked for edits.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from handgrad.notation import code_name
from handgrad.validation import check_positive_int

from ..cases.architecture import Architecture

__all__ = [
    "Certificate",
    "Mismatch",
    "Report",
    "RunSummary",
    "SubjectResult",
    "TensorCheck",
    "architecture_label",
    "content_hash",
    "jsonable",
    "provenance",
    "worst_ratios",
]

_TRACKED = ("handgrad", "numpy", "sympy", "jax")

# ---------------------------------------------------------------------------------------------
# JSON, provenance, hashes
# ---------------------------------------------------------------------------------------------


def jsonable(x: Any) -> Any:
    """``x`` with only JSON types: dict keys as str, tuples as lists, numpy scalars and arrays as
    Python numbers and lists, non-finite floats as the strings ``"inf"``, ``"-inf"``, ``"nan"``."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


@lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str | None], ...]:
    out = []
    for dist in _TRACKED:
        try:
            out.append((dist, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            out.append((dist, None))
    return tuple(out)


def provenance(call: str = "", seed: int | None = None) -> dict[str, Any]:
    """Where a report came from: the installed versions of handgrad, numpy, SymPy and JAX (from the
    package metadata; SymPy and JAX are not imported), the ``call`` or command, and the ``seed``."""
    return {"versions": dict(_versions()), "call": call, "seed": seed}


def content_hash(d: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``d`` (sorted keys, no spaces) without its ``sha256`` key."""
    body = {k: v for k, v in d.items() if k != "sha256"}
    canonical = json.dumps(jsonable(body), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _sealed(d: dict[str, Any], call: str, seed: int | None) -> dict[str, Any]:
    d = jsonable({**d, "provenance": provenance(call, seed)})
    d["sha256"] = content_hash(d)
    return d


def _provenance_md(d: Mapping[str, Any], *, full: bool) -> str:
    prov = d["provenance"]
    parts = []
    if full:
        parts.append(", ".join(f"{k} {v}" for k, v in prov["versions"].items() if v is not None))
    if prov["call"]:
        parts.append(f"call `{prov['call']}`")
    if prov["seed"] is not None:
        parts.append(f"seed {prov['seed']}")
    parts.append(f"sha256 `{d['sha256']}`")
    return "Provenance: " + "; ".join(parts) + "."


def _heading(level: int, text: str) -> str:
    check_positive_int("level", level)
    if level > 6:
        raise ValueError(f"level must be a Markdown heading level 1..6, got {level!r}")
    return "#" * level + " " + text


def _tensor_key(name: str) -> tuple[int, int, str]:
    m = re.fullmatch(r"([WB])(\d+)", name)
    if m is None:
        return (10**6, 0, name)
    return (int(m.group(2)), 0 if m.group(1) == "W" else 1, name)


def _fmt_ratio(r: float | str | None) -> str:
    if r is None:
        return "-"
    return r if isinstance(r, str) else f"{r:.3g}"


# ---------------------------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------------------------


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

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


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
    label: str = ""
    """The element in the user's names and layout with the article's beside it
    (``dW1[3, 4] (the article's w_54^(1))``) when conventions were declared; empty otherwise."""
    user_tensor: str = ""
    """The tensor in the user's names (``dW1``, ``grads['weights'][0]``) when ``label`` is set."""

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))

    def sentence(self) -> str:
        return _mismatch_sentence(self.to_dict())


def _num(v: Any) -> str:
    return v if isinstance(v, str) else f"{v:.17g}"


def _mismatch_sentence(d: Mapping[str, Any]) -> str:
    vals = ", ".join(f"{k} = {_num(v)}" for k, v in d["values"].items())
    n, t = d["n_bad"], d["tensor"]
    label = d.get("label") or ""
    where = label if label else f"dL/d{d['element']} ({code_name(t, d['index'])})"
    tensor = d.get("user_tensor") or t
    return (f"{d['pair']} disagree on {where}: "
            f"{vals}; |difference| is {_fmt_ratio(d['ratio'])} x its budget {_fmt_ratio(d['budget'])}"
            f" ({n} element{'s' if n != 1 else ''} of {tensor} over budget)")


def _diagnosis_line(d: Mapping[str, Any]) -> str:
    """A diagnosis's dict (:meth:`~handgrad.reference.judge.diagnosis.Diagnosis.to_dict`) as one
    sentence: the likely cause, then its evidence in brackets."""
    nums = ", ".join(f"{k} {_fmt_evidence(v)}" for k, v in d["evidence"].items())
    return d["sentence"] + (f" [{nums}]" if nums else "")


def _fmt_evidence(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


@dataclass
class Report:
    """The referee's verdict on one case. ``ok`` is True only for ``certified``.

    ``call`` and ``seed`` are its provenance: how the case was made (the ``reproduce`` recipe when
    none is given) and the seed that drew it, when known.
    """

    architecture: str
    dtype: str
    m: int
    verdict: str
    checks: list[TensorCheck] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reproduce: str = ""
    call: str = ""
    seed: int | None = None
    masked: int = 0
    diagnoses: tuple[Any, ...] = ()
    """The likely causes of a failure (:class:`~handgrad.reference.judge.diagnosis.Diagnosis`),
    each one a hypothesis that explains it within the budget; empty when none does (nothing is
    invented) and on every certified case (a diagnosis is only sought after a mismatch)."""
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    """The provider's exception when the verdict is ``error`` (not rendered; the cause of a
    :class:`~handgrad.reference.CertificationError`)."""

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

    def to_dict(self) -> dict[str, Any]:
        d = {"architecture": self.architecture, "dtype": self.dtype, "m": self.m, "verdict": self.verdict,
             "ok": self.ok, "checks": [c.to_dict() for c in self.checks],
             "mismatches": [mm.to_dict() for mm in self.mismatches], "notes": list(self.notes),
             "reproduce": self.reproduce, "masked": self.masked,
             "diagnoses": [dg.to_dict() for dg in self.diagnoses]}
        return _sealed(d, self.call or self.reproduce, self.seed)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def text(self) -> str:
        return _report_text(self.to_dict())

    def markdown(self, level: int = 3) -> str:
        return _report_markdown(self.to_dict(), level, full=True)

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __str__(self) -> str:
        return self.text()


def _report_text(d: Mapping[str, Any]) -> str:
    lines = [f"{d['verdict'].upper()}: {d['architecture']}, {d['dtype']}, batch m = {d['m']}"]
    lines += ["  error: " + _mismatch_sentence(mm) for mm in d["mismatches"]]
    lines += ["  likely cause: " + _diagnosis_line(dg) for dg in d.get("diagnoses", [])]
    lines += ["  note: " + n for n in d["notes"]]
    if d["checks"]:
        lines.append(f"  {'tensor':<7}{'pair':<28}{'max abs err':>13}{'max rel err':>13}{'err/budget':>12}")
        for c in d["checks"]:
            flag = "" if c["ok"] else "  <-- " + c["worst"]
            lines.append(f"  {c['tensor']:<7}{c['pair']:<28}{_e(c['max_abs']):>13}{_e(c['max_rel']):>13}"
                         f"{_fmt_ratio(c['ratio']):>12}{flag}")
    if d["reproduce"]:
        lines.append("  reproduce: " + d["reproduce"])
    return "\n".join(lines)


def _e(v: float | str) -> str:
    return v if isinstance(v, str) else f"{v:.3e}"


def _report_markdown(d: Mapping[str, Any], level: int, *, full: bool) -> str:
    lines = [_heading(level, f"{d['verdict']}: `{d['architecture']}`, {d['dtype']}, m = {d['m']}"), ""]
    lines += [f"- **error**: {_mismatch_sentence(mm)}" for mm in d["mismatches"]]
    lines += [f"- **likely cause** ({dg['cause']}): {_diagnosis_line(dg)}" for dg in d.get("diagnoses", [])]
    lines += [f"- note: {n}" for n in d["notes"]]
    if d["checks"]:
        lines += ["", "| tensor | pair | max abs err | max rel err | err / budget | ok |",
                  "|---|---|---:|---:|---:|---|"]
        lines += [f"| {c['tensor']} | {c['pair']} | {_e(c['max_abs'])} | {_e(c['max_rel'])} | "
                  f"{_fmt_ratio(c['ratio'])} | {'yes' if c['ok'] else 'NO: ' + c['worst']} |" for c in d["checks"]]
    if d["reproduce"]:
        lines += ["", f"Reproduce: `{d['reproduce']}`"]
    lines += ["", _provenance_md(d, full=full)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# One backward over many cases
# ---------------------------------------------------------------------------------------------


@dataclass
class Certificate:
    """The outcome of certifying one backward over many cases.

    ``call`` and ``seed`` are its provenance: the ``certify_backward`` call that made it and its
    hypothesis seed (the same seed replays the same cases).
    """

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
    call: str = ""
    seed: int | None = None
    requested: int = 0
    random_decided: int = 0
    quorum: float = 0.0
    per_scale: dict[str, dict[str, int]] = field(default_factory=dict)
    traps: dict[str, str] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    decided: dict[str, list[Any]] = field(default_factory=dict)
    masked: int = 0
    """Gradient elements left unchecked in certified cases (near a kink, see the referee)."""

    @property
    def ok(self) -> bool:
        """No failing case, at least one certified case, and no refusal (a quorum not met, a
        requested scale or a trap with no decided case)."""
        return self.failure is None and self.certified > 0 and not self.refusals

    def tally(self, scale: str, outcome: str, *, shape: str = "", m: int = 0, labels: str = "") -> None:
        """Count one requested case at ``scale``: ``outcome`` is ``certified``, ``inconclusive``,
        ``outside`` (outside the oracles' domain) or a failure; a certified case also records its
        shape, batch size and label family among the decided ones."""
        row = self.per_scale.setdefault(scale, {"requested": 0, "decided": 0, "inconclusive": 0, "outside": 0})
        row["requested"] += 1
        key = {"certified": "decided", "inconclusive": "inconclusive", "outside": "outside"}.get(outcome)
        if key is not None:
            row[key] += 1
        if outcome == "certified":
            for name, value in (("shapes", shape), ("batch sizes", m), ("scales", scale), ("labels", labels)):
                seen = self.decided.setdefault(name, [])
                if value not in seen and value not in ("", 0):
                    seen.append(value)
                    seen.sort(key=lambda v: (isinstance(v, str), v))

    def add(self, report: Report) -> None:
        self.cases += 1
        if report.verdict == "inconclusive":
            self.inconclusive += 1
            return
        if report.ok:
            self.certified += 1
            self.masked += report.masked
            for k, d in report.per_tensor().items():
                agg = self.per_tensor.setdefault(k, {"max_abs": 0.0, "max_rel": 0.0, "ratio": 0.0})
                for key in agg:
                    agg[key] = max(agg[key], d[key])
        for n in report.notes:
            if n not in self.notes and len(self.notes) < 10 and report.ok:
                self.notes.append(n)

    def ratios(self) -> dict[str, float]:
        """Worst error-to-budget ratio per tensor (see :func:`worst_ratios`)."""
        return worst_ratios([self])

    def to_dict(self) -> dict[str, Any]:
        d = {"subject": self.subject, "architecture": self.architecture, "dtype": self.dtype,
             "oracles": list(self.oracles), "ok": self.ok, "cases": self.cases,
             "certified": self.certified, "inconclusive": self.inconclusive,
             "per_tensor": self.per_tensor, "notes": list(self.notes), "seconds": self.seconds,
             "requested": self.requested, "random_decided": self.random_decided, "quorum": self.quorum,
             "per_scale": self.per_scale,
             "traps": self.traps, "refusals": list(self.refusals), "decided": self.decided,
             "masked": self.masked,
             "failure": self.failure.to_dict() if self.failure is not None else None}
        return _sealed(d, self.call, self.seed)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def text(self) -> str:
        return _certificate_text(self.to_dict())

    def markdown(self, level: int = 2) -> str:
        return _certificate_markdown(self.to_dict(), level, in_subject=False)

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __str__(self) -> str:
        return self.text()


def _certificate_text(d: Mapping[str, Any]) -> str:
    status = "CERTIFIED" if d["ok"] else "NOT CERTIFIED"
    lines = [f"{status}: {d['subject']} on {d['architecture']}, {d['dtype']}",
             f"  {d['cases']} cases drawn: {d['certified']} certified, {d['inconclusive']} inconclusive "
             f"(skipped), oracles {', '.join(d['oracles'])}, {d['seconds']:.1f} s"]
    if d["per_tensor"]:
        lines.append(f"  {'tensor':<8}{'max abs err':>13}{'max rel err':>13}{'worst err/budget':>18}")
        for k, t in d["per_tensor"].items():
            lines.append(f"  {k:<8}{_e(t['max_abs']):>13}{_e(t['max_rel']):>13}{_fmt_ratio(t['ratio']):>18}")
    lines += ["  note: " + n for n in d["notes"]]
    lines += _design_text(d)
    if d["failure"] is not None:
        lines.append("  The smallest failing case hypothesis found:")
        lines += ["    " + line for line in _report_text(d["failure"]).splitlines()]
    elif d["certified"] == 0 and not d.get("refusals"):
        lines.append("  no case could be decided: nothing is certified")
    return "\n".join(lines)


def _design_rows(d: Mapping[str, Any]) -> list[tuple[str, int, int, int, int]]:
    return [(s, r["requested"], r["decided"], r["inconclusive"], r["outside"])
            for s, r in d.get("per_scale", {}).items()]


def _decided_line(d: Mapping[str, Any]) -> str:
    parts = [f"{k} {', '.join(map(str, v))}" for k, v in d.get("decided", {}).items() if v]
    return "decided: " + "; ".join(parts) if parts else ""


def _undecided_traps(d: Mapping[str, Any]) -> list[str]:
    return [t for t, v in d.get("traps", {}).items() if v != "certified"]


def _design_text(d: Mapping[str, Any]) -> list[str]:
    """The case design's part of a certificate: the per-scale table, the traps, what was decided,
    and why it is refused."""
    lines = []
    rows = _design_rows(d)
    if rows:
        lines.append(f"  {'scale':<17}{'requested':>10}{'decided':>9}{'inconclusive':>14}{'outside domain':>16}")
        lines += [f"  {s:<17}{r:>10}{dec:>9}{inc:>14}{out:>16}" for s, r, dec, inc, out in rows]
    traps = d.get("traps", {})
    if traps:
        und = _undecided_traps(d)
        lines.append(f"  traps: {len(traps) - len(und)} of {len(traps)} decided"
                     + (f" (undecided: {'; '.join(und)})" if und else ""))
    if _decided_line(d):
        lines.append("  " + _decided_line(d))
    if d.get("masked"):
        lines.append(f"  {d['masked']} gradient element(s) of certified cases masked near a kink (not checked)")
    lines += ["  refused: " + r for r in d.get("refusals", [])]
    return lines


def _design_markdown(d: Mapping[str, Any]) -> list[str]:
    rows = _design_rows(d)
    lines: list[str] = []
    if rows:
        lines += ["", "| scale | requested | decided | inconclusive | outside the domain |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {s} | {r} | {dec} | {inc} | {out} |" for s, r, dec, inc, out in rows]
    traps = d.get("traps", {})
    if traps:
        und = _undecided_traps(d)
        lines += ["", f"Traps: {len(traps) - len(und)} of {len(traps)} decided"
                  + (f" (undecided: {'; '.join(und)})." if und else ".")]
    if _decided_line(d):
        lines += ["", _decided_line(d)[0].upper() + _decided_line(d)[1:] + "."]
    if d.get("masked"):
        lines += ["", f"{d['masked']} gradient element(s) of certified cases masked near a kink (not checked)."]
    lines += [f"- **refused**: {r}" for r in d.get("refusals", [])]
    return lines


def _certificate_markdown(d: Mapping[str, Any], level: int, *, in_subject: bool) -> str:
    """A certificate at heading ``level``; ``in_subject``: under its subject's heading, titled by
    its architecture (the subject is the parent's title)."""
    status = "certified" if d["ok"] else "**NOT certified**"
    if in_subject:
        title, where = f"`{d['architecture']}`: {status}", ""
    else:
        title, where = f"{d['subject']}: {status}", f"`{d['architecture']}`, "
    lines = [_heading(level, title), "",
             f"{where}{d['dtype']}; {d['cases']} cases, {d['certified']} certified, "
             f"{d['inconclusive']} inconclusive; oracles: {', '.join(d['oracles'])}; {d['seconds']:.1f} s", ""]
    if d["per_tensor"]:
        lines += ["| tensor | max abs err | max rel err | worst err / budget |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {_e(t['max_abs'])} | {_e(t['max_rel'])} | {_fmt_ratio(t['ratio'])} |"
                  for k, t in d["per_tensor"].items()]
    lines += [f"- note: {n}" for n in d["notes"]]
    lines += _design_markdown(d)
    if d["failure"] is not None:
        lines += ["", _report_markdown(d["failure"], min(level + 1, 6), full=False)]
    lines += ["", _provenance_md(d, full=not in_subject)]
    return "\n".join(lines)


def worst_ratios(certificates: Iterable[Certificate]) -> dict[str, float]:
    """Worst error-to-budget ratio per tensor over ``certificates``, in ``W1, B1, W2, ...`` order.

    Certified cases contribute their per-tensor worst ratio, a failing case (a mismatch) its own,
    so the tensor a bug corrupts shows up beyond the budget; a case whose backward raised or
    returned malformed gradients has no ratio and contributes nothing.
    """
    out: dict[str, float] = {}
    for cert in certificates:
        sources = [cert.per_tensor] + ([cert.failure.per_tensor()] if cert.failure is not None else [])
        for per in sources:
            for k, d in per.items():
                r = float(d["ratio"])
                out[k] = max(out.get(k, 0.0), r) if not math.isnan(r) else out.get(k, 0.0)
    return {k: out[k] for k in sorted(out, key=_tensor_key)}


# ---------------------------------------------------------------------------------------------
# A command-line run
# ---------------------------------------------------------------------------------------------


def architecture_label(arch: Sequence[Any]) -> str:
    """``(sizes, activations, loss, fuse)`` as ``"2-3-1 sigmoid/sigmoid, squared_error"``, with
    ``" (unfused)"`` when ``fuse`` is off."""
    return Architecture(*arch).label()


@dataclass
class SubjectResult:
    """One row of a run: an activation, a loss or a user's backward (``kind``), certified on each
    of its ``architectures``, one :class:`Certificate` each."""

    name: str
    kind: str
    architectures: list[Architecture]
    certificates: list[Certificate] = field(default_factory=list)

    @property
    def cases(self) -> int:
        return sum(c.cases for c in self.certificates)

    @property
    def certified(self) -> int:
        return sum(c.certified for c in self.certificates)

    @property
    def inconclusive(self) -> int:
        return sum(c.inconclusive for c in self.certificates)

    @property
    def failed(self) -> bool:
        return any(c.failure is not None for c in self.certificates)

    @property
    def ok(self) -> bool:
        return bool(self.certificates) and all(c.ok for c in self.certificates)

    @property
    def status(self) -> str:
        """``certified``, ``FAILED`` (a case failed) or ``UNDECIDED`` (no failure, not certified)."""
        if self.ok:
            return "certified"
        return "FAILED" if self.failed else "UNDECIDED"

    def ratios(self) -> dict[str, float]:
        return worst_ratios(self.certificates)

    def worst(self) -> float | None:
        r = self.ratios()
        return max(r.values()) if r else None

    def to_dict(self) -> dict[str, Any]:
        return jsonable({"subject": self.name, "kind": self.kind, "status": self.status, "ok": self.ok,
                         "architectures": [architecture_label(a) for a in self.architectures],
                         "cases": self.cases, "certified": self.certified, "inconclusive": self.inconclusive,
                         "worst_ratio": self.worst(), "per_tensor_ratio": self.ratios(),
                         "certificates": [c.to_dict() for c in self.certificates]})


LEGEND = ("Certified: each subject's backward (handgrad's own, or the one given with --backward) against "
          "at least two independent references; worst err/budget: the largest |hand - reference| / derived "
          "rounding budget over every case and element (at most 1 passes).")
"""The line under the run's table: what was certified and what the ratio column means."""


@dataclass
class RunSummary:
    """A whole ``handgrad certify`` run: its subjects and how it was run.

    Args:
      subjects: one :class:`SubjectResult` per activation, loss or backward.
      command: the command line (``"handgrad certify --examples 4"``).
      seed: the hypothesis seed; examples: cases drawn per architecture; oracles: the references.
      elapsed: wall-clock seconds of the run.
      dtype: the hand dtype; vary_shapes: whether hidden widths were drawn.
      chart: the file name of the per-tensor chart written next to the report, if any.
    """

    subjects: list[SubjectResult]
    command: str
    seed: int
    examples: int
    oracles: tuple[str, ...]
    elapsed: float
    dtype: str = "float64"
    vary_shapes: bool = False
    chart: str | None = None

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.subjects)

    def to_dict(self) -> dict[str, Any]:
        versions = dict(_versions())
        d = {"tool": "handgrad", "version": versions["handgrad"], "command": self.command,
             "settings": {"dtype": self.dtype, "examples_per_architecture": self.examples, "seed": self.seed,
                          "oracles": list(self.oracles), "vary_shapes": bool(self.vary_shapes)},
             "ok": self.ok, "seconds": self.elapsed, "subjects": [s.to_dict() for s in self.subjects],
             "chart": self.chart}
        return _sealed(d, self.command, self.seed)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def table(self) -> str:
        return _run_table(self.to_dict())

    def verdict(self) -> str:
        return _run_verdict(self.to_dict())

    def text(self) -> str:
        """Every failing certificate, then the table, its legend and the verdict line."""
        return _run_text(self.to_dict())

    def markdown(self) -> str:
        return _run_markdown(self.to_dict())

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __str__(self) -> str:
        return self.text()


def _run_table(d: Mapping[str, Any]) -> str:
    subjects = d["subjects"]
    w = max([len("subject"), *(len(s["subject"]) for s in subjects)])
    head = (f"{'subject':<{w}}  {'archs':>5}  {'cases':>5}  {'certified':>9}  {'inconclusive':>12}  "
            f"{'worst err/budget':>16}  status")
    lines = [head, "-" * len(head)]
    lines += [f"{s['subject']:<{w}}  {len(s['architectures']):>5}  {s['cases']:>5}  {s['certified']:>9}  "
              f"{s['inconclusive']:>12}  {_fmt_ratio(s['worst_ratio']):>16}  {s['status']}" for s in subjects]
    return "\n".join(lines)


def _run_verdict(d: Mapping[str, Any]) -> str:
    subjects, cases = d["subjects"], sum(s["cases"] for s in d["subjects"])
    if d["ok"]:
        return (f"CERTIFIED: all {len(subjects)} subject(s), {cases} cases, {d['settings']['dtype']}, "
                f"{d['seconds']:.1f} s")
    bad = [s["subject"] for s in subjects if not s["ok"]]
    return (f"NOT CERTIFIED: {len(bad)} of {len(subjects)} subject(s) ({', '.join(bad)}); {cases} cases, "
            f"{d['seconds']:.1f} s")


def _run_text(d: Mapping[str, Any]) -> str:
    failing = [_certificate_text(c) for s in d["subjects"] for c in s["certificates"] if not c["ok"]]
    return "\n\n".join([*failing, _run_table(d) + "\n" + LEGEND, _run_verdict(d)])


def _run_markdown(d: Mapping[str, Any]) -> str:
    st, subjects = d["settings"], d["subjects"]
    bad = [s["subject"] for s in subjects if not s["ok"]]
    lines = ["# handgrad certification report", "",
             f"Command: `{d['command']}` (handgrad {d['version']}).", "",
             f"Settings: {st['dtype']}, {st['examples_per_architecture']} hypothesis-drawn cases per architecture, "
             f"seed {st['seed']}, oracles {', '.join(st['oracles'])}; {d['seconds']:.1f} s.", "",
             "**Verdict: every subject is certified.**" if d["ok"] else
             "**Verdict: NOT certified** -- " + ", ".join(bad) + ".", "",
             "| subject | architectures | cases | certified | inconclusive | worst err / budget | status |",
             "|---|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {s['subject']} | {len(s['architectures'])} | {s['cases']} | {s['certified']} | "
              f"{s['inconclusive']} | {_fmt_ratio(s['worst_ratio'])} | "
              f"{s['status'] if s['ok'] else '**' + s['status'] + '**'} |" for s in subjects]
    lines += ["", "A case is *certified* when the hand gradient agrees with every reference (SymPy closed "
              "forms, JAX, finite differences) within its derived rounding budget (`docs/tolerances.md`); "
              "*inconclusive* cases (a pre-activation within rounding reach of a kink, or oracles that "
              "disagree among themselves) are skipped, never counted as certified."]
    if d["chart"]:
        lines += ["", f"![worst error-to-budget ratio per tensor]({d['chart']})", "",
                  "Each bar is the worst |hand - reference| / budget over every case, reference and element "
                  "of that tensor; the dashed line is the budget (ratio 1)."]
    for s in subjects:
        lines += ["", _heading(2, s["subject"])]
        for c in s["certificates"]:
            lines += ["", _certificate_markdown(c, 3, in_subject=True)]
    lines += ["", _provenance_md(d, full=True)]
    return "\n".join(lines).rstrip() + "\n"
