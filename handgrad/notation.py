r"""The article's notation for parameter elements: the one place that names them.

The article names element (i, j) of ``W(l)`` :math:`w_{ij}^{(l)}` and element i of ``B(l)``
:math:`b_i^{(l)}`, with 1-based indices; the code stores them as ``params["W{l}"][i-1, j-1]`` and
``params["B{l}"][i-1, 0]``. Every message, report, proof and display of the suite names elements
through this module, and the CLI reads names back through it.

The rule for indices of 10 and more. ``w_113^(1)`` could be ``W1[0, 12]`` or ``W1[10, 2]``, so
as soon as one 1-based index has two or more digits the indices are separated by a comma:

====================  ==================  ========================
code                  plain text          LaTeX
====================  ==================  ========================
``W2[0, 1]``          ``w_12^(2)``        ``w_{12}^{(2)}``
``W1[0, 12]``         ``w_1,13^(1)``      ``w_{1,13}^{(1)}``
``W1[10, 2]``         ``w_11,3^(1)``      ``w_{11,3}^{(1)}``
``B3[1, 0]``          ``b_2^(3)``         ``b_{2}^{(3)}``
====================  ==================  ========================

:func:`parse_element` reads every form of the table back (and the braced plain forms such as
``w_{1,13}^{(1)}`` or ``w_{12}^{(2)}``), so ``parse_element(element_name(t, i)) == (t, i)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "NotationError",
    "code_name",
    "element_label",
    "element_latex",
    "element_name",
    "index_text",
    "is_parameter_name",
    "parse_element",
]


class NotationError(ValueError):
    """A name that is not an element in the article's or the code's notation."""


_TENSOR = re.compile(r"(?P<kind>[WB])(?P<layer>[1-9][0-9]*)")


def is_parameter_name(tensor: object) -> bool:
    """True for the article's tensor names ``W1``, ``B1``, ``W2``, ... (layers from 1)."""
    return isinstance(tensor, str) and _TENSOR.fullmatch(tensor) is not None


def index_text(*one_based: int) -> str:
    """``"12"`` for (1, 2); ``"1,13"`` once any index has two or more digits."""
    return ("," if any(k >= 10 for k in one_based) else "").join(str(k) for k in one_based)


def _split(tensor: str, index: Sequence[int]) -> tuple[str, int, tuple[int, ...]]:
    m = _TENSOR.fullmatch(tensor) if isinstance(tensor, str) else None
    if m is None:
        raise NotationError(f"tensor must be a parameter name like 'W2' or 'B1', got {tensor!r}")
    idx = tuple(int(i) for i in index)
    if len(idx) != 2 or min(idx) < 0 or (m["kind"] == "B" and idx[1] != 0):
        want = "(row, column)" if m["kind"] == "W" else "(row, 0)"
        raise NotationError(f"index of {tensor} must be a 0-based {want} pair, got {tuple(index)!r}")
    ones = (idx[0] + 1, idx[1] + 1) if m["kind"] == "W" else (idx[0] + 1,)
    return m["kind"].lower(), int(m["layer"]), ones


def element_name(tensor: str, index: Sequence[int]) -> str:
    r"""Plain-text article name: ``("W2", (0, 1)) -> "w_12^(2)"``, ``("W1", (0, 12)) -> "w_1,13^(1)"``.

    >>> element_name("B3", (1, 0))
    'b_2^(3)'
    """
    kind, layer, ones = _split(tensor, index)
    return f"{kind}_{index_text(*ones)}^({layer})"


def element_latex(tensor: str, index: Sequence[int]) -> str:
    r"""LaTeX article name: ``("W2", (0, 1)) -> "w_{12}^{(2)}"``, ``("W1", (10, 2)) -> "w_{11,3}^{(1)}"``."""
    kind, layer, ones = _split(tensor, index)
    return f"{kind}_{{{index_text(*ones)}}}^{{({layer})}}"


