r"""Running error bounds (Wilkinson) for the finite-difference witness: float64 values that carry a
bound on their own absolute error through the ``Ops`` namespace of the shared definitions.

:class:`_Bounded` (a float64 array and its bound) and :class:`_BoundedOps` serve central
differences; :class:`_CBounded` (a complex128 array with separate bounds on its real and imaginary
parts) and :class:`_CBoundedOps` serve the complex step. The values are bit for bit those of
``handgrad.NUMPY_OPS`` (the same numpy calls in the same order); the bounds ride along. Each
operation adds its own rounding to the propagated bounds of its inputs:

* ``+ - * /`` add :math:`u` times their result (an underflowing product or quotient
  :math:`2^{-1075}`); :math:`W x + B` with fan-in n adds :math:`\gamma_{n+1}(|W||x| + |B|)`,
  :math:`\gamma_k = ku/(1-ku)`; a column sum of n terms :math:`\gamma_{n-1}\sum|x|`;
* a library function (exp, log, log1p, expm1, tanh, erf, erfc) adds :data:`LIB_ULPS` :math:`u`
  times its result plus its input's bound times its Lipschitz constant on the interval (exact for
  exp and log, first order plus a second-order remainder for tanh and erf);
* complex step: to first order in h, :math:`\operatorname{Im} f(x + \mathrm i h t) = f'(x)\,h t`,
  so an operation passes on :math:`|f'|` times the tangent's error plus :math:`|f''|\,|h t|`
  times the value's error, plus :data:`LIB_ULPS_COMPLEX` :math:`u` of each part.

The library budgets are measured bounds (numpy's float64 functions and the ``math.erf`` behind
``NUMPY_OPS`` at most 2.7 u against 40-digit mpmath, numpy's complex ones at most 4.2 u per part
against 50-digit mpmath); numpy's complex ``log1p`` loses the real part's accuracy for small
arguments, so :func:`_complex_log1p` uses exact identities instead (1.02 u).
:mod:`handgrad.reference.oracles.finite_diff` turns these bounds into the error of a quotient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..numerics import U64, erf, erfc

__all__ = ["LIB_ULPS", "LIB_ULPS_COMPLEX", "U"]

U = U64
"""Unit roundoff of float64: every correctly rounded operation has relative error at most U."""

LIB_ULPS = 4.0
"""Relative error budget of the float64 exp, log, log1p, expm1, tanh, erf, erfc, in units of U."""


_TINY = 2.0**-1022
"""Absolute error allowance of a library result that underflows (smallest normal float64)."""

_ETA = 2.0**-1075
"""Absolute error of a product or quotient that underflows into the subnormal range (the IEEE
model fl(x op y) = (x op y)(1 + delta) + eta, |eta| <= 2^-1075)."""

_DBL_MAX = float(np.finfo(np.float64).max)


# ---------------------------------------------------------------------------------------------
# Running error bound (Wilkinson): values with an absolute error bound, through the Ops namespace.
# ---------------------------------------------------------------------------------------------

def _gamma(k: int) -> float:
    return k * U / (1 - k * U)


class _Bounded:
    r"""A float64 array ``v`` and a bound ``e >= 0`` on the absolute error of ``v``.

    An overflowed entry (``v = ±inf``, e.g. ``exp(800)``) stands for "beyond ±DBL_MAX" and carries
    ``e = 0``; it can only become finite again through a saturating operation, which accounts for
    it: ``a / inf = 0`` adds :math:`|a|/\text{DBL\_MAX}`, ``exp(-inf) = 0`` and ``erfc(inf) = 0``
    add the underflow allowance :data:`_TINY`, ``tanh(inf) = 1`` is exact in float64. Any other
    use (``inf - inf``, ``0 * inf``) is NaN, which the callers reject.
    """

    __array_ufunc__ = None  # make numpy defer to our reflected operators
    __slots__ = ("e", "v")

    def __init__(self, v: Any, e: Any = None) -> None:
        self.v = np.asarray(v, dtype=np.float64)
        if e is None:
            self.e = np.zeros_like(self.v)
        else:
            e = np.asarray(e, dtype=np.float64)
            self.e = np.where(np.isinf(self.v), 0.0, e) if np.isinf(self.v).any() else e

    @property
    def shape(self) -> tuple[int, ...]:
        return self.v.shape

    @property
    def ndim(self) -> int:
        return self.v.ndim

    @property
    def T(self) -> _Bounded:
        return _Bounded(self.v.T, self.e.T)

    def __getitem__(self, index: Any) -> _Bounded:
        return _Bounded(self.v[index], self.e[index])

    def reshape(self, *shape: Any) -> _Bounded:
        return _Bounded(self.v.reshape(*shape), self.e.reshape(*shape))

    def __add__(self, other: Any) -> _Bounded:
        o = _lift(other)
        v = self.v + o.v
        return _Bounded(v, self.e + o.e + U * np.abs(v))

    __radd__ = __add__

    def __sub__(self, other: Any) -> _Bounded:
        o = _lift(other)
        v = self.v - o.v
        return _Bounded(v, self.e + o.e + U * np.abs(v))

    def __rsub__(self, other: Any) -> _Bounded:
        return _lift(other) - self

    def __mul__(self, other: Any) -> _Bounded:
        o = _lift(other)
        v = self.v * o.v
        return _Bounded(v, np.abs(self.v) * o.e + np.abs(o.v) * self.e + self.e * o.e + U * np.abs(v) + _ETA)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> _Bounded:
        o = _lift(other)
        v = self.v / o.v
        margin = np.abs(o.v) - o.e
        e = np.where(margin > 0, (self.e + np.abs(v) * o.e) / np.where(margin > 0, margin, 1), np.inf)
        e = np.where(np.isinf(o.v), np.abs(self.v) / _DBL_MAX, e)  # a / (something beyond DBL_MAX)
        return _Bounded(v, e + U * np.abs(v) + _ETA)

    def __rtruediv__(self, other: Any) -> _Bounded:
        return _lift(other) / self

    def __neg__(self) -> _Bounded:
        return _Bounded(-self.v, self.e)

    def __pos__(self) -> _Bounded:
        return self

    def __abs__(self) -> _Bounded:
        return _Bounded(np.abs(self.v), self.e)

    def __pow__(self, p: Any) -> _Bounded:
        if isinstance(p, int | np.integer) and p >= 1:
            out = self
            for _ in range(int(p) - 1):
                out = out * self
            return out
        if isinstance(p, _Bounded | np.ndarray) or not isinstance(p, float | int):
            raise TypeError("the rounding-error tracker supports ** with a constant real exponent only")
        v = self.v**p
        # first order: |p x^(p-1)| e, plus the library error
        return _Bounded(v, np.abs(p * self.v ** (p - 1)) * self.e + LIB_ULPS * U * np.abs(v))

    def _cmp(self, other: Any, op: Callable[[Any, Any], Any]) -> np.ndarray:
        return op(self.v, other.v if isinstance(other, _Bounded) else other)

    def __gt__(self, other: Any) -> np.ndarray:
        return self._cmp(other, np.greater)

    def __ge__(self, other: Any) -> np.ndarray:
        return self._cmp(other, np.greater_equal)

    def __lt__(self, other: Any) -> np.ndarray:
        return self._cmp(other, np.less)

    def __le__(self, other: Any) -> np.ndarray:
        return self._cmp(other, np.less_equal)


def _lift(x: Any) -> _Bounded:
    if isinstance(x, _Bounded):
        return x
    if isinstance(x, np.ndarray | float | int | np.floating | np.integer):
        return _Bounded(x)
    raise TypeError(f"the rounding-error tracker cannot combine with {type(x).__name__}")


def _lib(v: np.ndarray, propagated: np.ndarray) -> _Bounded:
    return _Bounded(v, propagated + LIB_ULPS * U * np.abs(v) + _TINY)


class _BoundedOps:
    r"""``Ops`` on :class:`_Bounded` values: each function's error = (rigorous or first-order)
    propagation of its input's bound + LIB_ULPS u |result|."""

    pi = _Bounded(math.pi, U * math.pi)

    @staticmethod
    def exp(x: Any) -> _Bounded:
        x = _lift(x)
        v = np.exp(x.v)
        return _lib(v, v * np.expm1(x.e))  # exp(x+d) - exp(x) = exp(x)(exp(d) - 1)

    @staticmethod
    def expm1(x: Any) -> _Bounded:
        x = _lift(x)
        v = np.expm1(x.v)
        return _lib(v, np.exp(x.v) * np.expm1(x.e))

    @staticmethod
    def log(x: Any) -> _Bounded:
        x = _lift(x)
        v = np.log(x.v)
        rel = np.where(x.v > x.e, x.e / np.where(x.v > 0, x.v, 1), np.inf)
        return _lib(v, -np.log1p(-np.minimum(rel, 1)))  # |log(x - d) - log x| = -log(1 - d/x)

    @staticmethod
    def log1p(x: Any) -> _Bounded:
        x = _lift(x)
        v = np.log1p(x.v)
        base = 1 + x.v
        rel = np.where(base > x.e, x.e / np.where(base > 0, base, 1), np.inf)
        return _lib(v, -np.log1p(-np.minimum(rel, 1)))

    @staticmethod
    def tanh(x: Any) -> _Bounded:
        x = _lift(x)
        v = np.tanh(x.v)
        # tanh' = 1 - tanh^2, |tanh''| <= 0.77: Taylor remainder <= 0.385 d^2 <= d^2
        return _lib(v, (1 - v * v) * x.e + x.e * x.e)

    @staticmethod
    def erf(x: Any) -> _Bounded:
        x = _lift(x)
        v = erf(x.v)
        # erf' = 2/sqrt(pi) exp(-x^2), |erf''| <= 2/sqrt(pi) sqrt(2/e) < 1: remainder <= d^2 / 2
        return _lib(v, 2 / math.sqrt(math.pi) * np.exp(-x.v * x.v) * x.e + 0.5 * x.e * x.e)

    @staticmethod
    def erfc(x: Any) -> _Bounded:
        x = _lift(x)
        v = erfc(x.v)
        # erfc' = -erf', same bounds as erf
        return _lib(v, 2 / math.sqrt(math.pi) * np.exp(-x.v * x.v) * x.e + 0.5 * x.e * x.e)

    @staticmethod
    def sqrt(x: Any) -> _Bounded:
        x = _lift(x)
        v = np.sqrt(x.v)
        low = np.sqrt(np.maximum(x.v - x.e, 0))
        # |sqrt(x) - sqrt(y)| = |x - y| / (sqrt x + sqrt y); sqrt is correctly rounded (u).
        denom = low + v
        e = np.where(denom > 0, x.e / np.where(denom > 0, denom, 1), np.sqrt(x.e))
        return _Bounded(v, e + U * v)

    @staticmethod
    def where(cond: Any, x: Any, y: Any) -> _Bounded:
        c = cond.v if isinstance(cond, _Bounded) else np.asarray(cond)
        x, y = _lift(x), _lift(y)
        return _Bounded(np.where(c, x.v, y.v), np.where(c, x.e, y.e))

    @staticmethod
    def colsum(x: Any) -> _Bounded:
        x = _lift(x)
        n = x.v.shape[0]
        v = np.sum(x.v, axis=0, keepdims=True)
        return _Bounded(v, np.sum(x.e, axis=0, keepdims=True)
                        + _gamma(n - 1) * np.sum(np.abs(x.v), axis=0, keepdims=True))


