r"""The article's walk from the output layer down, generated for any small net and checked exactly.

:class:`Derivation` builds, for a :class:`handgrad.Network` with elementwise activations (the last
one may be a softmax fused with cross-entropy), every per-weight gradient in the factored
chain-rule form of the article: the factor passed down from the layer above, times the local
derivative of the unit, times the input,

.. math::

   \frac{\partial L}{\partial w_{ij}^{(l)}} = \frac{\partial L}{\partial x_{l+1,i}}\;
   f_l'(z_i^{(l)})\; x_{lj},\qquad
   \frac{\partial L}{\partial x_{lj}} = \sum_k \frac{\partial L}{\partial x_{l+1,k}}\, f_l'(z_k^{(l)})\, w_{kj}^{(l)},

written out in closed form (the article's nested brackets), plus :math:`\partial L/\partial x`
passed down and the matrix forms. Each displayed formula is a :class:`Formula`: its LaTeX and the
SymEngine expression it denotes are built by the same calls, so what is checked is what is shown.
:meth:`Derivation.check` runs, and :class:`DerivationError` names the first formula that fails:

* **[D]** the formula equals SymEngine's derivative of the composite loss, each activation an
  undefined function whose derivative is read as the displayed local rule (exact: the expanded
  difference is 0). With a fused head (sigmoid + BCE, softmax + cross-entropy) the loss is taken
  at its linearization in :math:`z^{(L)}` (exact for first derivatives), and the displayed
  :math:`\partial\ell/\partial z^{(L)}` is shown separately to equal SymPy's derivative of
  :math:`\ell(f_L(z), y)` (labels summing to 1 where the loss says so);
* **[R]** every displayed local rule equals SymPy's derivative of the activation's shared
  definition on each side of 0 (the kink convention is handgrad's, proved by **[S]**);
* **[H]** the formula equals handgrad's own ``Network.backward_unchecked`` run on symbols
  (activations opaque), where handgrad's loss gradient runs on symbols;
* **[M]** the matrix forms, evaluated on matrices of symbols, equal the per-weight forms.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import symengine as se
import sympy as sp

import handgrad as hg
from handgrad.notation import element_latex, index_text

from ..oracles.ops import SYMPY_OPS

__all__ = [
    "Derivation",
    "DerivationError",
    "Formula",
    "LocalRule",
    "UnsupportedNetwork",
    "local_rule",
]


class DerivationError(AssertionError):
    """A generated formula failed one of its exact checks."""


class UnsupportedNetwork(ValueError):
    """The handout generator cannot write this network's derivation (the message says why)."""


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


def _prod(factors: Iterable[Formula | None]) -> Formula:
    present = [f for f in factors if f is not None]
    out = present[0]
    for f in present[1:]:
        out = out * f
    return out


# ---------------------------------------------------------------------------------------------
# Local rules: how the derivative of one unit's activation is written
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LocalRule:
    r"""How :math:`f'(z)` of one activation is displayed.

    Args:
      activation: the registered name.
      symbol: LaTeX of the function, e.g. ``\sigma``.
      definition: LaTeX of :math:`f(u)`.
      words: what the activation is called in prose, per language (``{"en": ..., "zh": ...}``).
      factor: ``factor(a, z) -> LaTeX`` of :math:`f'(z)` for a unit whose output is written ``a``
        and pre-activation ``z`` (atomic: safe as a factor); ``""`` when :math:`f' = 1`.
      vector: ``vector(a, z) -> LaTeX`` of the elementwise factor for column vectors.
      in_output: ``in_output(a) -> SymEngine`` when :math:`f'` is a polynomial in the output
        ``a`` (sigmoid :math:`a(1-a)`); ``None`` when it is written in z.
      sympy_rule: ``sympy_rule(u, f_u) -> SymPy`` of :math:`f'(u)` (``f_u`` is :math:`f(u)`),
        checked against SymPy's derivative of the shared definition (**[R]**).
      rule_tex: LaTeX of :math:`f'(u)` in terms of u.
    """

    activation: str
    symbol: str
    definition: str
    words: dict[str, str]
    factor: Callable[[str, str], str]
    vector: Callable[[str, str], str]
    in_output: Callable[[Any], Any] | None
    sympy_rule: Callable[[Any, Any], Any]
    rule_tex: str


