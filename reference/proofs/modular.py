r"""Exact arithmetic modulo a prime, with degree bookkeeping, and the random atoms of a trial.

The arithmetic of :func:`handgrad.reference.proofs.prove_network`'s modular method (the randomized
identity test and its error bound are described in :mod:`handgrad.reference.proofs.network`):

* :class:`ModArray`: int64 residues mod :data:`PRIME` on which numpy's operators compute exactly,
  each array carrying a bound on the degrees of the rational functions its entries are;
* :class:`_RandomFunction`: a lazily sampled uniform random function (an opaque atom such as
  :math:`f_l(z)`), and :class:`_Trial`, one trial's tables of atoms.

*Why* :math:`p < 2^{26}`. Residues are stored in int64. A product of two residues is at most
:math:`(p-1)^2 < 2^{52}`, and numpy's integer matmul accumulates :math:`K` such products
exactly when :math:`K (p-1)^2 \le 2^{63}-1`, i.e. :math:`K \le` :data:`MATMUL_CHUNK` = 2048 for this
:math:`p`; longer inner dimensions are split into chunks of 2048 and reduced between chunks. No
intermediate ever exceeds :math:`2^{63}-1`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import UnsupportedOperation

__all__ = ["MATMUL_CHUNK", "PRIME", "ModArray", "UnsupportedOperation"]

PRIME = 67_108_859
"""The largest prime below :math:`2^{26}` (see the module docstring for why :math:`< 2^{26}`)."""

MATMUL_CHUNK = (2**63 - 1) // (PRIME - 1) ** 2
"""Longest inner dimension an int64 matmul of residues may sum without overflow (2048)."""

_P = PRIME

Deg = tuple[int, int]


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
            raise UnsupportedOperation(f"np.{ufunc.__name__}.{method} has no exact meaning modulo p")
        if ufunc in (np.equal, np.not_equal):
            return ufunc(*vals)
        if any(o[2] for o in ops):
            raise UnsupportedOperation(f"np.{ufunc.__name__} of a boolean mask has no exact meaning modulo p")
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
        raise UnsupportedOperation(
            f"np.{ufunc.__name__} has no exact meaning modulo p: the modular proof runs the backward code on "
            "residues, where only + - * /, integer powers, @, sum, == and np.where are exact (the activations "
            "and their derivatives are opaque atoms, so their own numpy functions never run here)")

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