_BOUNDED_OPS = _BoundedOps()


# ---------------------------------------------------------------------------------------------
# Running error bound for the complex step: real and imaginary parts bounded separately.
# ---------------------------------------------------------------------------------------------

class _CBounded:
    r"""A complex128 array ``v`` = x + i h t (h tiny, so t is a tangent) with separate bounds
    ``er`` on the error of its real part and ``ei`` on the error of its imaginary part.

    The rules are the dual-number (forward-mode) running error bound: to first order in h,
    :math:`\operatorname{Re} f(x + \mathrm i h t) = f(x)` and
    :math:`\operatorname{Im} f(x + \mathrm i h t) = f'(x)\,h t`, so an error :math:`e_r` in the
    real part moves the imaginary part by :math:`|f''(x)|\,|h t|\,e_r`, an error :math:`e_i` in
    the imaginary part by :math:`|f'(x)|\,e_i`, and the operation itself adds its rounding:
    ``+ -``: :math:`u`; ``*``: :math:`\gamma_2` of the two products in each part; ``/``
    (Smith's algorithm): :math:`4u` of the terms :math:`|{\rm Im}\,a| + |c\,{\rm Im}\,b|`;
    library functions: :data:`LIB_ULPS_COMPLEX` :math:`\cdot u` of each part (numpy's complex
    exp, expm1, log, tanh, sqrt and our :func:`_complex_log1p` measured at most 4.2 u per part
    against 50-digit mpmath at imaginary parts ~1e-30) plus :data:`_TINY` for results that
    underflow.
    Comparisons compare real parts (the branch of the real point).
    """

    __array_ufunc__ = None
    __slots__ = ("ei", "er", "v")

    def __init__(self, v: Any, er: Any = None, ei: Any = None) -> None:
        self.v = np.asarray(v, dtype=np.complex128)
        self.er = np.zeros(self.v.shape) if er is None else np.asarray(er, dtype=np.float64)
        self.ei = np.zeros(self.v.shape) if ei is None else np.asarray(ei, dtype=np.float64)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.v.shape

    @property
    def ndim(self) -> int:
        return self.v.ndim

    @property
    def T(self) -> _CBounded:
        return _CBounded(self.v.T, self.er.T, self.ei.T)

    def __getitem__(self, index: Any) -> _CBounded:
        return _CBounded(self.v[index], self.er[index], self.ei[index])

    def reshape(self, *shape: Any) -> _CBounded:
        return _CBounded(self.v.reshape(*shape), self.er.reshape(*shape), self.ei.reshape(*shape))

    def __add__(self, other: Any) -> _CBounded:
        o = _clift(other)
        v = self.v + o.v
        return _CBounded(v, self.er + o.er + U * np.abs(v.real), self.ei + o.ei + U * np.abs(v.imag))

    __radd__ = __add__

    def __sub__(self, other: Any) -> _CBounded:
        return self + (-_clift(other))

    def __rsub__(self, other: Any) -> _CBounded:
        return _clift(other) + (-self)

    def __mul__(self, other: Any) -> _CBounded:
        o = _clift(other)
        ar, ai, br, bi = self.v.real, self.v.imag, o.v.real, o.v.imag
        v = self.v * o.v
        er = (np.abs(br) * self.er + np.abs(ar) * o.er + self.er * o.er + self.ei * o.ei
              + _gamma(2) * (np.abs(ar * br) + np.abs(ai * bi)) + 3 * _ETA)
        ei = (np.abs(ar) * o.ei + np.abs(bi) * self.er + np.abs(br) * self.ei + np.abs(ai) * o.er
              + self.er * o.ei + self.ei * o.er + _gamma(2) * (np.abs(ar * bi) + np.abs(ai * br)) + 3 * _ETA)
        return _CBounded(v, er, ei)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> _CBounded:
        o = _clift(other)
        v = self.v / o.v
        br, bi = o.v.real, o.v.imag
        margin = np.abs(br) - o.er
        safe = np.where(margin > 0, margin, 1.0)
        cr, ci = v.real, v.imag
        er = np.where(margin > 0, (self.er + np.abs(cr) * o.er) / safe, np.inf) + _gamma(2) * np.abs(cr)
        # Im c = (Im a - Re c Im b) / Re b to first order in h
        ei = np.where(margin > 0, (self.ei + np.abs(cr) * o.ei + np.abs(bi) * er + np.abs(ci) * o.er) / safe, np.inf)
        ei = (ei + 4 * U * (np.abs(self.v.imag) + np.abs(cr * bi)) / np.where(br != 0, np.abs(br), 1.0)
              + U * np.abs(ci) + 4 * _ETA)
        er = er + 4 * _ETA
        return _CBounded(v, er, ei)

    def __rtruediv__(self, other: Any) -> _CBounded:
        return _clift(other) / self

    def __neg__(self) -> _CBounded:
        return _CBounded(-self.v, self.er, self.ei)

    def __pos__(self) -> _CBounded:
        return self

    def __pow__(self, p: Any) -> _CBounded:
        if isinstance(p, int | np.integer) and p >= 1:
            out = self
            for _ in range(int(p) - 1):
                out = out * self
            return out
        if not isinstance(p, float | int):
            raise TypeError("the rounding-error tracker supports ** with a constant real exponent only")
        x = self.v.real
        return _cunary(self, self.v**p, np.abs(p * x ** (p - 1)), np.abs(p * (p - 1) * x ** (p - 2)), 1.0)

    def __gt__(self, other: Any) -> np.ndarray:
        return np.greater(self.v.real, _clift(other).v.real)

    def __ge__(self, other: Any) -> np.ndarray:
        return np.greater_equal(self.v.real, _clift(other).v.real)

    def __lt__(self, other: Any) -> np.ndarray:
        return np.less(self.v.real, _clift(other).v.real)

    def __le__(self, other: Any) -> np.ndarray:
        return np.less_equal(self.v.real, _clift(other).v.real)