def _phi(u: Any) -> Any:
    return sp.exp(-u ** 2 / 2) / sp.sqrt(2 * sp.pi)


def _Phi(u: Any) -> Any:
    return sp.erfc(-u / sp.sqrt(2)) / 2


_RULES: dict[str, LocalRule] = {r.activation: r for r in (
    LocalRule("sigmoid", r"\sigma", r"1/(1+e^{-u})", {"en": "sigmoid", "zh": "sigmoid 函数"},
              lambda a, z: f"{a}(1-{a})", lambda a, z: f"{a} \\odot (1-{a})",
              lambda a: a * (1 - a), lambda u, f: f * (1 - f), r"\sigma(u)\big(1-\sigma(u)\big)"),
    LocalRule("tanh", r"\tanh", r"\tanh u", {"en": "tanh", "zh": "tanh 函数"},
              lambda a, z: f"(1-{a}^2)", lambda a, z: f"(1-{a} \\odot {a})",
              lambda a: 1 - a * a, lambda u, f: 1 - f ** 2, r"1-\tanh^2 u"),
    LocalRule("identity", r"\operatorname{id}", r"u", {"en": "identity", "zh": "恒等函数"},
              lambda a, z: "", lambda a, z: "", lambda a: se.Integer(1), lambda u, f: sp.Integer(1), "1"),
    LocalRule("relu", r"\operatorname{relu}", r"\max(u, 0)", {"en": "ReLU", "zh": "ReLU 函数"},
              lambda a, z: f"\\mathbf 1[{z} > 0]", lambda a, z: f"\\mathbf 1[{z} > 0]",
              None, lambda u, f: sp.Piecewise((1, u > 0), (0, True)), r"\mathbf 1[u > 0]"),
    LocalRule("elu", r"\operatorname{elu}", r"u\ (u>0),\ e^u-1\ (u\le 0)", {"en": "ELU", "zh": "ELU 函数"},
              lambda a, z: f"e^{{\\min({z},0)}}", lambda a, z: f"e^{{\\min({z},0)}}",
              None, lambda u, f: sp.Piecewise((1, u > 0), (sp.exp(u), True)), r"e^{\min(u,0)}"),
    LocalRule("softplus", r"\operatorname{softplus}", r"\log(1+e^u)", {"en": "softplus", "zh": "softplus 函数"},
              lambda a, z: f"\\sigma({z})", lambda a, z: f"\\sigma({z})",
              None, lambda u, f: 1 / (1 + sp.exp(-u)), r"\sigma(u)"),
    LocalRule("silu", r"\operatorname{silu}", r"u\,\sigma(u)", {"en": "SiLU", "zh": "SiLU 函数"},
              lambda a, z: f"\\sigma({z})\\big(1+{z}(1-\\sigma({z}))\\big)",
              lambda a, z: f"\\sigma({z}) \\odot \\big(1+{z} \\odot (1-\\sigma({z}))\\big)",
              None, lambda u, f: (1 / (1 + sp.exp(-u))) * (1 + u * (1 - 1 / (1 + sp.exp(-u)))),
              r"\sigma(u)\big(1+u(1-\sigma(u))\big)"),
    LocalRule("gelu", r"\operatorname{gelu}", r"u\,\Phi(u)", {"en": "GELU", "zh": "GELU 函数"},
              lambda a, z: f"\\big(\\Phi({z}) + {z}\\,\\varphi({z})\\big)",
              lambda a, z: f"\\big(\\Phi({z}) + {z} \\odot \\varphi({z})\\big)",
              None, lambda u, f: _Phi(u) + u * _phi(u), r"\Phi(u) + u\,\varphi(u)"),
)}


