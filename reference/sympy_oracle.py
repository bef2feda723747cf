r"""The SymPy oracle: closed-form gradients by differentiating the *composite* loss.

For a network (sizes, activations, loss) the per-sample loss is built as **one expression** in
symbols named in the article's notation -- weights :math:`w_{ij}^{(l)}`, biases :math:`b_i^{(l)}`,
inputs :math:`x_{1j}` (the article's input layer), labels :math:`y_k` -- from the shared
definitions only:

.. math::
   z^{(l)} = W^{(l)} x^{(l)} + B^{(l)}, \quad x^{(l+1)} = f_l(z^{(l)}), \quad
   \ell = \text{loss.definition}(x^{(L+1)}, y) \ \ (\text{or the fused rule's definition on } z^{(L)}),

and :math:`\partial\ell/\partial w` is obtained for every weight and bias by differentiating that
composite expression symbol by symbol. The backprop recurrence is never used, and nothing of
handgrad's numpy forward or hand-written derivatives is called (only metadata and definitions).

Engine. The expressions are built and differentiated with SymEngine, SymPy's C++ core (the same
symbolic algebra, 100-1000x faster; ``sympy.sympify`` converts both ways), and evaluated by
``symengine.Lambdify`` with common-subexpression elimination, vectorized over the samples. The
batch gradient is the mean over the samples of the per-sample closed forms. :meth:`SympyOracle.grads_mp`
evaluates the same closed forms with mpmath at any precision (through SymPy) for a high-precision
reference value.

Kinks. Definitions write kinks as ``where(z > k, right, left)``, which becomes
``Piecewise((right, z > k), (left, True))``; its derivative is ``Piecewise((right', z > k), (left',
True))``, so at :math:`z = k` exactly the oracle takes the left branch -- handgrad's convention
(relu'(0) = 0). ``Heaviside`` is never used (SymPy's Heaviside(0) is 1/2).

Size limit. Derivation and ``Lambdify`` costs grow with the size of the composite: measured here
(2 cores, SymEngine 0.15, build + diff + Lambdify): 2-3-3-1 sigmoid 0.02 s; 4-8-8-1 sigmoid (121
parameters) 0.1 s; 3-3-3-3-3-1 relu 0.1 s; 4-2-3-3-2-1 elu/tanh 0.05 s; but 8-8-8-8-8-8 leaky ReLU
(360 parameters, deep Piecewise nests) 32 s in ``Lambdify``. The oracle therefore declines networks
with more than :data:`SYMPY_MAX_PARAMS` parameters, raising ``ValueError`` (the referee records it
and relies on JAX and finite differences there).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np
import symengine as se

from handgrad import Network, Params

from ._inputs import NonFiniteError, check_batch, check_network, first_nonfinite
from .jax_oracle import architecture_key

__all__ = ["SYMPY_MAX_PARAMS", "SympyOracle", "get_sympy_oracle", "sympy_grads", "SYMENGINE_OPS"]

SYMPY_MAX_PARAMS = 200
"""Networks with more parameters are declined (see the module docstring)."""

_CACHE: OrderedDict[Hashable, SympyOracle] = OrderedDict()
_CACHE_SIZE = 64


def _lift(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
    uf = np.frompyfunc(f, 1, 1)

    def g(x: Any) -> Any:
        return uf(x).astype(object) if isinstance(x, np.ndarray) else f(x)

    return g


class _SymEngineOps:
    """The ``Ops`` namespace on SymEngine expressions (scalars or numpy object arrays)."""

    pi = se.pi

    def __init__(self) -> None:
        self.exp, self.log, self.tanh = _lift(se.exp), _lift(se.log), _lift(se.tanh)
        self.erf, self.erfc, self.sqrt = _lift(se.erf), _lift(se.erfc), _lift(se.sqrt)
        self.log1p = _lift(lambda x: se.log(1 + x))
        self.expm1 = _lift(lambda x: se.exp(x) - 1)
        self._where = np.frompyfunc(lambda c, x, y: se.Piecewise((x, c), (y, True)), 3, 1)

    def where(self, cond: Any, x: Any, y: Any) -> Any:
        if any(isinstance(v, np.ndarray) for v in (cond, x, y)):
            return self._where(cond, x, y).astype(object)
        return se.Piecewise((x, cond), (y, True))

    @staticmethod
    def colsum(x: Any) -> Any:
        return np.sum(x, axis=0, keepdims=True) if isinstance(x, np.ndarray) else x


SYMENGINE_OPS = _SymEngineOps()


def _apply(act: Any, z: np.ndarray, ops: Any) -> np.ndarray:
    """An activation's definition on a column of expressions (elementwise ones per scalar, so a
    comparison ``z > 0`` stays symbolic instead of being forced to a bool by numpy)."""
    if act.elementwise:
        return np.array([[act.definition(v, ops)] for v in z[:, 0]], dtype=object)
    return np.asarray(act.definition(z, ops), dtype=object)


class SympyOracle:
    """Closed-form gradients of one architecture, derived once and reused.

    Attributes:
      symbols: ``{"W1": object array of w_{ij}^{(1)}, "B1": ..., "X": x_{1j} column, "Y": y_k column}``.
      loss_expr: the per-sample loss as one expression.
      grad_exprs: ``{"W1": object array of d loss / d w_{ij}^{(1)}, ...}`` (per sample).
      yhat_exprs: the output column as expressions.
    """

    def __init__(self, net: Network) -> None:
        check_network(net, "SympyOracle")
        if net.n_params > SYMPY_MAX_PARAMS:
            raise ValueError(f"{net.describe()} has {net.n_params} parameters, more than the SymPy oracle's "
                             f"limit of {SYMPY_MAX_PARAMS} (derivation cost); JAX and finite differences "
                             f"referee it")
        self._net = net
        syms: dict[str, np.ndarray] = {}
        for l in range(1, net.depth + 1):
            n, k = net.param_shapes[f"W{l}"]
            syms[f"W{l}"] = np.array([[se.Symbol(f"w_{{{i + 1}{j + 1}}}^{{({l})}}") for j in range(k)]
                                      for i in range(n)], dtype=object)
            syms[f"B{l}"] = np.array([[se.Symbol(f"b_{{{i + 1}}}^{{({l})}}")] for i in range(n)], dtype=object)
        syms["X"] = np.array([[se.Symbol(f"x_{{1{j + 1}}}")] for j in range(net.sizes[0])], dtype=object)
        syms["Y"] = np.array([[se.Symbol(f"y_{{{k + 1}}}")] for k in range(net.sizes[-1])], dtype=object)
        self.symbols = syms
        a = syms["X"]
        z = a
        for l, act in enumerate(net.activations, start=1):
            z = syms[f"W{l}"] @ a + syms[f"B{l}"]
            a = _apply(act, z, SYMENGINE_OPS)
        rule = net.fused_rule
        ell = rule.definition(z, syms["Y"], SYMENGINE_OPS) if rule is not None else \
            net.loss.definition(a, syms["Y"], SYMENGINE_OPS)
        self.loss_expr = np.asarray(ell, dtype=object).reshape(-1)[0]
        self.yhat_exprs = a[:, 0].tolist()
        self.grad_exprs: dict[str, np.ndarray] = {}
        for name in net.param_names:
            s = syms[name]
            self.grad_exprs[name] = np.array([[self.loss_expr.diff(s[i, j]) for j in range(s.shape[1])]
                                              for i in range(s.shape[0])], dtype=object)
        self._args = [v for k in net.param_names for v in syms[k].ravel()] + \
            list(syms["X"].ravel()) + list(syms["Y"].ravel())
        flat = [g for k in net.param_names for g in self.grad_exprs[k].ravel()]
        self._grad_fn = se.Lambdify(self._args, flat, cse=True)
        self._out_fn = se.Lambdify(self._args, [*self.yhat_exprs, self.loss_expr], cse=True)

    @property
    def net(self) -> Network:
        return self._net

    def _inputs(self, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray | None) -> np.ndarray:
        m = X.shape[1]
        theta = np.concatenate([np.asarray(params[k], dtype=np.float64).ravel() for k in self._net.param_names])
        Yv = np.zeros((self._net.sizes[-1], m)) if Y is None else np.asarray(Y, dtype=np.float64)
        rows = np.concatenate([np.broadcast_to(theta, (m, theta.size)), np.asarray(X, np.float64).T, Yv.T], axis=1)
        return np.ascontiguousarray(rows)

    def _guard(self, what: str, values: np.ndarray) -> np.ndarray:
        bad = first_nonfinite(values)
        if bad is not None:
            raise NonFiniteError(f"SymPy oracle: the closed form of {what} evaluated to {values[bad]} at {bad} "
                                 f"(a definition overflowed in float64?)")
        return values

    def forward(self, params: Mapping[str, np.ndarray], X: np.ndarray) -> np.ndarray:
        r""":math:`\hat y`, shape ``(nL, m)``, float64."""
        check_batch(self._net, params, X, None)
        out = np.asarray(self._out_fn(self._inputs(params, X, None))).reshape(X.shape[1], -1)
        return self._guard("yhat", out[:, :-1].T.copy())

    def loss(self, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> float:
        """Mean over the batch of the per-sample loss."""
        check_batch(self._net, params, X, Y)
        out = np.asarray(self._out_fn(self._inputs(params, X, Y))).reshape(X.shape[1], -1)
        return float(self._guard("the loss", out[:, -1]).mean())

    def grads(self, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> Params:
        """Gradients of the mean batch loss, float64, from the closed forms."""
        check_batch(self._net, params, X, Y)
        per_sample = np.asarray(self._grad_fn(self._inputs(params, X, Y))).reshape(X.shape[1], -1)
        mean = per_sample.mean(axis=0)
        out: Params = {}
        start = 0
        for k, shape in self._net.param_shapes.items():
            size = shape[0] * shape[1]
            out[k] = self._guard(k, mean[start:start + size].reshape(shape).copy())
            start += size
        return out

    def grads_mp(self, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray, dps: int = 40) -> Params:
        """The same closed forms evaluated with mpmath at ``dps`` digits, rounded to float64."""
        import mpmath
        import sympy as sp

        check_batch(self._net, params, X, Y)
        args = [sp.sympify(a) for a in self._args]
        flat = [sp.sympify(g) for k in self._net.param_names for g in self.grad_exprs[k].ravel()]
        f = sp.lambdify(args, flat, modules="mpmath")
        rows = self._inputs(params, X, Y)
        with mpmath.workdps(dps):
            acc = [mpmath.mpf(0)] * len(flat)
            for r in rows:
                vals = f(*[mpmath.mpf(float(v)) for v in r])
                acc = [s + v for s, v in zip(acc, vals, strict=True)]
            mean = [float(s / len(rows)) for s in acc]
        out: Params = {}
        start = 0
        for k, shape in self._net.param_shapes.items():
            size = shape[0] * shape[1]
            out[k] = np.array(mean[start:start + size], dtype=np.float64).reshape(shape)
            start += size
        return out

    def latex(self, name: str, i: int, j: int = 1) -> str:
        r"""The closed form of :math:`\partial L/\partial w_{ij}^{(l)}` (or :math:`b_i^{(l)}`) for one
        sample, as LaTeX in the article's notation: each unit's activation :math:`f(z)` is written as
        its value :math:`x_{l+1,i}` (:math:`\hat y` for the output), its derivative as
        :math:`f'(z^{(l)}_i)` -- or, for the sigmoid, :math:`x(1-x)` (the article's form; the rule
        itself is proven by ``reference.proof.prove_activation``)."""
        return _latex(self._net, name, i, j)


def _latex(net: Network, name: str, i: int, j: int) -> str:
    import sympy as sp

    if not (isinstance(name, str) and len(name) >= 2 and name[0] in "WB" and name[1:].isdigit()):
        raise ValueError(f"name must be a parameter name like 'W2' or 'B1', got {name!r}")
    if name not in net.param_shapes:
        raise ValueError(f"{name!r} is not a parameter of {net.describe()}; parameters: {net.param_names}")
    rows, cols = net.param_shapes[name]
    if not (1 <= i <= rows and 1 <= j <= cols):
        raise ValueError(f"{name}: i must be in 1..{rows} and j in 1..{cols}, got i={i}, j={j}")
    L = net.depth
    # Opaque unit functions: the composite is differentiated by SymPy, then each f(z) is written as
    # the unit's activation symbol and each f'(z) as the unit's derivative symbol.
    W = {l: sp.Matrix(net.param_shapes[f"W{l}"][0], net.param_shapes[f"W{l}"][1],
                      lambda r, c, l=l: sp.Symbol(f"w_{{{r + 1}{c + 1}}}^{{({l})}}")) for l in range(1, L + 1)}
    B = {l: sp.Matrix(net.param_shapes[f"B{l}"][0], 1, lambda r, c, l=l: sp.Symbol(f"b_{{{r + 1}}}^{{({l})}}"))
         for l in range(1, L + 1)}
    x = sp.Matrix(net.sizes[0], 1, lambda r, c: sp.Symbol(f"x_{{1{r + 1}}}"))
    y = sp.Matrix(net.sizes[-1], 1, lambda r, c: sp.Symbol(f"y_{{{r + 1}}}" if net.sizes[-1] > 1 else "y"))
    f = {l: sp.Function(f"f_{l}") for l in range(1, L + 1)}
    a, zs = x, {}
    for l in range(1, L + 1):
        zs[l] = W[l] * a + B[l]
        a = zs[l].applyfunc(f[l])
    rule = net.fused_rule
    if rule is not None or not net.activations[-1].elementwise:
        raise ValueError("LaTeX rendering covers elementwise output activations with an unfused loss")
    from .ops import SYMPY_OPS

    p = [sp.Symbol(f"p_{k}") for k in range(net.sizes[-1])]
    pc, yc = np.array([[v] for v in p], dtype=object), np.array([[v] for v in y], dtype=object)
    ell = sp.sympify(np.asarray(net.loss.definition(pc, yc, SYMPY_OPS)).reshape(-1)[0])
    ell = ell.subs({p[k]: a[k] for k in range(len(p))}, simultaneous=True)
    target = (W if name[0] == "W" else B)[int(name[1:])][i - 1, j - 1]
    d = sp.diff(ell, target).doit()
    repl: dict[Any, Any] = {}
    for l in range(1, L + 1):
        for u in range(zs[l].rows):
            repl[f[l](zs[l][u])] = _unit_value(net, l, u)
    d = _replace_units(d, f, zs, repl, net)
    sym = f"w_{{{i}{j}}}" if name[0] == "W" else f"b_{{{i}}}"
    lhs = rf"\frac{{\partial L}}{{\partial {sym}^{{({name[1:]})}}}}"
    return lhs + " = " + sp.latex(sp.factor_terms(d))


def _unit_value(net: Network, l: int, u: int) -> Any:
    """The article's name for the activation of unit u (0-based) of layer l: x_{l+1,u+1} or yhat."""
    import sympy as sp

    if l == net.depth:
        return sp.Symbol(r"\hat y" if net.sizes[-1] == 1 else rf"\hat y_{{{u + 1}}}")
    return sp.Symbol(f"x_{{{l + 1}{u + 1}}}")