def code_name(tensor: str, index: Sequence[int]) -> str:
    """The code's 0-based name of any tensor element: ``("W1", (0, 12)) -> "W1[0, 12]"``."""
    return f"{tensor}[{', '.join(str(int(i)) for i in index)}]"


def element_label(tensor: str, index: Sequence[int]) -> str:
    """Both names, code first: ``"W1[0, 12] (w_1,13^(1))"``; an element that is not one of the
    article's (an optimizer's state, a user's name, a key ``B1`` whose index is not ``(i, 0)``) gets
    its code name alone."""
    try:
        return f"{code_name(tensor, index)} ({element_name(tensor, index)})"
    except NotationError:  # not one of the article's elements (a name or an index shape of its own)
        return code_name(tensor, index)


_ARTICLE = re.compile(r"""
    (?P<kind>[wb])_?
    (?: \{(?P<braced>[0-9]+(?:,[0-9]+)?)\} | (?P<bare>[0-9]+(?:,[0-9]+)?) )
    \^ (?: \{\((?P<l1>[0-9]+)\)\} | \((?P<l2>[0-9]+)\) | \{(?P<l3>[0-9]+)\} | (?P<l4>[0-9]+) )
    """, re.VERBOSE)
_CODE = re.compile(r"(?P<kind>[WB])(?P<layer>[0-9]+)\[(?P<i>[0-9]+)(?:,(?P<j>[0-9]+))?\]")


def parse_element(text: str) -> tuple[str, tuple[int, int]]:
    r"""``(tensor, 0-based index)`` of an element named in any form :func:`element_name`,
    :func:`element_latex` or :func:`code_name` writes (spaces ignored; ``B2[1]`` is ``B2[1, 0]``).

    Without a comma, a weight's digits are one per index (``w_12^(2)``); a bias has one index.
    Raises :class:`NotationError` for anything else, saying which form was expected.

    >>> parse_element("w_{1,13}^{(1)}")
    ('W1', (0, 12))
    >>> parse_element("W1[10, 2]")
    ('W1', (10, 2))
    """
    t = "".join(str(text).split())
    m = _CODE.fullmatch(t)
    if m is not None:
        j = m["j"]
        if m["kind"] == "W" and j is None:
            raise NotationError(f"{text!r}: a weight has two indices, W{m['layer']}[i, j]")
        return _checked(m["kind"], m["layer"], int(m["i"]), int(j or 0), text)
    m = _ARTICLE.fullmatch(t)
    if m is None:
        raise NotationError(f"cannot read {text!r}: expected w_ij^(l) or w_{{i,j}}^{{(l)}} (article, 1-based), "
                            "b_i^(l), or W<l>[i, j] / B<l>[i] (code, 0-based)")
    kind = m["kind"].upper()
    layer = next(m[g] for g in ("l1", "l2", "l3", "l4") if m[g] is not None)
    digits = m["braced"] or m["bare"]
    parts = digits.split(",")
    if kind == "B":
        if len(parts) != 1:
            raise NotationError(f"{text!r}: a bias has one index, b_i^(l)")
        return _checked(kind, layer, int(parts[0]) - 1, 0, text)
    if len(parts) == 2:
        i, j = int(parts[0]), int(parts[1])
    elif len(digits) == 2:
        i, j = int(digits[0]), int(digits[1])
    else:
        raise NotationError(f"{text!r}: a weight needs two indices; write w_ij^(l) with one digit each, "
                            "or w_{i,j}^(l) once an index has two digits")
    if i < 1 or j < 1:
        raise NotationError(f"{text!r}: article indices are 1-based")
    return _checked(kind, layer, i - 1, j - 1, text)


def _checked(kind: str, layer: str, i: int, j: int, text: str) -> tuple[str, tuple[int, int]]:
    if int(layer) < 1 or i < 0:
        raise NotationError(f"{text!r}: layers are numbered from 1 and article indices from 1")
    return f"{kind}{int(layer)}", (i, j)
