r"""The derivation handout: every gradient of the article's 2-3-3-1 sigmoid net, certified.

``python -m handgrad.reference.docgen.handout`` writes ``docs/handout.md``: per-weight closed forms in the
article's notation (input :math:`x_{1j}`, hidden activations :math:`x_{2i}`, :math:`x_{3i}`,
output :math:`\hat y`, weights :math:`w_{ij}^{(l)}`, biases :math:`b_i^{(l)}`), following the
article's sections (output layer, second hidden layer, first hidden layer), with the matrix
forms. Every displayed formula is built from the same calls as the SymEngine expression that is
checked, and generation fails (:class:`HandoutError`) unless every check passes:

* **[D]** the per-weight formula equals SymEngine's derivative of the composite loss
  :math:`L = (\sigma(z^{(3)}) - y)^2`, with :math:`\sigma` an undefined function whose derivative
  is read as :math:`\sigma(1-\sigma)` and each :math:`\sigma(\cdot)` named as the article names it;
* **[H]** it equals what handgrad's own ``Network.backward_unchecked`` computes on symbols for the
  article's net (activations opaque, with the article's rule :math:`f'(z) = a(1-a)`);
* **[M]** the matrix forms, evaluated on matrices of symbols, equal the per-weight forms entry by
  entry;

and the page cites the certificates that hold in general: **[S]** ``prove_activation("sigmoid")``
(the rule :math:`\sigma' = \sigma(1-\sigma)` for handgrad's hand-written sigmoid derivative),
**[L]** ``prove_layer_rules()`` (the matrix rules for every size), **[N]** ``prove_network`` on
the article's net (handgrad's backward for every activation at once). ``tests/test_handout.py``
checks that the committed page is exactly what this module generates now.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import symengine as se

import handgrad as hg

__all__ = ["HANDOUT_PATH", "Formula", "HandoutError", "main", "render_handout", "write_handout"]

HANDOUT_PATH = Path(__file__).resolve().parents[2] / "docs" / "handout.md"
"""Where ``python -m handgrad.reference.docgen.handout`` writes the page."""

SIZES = hg.ARTICLE_SIZES  # (2, 3, 3, 1)


class HandoutError(AssertionError):
    """A formula on the page failed one of its checks: the page is not written."""


# ---------------------------------------------------------------------------------------------
# A formula is LaTeX and the SymEngine expression it denotes, built by the same calls.
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Formula:
    """LaTeX text and the SymEngine expression it stands for."""

    tex: str
    expr: Any
    atomic: bool = True  # needs no parentheses as a factor

    def __mul__(self, other: Formula) -> Formula:
        return Formula(f"{self._factor()}\\,{other._factor()}", self.expr * other.expr, True)

    def _factor(self) -> str:
        return self.tex if self.atomic else f"\\left({self.tex}\\right)"

    def bracket(self) -> Formula:
        return Formula(f"\\big[{self.tex}\\big]", self.expr, True)


def _sum(terms: Sequence[Formula]) -> Formula:
    return Formula(" + ".join(t.tex for t in terms), sum((t.expr for t in terms), se.Integer(0)), False)


def _prod(factors: Iterable[Formula]) -> Formula:
    it = iter(factors)
    out = next(it)
    for f in it:
        out = out * f
    return out


# symbols, 1-based as in the article
def _x(layer: int, i: int) -> Formula:
    return Formula(f"x_{{{layer}{i}}}", se.Symbol(f"x{layer}{i}"))


_YHAT = Formula(r"\hat y", se.Symbol("yhat"))
_Y = Formula("y", se.Symbol("y"))


def _w(layer: int, i: int, j: int) -> Formula:
    return Formula(f"w_{{{i}{j}}}^{{({layer})}}", se.Symbol(f"w{layer}_{i}{j}"))


def _b(layer: int, i: int) -> Formula:
    return Formula(f"b_{{{i}}}^{{({layer})}}", se.Symbol(f"b{layer}_{i}"))


def _out(layer: int, i: int) -> Formula:
    """The article's name of unit i of layer ``layer``'s output: x_{2i}, x_{3i} or yhat."""
    return _YHAT if layer == len(SIZES) - 1 else _x(layer + 1, i)


def _inp(layer: int, j: int) -> Formula:
    """The article's name of input j of layer ``layer``: x_{1j}, x_{2j} or x_{3j}."""
    return _x(layer, j)