def local_rule(activation: str | hg.Activation) -> LocalRule:
    """The display rule of a registered activation (``UnsupportedNetwork`` when there is none)."""
    act = hg.get_activation(activation)
    try:
        return _RULES[act.name]
    except KeyError:
        raise UnsupportedNetwork(
            f"activation {act.name!r} has no handout display rule; supported: {sorted(_RULES)} "
            "(and softmax as the last layer, fused with cross_entropy)") from None


class _Symbolic(np.ndarray):
    """Object array whose comparisons stay symbolic (a definition's ``z > 0`` on SymPy symbols)."""

    def __gt__(self, other: Any) -> Any:  # type: ignore[override]
        return np.frompyfunc(lambda a, b: a > b, 2, 1)(np.asarray(self), other)

    def __ge__(self, other: Any) -> Any:  # type: ignore[override]
        return np.frompyfunc(lambda a, b: a >= b, 2, 1)(np.asarray(self), other)

    def __lt__(self, other: Any) -> Any:  # type: ignore[override]
        return np.frompyfunc(lambda a, b: a < b, 2, 1)(np.asarray(self), other)

    def __le__(self, other: Any) -> Any:  # type: ignore[override]
        return np.frompyfunc(lambda a, b: a <= b, 2, 1)(np.asarray(self), other)


def _check_rule(rule: LocalRule) -> None:
    """[R]: the displayed rule equals d/du of the shared definition, for u > 0 and for u < 0."""
    act = hg.get_activation(rule.activation)
    u = sp.Symbol("u", real=True)
    t = sp.Symbol("t", positive=True)
    f_u = sp.sympify(np.asarray(act.definition(np.array([[u]], dtype=object).view(_Symbolic), SYMPY_OPS))[0, 0])
    for branch in (t, -t):
        diff = sp.diff(f_u, u).subs(u, branch) - rule.sympy_rule(u, f_u).subs(u, branch)
        if sp.simplify(diff) != 0:
            raise DerivationError(f"the displayed rule f'(u) = {rule.rule_tex} of {rule.activation} differs from "
                                  f"SymPy's derivative of its definition for u {'>' if branch == t else '<'} 0 "
                                  "(check [R])")


# ---------------------------------------------------------------------------------------------
# Loss heads
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Head:
    fused: bool
    labels_sum_to_one: bool
    loss_tex: str  # per-sample loss
    first: Callable[[int], Formula]  # dl/dyhat_k (not fused) or dl/dz_k (fused)


def _se_loss_tex(n: int) -> str:
    return r"(\hat y - y)^2" if n == 1 else r"\sum_k (\hat y_k - y_k)^2"


# ---------------------------------------------------------------------------------------------
# The derivation
# ---------------------------------------------------------------------------------------------

