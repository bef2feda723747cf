r"""Small LaTeX helpers for lecture-ready formulas: line breaks and tidy numbers.

* :func:`break_formula` splits a long ``lhs = rhs`` into an ``aligned`` environment at the
  top-level ``+`` and ``-`` of the right-hand side (outside ``{}`` groups and ``\left...\right``
  pairs, where a line break is illegal; ``\big[`` brackets may be broken across lines).
* :func:`integral_floats` prints integral-valued floats as integers (``1.0 x`` -> ``x``,
  ``2.0 x`` -> ``2 x``), as SymPy leaves them when a definition holds a float constant.
"""

from __future__ import annotations

import re

__all__ = ["break_formula", "integral_floats", "split_terms"]


_BIG = (r"\big", r"\Big", r"\bigg", r"\Bigg")


def split_terms(rhs: str) -> list[str]:
    r"""``rhs`` cut before every top-level `` + `` or `` - `` (each piece keeps its sign).

    Top level: outside ``{...}`` groups, plain ``(...)`` and ``[...]``, ``\left ... \right`` pairs
    and ``\begin ... \end`` environments; ``\big[ ... \big]`` may be cut (its halves need no
    partner). Cuts are only at a sign surrounded by spaces (a binary operator as SymPy and the
    handout write it).
    """
    pieces, start, depth, lr, k = [], 0, 0, 0, 0
    while k < len(rhs):
        c = rhs[k]
        if rhs.startswith(r"\begin{", k):  # an environment (cases, matrix): never cut inside
            lr += 1
        elif rhs.startswith(r"\end{", k):
            lr -= 1
        if rhs.startswith(r"\left", k) and not rhs[k + 5:k + 6].isalpha():
            lr += 1
            k += 5
            continue
        if rhs.startswith(r"\right", k) and not rhs[k + 6:k + 7].isalpha():
            lr -= 1
            k += 6
            continue
        if c == "\\":  # skip a control sequence (its escaped brace is not a group)
            k += 2
            continue
        if c in "{([":
            depth += 0 if rhs[:k].endswith(_BIG) else 1
        elif c in "})]":
            depth -= 0 if rhs[:k].endswith(_BIG) else 1
        elif c in "+-" and depth == 0 and lr == 0 and rhs[k - 1:k] == " " and rhs[k + 1:k + 2] == " " and k > 1:
            pieces.append(rhs[start:k].rstrip())
            start = k
        k += 1
    pieces.append(rhs[start:].strip())
    return [p for p in pieces if p]


def break_formula(tex: str, width: int = 100) -> str:
    r"""``lhs = rhs`` as ``aligned`` lines of at most about ``width`` characters of LaTeX each.

    Returns ``tex`` unchanged when it is short enough or has no top-level ``=`` or no cut point;
    otherwise ``\begin{aligned} lhs &= t_1 + t_2 \\ &\quad + t_3 \dots \end{aligned}``.

    >>> print(break_formula("L = a + b + c", width=6))
    \begin{aligned}
    L &= a + b \\
    &\quad + c
    \end{aligned}
    """
    if width < 1:
        raise ValueError(f"width must be a positive number of characters, got {width}")
    if len(tex) <= width or " = " not in tex:
        return tex
    lhs, rhs = tex.split(" = ", 1)
    terms = split_terms(rhs)
    if len(terms) < 2:
        return tex
    lines: list[str] = []
    cur = terms[0]
    for t in terms[1:]:
        if len(cur) + 1 + len(t) > width:
            lines.append(cur)
            cur = t
        else:
            cur = f"{cur} {t}"
    lines.append(cur)
    if len(lines) == 1:
        return tex
    body = [f"{lhs} &= {lines[0]} \\\\"] + [f"&\\quad {ln} \\\\" for ln in lines[1:-1]] + [f"&\\quad {lines[-1]}"]
    return "\\begin{aligned}\n" + "\n".join(body) + "\n\\end{aligned}"


_FLOAT = re.compile(r"(?<![\d.])(\d+)\.0+(?!\d)")
_UNIT_FACTOR = re.compile(r"(?<![\d.}^_])1 (?=[a-zA-Z(]|\\(?!right|end|quad|qquad|text)[a-zA-Z])")


def integral_floats(tex: str) -> str:
    r"""Integral-valued floats as integers, and a factor 1 dropped: ``1.0 x_{11}`` -> ``x_{11}``.

    >>> integral_floats(r"1.0 x_{11} e^{z} + 2.0 w - 0.5 b")
    'x_{11} e^{z} + 2 w - 0.5 b'
    """
    out = _FLOAT.sub(r"\1", tex)
    return _UNIT_FACTOR.sub("", out)