LIB_ULPS_COMPLEX = 8.0
"""Budget, in units of U, for each part of numpy's complex exp, expm1, log, log1p, tanh, sqrt."""



def _complex_log1p(w: np.ndarray) -> np.ndarray:
    r"""log(1 + w) for complex w = x + iy, accurate in both parts.

    numpy's complex ``log1p`` takes the real part as :math:`\log|1 + w|` of the *rounded*
    :math:`1 + x`, which loses all relative accuracy for small x (measured: 9e15 u at
    :math:`|x| \sim 10^{-15}`). The exact identities
    :math:`\operatorname{Re} = \operatorname{log1p}(x) + \tfrac12\operatorname{log1p}((y/(1+x))^2)`
    (with :math:`\log|1+x|` for x < -1) and :math:`\operatorname{Im} = \operatorname{atan2}(y, 1+x)`
    are accurate to 1.02 u (real) and 1.73 u (imaginary) on the same test points.
    """
    x, y = w.real, w.imag
    base = np.where(x > -1, np.log1p(np.maximum(x, -1)), np.log(np.abs(1 + x)))
    return base + 0.5 * np.log1p((y / (1 + x)) ** 2) + 1j * np.arctan2(y, 1 + x)


def _clift(x: Any) -> _CBounded:
    if isinstance(x, _CBounded):
        return x
    if isinstance(x, _Bounded):
        return _CBounded(x.v, x.e)
    if isinstance(x, np.ndarray | float | int | complex | np.floating | np.integer | np.complexfloating):
        return _CBounded(x)
    raise TypeError(f"the rounding-error tracker cannot combine with {type(x).__name__}")