class Derivation:
    r"""Every gradient of one small network in the article's factored form, with its checks.

    Args:
      net: a :class:`handgrad.Network` whose activations all have a display rule
        (:func:`local_rule`), except a softmax last layer fused with cross-entropy.

    Raises:
      UnsupportedNetwork: naming what cannot be displayed (a vector-valued hidden activation,
        a loss without a display head).
    """

    def __init__(self, net: hg.Network) -> None:
        if not isinstance(net, hg.Network):
            raise TypeError(f"net must be a handgrad.Network, got {type(net).__name__}")
        self.net = net
        self.sizes = net.sizes
        self.L = net.depth
        fused = net.fused_rule is not None
        self.rules: list[LocalRule | None] = []
        for l, act in enumerate(net.activations, start=1):
            if l == self.L and fused:
                self.rules.append(_RULES.get(act.name))
                continue
            if not act.elementwise:
                raise UnsupportedNetwork(f"layer {l}: activation {act.name!r} is vector-valued; the handout "
                                         "writes it only as the last layer, fused with its loss (fuse=True)")
            self.rules.append(local_rule(act))
        self.head = self._make_head()

    # -- names -------------------------------------------------------------------------------

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    def out(self, l: int, i: int) -> Formula:
        """The article's name of the output of unit i of layer l: x_{l+1,i}, or yhat (yhat_i)."""
        if l == self.L:
            return self.yhat(i)
        return Formula(f"x_{{{index_text(l + 1, i)}}}", se.Symbol(f"x{l + 1}_{i}"))

    def yhat(self, k: int) -> Formula:
        if self.n_out == 1:
            return Formula(r"\hat y", se.Symbol("yhat"))
        return Formula(f"\\hat y_{{{k}}}", se.Symbol(f"yhat_{k}"))

    def label(self, k: int) -> Formula:
        if self.n_out == 1:
            return Formula("y", se.Symbol("y"))
        return Formula(f"y_{{{k}}}", se.Symbol(f"y_{k}"))

    def inp(self, l: int, j: int) -> Formula:
        """The article's name of input j of layer l: x_{lj}."""
        return Formula(f"x_{{{index_text(l, j)}}}", se.Symbol(f"x{l}_{j}"))

    def w(self, l: int, i: int, j: int) -> Formula:
        return Formula(element_latex(f"W{l}", (i - 1, j - 1)), se.Symbol(f"w{l}_{i}_{j}"))

    def b(self, l: int, i: int) -> Formula:
        return Formula(element_latex(f"B{l}", (i - 1, 0)), se.Symbol(f"b{l}_{i}"))

    def z_tex(self, l: int, i: int | str) -> str:
        return f"z_{{{i}}}^{{({l})}}"

    # -- local factors -----------------------------------------------------------------------

    def local(self, l: int, i: int) -> Formula | None:
        """f_l'(z_i^(l)) as the article writes it (x(1-x) for the sigmoid); None when it is 1."""
        rule = self.rules[l - 1]
        assert rule is not None
        a = self.out(l, i)
        tex = rule.factor(a.tex, self.z_tex(l, i))
        if not tex:
            return None
        expr = rule.in_output(a.expr) if rule.in_output is not None else se.Symbol(f"d{l}_{i}")
        return Formula(tex, expr, True)

    def local_expr(self, l: int, i: int) -> Any:
        f = self.local(l, i)
        return se.Integer(1) if f is None else f.expr

    def _make_head(self) -> _Head:
        net, n = self.net, self.n_out
        loss = net.loss.name
        if net.fused_rule is not None:
            act = net.activations[-1].name
            if (loss, act) == ("bce", "sigmoid"):
                tex = r"-\big[y\log\hat y + (1-y)\log(1-\hat y)\big]" if n == 1 else \
                    r"-\sum_k \big[y_k\log\hat y_k + (1-y_k)\log(1-\hat y_k)\big]"
                return _Head(True, False, tex, self._difference)
            if (loss, act) == ("cross_entropy", "softmax"):
                return _Head(True, True, r"-\sum_k y_k\log\hat y_k", self._difference)
            raise UnsupportedNetwork(f"no handout display for loss {loss!r} fused with {act!r}")
        if loss == "squared_error":
            def se_grad(k: int) -> Formula:
                yh, y = self.yhat(k), self.label(k)
                return Formula(f"2({yh.tex} - {y.tex})", 2 * (yh.expr - y.expr), True)
            return _Head(False, False, _se_loss_tex(n), se_grad)
        if loss == "bce":
            def bce_grad(k: int) -> Formula:
                yh, y = self.yhat(k), self.label(k)
                return Formula(f"\\frac{{{yh.tex} - {y.tex}}}{{{yh.tex}(1-{yh.tex})}}",
                               (yh.expr - y.expr) / (yh.expr * (1 - yh.expr)), True)
            tex = r"-\big[y\log\hat y + (1-y)\log(1-\hat y)\big]" if n == 1 else \
                r"-\sum_k \big[y_k\log\hat y_k + (1-y_k)\log(1-\hat y_k)\big]"
            return _Head(False, False, tex, bce_grad)
        raise UnsupportedNetwork(f"loss {loss!r} has no handout display head (supported: squared_error, bce; "
                                 "bce fused with sigmoid; cross_entropy fused with softmax)")

    def _difference(self, k: int) -> Formula:
        yh, y = self.yhat(k), self.label(k)
        return Formula(f"({yh.tex} - {y.tex})", yh.expr - y.expr, True)

    # -- the factored forms ------------------------------------------------------------------

    def top(self, k: int) -> list[Formula | None]:
        r""":math:`\partial L/\partial z_k^{(L)}` as factors: the fused difference, or
        :math:`\partial\ell/\partial\hat y_k` times the output's local derivative."""
        if self.head.fused:
            return [self.head.first(k)]
        return [self.head.first(k), self.local(self.L, k)]

    def _prefix(self) -> list[Formula | None]:
        """The factors every gradient shares when the net has one output (the article's
        :math:`\\partial L/\\partial\\hat y\\;\\hat y(1-\\hat y)`)."""
        return self.top(1) if self.n_out == 1 else []

    def path(self, l: int, i: int, *, bracket: bool = True) -> Formula:
        r"""Sum over the paths from output i of layer l (l < L) up to the loss, without the shared
        prefix; bracketed (as a factor) unless ``bracket`` is false."""
        nxt = l + 1
        if nxt == self.L:
            if self.n_out == 1:
                return self.w(self.L, 1, i)
            terms = [_prod([*self.top(k), self.w(self.L, k, i)]) for k in range(1, self.n_out + 1)]
        else:
            terms = [_prod([self.path(nxt, k), self.local(nxt, k), self.w(nxt, k, i)])
                     for k in range(1, self.sizes[nxt] + 1)]
        if len(terms) == 1:
            return terms[0]
        return _sum(terms).bracket() if bracket else _sum(terms)

    def dl_dout(self, l: int, i: int, *, standalone: bool = False) -> Formula:
        r"""Closed form of :math:`\partial L/\partial(\text{output } i \text{ of layer } l)`;
        ``standalone``: displayed on its own (a lone sum is not bracketed)."""
        if l == self.L:
            if self.head.fused:
                raise ValueError("with a fused head the output's gradient is not displayed; use dl_dz")
            return self.head.first(i)
        prefix = self._prefix()
        return _prod([*prefix, self.path(l, i, bracket=bool(prefix) or not standalone)])

    def dl_dz(self, l: int, i: int) -> list[Formula | None]:
        if l == self.L:
            return self.top(i)
        return [self.dl_dout(l, i), self.local(l, i)]

    def dl_dw(self, l: int, i: int, j: int) -> Formula:
        return _prod([*self.dl_dz(l, i), self.inp(l, j)])

    def dl_db(self, l: int, i: int) -> Formula:
        return _prod(self.dl_dz(l, i))

    # -- symbols for the checks --------------------------------------------------------------

    def params(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for l in range(1, self.L + 1):
            n, p = self.sizes[l], self.sizes[l - 1]
            out[f"W{l}"] = np.array([[self.w(l, i, j).expr for j in range(1, p + 1)] for i in range(1, n + 1)],
                                    dtype=object)
            out[f"B{l}"] = np.array([[self.b(l, i).expr] for i in range(1, n + 1)], dtype=object)
        return out

    def _inputs(self) -> list[Any]:
        return [self.inp(1, j).expr for j in range(1, self.sizes[0] + 1)]

    def _labels(self) -> list[Any]:
        return [self.label(k).expr for k in range(1, self.n_out + 1)]

    def _units(self, params: dict[str, np.ndarray]) -> dict[Any, tuple[int, int]]:
        """Expanded pre-activation (in the names of the layer below) -> (layer, unit)."""
        out: dict[Any, tuple[int, int]] = {}
        prev = self._inputs()
        for l in range(1, self.L + 1):
            for i in range(self.sizes[l]):
                z = sum((params[f"W{l}"][i, j] * prev[j] for j in range(self.sizes[l - 1])), params[f"B{l}"][i, 0])
                out[se.expand(z)] = (l, i + 1)
            prev = [self.out(l, i).expr for i in range(1, self.sizes[l] + 1)]
        return out

    def constrain(self, e: Any) -> Any:
        """Labels summing to 1 (losses on distributions): y_n = 1 - (y_1 + ... + y_{n-1})."""
        if not self.head.labels_sum_to_one:
            return e
        ys = self._labels()
        return e.xreplace({ys[-1]: 1 - sum(ys[:-1], se.Integer(0))})

    def derived(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """[D]: SymEngine's derivative of the composite loss, activations undefined functions."""
        rep: dict[Any, Any] = {}
        prev: list[Any] = self._inputs()
        for l in range(1, self.L + 1):
            f = se.Function(f"f{l}")
            cur = []
            for i in range(self.sizes[l]):
                bias = params[f"B{l}"][i, 0]
                z = sum((params[f"W{l}"][i, j] * prev[j] for j in range(self.sizes[l - 1])), bias)
                if l == self.L and self.head.fused:
                    cur.append(z)
                    continue
                app = f(z)
                rep[app] = self.out(l, i + 1).expr
                rep[app.diff(bias)] = self.local_expr(l, i + 1)  # the Subs standing for f_l'(z)
                cur.append(app)
            prev = cur
        if self.head.fused:  # linearized at z^(L): exact for the first derivatives
            cs = [se.Symbol(f"c_{k}") for k in range(1, self.n_out + 1)]
            loss = sum((c * z for c, z in zip(cs, prev, strict=True)), se.Integer(0))
            for k, c in enumerate(cs, start=1):
                rep[c] = self.head.first(k).expr
        else:
            loss = self._loss_of(prev)
        return {name: np.vectorize(lambda s: loss.diff(s).xreplace(rep), otypes=[object])(arr)
                for name, arr in params.items()}

    def _loss_of(self, outputs: Sequence[Any]) -> Any:
        n = self.n_out
        P = np.array([[sp.Symbol(f"p_{k}")] for k in range(1, n + 1)], dtype=object)
        Y = np.array([[sp.Symbol(f"ylabel_{k}")] for k in range(1, n + 1)], dtype=object)
        ell = se.sympify(self.net.loss.definition(P, Y, SYMPY_OPS)[0, 0])
        sub = {se.Symbol(f"p_{k}"): outputs[k - 1] for k in range(1, n + 1)}
        sub.update({se.Symbol(f"ylabel_{k}"): self._labels()[k - 1] for k in range(1, n + 1)})
        return ell.xreplace(sub)

    def check_fused_head(self) -> None:
        """[D], fused head: the displayed dl/dz_k equals SymPy's derivative of l(f_L(z), y)."""
        if not self.head.fused:
            return
        n = self.n_out
        U = np.array([[sp.Symbol(f"u_{k}", real=True)] for k in range(1, n + 1)], dtype=object)
        Y = np.array([[sp.Symbol(f"ylabel_{k}", real=True)] for k in range(1, n + 1)], dtype=object)
        A = self.net.activations[-1].definition(U, SYMPY_OPS)
        ell = self.net.loss.definition(A, Y, SYMPY_OPS)[0, 0]
        sub: dict[Any, Any] = {}
        for k in range(1, n + 1):
            sub[sp.Symbol(self.yhat(k).expr.name)] = A[k - 1, 0]
            sub[sp.Symbol(self.label(k).expr.name)] = Y[k - 1, 0]
        last = {Y[-1, 0]: 1 - sum(Y[:-1, 0])} if self.head.labels_sum_to_one else {}
        for k in range(1, n + 1):
            shown = sp.sympify(str(self.head.first(k).expr)).subs(sub)
            diff = (sp.diff(ell, U[k - 1, 0]) - shown).subs(last)
            if sp.simplify(diff) != 0:
                raise DerivationError(f"the displayed dl/dz_{k}^({self.L}) = {self.head.first(k).tex} differs from "
                                      "SymPy's derivative of the loss of the output activation (check [D])")

    def handgrad(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """[H]: handgrad's ``Network.backward_unchecked`` on symbols, activations opaque; None when
        handgrad's loss gradient validates numbers and cannot run on symbols."""
        units = self._units(params)

        def lookup(z: np.ndarray, pick: Callable[[int, int], Any]) -> np.ndarray:
            return np.vectorize(lambda e: pick(*units[se.expand(e)]), otypes=[object])(z)

        def no_definition(z: Any, ops: Any) -> Any:
            raise TypeError("opaque")

        acts = []
        for act in self.net.activations:
            acts.append(hg.Activation(act.name, no_definition,
                                      lambda z: lookup(z, lambda l, i: self.out(l, i).expr),
                                      lambda z, a: lookup(z, self.local_expr),
                                      output_range=act.output_range))
        onet = copy.copy(self.net)
        onet.activations = tuple(acts)
        X = np.array([[s] for s in self._inputs()], dtype=object)
        Y = np.array([[s] for s in self._labels()], dtype=object)
        try:
            return onet.backward_unchecked(params, onet.forward_unchecked(params, X), Y)
        except (TypeError, ValueError):
            return None

    def column(self, l: int) -> np.ndarray:
        return np.array([[self.out(l, i).expr] for i in range(1, self.sizes[l] + 1)], dtype=object)

    def matrix_forms(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """[M]: the matrix forms on matrices of symbols (``x{l}`` is dL/dx^(l), l >= 2)."""
        n = self.n_out
        locals_ = {l: np.array([[self.local_expr(l, i)] for i in range(1, self.sizes[l] + 1)], dtype=object)
                   for l in range(1, self.L + 1) if not (l == self.L and self.head.fused)}
        g = np.array([[self.head.first(k).expr] for k in range(1, n + 1)], dtype=object)
        if not self.head.fused:
            g = g * locals_[self.L]
        out: dict[str, np.ndarray] = {}
        for l in range(self.L, 0, -1):
            a_prev = np.array([[s] for s in self._inputs()], dtype=object) if l == 1 else self.column(l - 1)
            out[f"W{l}"], out[f"B{l}"] = g @ a_prev.T, g
            if l > 1:
                out[f"x{l}"] = params[f"W{l}"].T @ g
                g = out[f"x{l}"] * locals_[l - 1]
        return out

    # -- the checks --------------------------------------------------------------------------

    def _equal(self, a: Any, b: Any) -> bool:
        diff = se.expand(self.constrain(a - b))
        if diff == 0:
            return True
        return sp.cancel(sp.sympify(str(diff))) == 0  # rational heads (bce): combine the fractions

    def check(self, formulas: Sequence[tuple[str, Formula, str, tuple[int, int]]],
              passed: Sequence[tuple[str, Formula, str, tuple[int, int]]]) -> dict[str, bool]:
        """Run [R], [D], [H], [M] on the displayed ``formulas`` (name, formula, key, 0-based index
        into the gradients) and ``passed`` (the dL/dx shown, keyed ``x{l}``). Returns which marks
        ran (``H`` is False when handgrad's loss gradient cannot run on symbols)."""
        for rule in {r.activation: r for r in self.rules if r is not None}.values():
            _check_rule(rule)
        self.check_fused_head()
        params = self.params()
        derived, hand, matrix = self.derived(params), self.handgrad(params), self.matrix_forms(params)
        for name, formula, key, idx in formulas:
            for label, against in (("D", derived), ("H", hand), ("M", matrix)):
                if against is not None and not self._equal(formula.expr, against[key][idx]):
                    raise DerivationError(f"{name}: the displayed formula fails check [{label}]")
        for name, formula, key, idx in passed:
            if not self._equal(formula.expr, matrix[key][idx]):
                raise DerivationError(f"{name}: the displayed formula fails check [M]")
        return {"R": True, "D": True, "H": hand is not None, "M": True}
