r"""Exact certificates, part 2: handgrad's backward pass equals the derivative of the composite loss.

**What is run.** handgrad's own code: ``net.forward_unchecked`` then ``net.backward_unchecked``
(the network's class is kept, so a subclass with a different backward is what gets certified),
on exact numbers instead of floats. Only the activations are swapped for *opaque* stand-ins: an
:class:`~handgrad.Activation` whose forward returns an opaque atom :math:`f_l(z)` and whose
derivative returns another opaque atom :math:`f_l'(z)`, unrelated to the first. Each activation's
own rule (:math:`f_l'` really is the derivative of :math:`f_l`) is proved separately by
:func:`handgrad.reference.proofs.prove_activation`; this part certifies the network code *for every choice
of activation functions and derivative rules at once*, which, combined with step 1, is the
statement we want.

**What it is compared with.** The derivative of the composite loss
:math:`L = \frac1m\sum_k \ell(f_L(W^{(L)} \cdots f_1(W^{(1)} x_k + B^{(1)}) \cdots + B^{(L)}), y_k)`,
built by this module's own forward pass (never handgrad's) and differentiated

* ``method="symbolic"``: by SymEngine's ``diff`` with :math:`f_l` an undefined function; each
  ``Subs(Derivative(f_l(\xi), \xi), \xi, z)`` the chain rule produces is read as the atom
  :math:`f_l'(z)`, and ``expand(hand - diff) == 0`` is a deterministic proof (both sides are
  polynomials in the parameters, inputs, labels and atoms; atoms with equal expanded arguments
  are the same atom).
* ``method="modular"``: by forward-mode differentiation, one tangent per parameter (never the
  reverse recurrence), in exact arithmetic modulo the prime :data:`PRIME`
  :math:`= 2^{26} - 5`, at random points. This is an exact randomized identity test (next
  paragraphs).

**Randomized identity test.** Parameters, inputs and labels are drawn uniformly from
:math:`\mathbb F_p`. Every atom (:math:`f_l(u)`, :math:`f_l'(u)`, and the loss-head atoms below)
is a *lazily sampled random function* of its argument's value: the first time a value is queried
it gets a fresh uniform draw, later queries of the same value get the same draw (so handgrad's
forward and this module's forward see the same :math:`f_l(z)`, and a backward that evaluates
:math:`f'` at :math:`a` instead of :math:`z` sees different atoms). Both sides are then rational
functions of independent uniform variables, and a trial declares them equal when they agree mod
:math:`p` for every parameter.

*Error bound (Schwartz–Zippel).* If the hand gradient differs from the true one as a formal
expression, one trial misses it with probability at most

.. math::  \varepsilon = \frac{1}{p}\Big(D + \sum_{t} \binom{q_t}{2} e_t\Big),

where :math:`D` bounds the numerator degree of (hand :math:`-` reference) and :math:`q_t`, :math:`e_t`
are the number of queries to atom table :math:`t` and the degree of the difference of two of its
arguments. The first term is Schwartz–Zippel for the difference evaluated at a uniform point;
the sum bounds, by a union bound over pairs and Schwartz–Zippel again (layer by layer, so the
lower atoms are already uniform), the chance that two formally different arguments of the same
atom collide and so make the point non-uniform. Degrees are tracked during the run (each array
carries a bound on the degrees of its numerator and denominator), so the bound also covers a
buggy backward. A mismatch, on the other hand, is certain: a nonzero value proves a nonzero
expression. ``k`` independent trials miss with probability at most :math:`\prod_i \varepsilon_i`;
by default trials are added until that product is below :data:`ERROR_TARGET`. (A division by a
value that is 0 mod p ends a trial early and it is redrawn; it happens with probability at most
degree/p and does not affect soundness.)

*Why* :math:`p < 2^{26}`. Residues are stored in int64. A product of two residues is at most
:math:`(p-1)^2 < 2^{52}`, and numpy's integer matmul accumulates :math:`K` such products
exactly when :math:`K (p-1)^2 \le 2^{63}-1`, i.e. :math:`K \le` :data:`MATMUL_CHUNK` = 2048 for this
:math:`p`; longer inner dimensions are split into chunks of 2048 and reduced between chunks. No
intermediate ever exceeds :math:`2^{63}-1`.

**The loss head.** When the loss's hand-written gradient runs exactly (its code uses only
``+ - * /`` and ``==``: squared error), it is run as it is and the reference differentiates the
loss's *definition* with dual numbers. Otherwise (order comparisons, ``exp``/``log`` in the hand
code, or a fused rule such as sigmoid + bce) the head is opaque too: the loss gradient
:math:`\partial\ell/\partial\hat y` (or, for a fused rule, :math:`\partial\ell/\partial z^{(L)}`) becomes
an atom of the sample's column, and that rule is certified on its own by
:func:`~handgrad.reference.proofs.prove_loss` / :func:`~handgrad.reference.proofs.prove_fused_rule`. Vector-valued
activations (softmax) are opaque with an opaque Jacobian :math:`J(z)` per column, their ``vjp``
being :math:`J^T g` (proved for softmax by ``prove_activation``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from handgrad import Activation, FusedRule, Loss, Network

__all__ = [
    "ERROR_TARGET",
    "MATMUL_CHUNK",
    "PRIME",
    "SYMBOLIC_MAX_COST",
    "ModArray",
    "NetworkProof",
    "UnsupportedOperation",
    "article_name",
    "prove_network",
    "symbolic_cost",
]

PRIME = 67_108_859
"""The largest prime below :math:`2^{26}` (see the module docstring for why :math:`< 2^{26}`)."""

MATMUL_CHUNK = (2**63 - 1) // (PRIME - 1) ** 2
"""Longest inner dimension an int64 matmul of residues may sum without overflow (2048)."""

ERROR_TARGET = 1e-12
"""Default: run trials until the probability of missing a wrong gradient is below this."""

SYMBOLIC_MAX_COST = 2000
"""``method="auto"`` proves symbolically when :func:`symbolic_cost` is at most this (about 0.05 s).

