r"""``handgrad derive --latex``, fit for lecture notes.

:func:`format_derivation` turns the gradients of chosen weights into LaTeX a lecturer can paste:
each formula in math delimiters (``$$ ... $$`` by default, or ``\[ ... \]``), long ones broken into
an ``aligned`` environment at their top-level ``+``/``-``, integral-valued floats printed as
integers (``1.0 x_{11}`` -> ``x_{11}``). Two forms:

* **factored** (default): the article's chain-rule form from
  :class:`~handgrad.reference.docgen.derivation.Derivation` (factor from the layer above, local
  derivative, input), each formula checked exactly before it is printed ([D] against SymEngine's
  derivative of the composite loss, [H] against handgrad's backward on symbols, [M] against the
  matrix forms). For a net the factored display does not cover (an activation without a
  display rule, an unfused softmax), the SymPy oracle's form is printed, with a note saying so.
* **expanded** (``expanded=True``): the SymPy oracle's closed form (``SympyOracle.latex``: the
  composite loss differentiated symbol by symbol, checked against the oracle at 40 digits).

When building the forms takes longer than ``progress_after`` seconds, a progress line is written
to ``progress`` (the CLI passes standard error), and a closing line with the time taken.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO, TypeVar

import handgrad as hg
from handgrad.notation import element_latex, element_name
from handgrad.validation import check_positive_int

from .derivation import Derivation, UnsupportedNetwork
from .latex import break_formula, integral_floats

__all__ = ["DELIMITERS", "PROGRESS_AFTER", "format_derivation"]

DELIMITERS = {"$$": ("$$", "$$"), "brackets": (r"\[", r"\]"), "none": ("", "")}
r"""Math delimiters by name: ``"$$"`` (Markdown, GitHub), ``"brackets"`` (LaTeX ``\[ \]``), ``"none"``."""

PROGRESS_AFTER = 1.5
"""Seconds of derivation after which a progress line is written."""

T = TypeVar("T")


def _with_progress(what: str, work: Callable[[], T], progress: TextIO | None, after: float) -> T:
    """Run ``work``; if it is still running after ``after`` seconds, say so on ``progress``."""
    if progress is None:
        return work()
    start = time.perf_counter()
    said = threading.Event()

    def announce() -> None:
        said.set()
        print(f"derive: {what} (more than {after:g} s so far) ...", file=progress, flush=True)

    timer = threading.Timer(after, announce)
    timer.daemon = True
    timer.start()
    try:
        return work()
    finally:
        timer.cancel()
        if said.is_set():
            print(f"derive: {what}: done in {time.perf_counter() - start:.1f} s", file=progress, flush=True)


def _lhs(name: str, idx: tuple[int, int]) -> str:
    return f"\\frac{{\\partial L}}{{\\partial {element_latex(name, idx)}}}"


def _factored(net: hg.Network, selected: Sequence[tuple[str, tuple[int, int]]]) -> list[str]:
    d = Derivation(net)
    entries = []
    for name, (i, j) in selected:
        layer = int(name[1:])
        f = d.dl_dw(layer, i + 1, j + 1) if name[0] == "W" else d.dl_db(layer, i + 1)
        entries.append((element_name(name, (i, j)), f, name, (i, j)))
    d.check(entries, [])
    return [f"{_lhs(name, idx)} = {f.tex}" for _, f, name, idx in entries]


def _expanded(net: hg.Network, selected: Sequence[tuple[str, tuple[int, int]]]) -> list[str]:
    from ..oracles.sympy_oracle import get_sympy_oracle

    oracle = get_sympy_oracle(net)
    return [integral_floats(oracle.latex(name, i + 1, j + 1)) for name, (i, j) in selected]


def format_derivation(net: hg.Network, selected: Sequence[tuple[str, tuple[int, int]]], *,
                      expanded: bool = False, delimiters: str = "$$", width: int = 100,
                      progress: TextIO | None = None, progress_after: float = PROGRESS_AFTER) -> str:
    r"""Lecture-ready LaTeX for :math:`\partial L/\partial w` of each selected element of ``net``.

    Args:
      net: the network.
      selected: ``(tensor, 0-based index)`` pairs, e.g. ``[("W3", (0, 0)), ("B1", (2, 0))]`` (what
        the CLI's ``parse_weight`` returns).
      expanded: the SymPy oracle's closed form instead of the factored chain-rule form.
      delimiters: ``"$$"``, ``"brackets"`` or ``"none"`` (:data:`DELIMITERS`).
      width: characters of LaTeX per line before a formula is broken into ``aligned`` lines.
      progress: where to write a progress line (e.g. ``sys.stderr``); None for silence.
      progress_after: seconds before the progress line appears.

    Returns:
      The text: ``%`` comment lines (what the forms are, per sample, which checks ran), then one
      delimited block per element, separated by blank lines, ending in a newline.

    Raises:
      ValueError: for an unknown ``delimiters``, a ``width`` below 20 or an element that is not a
        parameter of ``net``; ``SympyTooLarge`` (a ``ValueError``) when ``expanded`` is asked for a
        net beyond the oracle's size limit.
      handgrad.reference.docgen.derivation.DerivationError: a factored formula failed its check.
    """
    if not isinstance(net, hg.Network):
        raise TypeError(f"net must be a handgrad.Network, got {type(net).__name__}")
    if delimiters not in DELIMITERS:
        raise ValueError(f"delimiters must be one of {sorted(DELIMITERS)}, got {delimiters!r}")
    check_positive_int("width", width, minimum=20)
    shapes = net.param_shapes
    for name, idx in selected:
        if name not in shapes or not (0 <= idx[0] < shapes[name][0] and 0 <= idx[1] < shapes[name][1]):
            raise ValueError(f"selected element {name}{list(idx)} is not a parameter element of {net.describe()} "
                             f"(shapes {shapes})")
    note = []
    what = f"deriving {len(selected)} gradient(s) of {net.describe()}"
    if expanded:
        forms = _with_progress(what, lambda: _expanded(net, selected), progress, progress_after)
        note.append("expanded: the SymPy oracle's closed form (the composite loss differentiated symbol by symbol)")
    else:
        try:
            forms = _with_progress(what, lambda: _factored(net, selected), progress, progress_after)
            note.append("factored as the article does (factor from the layer above x local derivative x input); "
                        "each checked exactly against SymEngine's derivative of the composite loss")
        except UnsupportedNetwork as exc:
            forms = _with_progress(what, lambda: _expanded(net, selected), progress, progress_after)
            note.append(f"the SymPy oracle's form (no factored display: {exc})")
    open_, close = DELIMITERS[delimiters]
    lines = [f"% dL/dw for {net.describe()}, one sample (over a batch: the mean); {note[0]}.",
             "% x_{1j}: input j; x_{l+1,i}: output of unit i of layer l; z_i^{(l)}: its pre-activation; "
             "\\hat y: the output; y: the label.", ""]
    for tex in forms:
        body = break_formula(integral_floats(tex), width)
        lines += ([open_] if open_ else []) + [body] + ([close] if close else []) + [""]
    return "\n".join(lines)
