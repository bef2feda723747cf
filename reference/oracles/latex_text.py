r"""Plain text for the LaTeX the SymPy oracle displays (:meth:`SympyOracle.latex
<handgrad.reference.oracles.sympy_oracle.SympyOracle.latex>`), for ``handgrad derive``.

A small recursive-descent reader of the LaTeX subset SymPy prints for these closed forms; anything
it does not know gives ``None`` (the caller then shows the LaTeX), never a guess. Element names
follow :mod:`handgrad.notation` (a comma between the indices once one has two digits,
``w_1,13^(1)``), in the head and in the body alike.
"""

from __future__ import annotations

import re

from handgrad.notation import NotationError, element_name, parse_element

__all__ = ["latex_to_text"]


_TEX_FUNCS = {"exp", "log", "tanh", "sinh", "cosh", "sqrt", "erf", "erfc", "sin", "cos", "max", "min", "Max", "Min"}
_TEX_SPACES = {":", ",", ";", "!", "quad", "qquad", " "}
_TEX_SYMBOLS = {"pi": "pi", "cdot": "*", "times": "*", "infty": "inf", "geq": ">=", "leq": "<=", "neq": "!=",
                "wedge": "and", "vee": "or"}


def _tex_tokens(tex: str) -> list[str] | None:
    tokens: list[str] = []
    k = 0
    while k < len(tex):
        c = tex[k]
        if c == "\\":
            m = re.match(r"\\([A-Za-z]+|.)", tex[k:])
            if m is None:
                return None
            tokens.append(m.group(0))
            k += len(m.group(0))
        elif c.isspace():
            if tokens and tokens[-1] != " ":
                tokens.append(" ")
            k += 1
        else:
            tokens.append(c)
            k += 1
    return tokens


class _TexError(Exception):
    pass


class _TexText:
    r"""A small recursive-descent reader for the LaTeX subset SymPy prints for these closed forms
    (fractions, sub/superscripts, ``e^{...}``, named functions, ``\left( \right)``, ``cases``)."""

    def __init__(self, tokens: list[str]) -> None:
        self.t = tokens
        self.k = 0

    def peek(self) -> str | None:
        return self.t[self.k] if self.k < len(self.t) else None

    def take(self) -> str:
        if self.k >= len(self.t):
            raise _TexError("unexpected end")
        self.k += 1
        return self.t[self.k - 1]

    def skip_space(self) -> None:
        while self.peek() == " ":
            self.k += 1

    def group(self) -> str:
        """``{...}`` or a single token, as text."""
        self.skip_space()
        if self.peek() == "{":
            self.take()
            body = self.seq(stop={"}"})
            if self.take() != "}":
                raise _TexError("unbalanced braces")
            return body
        tok = self.take()
        return self.atom(tok)

    def atom(self, tok: str) -> str:
        if tok.startswith("\\"):
            return self.command(tok[1:])
        if tok in "{}":
            raise _TexError("stray brace")
        return tok

    @staticmethod
    def wrap(text: str) -> str:
        t = text.strip()
        if re.fullmatch(r"[A-Za-z0-9_.^()]+", t) and (not t.startswith("(") or _balanced_outer(t)):
            return t
        return f"({t})"

    def command(self, name: str) -> str:
        if name == "frac":
            num, den = self.group(), self.group()
            return f"{self.wrap(num)}/{self.wrap(den)}"
        if name == "left":
            return self.take()
        if name == "right":
            return self.take()
        if name == "hat":
            return self.group().strip() + "hat"
        if name == "sqrt":
            return f"sqrt({self.group().strip()})"
        if name == "operatorname":
            return self.group().strip()
        if name == "text":
            return self.group()
        if name == "begin":
            env = self.group().strip()
            if env != "cases":
                raise _TexError(env)
            return self.cases()
        if name in _TEX_FUNCS:
            return name
        if name in _TEX_SYMBOLS:
            return _TEX_SYMBOLS[name]
        if name in _TEX_SPACES:
            return " "
        raise _TexError(name)

    def cases(self) -> str:
        branches: list[tuple[str, str]] = []
        while True:
            value = self.seq(stop={"&"})
            self.take()
            cond = self.seq(stop={"\\\\", "\\end"})
            cond = re.sub(r"^\s*for\s*", "", cond).strip()
            branches.append((value.strip(), cond))
            tok = self.take()
            if tok == "\\end":
                self.group()
                break
        parts = []
        for value, cond in branches:
            parts.append(value if cond == "otherwise" else f"{value} if {cond} else")
        return " ".join(parts)

    def seq(self, stop: set[str]) -> str:
        out: list[str] = []
        while self.peek() is not None and self.peek() not in stop:
            tok = self.take()
            if tok == " ":
                out.append(" ")
            elif tok == "{":  # invisible grouping, e.g. the argument of \operatorname{erfc}{...}
                self.k -= 1
                out.append(self.group())
            elif tok in ("_", "^"):
                arg = self.group().strip()
                if out and out[-1] == "e" and tok == "^":
                    out[-1] = f"exp({arg})"
                    continue
                simple = re.fullmatch(r"[A-Za-z0-9]+|\d+(?:,\d+)+|\(\d+\)", arg) is not None
                out.append(tok + (arg if simple else f"({arg})"))
            elif tok.startswith("\\") and tok[1:] in _TEX_FUNCS and tok[1:] != "sqrt":
                self.skip_space()
                arg = self.group() if self.peek() == "{" else self.atom(self.take())
                out.append(f"{tok[1:]}{self.wrap(arg) if not arg.strip().startswith('(') else arg.strip()}")
            else:
                out.append(self.atom(tok))
        text = "".join(out)
        return re.sub(r" {2,}", " ", text)


def _balanced_outer(t: str) -> bool:
    depth = 0
    for n, c in enumerate(t):
        depth += (c == "(") - (c == ")")
        if depth == 0 and n < len(t) - 1:
            return False
    return True


def latex_to_text(tex: str) -> str | None:
    r"""Plain text for the LaTeX that :meth:`handgrad.reference.oracles.sympy_oracle.SympyOracle.latex` prints:
    ``\frac{\partial L}{\partial w_{11}^{(3)}} = 2 \hat y x_{31} ...`` becomes
    ``dL/dw_11^(3) = 2 yhat x_31 ...``. None when the LaTeX holds a construct this reader does not
    know (the caller then shows the LaTeX itself).

    >>> latex_to_text(r"\frac{\partial L}{\partial w_{11}^{(3)}} = \frac{x_{21} e^{z_{1}^{(2)}}}{e^{z_{1}^{(2)}} + 1}")
    'dL/dw_11^(3) = (x_21 exp(z_1^(2)))/(exp(z_1^(2)) + 1)'
    """
    m = re.fullmatch(r"\\frac\{\\partial L\}\{\\partial (\S+)\} = (.*)", tex.strip(), re.S)
    if m is None:
        return None
    element, body = m.groups()
    try:
        tensor, index = parse_element(element)
    except NotationError:
        return None
    tokens = _tex_tokens(body)
    if tokens is None:
        return None
    try:
        reader = _TexText(tokens)
        text = reader.seq(stop=set())
    except (_TexError, IndexError):
        return None
    text = re.sub(r"\s+\)", ")", re.sub(r"\(\s+", "(", text)).strip()
    return f"dL/d{element_name(tensor, index)} = {text}"

