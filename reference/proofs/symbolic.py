r"""The symbolic method of :func:`handgrad.reference.proofs.prove_network`: SymEngine ``diff`` + ``expand``.

Deterministic: handgrad's backward runs on SymEngine symbols with opaque activations, the
composite loss is differentiated by SymEngine with undefined activation functions, and
``expand(hand - diff) == 0`` for every parameter is the proof (details in
:mod:`handgrad.reference.proofs.network`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from handgrad import Network

from .errors import UnsupportedOperation, numpy_function_in
from .opaque import _failures, _opaque_activation, _swap

__all__ = ["SYMBOLIC_MAX_COST", "symbolic_cost"]

SYMBOLIC_MAX_COST = 2000
"""``method="auto"`` proves symbolically when :func:`symbolic_cost` is at most this.

The symbolic method expands every gradient into monomials; their number grows like the number of
paths from a first-layer unit to the output, so depth costs far more than width (timings in
docs/exact-certificates.md)."""


class _SymEngineOps:
    def __init__(self) -> None:
        import symengine as se

        self._se = se
        self.pi = se.pi
        self.exp = self._lift(se.exp)
        self.log = self._lift(se.log)
        self.log1p = self._lift(lambda x: se.log(1 + x))
        self.expm1 = self._lift(lambda x: se.exp(x) - 1)
        self.tanh = self._lift(se.tanh)
        self.erf = self._lift(se.erf)
        self.sqrt = self._lift(se.sqrt)

    @staticmethod
    def _lift(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
        uf = np.frompyfunc(f, 1, 1)
        return lambda x: uf(x).astype(object) if isinstance(x, np.ndarray) else f(x)

    def where(self, c: Any, x: Any, y: Any) -> Any:
        raise UnsupportedOperation("where in a loss definition (symbolic method)")

    @staticmethod
    def colsum(x: Any) -> Any:
        return np.sum(x, axis=0, keepdims=True) if isinstance(x, np.ndarray) else x


def symbolic_cost(net: Network) -> int:
    r"""Estimated size of the symbolic proof: parameters times the paths from a first-hidden-layer
    unit to one output, :math:`n_{params}\prod_{l=2}^{L-1} n_l` (the number of monomials in the
    expanded gradient of a first-layer weight)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a handgrad.Network, got {type(net).__name__}")
    return net.n_params * math.prod(net.sizes[2:-1])


def _symbolic_supported(net: Network) -> str | None:
    """None if the symbolic method applies, else the reason it does not.

    It needs elementwise activations and an exact loss head: the loss's hand gradient must run on
    SymEngine expressions and its definition must evaluate with SymEngine (probed on symbols).
    """
    import symengine as se

    if net.fused_rule is not None:
        return "a fused loss rule (the symbolic method needs an exact loss head)"
    if not all(a.elementwise for a in net.activations):
        return "a vector-valued activation"
    n = net.sizes[-1]
    yhat = np.array([[se.Symbol(f"p{i}_{k}") for k in range(2)] for i in range(n)], dtype=object)
    y = np.array([[se.Symbol(f"q{i}_{k}") for k in range(2)] for i in range(n)], dtype=object)
    try:
        g = np.asarray(net.loss.grad(yhat, y))
        se.sympify(np.sum(net.loss.definition(yhat, y, _SymEngineOps())))
        if g.shape != (n, 2) or g.dtype != object:
            return f"the loss gradient of {net.loss.name!r} does not run on symbols"
    except Exception as exc:  # any failure of the probe means: not this method
        return f"the loss {net.loss.name!r} does not run on SymEngine symbols ({type(exc).__name__}: {exc})"
    return None


def _run_on_symbols(onet: Network, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> dict[str, Any]:
    """The hand forward and backward on SymEngine symbols; a numpy function they cannot run on
    symbols raises :class:`UnsupportedOperation` naming it, not numpy's object-loop error."""
    try:
        return onet.backward_unchecked(params, onet.forward_unchecked(params, X), Y)
    except UnsupportedOperation:
        raise
    except (TypeError, AttributeError) as exc:
        function = numpy_function_in(exc)
        if function is None:
            raise
        raise UnsupportedOperation(
            f"{function} in the network's forward or backward code cannot run on SymEngine symbols "
            "(method='symbolic'); the exact methods support + - * /, powers, @, sum and np.where there") from exc


def _prove_symbolic(net: Network, batch: int) -> tuple[bool, list[str]]:
    import symengine as se

    sizes, depth, m = net.sizes, net.depth, batch
    W = {l: np.array([[se.Symbol(f"w{l}_{i + 1}_{j + 1}") for j in range(sizes[l - 1])]
                      for i in range(sizes[l])], dtype=object) for l in range(1, depth + 1)}
    B = {l: np.array([[se.Symbol(f"b{l}_{i + 1}")] for i in range(sizes[l])], dtype=object)
         for l in range(1, depth + 1)}
    X = np.array([[se.Symbol(f"x{j + 1}_{k + 1}") for k in range(m)] for j in range(sizes[0])], dtype=object)
    Y = np.array([[se.Symbol(f"y{j + 1}_{k + 1}") for k in range(m)] for j in range(sizes[-1])], dtype=object)
    params = {}
    for l in range(1, depth + 1):
        params[f"W{l}"], params[f"B{l}"] = W[l], B[l]

    atoms: dict[tuple[int, str, Any], Any] = {}

    def atom(l: int, kind: str, arg: Any) -> Any:
        key = (l, kind, se.expand(arg))
        s = atoms.get(key)
        if s is None:
            s = atoms[key] = se.Symbol(f"{kind}{l}_{len(atoms)}")
        return s

    acts = [_opaque_activation(act, l, np.vectorize(lambda z, l=l: atom(l, "f", z), otypes=[object]),
                               np.vectorize(lambda z, a, l=l: atom(l, "d", z), otypes=[object]), None)
            for l, act in enumerate(net.activations, start=1)]
    onet = _swap(net, acts, None)
    hand = _run_on_symbols(onet, params, X, Y)

    # The composite loss with undefined functions F_l, built by this module's own forward pass.
    F = {l: se.Function(f"F{l}") for l in range(1, depth + 1)}
    rep: dict[Any, Any] = {}
    outs = np.empty((sizes[-1], m), dtype=object)
    for k in range(m):
        col = [X[j, k] for j in range(sizes[0])]
        for l in range(1, depth + 1):
            new = []
            for i in range(sizes[l]):
                arg = sum((W[l][i, j] * col[j] for j in range(sizes[l - 1])), B[l][i, 0])
                app = F[l](arg)
                key_arg = arg.xreplace(rep) if l > 1 else arg
                rep[app] = atom(l, "f", key_arg)
                # d F_l(arg) / d b_i is exactly the Subs object the chain rule produces for F_l'(arg)
                rep[app.diff(B[l][i, 0])] = atom(l, "d", key_arg)
                new.append(app)
            col = new
        outs[:, k] = col
    total = se.sympify(np.sum(net.loss.definition(outs, Y, _SymEngineOps()))) / m

    def equal(h: Any, r: Any) -> np.ndarray:
        out = np.empty(np.shape(r), dtype=bool)
        for idx in np.ndindex(*np.shape(r)):
            out[idx] = se.expand(se.sympify(h[idx]) - r[idx]) == 0
        return out

    ref = {}
    for name in net.param_names:
        arr = params[name]
        ref[name] = np.empty(arr.shape, dtype=object)
        for idx in np.ndindex(*arr.shape):
            ref[name][idx] = total.diff(arr[idx]).xreplace(rep)
    failures = _failures(net, hand, ref, equal)
    return not failures, failures