def _sig_prime(layer: int, i: int) -> Formula:
    """The article's x(1 - x) for unit i of layer ``layer``."""
    a = _out(layer, i)
    return Formula(f"{a.tex}(1-{a.tex})", a.expr * (1 - a.expr), True)


_DL_DYHAT = Formula(r"2(\hat y - y)", 2 * (_YHAT.expr - _Y.expr), True)


def _path(layer: int, i: int) -> Formula:
    r"""Sum over the paths from output i of layer ``layer`` to :math:`\hat y` (the net has one output):
    weights times the sigmoid factors :math:`x(1-x)` of the units crossed on the way."""
    last = len(SIZES) - 1
    if layer == last - 1:
        return _w(last, 1, i)
    nxt = layer + 1
    terms = [_prod([_path(nxt, k), _sig_prime(nxt, k), _w(nxt, k, i)]) for k in range(1, SIZES[nxt] + 1)]
    return terms[0] if len(terms) == 1 else _sum(terms).bracket()


def _dl_dout(layer: int, i: int) -> Formula:
    r"""Closed form of :math:`\partial L/\partial(\text{output } i \text{ of layer } l)`, the article's way:
    :math:`\partial L/\partial\hat y\;\hat y(1-\hat y)` times the paths down to that unit."""
    last = len(SIZES) - 1
    if layer == last:
        return _DL_DYHAT
    return _prod([_DL_DYHAT, _sig_prime(last, 1), _path(layer, i)])


def _dl_dw(layer: int, i: int, j: int) -> Formula:
    return _prod([_dl_dout(layer, i), _sig_prime(layer, i), _inp(layer, j)])


def _dl_db(layer: int, i: int) -> Formula:
    return _prod([_dl_dout(layer, i), _sig_prime(layer, i)])


def _lhs(name: str) -> str:
    return f"\\frac{{\\partial L}}{{\\partial {name}}}"


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------

def _param_symbol(name: str, idx: tuple[int, int]) -> Any:
    layer, (i, j) = int(name[1:]), (idx[0] + 1, idx[1] + 1)
    return _w(layer, i, j).expr if name[0] == "W" else _b(layer, i).expr


def _params() -> dict[str, np.ndarray]:
    net = hg.article_network()
    return {name: np.array([[_param_symbol(name, (i, j)) for j in range(shape[1])] for i in range(shape[0])],
                           dtype=object) for name, shape in net.param_shapes.items()}


def _forward_names(params: dict[str, np.ndarray]) -> list[tuple[Any, Any]]:
    """(pre-activation expression, the article's name of its activation) for every unit."""
    out, prev = [], [_x(1, j).expr for j in range(1, SIZES[0] + 1)]
    for layer in range(1, len(SIZES)):
        cur = []
        for i in range(SIZES[layer]):
            z = sum((params[f"W{layer}"][i, j] * prev[j] for j in range(SIZES[layer - 1])), params[f"B{layer}"][i, 0])
            name = _out(layer, i + 1).expr
            out.append((se.expand(z), name))
            cur.append(name)
        prev = cur
    return out