The symbolic method expands every gradient into monomials; their number grows like the number of
paths from a first-layer unit to the output, so depth costs far more than width (measured:
4-8-8-1 0.03 s, 4-8-8-8-8-1 2 s, 8-16-16-16-16-1 240 s)."""

_MAX_TRIALS = 64
_P = PRIME

Deg = tuple[int, int]


class UnsupportedOperation(TypeError):
    """An operation with no exact meaning modulo p (``exp``, ``max``, ``<``...)."""


# ---------------------------------------------------------------------------------------------
# Article notation
# ---------------------------------------------------------------------------------------------

def article_name(param: str, index: Sequence[int]) -> str:
    r"""The article's name of one parameter element: ``("W2", (0, 1)) -> "w_12^(2)"``, ``("B3", (0, 0)) -> "b_1^(3)"``.

    Indices are 1-based; two-digit indices are separated by a comma (``w_10,3^(1)``).
    """
    if not isinstance(param, str) or len(param) < 2 or param[0] not in "WB" or not param[1:].isdigit():
        raise ValueError(f"param must be a name like 'W2' or 'B1', got {param!r}")
    layer = int(param[1:])
    i, j = (int(index[0]) + 1, int(index[1]) + 1)
    if param[0] == "B":
        return f"b_{i}^({layer})"
    sep = "," if i > 9 or j > 9 else ""
    return f"w_{i}{sep}{j}^({layer})"


# ---------------------------------------------------------------------------------------------
# Exact arithmetic modulo p, with degree bookkeeping
# ---------------------------------------------------------------------------------------------

def _deg_add(a: Deg, b: Deg) -> Deg:
    if a[1] == 0 and b[1] == 0:
        return (max(a[0], b[0]), 0)
    return (max(a[0] + b[1], b[0] + a[1]), a[1] + b[1])


def _deg_sum(a: Deg, k: int) -> Deg:
    """Degree of a sum of k terms each of degree ``a`` (denominators possibly all different)."""
    if a[1] == 0 or k <= 1:
        return a
    return (a[0] + (k - 1) * a[1], k * a[1])


def _deg_max(*ds: Deg) -> Deg:
    return (max(d[0] for d in ds), max(d[1] for d in ds)) if ds else (0, 0)


def _const(x: Any) -> int:
    """A Python/numpy scalar as a residue (floats at their exact binary value)."""
    if isinstance(x, bool | np.bool_):
        return int(x)
    if isinstance(x, int | np.integer):
        return int(x) % _P
    if isinstance(x, float | np.floating):
        if not math.isfinite(x):
            raise UnsupportedOperation(f"the constant {x!r} has no exact value")
        fr = Fraction(float(x))
        return fr.numerator % _P * pow(fr.denominator, -1, _P) % _P
    raise UnsupportedOperation(f"cannot use a {type(x).__name__} in exact modular arithmetic")


def _inv(v: Any) -> Any:
    """Elementwise inverse mod p (Fermat), raising ZeroDivisionError on a zero residue."""
    if np.ndim(v) == 0:
        iv = int(v) % _P
        if iv == 0:
            raise ZeroDivisionError("division by a value that is 0 mod p")
        return np.int64(pow(iv, -1, _P))
    v = np.asarray(v, dtype=np.int64) % _P
    if np.any(v == 0):
        raise ZeroDivisionError("division by a value that is 0 mod p")
    result = np.ones_like(v)
    base, e = v, _P - 2
    while e:
        if e & 1:
            result = result * base % _P
        base = base * base % _P
        e >>= 1
    return result


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    k = a.shape[-1]
    if k <= MATMUL_CHUNK:
        return np.matmul(a, b) % _P
    out = None
    for s in range(0, k, MATMUL_CHUNK):
        part = np.matmul(a[..., s:s + MATMUL_CHUNK], b[..., s:s + MATMUL_CHUNK, :]) % _P
        out = part if out is None else (out + part) % _P
    return out


def _operand(x: Any) -> tuple[Any, Deg, bool]:
    """(plain value, degree, is a boolean mask)."""
    if isinstance(x, ModArray):
        return x.view(np.ndarray), x.deg, False
    if isinstance(x, np.ndarray):
        if x.dtype == np.bool_:
            return x, (0, 0), True
        if x.dtype.kind in "iu":
            return x.astype(np.int64) % _P, (0, 0), False
        if x.dtype.kind == "f":
            return np.vectorize(_const, otypes=[np.int64])(x) if x.size else x.astype(np.int64), (0, 0), False
        raise UnsupportedOperation(f"cannot use a {x.dtype} array in exact modular arithmetic")
    if isinstance(x, bool | np.bool_):
        return x, (0, 0), True
    return np.int64(_const(x)), (0, 0), False


def _mod(values: Any, deg: Deg) -> ModArray:
    out = np.asarray(values, dtype=np.int64).view(ModArray)
    out.deg = deg
    return out


def _as_mod(x: Any) -> ModArray:
    """``x`` as a :class:`ModArray` (plain integer arrays count as constants)."""
    if isinstance(x, ModArray):
        return x
    v, d, mask = _operand(np.asarray(x))
    if mask:
        raise UnsupportedOperation("a boolean mask where residues were expected")
    return _mod(v, d)


class ModArray(np.ndarray):
    r"""An int64 array of residues mod :data:`PRIME` on which numpy's operators compute exactly.

    ``+ - * /`` (division by the modular inverse), ``@`` (chunked, see :data:`MATMUL_CHUNK`),
    ``sum``, ``==`` and ``np.where`` are supported; anything without an exact meaning modulo p
    (``exp``, ``<``, ``max``...) raises :class:`UnsupportedOperation`. ``deg`` is an upper bound on
    the degrees (numerator, denominator) of the rational function each entry is, in the random
    variables of the trial.
    """

    deg: Deg

    def __array_finalize__(self, obj: Any) -> None:
        self.deg = getattr(obj, "deg", (0, 0))

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if kwargs.get("out") is not None:
            raise UnsupportedOperation("in-place operations are not supported in exact arithmetic")
        ops = [_operand(x) for x in inputs]
        vals = [o[0] for o in ops]
        degs = [o[1] for o in ops]
        if method == "reduce" and ufunc is np.add:
            (v,), (d,) = vals, degs
            axis = kwargs.get("axis", 0)
            keep = kwargs.get("keepdims", False)
            axes = tuple(range(np.ndim(v))) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
            k = int(np.prod([np.shape(v)[a] for a in axes])) if axes else 1
            return _mod(np.add.reduce(v, axis=axis, keepdims=keep) % _P, _deg_sum(d, k))
        if method != "__call__":
            raise UnsupportedOperation(f"{ufunc.__name__}.{method} has no exact meaning modulo p")
        if ufunc in (np.equal, np.not_equal):
            return ufunc(*vals)
        if any(o[2] for o in ops):
            raise UnsupportedOperation(f"{ufunc.__name__} of a boolean mask in exact arithmetic")
        if ufunc is np.add:
            return _mod((vals[0] + vals[1]) % _P, _deg_add(*degs))
        if ufunc is np.subtract:
            return _mod((vals[0] - vals[1]) % _P, _deg_add(*degs))
        if ufunc is np.multiply:
            return _mod(vals[0] * vals[1] % _P, (degs[0][0] + degs[1][0], degs[0][1] + degs[1][1]))
        if ufunc in (np.true_divide, np.divide):
            return _mod(vals[0] * _inv(vals[1]) % _P, (degs[0][0] + degs[1][1], degs[0][1] + degs[1][0]))
        if ufunc is np.negative:
            return _mod((-vals[0]) % _P, degs[0])
        if ufunc is np.positive:
            return _mod(vals[0], degs[0])
        if ufunc is np.square:
            return _mod(vals[0] * vals[0] % _P, (2 * degs[0][0], 2 * degs[0][1]))
        if ufunc is np.power:
            e = inputs[1]
            if isinstance(e, int | np.integer) and e >= 0:
                r = np.ones_like(vals[0])
                for _ in range(int(e)):
                    r = r * vals[0] % _P
                return _mod(r, (int(e) * degs[0][0], int(e) * degs[0][1]))
            raise UnsupportedOperation("only non-negative integer powers are exact modulo p")
        if ufunc is np.matmul:
            k = np.shape(vals[0])[-1]
            prod = (degs[0][0] + degs[1][0], degs[0][1] + degs[1][1])
            return _mod(_matmul(vals[0], vals[1]), _deg_sum(prod, k))
        raise UnsupportedOperation(f"{ufunc.__name__} has no exact meaning modulo p")

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func is np.where:
            cond, x, y = args
            (xv, xd, _), (yv, yd, _) = _operand(x), _operand(y)
            return _mod(np.where(np.asarray(cond), xv, yv), _deg_max(xd, yd))
        result = super().__array_function__(func, types, args, kwargs)
        if isinstance(result, np.ndarray) and not isinstance(result, ModArray) and result.dtype.kind in "iu":
            degs = [a.deg for a in args if isinstance(a, ModArray)]
            return _mod(result % _P, _deg_max(*degs))
        return result

    def __bool__(self) -> bool:
        raise UnsupportedOperation("the truth value of a residue has no meaning (order is not defined mod p)")


# ---------------------------------------------------------------------------------------------
# Random functions (atoms)
# ---------------------------------------------------------------------------------------------

class _RandomFunction:
    """A lazily sampled uniform random function from int64 keys to residues."""

    def __init__(self, rng: np.random.Generator, extra_degree: int = 0) -> None:
        self.rng = rng
        self.keys = np.empty(0, dtype=np.int64)
        self.vals = np.empty(0, dtype=np.int64)
        self.queries = 0
        self.arg_deg: Deg = (0, 0)
        self.extra_degree = extra_degree  # +1 when keys are random linear hashes of columns

    def __call__(self, keys: np.ndarray, deg: Deg) -> np.ndarray:
        self.queries += keys.size
        self.arg_deg = _deg_max(self.arg_deg, deg)
        flat = np.asarray(keys, dtype=np.int64).reshape(-1)
        u, inv = np.unique(flat, return_inverse=True)
        pos = np.searchsorted(self.keys, u)
        hit = pos < self.keys.size
        hit[hit] = self.keys[pos[hit]] == u[hit]
        vals = np.empty(u.size, dtype=np.int64)
        vals[hit] = self.vals[pos[hit]]
        new = ~hit
        if new.any():
            fresh = self.rng.integers(0, _P, int(new.sum()), dtype=np.int64)
            vals[new] = fresh
            allk = np.concatenate([self.keys, u[new]])
            allv = np.concatenate([self.vals, fresh])
            order = np.argsort(allk, kind="stable")
            self.keys, self.vals = allk[order], allv[order]
        return vals[inv.reshape(-1)].reshape(np.shape(keys))

    def collision_term(self) -> float:
        """Union bound over pairs of queries: C(q, 2) * degree of an argument difference."""
        e = self.arg_deg[0] + self.arg_deg[1] + self.extra_degree
        return self.queries * (self.queries - 1) / 2 * max(e, 1)


class _Trial:
    """One trial's random atoms: per layer f, f' (or F, J for vector activations), head, exp/log."""

    def __init__(self, rng: np.random.Generator, sizes: Sequence[int]) -> None:
        self.rng = rng
        self.tables: dict[tuple[Any, ...], _RandomFunction] = {}
        self.hashes: dict[tuple[Any, ...], np.ndarray] = {}

    def table(self, *key: Any, column: bool = False) -> _RandomFunction:
        t = self.tables.get(key)
        if t is None:
            t = self.tables[key] = _RandomFunction(self.rng, 1 if column else 0)
        return t

    def column_keys(self, key: tuple[Any, ...], *arrays: ModArray) -> tuple[np.ndarray, Deg]:
        """A random linear hash of each column of the stacked arrays: shape (m,)."""
        stacked = np.concatenate([np.asarray(a.view(np.ndarray)) for a in arrays], axis=0)
        r = self.hashes.get(key)
        if r is None or r.size != stacked.shape[0]:
            r = self.hashes[key] = self.rng.integers(0, _P, stacked.shape[0], dtype=np.int64)
        h = _matmul(r[None, :], stacked)[0]
        return h, _deg_max(*(a.deg for a in arrays))

    # elementwise activations
    def f(self, layer: int, z: Any) -> ModArray:
        z = _as_mod(z)
        return _mod(self.table(layer, "f")(z.view(np.ndarray), z.deg), (1, 0))

    def fprime(self, layer: int, z: Any) -> ModArray:
        z = _as_mod(z)
        return _mod(self.table(layer, "f'")(z.view(np.ndarray), z.deg), (1, 0))

    # vector-valued activations: F_i(column), J_ij(column)
    def vec_f(self, layer: int, z: Any) -> ModArray:
        z = _as_mod(z)
        n = z.shape[0]
        h, d = self.column_keys((layer, "F"), z)
        keys = h[None, :] * n + np.arange(n)[:, None]
        return _mod(self.table(layer, "F", column=True)(keys, d), (1, 0))

    def jacobian(self, layer: int, z: Any) -> ModArray:
        """Opaque Jacobians, shape (m, n, n): J[k, i, j] = d a_i / d z_j for column k."""
        z = _as_mod(z)
        n = z.shape[0]
        h, d = self.column_keys((layer, "F"), z)
        keys = (h[:, None, None] * n + np.arange(n)[None, :, None]) * n + np.arange(n)[None, None, :]
        return _mod(self.table(layer, "J", column=True)(keys, d), (1, 0))

    # opaque loss head: G_i(column of the head's input, column of y)
    def head_grad(self, u: Any, y: Any) -> ModArray:
        u, y = _as_mod(u), _as_mod(y)
        n = u.shape[0]
        h, d = self.column_keys(("head",), u, y)
        keys = h[None, :] * n + np.arange(n)[:, None]
        return _mod(self.table("head", "G", column=True)(keys, d), (1, 0))

    def epsilon(self, degree: int) -> float:
        return (degree + sum(t.collision_term() for t in self.tables.values())) / _P


# ---------------------------------------------------------------------------------------------
# Opaque stand-ins for the network's activations and loss
# ---------------------------------------------------------------------------------------------

def _no_definition(z: Any, ops: Any) -> Any:
    raise TypeError("an opaque activation has no formula; it only exists inside an exact proof")


def _opaque_activation(act: Activation, layer: int, forward: Callable[[Any], Any],
                       derivative: Callable[[Any, Any], Any] | None,
                       vjp: Callable[[Any, Any, Any], Any] | None) -> Activation:
    return Activation(f"opaque_f{layer}[{act.name}]", _no_definition, forward, derivative, vjp,
                      output_range=act.output_range)


def _opaque_loss(loss: Loss, grad: Callable[[Any, Any], Any] | None,
                 fused: dict[str, FusedRule]) -> Loss:
    def no_value(*_: Any) -> Any:
        raise TypeError("an opaque loss has no value; it only exists inside an exact proof")

    def no_grad(*_: Any) -> Any:
        raise TypeError("the opaque head has no non-fused gradient")

    return Loss(f"opaque[{loss.name}]", _no_definition, no_value, grad or no_grad, fused=fused,
                target_range=loss.target_range, prediction_range=loss.prediction_range,
                target_kind=loss.target_kind)


def _swap(net: Network, activations: Sequence[Activation], loss: Loss | None) -> Network:
    """A shallow copy of ``net`` (same class, same methods) with other activations and loss."""
    onet = copy.copy(net)
    onet.activations = tuple(activations)
    if loss is not None:
        onet.loss = loss
    return onet


# ---------------------------------------------------------------------------------------------
# Dual numbers for the reference's loss head
# ---------------------------------------------------------------------------------------------

class _Dual:
    """value (n, m) and tangents (P, n, m): forward-mode differentiation of a loss definition."""

    __array_ufunc__ = None  # make numpy defer to the reflected operators below

    def __init__(self, v: ModArray, t: ModArray) -> None:
        self.v, self.t = v, t

    @staticmethod
    def _split(o: Any) -> tuple[Any, Any]:
        return (o.v, o.t) if isinstance(o, _Dual) else (o, None)

    def __add__(self, o: Any) -> _Dual:
        ov, ot = self._split(o)
        return _Dual(self.v + ov, self.t if ot is None else self.t + ot)

    __radd__ = __add__

    def __sub__(self, o: Any) -> _Dual:
        ov, ot = self._split(o)
        return _Dual(self.v - ov, self.t if ot is None else self.t - ot)

    def __rsub__(self, o: Any) -> _Dual:
        return _Dual(o - self.v, -self.t)

    def __neg__(self) -> _Dual:
        return _Dual(-self.v, -self.t)

    def __mul__(self, o: Any) -> _Dual:
        ov, ot = self._split(o)
        t = self.t * ov if ot is None else self.t * ov + ot * self.v
        return _Dual(self.v * ov, t)

    __rmul__ = __mul__

    def __truediv__(self, o: Any) -> _Dual:
        ov, ot = self._split(o)
        if ot is None:
            return _Dual(self.v / ov, self.t / ov)
        return _Dual(self.v / ov, (self.t * ov - ot * self.v) / (ov * ov))

    def __rtruediv__(self, o: Any) -> _Dual:
        return _Dual(o / self.v, -(self.t * o) / (self.v * self.v))

    def __pow__(self, e: int) -> _Dual:
        if not isinstance(e, int) or e < 1:
            raise UnsupportedOperation("only positive integer powers of a dual number are supported")
        out = self
        for _ in range(e - 1):
            out = out * self
        return out


class _DualOps:
    r"""``Ops`` on dual numbers mod p: exp/log values are atoms, their tangents the calculus rules."""

    def __init__(self, trial: _Trial) -> None:
        self._trial = trial

    def _atom(self, name: str, x: ModArray) -> ModArray:
        return _mod(self._trial.table("loss", name)(x.view(np.ndarray), x.deg), (1, 0))

    @property
    def pi(self) -> Any:
        raise UnsupportedOperation("pi has no exact value modulo p")

    def exp(self, x: _Dual) -> _Dual:
        e = self._atom("exp", x.v)
        return _Dual(e, x.t * e)

    def expm1(self, x: _Dual) -> _Dual:
        e = self._atom("exp", x.v)
        return _Dual(e - 1, x.t * e)

    def log(self, x: _Dual) -> _Dual:
        return _Dual(self._atom("log", x.v), x.t / x.v)

    def log1p(self, x: _Dual) -> _Dual:
        return _Dual(self._atom("log", x.v + 1), x.t / (x.v + 1))

    def tanh(self, x: Any) -> Any:
        raise UnsupportedOperation("tanh in a loss definition")

    def erf(self, x: Any) -> Any:
        raise UnsupportedOperation("erf in a loss definition")

    def sqrt(self, x: Any) -> Any:
        raise UnsupportedOperation("sqrt in a loss definition")

    def where(self, c: Any, x: Any, y: Any) -> Any:
        raise UnsupportedOperation("where (a branch) in a loss definition")

    @staticmethod
    def colsum(x: Any) -> Any:
        if isinstance(x, _Dual):
            return _Dual(x.v.sum(axis=0, keepdims=True), x.t.sum(axis=-2, keepdims=True))
        return x.sum(axis=0, keepdims=True)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NetworkProof:
    r"""The outcome of :func:`prove_network`.

    Attributes:
      network: ``net.describe()``.
      ok: True when every parameter's gradient was shown equal to the true derivative.
      method: ``"symbolic"`` (deterministic) or ``"modular"`` (randomized, exact arithmetic).
      error_bound: probability that a wrong gradient passed (0.0 for ``"symbolic"``, and 0.0 for a
        failure, which is certain: a nonzero difference at a point proves a nonzero expression).
      first_failure: article name of the first parameter (in W1, B1, W2, ... order, row-major)
        whose identity fails, e.g. ``"w_12^(2)"``; None when ``ok``.
      failures: all failing parameters, same order.
      seconds: wall time.
      n_params, trials, batch: parameters certified, trials run, samples per trial (columns of X).
      head: how the loss entered the proof.
      relies_on: the local rules (proved by ``prove_activation``/``prove_loss``/``prove_fused_rule``)
        this certificate takes as given.
    """

    network: str
    ok: bool
    method: str
    error_bound: float
    first_failure: str | None
    failures: tuple[str, ...]
    seconds: float
    n_params: int
    trials: int
    batch: int
    head: str
    relies_on: tuple[str, ...]
    detail: str = ""

    def __str__(self) -> str:
        verdict = "PROVED" if self.ok else "FAILED"
        if self.method == "symbolic":
            how = "deterministic (SymEngine diff + expand)"
        elif self.ok:
            how = (f"exact randomized identity test mod {PRIME}, {self.trials} trial(s), "
                   f"P(wrong gradient passes) <= {self.error_bound:.1e}")
        else:
            how = f"exact randomized identity test mod {PRIME}: refuted in trial {self.trials}, which is certain"
        lines = [f"{self.network}: {verdict} ({self.n_params} parameters, {self.seconds:.3f} s, {how})",
                 f"  loss head: {self.head}",
                 f"  relies on the local rules: {', '.join(self.relies_on)}"]
        if not self.ok:
            shown = ", ".join(self.failures[:8]) + (" ..." if len(self.failures) > 8 else "")
            lines.append(f"  first failing parameter: {self.first_failure}; {len(self.failures)} failing: {shown}")
        if self.detail:
            lines.append(f"  {self.detail}")
        return "\n".join(lines)


def _relies_on(net: Network, head: str) -> tuple[str, ...]:
    rules = [f"{a.name}'" if a.elementwise else f"{a.name} vjp" for a in net.activations]
    if head == "fused":
        rules.append(f"fused {net.loss.name}+{net.activations[-1].name} delta")
    elif head == "opaque":
        rules.append(f"{net.loss.name} gradient")
    return tuple(dict.fromkeys(rules))


_HEAD_TEXT = {
    "exact": "the loss's hand gradient run exactly; the reference differentiates its definition",
    "opaque": "opaque (its hand gradient is certified by prove_loss)",
    "fused": "opaque fused rule (its delta is certified by prove_fused_rule)",
}


def _failures(net: Network, hand: dict[str, Any], ref: dict[str, Any], equal: Callable[[Any, Any], np.ndarray]
              ) -> list[str]:
    out: list[str] = []
    for name in net.param_names:
        h, r = hand.get(name), ref[name]
        if h is None or np.shape(h) != np.shape(r):
            out += [article_name(name, idx) for idx in np.ndindex(*np.shape(r))]
            continue
        same = equal(h, r)
        out += [article_name(name, idx) for idx in zip(*np.nonzero(~same), strict=True)]
    return out


# ---------------------------------------------------------------------------------------------
# Modular method
# ---------------------------------------------------------------------------------------------

def _head_kind(net: Network, rng: np.random.Generator, m: int) -> str:
    """"fused", "exact" (hand loss gradient and definition both run mod p) or "opaque"."""
    if net.fused_rule is not None:
        return "fused"
    n = net.sizes[-1]
    trial = _Trial(rng, net.sizes)
    yhat = _mod(rng.integers(0, _P, (n, m)), (1, 0))
    y = _mod(rng.integers(0, _P, (n, m)), (1, 0))
    try:
        g = net.loss.grad(yhat, y)
        ok = isinstance(g, ModArray) and g.shape == (n, m)
        out = net.loss.definition(_Dual(yhat, _mod(np.ones((1, n, m)), (0, 0))), y, _DualOps(trial))
        ok = ok and isinstance(out, _Dual) and out.v.shape == (1, m)
    except Exception:  # any failure of this probe of the loss alone means: opaque head
        ok = False
    return "exact" if ok else "opaque"


def _modular_trial(net: Network, head: str, rng: np.random.Generator, m: int) -> tuple[list[str], float]:
    """Run one trial; return (failing parameter names, epsilon of this trial)."""
    sizes = net.sizes
    trial = _Trial(rng, sizes)
    acts = []
    for l, act in enumerate(net.activations, start=1):
        if act.elementwise:
            acts.append(_opaque_activation(
                act, l, lambda z, l=l: trial.f(l, z), lambda z, a, l=l: trial.fprime(l, z), None))
        else:
            def vjp(z: ModArray, a: Any, g: ModArray, l: int = l) -> ModArray:
                jt = np.swapaxes(trial.jacobian(l, z), 1, 2)                # (m, n, n): J^T
                gc = np.moveaxis(g, 1, 0)[..., None]                         # (m, n, 1)
                return np.moveaxis((jt @ gc)[..., 0], 0, 1)                  # (n, m)
            acts.append(_opaque_activation(act, l, lambda z, l=l: trial.vec_f(l, z), None, vjp))
    if head == "fused":
        rule = FusedRule(_no_definition, _no_definition, lambda z, a, y: trial.head_grad(z, y))
        loss = _opaque_loss(net.loss, None, {acts[-1].name: rule})
    elif head == "opaque":
        loss = _opaque_loss(net.loss, lambda yhat, y: trial.head_grad(yhat, y), {})
    else:
        loss = net.loss
    onet = _swap(net, acts, loss)

    params = {name: _mod(rng.integers(0, _P, shape), (1, 0)) for name, shape in net.param_shapes.items()}
    X = _mod(rng.integers(0, _P, (sizes[0], m)), (1, 0))
    Y = _mod(rng.integers(0, _P, (sizes[-1], m)), (1, 0))

    hand = onet.backward_unchecked(params, onet.forward_unchecked(params, X), Y)
    ref = _reference(net, trial, head, params, X, Y, m)

    degree = 0
    for name in net.param_names:
        h, r = hand.get(name), ref[name]
        hd = h.deg if isinstance(h, ModArray) else (0, 0)
        degree = max(degree, hd[0] + r.deg[1], r.deg[0] + hd[1])

    def equal(h: Any, r: ModArray) -> np.ndarray:
        if not isinstance(h, ModArray):
            return np.zeros(np.shape(r), dtype=bool)  # the hand code left exact arithmetic
        return h.view(np.ndarray) % _P == r.view(np.ndarray)

    return _failures(net, hand, ref, equal), trial.epsilon(degree)


def _act_tangent(local: ModArray, t: ModArray) -> ModArray:
    """d a^(l) from d z^(l) (tangents (P, n, m)) given the layer's local derivative atoms:
    f'(z) of shape (n, m) for an elementwise activation, Jacobians (m, n, n) otherwise."""
    if local.ndim == 2:
        return local * t
    tc = np.moveaxis(t, 2, 1)[..., None]                           # (P, m, n, 1)
    return np.moveaxis((local[None] @ tc)[..., 0], 1, 2)           # (P, n, m)


