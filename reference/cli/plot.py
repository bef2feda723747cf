r"""The per-tensor error-to-budget chart of a certification report (PNG, matplotlib optional).

For every certified subject (an activation, a loss, a user's backward) one panel shows, for each
parameter tensor :math:`W^{(l)}`, :math:`B^{(l)}`, the worst ratio

.. math::
   \rho = \max \frac{|\partial L/\partial w_{ij}^{(l)}\big|_{hand} - \partial L/\partial w_{ij}^{(l)}\big|_{ref}|}
                    {\text{budget}_{ij}}

over every case, reference (SymPy, JAX, finite differences) and element, on a log axis with the
budget line at :math:`\rho = 1`: a bar left of the line is within its derived rounding budget
(:mod:`handgrad.reference.judge.tolerance`), a bar right of it (drawn red) is a mismatch. Tensor names are the
code's (``W1, B1, ...``) and aggregate over every architecture of the subject's pool, so ``W3``
is the worst over the pool's networks that have a third layer.

matplotlib is an optional extra (``pip install handgrad[plots]``); :func:`matplotlib_available`
says whether it is there, and :func:`plot_error_budget` raises ``ImportError`` when it is not.
The figure is drawn with the object-oriented API on an Agg canvas: no pyplot, no global backend
change, nothing shown on screen.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from handgrad.validation import check_positive_int

from ..judge.reports import Certificate, worst_ratios

__all__ = ["RATIO_FLOOR", "certificate_ratios", "matplotlib_available", "plot_error_budget"]

RATIO_FLOOR = 1e-4
"""Ratios below this (an exact 0 included) are drawn at this value and labelled; they are far
inside the budget and a log axis cannot show 0."""


def matplotlib_available() -> bool:
    """True when matplotlib can be imported (the ``plots`` extra)."""
    return importlib.util.find_spec("matplotlib") is not None


def certificate_ratios(certificates: Iterable[Certificate]) -> dict[str, float]:
    """Worst error-to-budget ratio per tensor over ``certificates`` (``W1, B1, W2, ...`` order):
    :func:`handgrad.reference.judge.reports.worst_ratios`, the one definition of it."""
    return worst_ratios(certificates)


def plot_error_budget(
    ratios: Mapping[str, Mapping[str, float]],
    path: str | Path,
    *,
    title: str = "worst |hand - reference| / budget per tensor",
    ncols: int = 4,
    dpi: int = 110,
) -> Path:
    r"""Draw one horizontal bar panel per subject and save the figure as PNG.

    Args:
      ratios: ``{subject: {tensor: worst ratio}}`` (for instance from :func:`certificate_ratios`),
        panels in this order. A ratio of ``inf`` (a non-finite gradient) is drawn at the right
        edge and labelled ``inf``; a ratio below :data:`RATIO_FLOOR` at the floor, labelled.
      path: the PNG file to write (its folder must exist).
      title: the figure's title.
      ncols: panels per row.
      dpi: resolution of the PNG.

    Returns:
      ``path`` as a :class:`~pathlib.Path`.
    """
    if not isinstance(ratios, Mapping) or not ratios:
        raise ValueError("ratios must be a non-empty mapping {subject: {tensor: ratio}}")
    for subject, per in ratios.items():
        if not isinstance(per, Mapping):
            raise TypeError(f"ratios[{subject!r}] must be a mapping {{tensor: ratio}}, got {type(per).__name__}")
    ncols = check_positive_int("ncols", ncols)
    dpi = check_positive_int("dpi", dpi)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    subjects = list(ratios)
    finite = [float(r) for per in ratios.values() for r in per.values() if math.isfinite(float(r))]
    top = max([10.0, *(2.0 * r for r in finite)])
    n_tensors = max([1, *(len(per) for per in ratios.values())])
    cols = min(ncols, len(subjects))
    rows = math.ceil(len(subjects) / cols)
    fig = Figure(figsize=(3.6 * cols, rows * (0.22 * n_tensors + 1.0) + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    for idx, ax in enumerate(axes.flat):
        if idx >= len(subjects):
            ax.set_visible(False)
            continue
        subject = subjects[idx]
        per = ratios[subject]
        names = list(per)
        values = [float(per[k]) for k in names]
        shown = [min(max(v, RATIO_FLOOR), top) if not math.isnan(v) else RATIO_FLOOR for v in values]
        colors = ["#c0392b" if v > 1.0 else "#2e86c1" for v in values]
        ypos = list(range(len(names)))
        ax.barh(ypos, shown, color=colors, left=RATIO_FLOOR / 10, height=0.7)
        ax.set_yticks(ypos, names, fontsize=8)
        ax.set_ylim(n_tensors - 0.5, -0.5)
        for y, v, s in zip(ypos, values, shown, strict=True):
            if not math.isfinite(v) or v < RATIO_FLOOR:
                label = "inf" if math.isinf(v) else ("nan" if math.isnan(v) else f"{v:.0g}")
                inside = math.isinf(v)  # the bar reaches the right edge: label it inside, in white
                ax.text(s, y, (label + " ") if inside else (" " + label), va="center", fontsize=7,
                        ha="right" if inside else "left", color="white" if inside else "black")
        ax.axvline(1.0, color="#c0392b", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlim(RATIO_FLOOR / 10, top)
        failed = any(v > 1.0 for v in values)
        ax.set_title(subject + ("  (FAILED)" if failed else ""), fontsize=9,
                     color="#c0392b" if failed else "black")
        ax.tick_params(axis="x", labelsize=7, labelbottom=True)
        ax.grid(axis="x", which="major", linewidth=0.3, alpha=0.5)
    for idx, ax in enumerate(axes.flat):
        if idx + cols >= len(subjects) and idx < len(subjects):  # the lowest panel of each column
            ax.set_xlabel("error / budget (budget = 1, dashed)", fontsize=7)
    fig.suptitle(title, fontsize=10)
    out = Path(path)
    fig.savefig(out, dpi=dpi, format="png", metadata={"Software": None})
    return out

