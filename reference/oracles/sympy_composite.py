r"""Building the SymPy oracle's composite loss: one nested expression per sample, from the shared
definitions only, and its conversion back from SymEngine to SymPy.

Each activation's and the loss's ``definition`` is evaluated by
:data:`~handgrad.reference.oracles.ops.SYMPY_OPS` on a numpy object array of placeholders
:math:`z_i^{(l)}` (comparisons such as ``z > 0`` stay symbolic, :class:`_ExprArray`); then
:math:`W^{(l)} x^{(l)} + B^{(l)}` is substituted for the placeholders, layer by layer, down to the
parameters and inputs (:func:`_build`). The substitution is done in SymEngine, which keeps repeated
subexpressions shared, where SymPy would re-canonicalize every level (seconds instead of
milliseconds for a six-layer net). What is differentiated is the fully nested composite: no
placeholder is left in it.

:class:`_FromSymengine` reads results back as SymPy, writing branch conditions on the placeholders
:math:`z_i^{(l)}`: SymPy folds a ``Piecewise`` whose condition contains another ``Piecewise`` into
:math:`2^n` branches (already for a 2-3-3-1 ReLU net). A condition is never differentiated, so
this changes no derivative.

Symbols (article notation, :func:`handgrad.notation.index_text` for the indices; keyed
``W1, B1, ..., X, Y, Z1, A1, ...``):

===========================  ==========================================================
symbol                       meaning
===========================  ==========================================================
``w_{ij}^{(l)}``             ``W{l}[i-1, j-1]`` (1-based, as in the article)
``b_{i}^{(l)}``              ``B{l}[i-1, 0]``
``x_{1j}``                   input j (the article's input layer, like its :math:`x_{2i}`)
``y`` / ``y_{k}``            the label (one output) / label k (several outputs)
``z_{i}^{(l)}``              pre-activation of unit i of layer l: a placeholder in
                             branch conditions and in the display
``x_{l+1,i}``, ``\hat y``    activation of unit i of layer l, in the display only
===========================  ==========================================================

Indices of 10 or more are separated by a comma (``w_{12,3}^{(2)}``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from handgrad import Network
from handgrad.notation import index_text

from .ops import SYMPY_OPS

__all__: list[str] = []


# ---------------------------------------------------------------------------------------------
# Names in the article's notation
# ---------------------------------------------------------------------------------------------

def _make_symbols(net: Network) -> dict[str, np.ndarray]:
    """``{"W1": w_{ij}^{(1)}, "B1": ..., "X": x_{1j}, "Y": y_k, "Z1": z_i^{(1)}, "A1": x_{2i}, ...}``."""
    import sympy as sp

    def col(fmt: Callable[[int], str], n: int) -> np.ndarray:
        return np.array([[sp.Symbol(fmt(i), real=True)] for i in range(1, n + 1)], dtype=object)

    sizes = net.sizes
    out: dict[str, np.ndarray] = {}
    for l in range(1, net.depth + 1):
        out[f"W{l}"] = np.array(
            [[sp.Symbol(f"w_{{{index_text(i, j)}}}^{{({l})}}", real=True) for j in range(1, sizes[l - 1] + 1)]
             for i in range(1, sizes[l] + 1)], dtype=object)
        out[f"B{l}"] = col(lambda i, l=l: f"b_{{{i}}}^{{({l})}}", sizes[l])
    out["X"] = col(lambda j: f"x_{{{index_text(1, j)}}}", sizes[0])
    out["Y"] = col(lambda k: "y", 1) if sizes[-1] == 1 else col(lambda k: f"y_{{{k}}}", sizes[-1])
    for l in range(1, net.depth + 1):
        out[f"Z{l}"] = col(lambda i, l=l: f"z_{{{i}}}^{{({l})}}", sizes[l])
        if l < net.depth:
            out[f"A{l}"] = col(lambda i, l=l: f"x_{{{index_text(l + 1, i)}}}", sizes[l])
        elif sizes[l] == 1:
            out[f"A{l}"] = col(lambda i: r"\hat y", 1)
        else:
            out[f"A{l}"] = col(lambda i: rf"\hat y_{{{i}}}", sizes[l])
    return out


# ---------------------------------------------------------------------------------------------
# Building the composite
# ---------------------------------------------------------------------------------------------

class _ExprArray(np.ndarray):
    """Object array of SymPy expressions whose ordering comparisons stay symbolic (numpy calls
    ``bool()`` on each element's result, which a SymPy relational refuses)."""

    def _compare(self, other: Any, op: Callable[[Any, Any], Any]) -> np.ndarray:
        f = np.frompyfunc(op, 2, 1)
        return np.asarray(f(np.asarray(self), np.asarray(other, dtype=object)), dtype=object)

    def __gt__(self, other: Any) -> Any:  # type: ignore[override]
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other: Any) -> Any:  # type: ignore[override]
        return self._compare(other, lambda a, b: a >= b)

    def __lt__(self, other: Any) -> Any:  # type: ignore[override]
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other: Any) -> Any:  # type: ignore[override]
        return self._compare(other, lambda a, b: a <= b)