_TANGENT_CHUNK = 4096


def _reference(net: Network, trial: _Trial, head: str, params: dict[str, ModArray], X: ModArray,
               Y: ModArray, m: int) -> dict[str, ModArray]:
    """Forward mode: one tangent per parameter, pushed through this module's own forward pass."""
    sizes, depth = net.sizes, net.depth
    a, z, local = [X], [], []
    for l in range(1, depth + 1):
        z.append(params[f"W{l}"] @ a[-1] + params[f"B{l}"])
        act = net.activations[l - 1]
        a.append(trial.f(l, z[-1]) if act.elementwise else trial.vec_f(l, z[-1]))
        # queried once per layer: every tangent uses the same atoms f_l'(z) (or J_l(z))
        if l < depth or head != "fused":
            local.append(trial.fprime(l, z[-1]) if act.elementwise else trial.jacobian(l, z[-1]))
    if head == "fused":
        g_out = trial.head_grad(z[-1], Y)
    elif head == "opaque":
        g_out = trial.head_grad(a[-1], Y)

    def loss_tangent(t: ModArray) -> ModArray:
        """dL for tangents t = d z^(L), shape (P, nL, m) -> (P,)."""
        if head == "fused":
            return (g_out * t).sum(axis=(1, 2)) / m
        da = _act_tangent(local[depth - 1], t)
        if head == "opaque":
            return (g_out * da).sum(axis=(1, 2)) / m
        ell = net.loss.definition(_Dual(a[-1], da), Y, _DualOps(trial))
        return ell.t.sum(axis=(1, 2)) / m

    grads: dict[str, ModArray] = {}
    for l0 in range(1, depth + 1):
        n, nprev = sizes[l0], sizes[l0 - 1]
        prev = a[l0 - 1]
        for kind, count in (("W", n * nprev), ("B", n)):
            parts = []
            for s in range(0, count, _TANGENT_CHUNK):
                idx = np.arange(s, min(count, s + _TANGENT_CHUNK))
                seed = np.zeros((idx.size, n, m), dtype=np.int64)
                if kind == "W":  # d z^(l0) / d w_ij = e_i a_j^(l0-1)
                    seed[np.arange(idx.size), idx // nprev, :] = prev.view(np.ndarray)[idx % nprev, :]
                    t = _mod(seed, prev.deg)
                else:            # d z^(l0) / d b_i = e_i
                    seed[np.arange(idx.size), idx, :] = 1
                    t = _mod(seed, (0, 0))
                for l in range(l0, depth):
                    t = params[f"W{l + 1}"] @ _act_tangent(local[l - 1], t)
                parts.append(loss_tangent(t))
            flat = parts[0] if len(parts) == 1 else _mod(np.concatenate([p.view(np.ndarray) for p in parts]),
                                                         _deg_max(*(p.deg for p in parts)))
            grads[f"{kind}{l0}"] = flat.reshape((n, nprev) if kind == "W" else (n, 1))
    return grads


def _prove_modular(net: Network, trials: int | None, seed: int, batch: int) -> tuple[
        bool, list[str], float, int, str]:
    rng = np.random.default_rng(seed)
    head = _head_kind(net, rng, batch)
    bound, done, redraws = 1.0, 0, 0
    failures: list[str] = []
    while True:
        try:
            failures, eps = _modular_trial(net, head, rng, batch)
        except ZeroDivisionError:
            redraws += 1
            if redraws > 8:
                raise
            continue
        done += 1
        bound *= min(1.0, eps)
        if failures:
            break
        if trials is not None and done >= trials:
            break
        if trials is None and (bound <= ERROR_TARGET or done >= _MAX_TRIALS):
            break
    return not failures, failures, bound, done, head


# ---------------------------------------------------------------------------------------------
# Symbolic method (SymEngine)
# ---------------------------------------------------------------------------------------------

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
    hand = onet.backward_unchecked(params, onet.forward_unchecked(params, X), Y)

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


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------

def prove_network(
    net: Network,
    *,
    method: str = "auto",
    trials: int | None = None,
    seed: int = 0,
    batch: int = 2,
) -> NetworkProof:
    r"""Certify ``net``'s backward pass against the derivative of the composite loss, exactly.

    Every :math:`\partial L/\partial w_{ij}^{(l)}` and :math:`\partial L/\partial b_i^{(l)}` that
    ``net.backward_unchecked`` computes (on ``net.forward_unchecked``'s cache, with opaque
    activations, see the module docstring) is compared with the true derivative of
    :math:`L = \frac1m\sum_{k=1}^m \ell(\hat y_k, y_k)` over a batch of ``batch`` samples.

    Args:
      net: the network; its class is kept, so a subclass's ``backward_unchecked`` is what is proved.
      method: ``"symbolic"`` (deterministic, SymEngine), ``"modular"`` (exact randomized identity
        test) or ``"auto"`` (symbolic when it applies and :func:`symbolic_cost` is at most
        :data:`SYMBOLIC_MAX_COST`, modular otherwise).
      trials: modular trials to run; ``None`` runs until the miss probability is below
        :data:`ERROR_TARGET`. Ignored by the symbolic method.
      seed: seed of the modular method's random points and atoms.
      batch: samples per batch, :math:`m \ge 1` (2 by default, so that a bias gradient not summed
        over the batch or a missing :math:`1/m` is caught).

    Returns:
      A :class:`NetworkProof` (``.ok``, ``.method``, ``.error_bound``, ``.first_failure``, ...).

    Example:
      >>> import handgrad as hg
      >>> print(prove_network(hg.article_network()).ok)
      True
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a handgrad.Network, got {type(net).__name__}")
    if method not in ("auto", "symbolic", "modular"):
        raise ValueError(f"method must be 'auto', 'symbolic' or 'modular', got {method!r}")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise ValueError(f"trials must be a positive int or None, got {trials!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise ValueError(f"batch must be a positive int (samples per batch), got {batch!r}")
    start = time.perf_counter()
    reason = _symbolic_supported(net)
    if method == "symbolic" and reason is not None:
        raise ValueError(f"method='symbolic' does not support {net.describe()}: {reason}; use method='modular'")
    symbolic = method == "symbolic" or (method == "auto" and reason is None
                                        and symbolic_cost(net) <= SYMBOLIC_MAX_COST)
    detail = "" if reason is None or method != "auto" else f"modular because of {reason}"
    if symbolic:
        ok, failures = _prove_symbolic(net, int(batch))
        head, bound, done = "exact", 0.0, 1
    else:
        ok, failures, bound, done, head = _prove_modular(net, trials, int(seed), int(batch))
        if not ok:
            bound = 0.0
    return NetworkProof(
        network=net.describe(), ok=ok, method="symbolic" if symbolic else "modular",
        error_bound=bound, first_failure=failures[0] if failures else None, failures=tuple(failures),
        seconds=time.perf_counter() - start, n_params=net.n_params, trials=done, batch=int(batch),
        head=_HEAD_TEXT[head], relies_on=_relies_on(net, head), detail=detail)