def _times(a: Any, b: Any) -> np.ndarray:
    """a * b with 0 * inf = 0 (a zero error times an unbounded factor contributes nothing)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.where((a == 0) | (b == 0), 0.0, a * b)


def _cunary(x: _CBounded, v: np.ndarray, d1: np.ndarray, c1: Any, c2: Any) -> _CBounded:
    r"""Result ``v = f(x)`` given bounds ``d1 >= |f'|`` and ``c1 * c2 >= |f''|`` near Re x.

    ``f''`` comes as a product so that :math:`|f''|\,a\,b` is formed as :math:`(c_1 a)(c_2 b)`,
    which stays representable when :math:`f''` alone would overflow (``log`` near 1e-174).
    """
    lib = LIB_ULPS_COMPLEX * U
    # _times(1.0, e) is e itself (1 * e = e, and a zero stays 0): skipped, the same bits
    c2_er = x.er if isinstance(c2, float) and c2 == 1.0 else _times(c2, x.er)
    er = _times(d1, x.er) + 0.5 * _times(_times(c1, x.er), c2_er) + lib * np.abs(v.real) + _TINY
    ei = (_times(d1, x.ei) + _times(_times(c1, np.abs(x.v.imag)), c2_er)
          + lib * np.abs(v.imag) + _TINY)
    return _CBounded(v, er, ei)


class _CBoundedOps:
    """``Ops`` on :class:`_CBounded` values (derivative bounds taken at the real part)."""

    pi = _CBounded(math.pi, U * math.pi)

    @staticmethod
    def exp(x: Any) -> _CBounded:
        x = _clift(x)
        d = np.exp(x.v.real + x.er)
        return _cunary(x, np.exp(x.v), d, d, 1.0)

    @staticmethod
    def expm1(x: Any) -> _CBounded:
        x = _clift(x)
        d = np.exp(x.v.real + x.er)
        return _cunary(x, np.expm1(x.v), d, d, 1.0)

    @staticmethod
    def log(x: Any) -> _CBounded:
        x = _clift(x)
        low = np.abs(x.v.real) - x.er
        inv = np.where(low > 0, 1 / np.where(low > 0, low, 1), np.inf)
        return _cunary(x, np.log(x.v), inv, inv, inv)

    @staticmethod
    def log1p(x: Any) -> _CBounded:
        x = _clift(x)
        low = np.abs(1 + x.v.real) - x.er
        inv = np.where(low > 0, 1 / np.where(low > 0, low, 1), np.inf)
        return _cunary(x, _complex_log1p(x.v), inv, inv, inv)

    @staticmethod
    def tanh(x: Any) -> _CBounded:
        x = _clift(x)
        t = np.tanh(x.v.real)
        return _cunary(x, np.tanh(x.v), np.minimum(1.0, 1 - t * t + 2 * x.er), 0.77, 1.0)

    @staticmethod
    def erf(x: Any) -> _CBounded:
        raise TypeError("erf has no complex evaluation in NUMPY_OPS (set complex_step=False)")

    erfc = erf

    @staticmethod
    def sqrt(x: Any) -> _CBounded:
        x = _clift(x)
        low = x.v.real - x.er
        safe = np.where(low > 0, low, 1)
        d1 = np.where(low > 0, 0.5 / np.sqrt(safe), np.inf)
        return _cunary(x, np.sqrt(x.v), d1, d1, np.where(low > 0, 0.5 / safe, np.inf))  # f'' = f' / 2x

    @staticmethod
    def where(cond: Any, x: Any, y: Any) -> _CBounded:
        c = np.asarray(cond)
        x, y = _clift(x), _clift(y)
        return _CBounded(np.where(c, x.v, y.v), np.where(c, x.er, y.er), np.where(c, x.ei, y.ei))

    @staticmethod
    def colsum(x: Any) -> _CBounded:
        x = _clift(x)
        g = _gamma(x.v.shape[0] - 1)
        return _CBounded(np.sum(x.v, axis=0, keepdims=True),
                         np.sum(x.er, axis=0, keepdims=True) + g * np.sum(np.abs(x.v.real), axis=0, keepdims=True),
                         np.sum(x.ei, axis=0, keepdims=True) + g * np.sum(np.abs(x.v.imag), axis=0, keepdims=True))


_CBOUNDED_OPS = _CBoundedOps()


Value = Any  # _Bounded or _CBounded


def _affine(W: np.ndarray, B: np.ndarray, a: Value) -> Value:
    r""":math:`W a + B` with the bound :math:`|W| e_a + \gamma_{n+1}(|W||a| + |B|)` (each part)."""
    absW = np.abs(W)
    g = _gamma(W.shape[-1] + 1)  # W may be a stack (cases, n_out, n_in)
    if isinstance(a, _CBounded):
        v = W @ a.v + B
        return _CBounded(v, absW @ a.er + g * (absW @ np.abs(a.v.real) + np.abs(B)),
                         absW @ a.ei + g * (absW @ np.abs(a.v.imag)))
    return _Bounded(W @ a.v + B, absW @ a.e + g * (absW @ np.abs(a.v) + np.abs(B)))