def _derivative_of_composite(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """[D]: SymEngine's diff of L = (sigma(z3) - y)^2, sigma undefined, sigma' read as sigma(1 - sigma)."""
    sigma = se.Function("sigma")
    names = dict(_forward_names(params))
    rep: dict[Any, Any] = {}
    prev = [_x(1, j).expr for j in range(1, SIZES[0] + 1)]
    for layer in range(1, len(SIZES)):
        cur = []
        for i in range(SIZES[layer]):
            z = sum((params[f"W{layer}"][i, j] * prev[j] for j in range(SIZES[layer - 1])), params[f"B{layer}"][i, 0])
            app = sigma(z)
            named = names[se.expand(z.xreplace(rep))]
            rep[app] = named
            rep[app.diff(params[f"B{layer}"][i, 0])] = named * (1 - named)  # the Subs for sigma'(z)
            cur.append(app)
        prev = cur
    loss = (prev[0] - _Y.expr) ** 2
    return {name: np.vectorize(lambda s: loss.diff(s).xreplace(rep), otypes=[object])(arr)
            for name, arr in params.items()}


def _handgrad_backward(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """[H]: handgrad's Network.backward_unchecked on symbols, activations opaque with f'(z) = a(1 - a)."""
    net = hg.article_network()
    names = dict(_forward_names(params))

    def forward(z: np.ndarray) -> np.ndarray:
        return np.vectorize(lambda e: names[se.expand(e)], otypes=[object])(z)

    def derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return a * (1 - a)

    def no_definition(z: Any, ops: Any) -> Any:
        raise TypeError("opaque")

    onet = copy.copy(net)
    onet.activations = tuple(hg.Activation(f"article_sigma{l}", no_definition, forward, derivative,
                                           output_range=(0.0, 1.0)) for l in range(1, len(SIZES)))
    X = np.array([[_x(1, j).expr] for j in range(1, SIZES[0] + 1)], dtype=object)
    Y = np.array([[_Y.expr]], dtype=object)
    return onet.backward_unchecked(params, onet.forward_unchecked(params, X), Y)


def _column(layer: int) -> np.ndarray:
    return np.array([[_out(layer, i).expr] for i in range(1, SIZES[layer] + 1)], dtype=object)


def _matrix_forms(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """[M]: the article's matrix forms evaluated on matrices of symbols."""
    x = np.array([[_x(1, j).expr] for j in range(1, SIZES[0] + 1)], dtype=object)
    x2, x3, yhat = _column(1), _column(2), _column(3)
    dl_dyhat = 2 * (yhat - _Y.expr)
    g3 = dl_dyhat * yhat * (1 - yhat)
    dl_dx3 = params["W3"].T @ g3
    g2 = dl_dx3 * x3 * (1 - x3)
    dl_dx2 = params["W2"].T @ g2
    g1 = dl_dx2 * x2 * (1 - x2)
    return {"W3": g3 @ x3.T, "B3": g3, "W2": g2 @ x2.T, "B2": g2, "W1": g1 @ x.T, "B1": g1,
            "x3": dl_dx3, "x2": dl_dx2}


def _check(label: str, name: str, formula: Formula, against: dict[str, np.ndarray], key: str,
           idx: tuple[int, int]) -> None:
    diff = se.expand(formula.expr - against[key][idx])
    if diff != 0:
        raise HandoutError(f"{name}: the displayed formula fails check [{label}] (difference {diff})")


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------

_FormulaTable = Callable[[int, int, int], Formula]


def _weight_block(layer: int, dw: _FormulaTable, db: Callable[[int, int], Formula],
                  checks: list[tuple[str, Formula, str, tuple[int, int]]]) -> list[str]:
    lines: list[str] = []
    n, nprev = SIZES[layer], SIZES[layer - 1]
    for i in range(1, n + 1):
        for j in range(1, nprev + 1):
            f = dw(layer, i, j)
            name = _w(layer, i, j).tex
            lines += ["$$", f"{_lhs(name)} = {f.tex}", "$$", ""]
            checks.append((f"w_{i}{j}^({layer})", f, f"W{layer}", (i - 1, j - 1)))
    for i in range(1, n + 1):
        f = db(layer, i)
        lines += ["$$", f"{_lhs(_b(layer, i).tex)} = {f.tex}", "$$", ""]
        checks.append((f"b_{i}^({layer})", f, f"B{layer}", (i - 1, 0)))
    return lines


_MARK_PER_WEIGHT = "*Certified:* **[D]** **[H]** exact, for every weight above; the rule $x(1-x)$ by **[S]**."


def render_handout(dw: _FormulaTable | None = None) -> str:
    r"""Generate the page's Markdown, after checking every formula ([D], [H], [M]).

    Args:
      dw: the per-weight formula builder, ``dw(layer, i, j) -> Formula`` (default: the closed
        forms above). Exposed so that a test can hand in a wrong formula and see the check fail.

    Raises:
      HandoutError: naming the first formula (in article notation) that fails a check.
    """
    dw = dw or _dl_dw
    params = _params()
    derived, hand, matrix = _derivative_of_composite(params), _handgrad_backward(params), _matrix_forms(params)
    checks: list[tuple[str, Formula, str, tuple[int, int]]] = []

    out: list[str] = [
        "<!-- Generated by `python -m handgrad.reference.docgen.handout`; do not edit by hand. "
        "tests/test_handout.py checks that this page is what the generator produces. -->",
        "",
        "# The article's network, gradient by gradient",
        "",
        "Every partial derivative of the article's 2-3-3-1 sigmoid network with squared-error loss, "
        "weight by weight, in the article's notation, followed by the matrix forms. Every formula on "
        "this page was checked exactly when the page was generated (legend at the end); none is "
        "typed by hand.",
        "",
        "## Notation and forward pass",
        "",
        "Input $x = (x_{11}, x_{12})^T$, hidden activations $x^{(2)} = (x_{21}, x_{22}, x_{23})^T$ "
        "and $x^{(3)} = (x_{31}, x_{32}, x_{33})^T$, output $\\hat y$, label $y$. "
        "$w_{ij}^{(l)}$ is the weight from unit $j$ of $x^{(l)}$ to unit $i$ of the next layer "
        "(element `W{l}[i-1, j-1]` in code), $b_i^{(l)}$ the bias. "
        "$\\sigma(u) = 1/(1+e^{-u})$ is the sigmoid (the article writes $\\delta(u)$):",
        "",
        "$$",
        "x_{2i} = \\sigma\\big(w_{i1}^{(1)} x_{11} + w_{i2}^{(1)} x_{12} + b_i^{(1)}\\big),\\quad "
        "x_{3i} = \\sigma\\Big(\\sum_{j=1}^{3} w_{ij}^{(2)} x_{2j} + b_i^{(2)}\\Big),\\quad "
        "\\hat y = \\sigma\\Big(\\sum_{j=1}^{3} w_{1j}^{(3)} x_{3j} + b_1^{(3)}\\Big),",
        "$$",
        "",
        "and the loss of one sample is $L = (\\hat y - y)^2$, so",
        "",
        "$$",
        f"{_lhs(chr(92) + 'hat y')} = {_DL_DYHAT.tex},\\qquad \\sigma'(u) = \\sigma(u)\\big(1-\\sigma(u)\\big),",
        "$$",
        "",
        "which is why the factor $x(1-x)$ appears wherever a sigmoid is crossed. "
        "*Certified:* the sigmoid rule by **[S]**.",
        "",
    ]

    sections = [
        (3, "Output layer", "Only $\\hat y$ depends on $w_{1i}^{(3)}$ and $b_1^{(3)}$:"),
        (2, "Second hidden layer",
         "$w_{ij}^{(2)}$ reaches the loss only through $x_{3i}$, and $x_{3i}$ through $\\hat y$:"),
        (1, "First hidden layer",
         "$w_{ij}^{(1)}$ reaches the loss through $x_{2i}$, which feeds all three of "
         "$x_{31}, x_{32}, x_{33}$; everything before $x_{2i}(1-x_{2i})$ is $\\partial L/\\partial x_{2i}$:"),
    ]
    inner = {  # dL/dx passed down: the article's intermediate results
        3: [(_x(3, i), _dl_dout(2, i)) for i in range(1, SIZES[2] + 1)],
        2: [(_x(2, j), _dl_dout(1, j)) for j in range(1, SIZES[1] + 1)],
        1: [],
    }
    inner_checks: list[tuple[str, Formula, str, tuple[int, int]]] = []
    matrix_tex = {
        3: [r"\frac{\partial L}{\partial \mathbf W^{(3)}} = \frac{\partial L}{\partial \hat y}\,\hat y(1-\hat y)\,"
            r"\boldsymbol x^{(3)T}",
            r"\frac{\partial L}{\partial \mathbf B^{(3)}} = \frac{\partial L}{\partial \hat y}\,\hat y(1-\hat y)",
            r"\frac{\partial L}{\partial \boldsymbol x^{(3)}} = \frac{\partial L}{\partial \hat y}\,\hat y(1-\hat y)\,"
            r"\mathbf W^{(3)T}"],
        2: [r"\frac{\partial L}{\partial \mathbf W^{(2)}} = \Big(\frac{\partial L}{\partial \boldsymbol x^{(3)}} "
            r"\odot \boldsymbol x^{(3)} \odot (1-\boldsymbol x^{(3)})\Big)\,\boldsymbol x^{(2)T}",
            r"\frac{\partial L}{\partial \mathbf B^{(2)}} = \frac{\partial L}{\partial \boldsymbol x^{(3)}} "
            r"\odot \boldsymbol x^{(3)} \odot (1-\boldsymbol x^{(3)})",
            r"\frac{\partial L}{\partial \boldsymbol x^{(2)}} = \mathbf W^{(2)T}\Big(\frac{\partial L}"
            r"{\partial \boldsymbol x^{(3)}} \odot \boldsymbol x^{(3)} \odot (1-\boldsymbol x^{(3)})\Big)"],
        1: [r"\frac{\partial L}{\partial \mathbf W^{(1)}} = \Big(\frac{\partial L}{\partial \boldsymbol x^{(2)}} "
            r"\odot \boldsymbol x^{(2)} \odot (1-\boldsymbol x^{(2)})\Big)\,\boldsymbol x^{T}",
            r"\frac{\partial L}{\partial \mathbf B^{(1)}} = \frac{\partial L}{\partial \boldsymbol x^{(2)}} "
            r"\odot \boldsymbol x^{(2)} \odot (1-\boldsymbol x^{(2)})"],
    }
    for layer, title, lead in sections:
        out += [f"## {title}", "", lead, ""]
        out += _weight_block(layer, dw, _dl_db, checks)
        out += [_MARK_PER_WEIGHT, ""]
        if inner[layer]:
            out += ["Passed down to the layer below:", ""]
            for k, (var, f) in enumerate(inner[layer]):
                out += ["$$", f"{_lhs(var.tex)} = {f.tex}", "$$", ""]
                inner_checks.append((f"dL/d{var.tex}", f, f"x{layer}", (k, 0)))
            out += ["*Certified:* **[M]** equal to the entries of the matrix form "
                    r"$\partial L/\partial \boldsymbol x^{(" + str(layer) + ")}$ below, and **[L]** "
                    "($W^T$ rule) for every size; each is the factor the layer below multiplies.", ""]
        out += ["Matrix form:", ""]
        for tex in matrix_tex[layer]:
            out += ["$$", tex, "$$", ""]
        out += ["*Certified:* **[M]** equal entry by entry to the per-weight forms above, and **[L]** "
                "for every layer size.", ""]

    out += [
        "## Batches",
        "",
        "Over a batch of $m$ samples (columns of $X$) handgrad's loss is the mean "
        "$L = \\frac1m\\sum_{k=1}^m (\\hat y_k - y_k)^2$, the article's batch gradient descent; "
        "every gradient above becomes the mean of its per-sample value, and in matrix form "
        "$\\partial L/\\partial \\mathbf B^{(l)}$ sums the per-sample columns "
        "($\\delta\\,\\mathbf 1_m$). *Certified:* **[N]** (with $m = 2$) and **[L]** (any $m$).",
        "",
        "## How each formula was certified",
        "",
        "| mark | what was shown | where |",
        "|---|---|---|",
        "| **[D]** | the formula equals SymEngine's derivative of the composite loss "
        "$L = (\\sigma(z^{(3)}) - y)^2$, $\\sigma$ an undefined function with $\\sigma' = \\sigma(1-\\sigma)$ "
        "(expand of the difference is 0) | `python -m handgrad.reference.docgen.handout`, `tests/test_handout.py` |",
        "| **[H]** | the formula equals what handgrad's own `Network.backward_unchecked` computes on symbols "
        "for this net (activations opaque, $f'(z) = a(1-a)$) | same |",
        "| **[M]** | the matrix forms, evaluated on matrices of symbols, equal the per-weight forms "
        "entry by entry | same |",
        "| **[S]** | handgrad's hand-written sigmoid derivative equals $\\frac{d}{dz}\\sigma$ exactly, "
        "branch by branch ($z<0$, $z>0$, $z=0$), i.e. $\\sigma(1-\\sigma)$ | `prove_activation(\"sigmoid\")`, "
        "`tests/test_proof.py::test_activation_rule_is_proved` |",
        "| **[L]** | the layer rules $\\partial L/\\partial W = \\delta a^T$, "
        "$\\partial L/\\partial B = \\delta\\mathbf 1$, "
        "$\\partial L/\\partial a = W^T\\delta$, $\\delta = \\partial L/\\partial a \\odot f'(z)$ for symbolic "
        "sizes | `prove_layer_rules()`, `tests/test_proof.py::test_layer_rules_for_all_sizes` |",
        "| **[N]** | handgrad's backward for this architecture equals the derivative of the composite loss "
        "for every choice of activation (deterministic, SymEngine) | `prove_network(article_network())`, "
        "`tests/test_proof.py::test_article_network_symbolic` |",
        "",
        "See [exact-certificates.md](exact-certificates.md) for how the proofs work.",
        "",
    ]

    for name, formula, key, idx in checks:
        _check("D", name, formula, derived, key, idx)
        _check("H", name, formula, hand, key, idx)
        _check("M", name, formula, matrix, key, idx)
    for name, formula, key, idx in inner_checks:
        _check("M", name, formula, matrix, key, idx)
    return "\n".join(out)


def write_handout(path: Path | str = HANDOUT_PATH) -> Path:
    """Check every formula and write the page (``docs/handout.md`` by default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_handout(), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m handgrad.reference.docgen.handout [--out PATH]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HANDOUT_PATH, help="where to write the page")
    args = parser.parse_args(argv)
    print(f"wrote {write_handout(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