def _column(value: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    import sympy as sp

    arr = np.asarray(value, dtype=object)
    if arr.shape != shape:
        raise ValueError(f"{what} returned shape {arr.shape} on SymPy input of shape {shape}; a definition "
                         f"must map an (n, m) array to an (n, m) array (a loss to (1, m))")
    return np.vectorize(sp.sympify, otypes=[object])(arr)


class _Composite(NamedTuple):
    """The pieces of the composite.

    ``defs[l-1]``: the activation of layer l as SymPy expressions of its own placeholders
    ``Z{l}`` (the shared definition, evaluated by ``SYMPY_OPS``); ``loss_def``: the per-sample loss
    in ``Z{L}`` and ``Y``. ``z``, ``a``, ``loss``: the nested SymEngine composite, where every
    placeholder has been replaced by the expression it stands for.
    """

    defs: list[np.ndarray]
    defs_se: list[list[Any]]
    loss_def: Any
    z: list[list[Any]]
    a: list[list[Any]]
    loss: Any


def _build(net: Network, sym: dict[str, np.ndarray]) -> _Composite:
    """The per-sample composite loss, from the shared definitions only."""
    import symengine as se

    L = net.depth
    defs = []
    for l, act in enumerate(net.activations, start=1):
        Z = sym[f"Z{l}"]
        defs.append(_column(act.definition(Z.view(_ExprArray), SYMPY_OPS), Z.shape, f"activation {act.name!r}"))
    Y = sym["Y"].view(_ExprArray)
    rule = net.fused_rule
    if rule is not None:
        loss_def = _column(rule.definition(sym[f"Z{L}"].view(_ExprArray), Y, SYMPY_OPS), (1, 1),
                           f"the fused rule of loss {net.loss.name!r}")[0, 0]
    else:
        loss_def = _column(net.loss.definition(defs[-1].view(_ExprArray), Y, SYMPY_OPS), (1, 1),
                           f"loss {net.loss.name!r}")[0, 0]
    # Compose in SymEngine: z^(l) = W^(l) x^(l) + B^(l), x^(l+1) = f_l(z^(l)) by substituting the
    # nested expressions for the placeholders (SymEngine shares them, SymPy would re-canonicalize
    # every level: 5.1 s for an 8-8-8-8-8-8 sigmoid net instead of 0.03 s).
    def se_(e: Any) -> Any:
        return se.sympify(e)

    defs_se = [[se_(d) for d in layer.ravel()] for layer in defs]
    a = [se_(v) for v in sym["X"].ravel()]
    zs: list[list[Any]] = []
    acts: list[list[Any]] = []
    sub: dict[Any, Any] = {}
    for l in range(1, L + 1):
        W, B = sym[f"W{l}"], sym[f"B{l}"]
        z = [se.Add(*[se_(W[i, j]) * a[j] for j in range(W.shape[1])], se_(B[i, 0])) for i in range(W.shape[0])]
        sub = {se_(p): v for p, v in zip(sym[f"Z{l}"].ravel(), z, strict=True)}
        a = [d.xreplace(sub) for d in defs_se[l - 1]]
        zs.append(z)
        acts.append(a)
    loss = se_(loss_def).xreplace(sub)
    return _Composite(defs, defs_se, loss_def, zs, acts, loss)


class _FromSymengine:
    """SymEngine -> SymPy, one node at a time with memoization (the expressions are DAGs).

    Pre-activation nodes :math:`z_i^{(l)}` become their placeholder symbols inside relational
    conditions (``display=False``: SymPy would fold a condition that contains a ``Piecewise``
    into exponentially many branches) or everywhere (``display=True``, for :meth:`latex`).
    """

    def __init__(self, leaves: Mapping[str, Any], placeholder_of: Mapping[Any, Any], *, display: bool) -> None:
        self._leaves = dict(leaves)
        self._ph = dict(placeholder_of)
        self._display = display
        self._memo: dict[tuple[bool, Any], Any] = {}

    def __call__(self, root: Any) -> Any:
        import symengine as se
        import sympy as sp

        memo = self._memo
        rel = {"StrictLessThan": sp.StrictLessThan, "LessThan": sp.LessThan, "Equality": sp.Eq,
               "Unequality": sp.Ne}
        start = (self._display, root)
        stack = [start]
        while stack:
            key = stack[-1]
            if key in memo:
                stack.pop()
                continue
            cond, e = key
            t = type(e).__name__
            if cond and e in self._ph:
                memo[key] = self._ph[e]
                stack.pop()
                continue
            if isinstance(e, se.Symbol):
                memo[key] = self._leaves[str(e)]
                stack.pop()
                continue
            if isinstance(e, se.Number) or not e.args or t in ("Pi", "Exp1"):
                memo[key] = e._sympy_()
                stack.pop()
                continue
            kid_cond = cond or t in rel
            kids = [(kid_cond, k) for k in e.args]
            todo = [k for k in kids if k not in memo]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            c = [memo[k] for k in kids]
            if t in rel:
                memo[key] = rel[t](*c)
            elif t == "Add":
                memo[key] = sp.Add(*c)
            elif t == "Mul":
                memo[key] = sp.Mul(*c)
            elif t == "Pow":
                memo[key] = sp.exp(c[1]) if c[0] == sp.E else sp.Pow(*c)
            elif t == "Piecewise":
                memo[key] = sp.Piecewise(*[(c[2 * i], c[2 * i + 1]) for i in range(len(c) // 2)])
            elif hasattr(sp, t):
                memo[key] = getattr(sp, t)(*c)
            else:
                memo[key] = e._sympy_()
        return memo[start]