def _unit_derivative(net: Network, l: int, u: int) -> Any:
    import sympy as sp

    val = _unit_value(net, l, u)
    act = net.activations[l - 1]
    if act.name == "identity":
        return sp.Integer(1)
    if act.name == "sigmoid":
        return val * (1 - val)
    return sp.Symbol(rf"{act.name}'(z^{{({l})}}_{{{u + 1}}})")


def _replace_units(expr: Any, f: dict, zs: dict, repl: dict, net: Network) -> Any:
    """Write f_l(z) as the unit's activation and f_l'(z) as its derivative, bottom-up."""
    import sympy as sp

    layer_of = {fn: l for l, fn in f.items()}

    def unit(l: int, point: Any) -> int:
        return next(k for k in range(zs[l].rows) if sp.expand(point - zs[l][k]) == 0)

    def walk(e: Any) -> Any:
        if isinstance(e, sp.Subs) and isinstance(e.expr, sp.Derivative) and e.expr.expr.func in layer_of:
            l = layer_of[e.expr.expr.func]
            return _unit_derivative(net, l, unit(l, e.point[0]))
        if isinstance(e, sp.Derivative) and e.expr.func in layer_of:
            l = layer_of[e.expr.func]
            return _unit_derivative(net, l, unit(l, e.expr.args[0]))
        if e in repl:
            return repl[e]
        if e.args:
            return e.func(*[walk(a) for a in e.args])
        return e

    return walk(expr)


def get_sympy_oracle(net: Network) -> SympyOracle:
    """The (cached) oracle for ``net``'s architecture."""
    check_network(net, "get_sympy_oracle")
    key = architecture_key(net)
    oracle = _CACHE.get(key)
    if oracle is None:
        oracle = SympyOracle(net)
        _CACHE[key] = oracle
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return oracle


def sympy_grads(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> Params:
    """Convenience: ``get_sympy_oracle(net).grads(params, X, Y)``."""
    return get_sympy_oracle(net).grads(params, X, Y)


