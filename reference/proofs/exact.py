r"""Exact wrappers: SymPy scalars (and arrays of them) that handgrad's hand-written code can run on.

**The hand code itself is run, not a transcription of it.** numpy evaluates a ufunc on an *object*
array by calling the element's method of the same name (``np.exp(arr)`` calls ``elem.exp()``),
and handgrad's ``erf``/``erfc`` do the same. So the rule is called on a :class:`SymArray` of
:class:`Sym` elements, which wrap SymPy expressions and implement the arithmetic, ``exp``,
``log``, ``log1p``, ``expm1``, ``tanh``, ``sqrt``, ``erf``, ``erfc``, ``abs`` and the comparisons.
A comparison returns a Python ``bool`` only when SymPy can decide it from the symbol's
assumptions, and raises :class:`UndecidedComparison` otherwise, so a branch is never guessed.
(:class:`SymArray` is an object-array subclass that routes every ufunc through :class:`Sym`; it is
needed because numpy's object ``minimum``/``maximum`` return the raw operand, e.g. the ``int`` 0 in
``np.minimum(z, 0)``, which has no ``exp`` method.)


**Float constants.** Hand code holds rounded constants such as ``1/sqrt(2*pi)`` in GELU. Every
Python float met (in the hand code or in a definition) is replaced by the simple closed form
``nsimplify(c, [sqrt(2), pi])`` *only when* that closed form lies within :data:`ULP_BUDGET` = 4 ulp
of ``c``; otherwise the float's exact binary value is used. Why 4 ulp: a constant computed
by ``k`` correctly rounded float operations from correctly rounded inputs (``math.sqrt``,
``math.pi``, one division) carries at most about ``(k + 1)/2`` ulp of rounding error; the
constants in handgrad take at most 3 operations, so 2 ulp; 4 leaves a factor 2 to spare and still
rejects a constant that is wrong in its 15th digit. Recognised constants are listed in each
proof (:attr:`ActivationProof.constants`).

"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import sympy as sp

from handgrad.validation import check_real

from .errors import UnsupportedOperation

__all__ = [
    "SUPPORTED_UFUNCS",
    "ULP_BUDGET",
    "ConstantMatch",
    "Sym",
    "SymArray",
    "UndecidedComparison",
    "exact_constant",
    "symarray",
]

ULP_BUDGET = 4
"""A float constant is read as a closed form only within this many ulp of it (derivation above)."""

_NSIMPLIFY_BASIS = (sp.sqrt(2), sp.pi)


class UndecidedComparison(ArithmeticError):
    """A comparison the hand code made could not be decided from the region's assumptions."""


# ---------------------------------------------------------------------------------------------
# Float constants
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConstantMatch:
    """A float met during a proof and the exact value it was read as."""

    value: float
    exact: sp.Expr
    ulps: float
    recognised: bool

    def __str__(self) -> str:
        if self.recognised:
            return f"{self.value!r} read as {self.exact} ({self.ulps:.2f} ulp away)"
        return f"{self.value!r} taken at its exact binary value (no closed form within {ULP_BUDGET} ulp)"


@lru_cache(maxsize=4096)
def _constant_match(c: float) -> ConstantMatch:
    if not math.isfinite(c):
        raise ValueError(f"a non-finite constant {c!r} cannot enter an exact proof")
    if c == int(c):
        return ConstantMatch(c, sp.Integer(int(c)), 0.0, True)
    binary = sp.Rational(c)  # the float's exact value
    cand = sp.nsimplify(c, list(_NSIMPLIFY_BASIS))
    if cand.is_Float or cand.has(sp.Float):
        return ConstantMatch(c, binary, math.inf, False)
    err = abs(sp.N(cand - binary, 50))
    ulps = float(err / sp.Rational(math.ulp(c)))
    if ulps <= ULP_BUDGET:
        return ConstantMatch(c, cand, ulps, True)
    return ConstantMatch(c, binary, ulps, False)


_SEEN_CONSTANTS: list[ConstantMatch] | None = None


def exact_constant(c: float) -> sp.Expr:
    r"""The exact number a float constant stands for (see the module docstring for the 4-ulp rule).

    >>> exact_constant(1 / math.sqrt(2 * math.pi))
    sqrt(2)/(2*sqrt(pi))
    """
    match = _constant_match(check_real("c", c))
    if _SEEN_CONSTANTS is not None and match not in _SEEN_CONSTANTS and match.value != int(match.value):
        _SEEN_CONSTANTS.append(match)
    return match.exact


def _exactify(expr: sp.Basic) -> sp.Basic:
    """Replace every SymPy ``Float`` in ``expr`` by :func:`exact_constant` of it."""
    floats = expr.atoms(sp.Float)
    if not floats:
        return expr
    return expr.xreplace({f: exact_constant(float(f)) for f in floats})


# ---------------------------------------------------------------------------------------------
# Sym: a scalar the hand code can compute with
# ---------------------------------------------------------------------------------------------

def _coerce(x: Any) -> sp.Basic:
    if isinstance(x, Sym):
        return x.expr
    if isinstance(x, bool | np.bool_):
        return sp.Integer(int(x))
    if isinstance(x, int | np.integer):
        return sp.Integer(int(x))
    if isinstance(x, float | np.floating):
        return exact_constant(float(x))
    if isinstance(x, sp.Basic):
        return _exactify(x)
    raise TypeError(f"cannot use a {type(x).__name__} ({x!r}) in an exact proof")


def _sign(d: sp.Basic) -> int:
    """-1, 0 or 1: the sign of ``d`` on the current region, or :class:`UndecidedComparison`."""
    for cand in (d, None):
        if cand is None:
            cand = sp.simplify(sp.together(d))
        if cand.is_zero:
            return 0
        if cand.is_extended_positive:
            return 1
        if cand.is_extended_negative:
            return -1
    raise UndecidedComparison(f"the sign of {d} is not decided by the region's assumptions")


class Sym:
    """A SymPy expression that numpy object arrays (and so handgrad's hand code) can compute with."""

    __slots__ = ("expr",)

    def __init__(self, expr: Any) -> None:
        self.expr = _coerce(expr)

    def __repr__(self) -> str:
        return f"Sym({self.expr})"

    def _sympy_(self) -> sp.Basic:
        """What ``sympify`` reads a :class:`Sym` as (so SymPy functions accept one)."""
        return self.expr

    # arithmetic
    def __add__(self, o: Any) -> Sym:
        return Sym(self.expr + _coerce(o))

    def __radd__(self, o: Any) -> Sym:
        return Sym(_coerce(o) + self.expr)

    def __sub__(self, o: Any) -> Sym:
        return Sym(self.expr - _coerce(o))

    def __rsub__(self, o: Any) -> Sym:
        return Sym(_coerce(o) - self.expr)

    def __mul__(self, o: Any) -> Sym:
        return Sym(self.expr * _coerce(o))

    def __rmul__(self, o: Any) -> Sym:
        return Sym(_coerce(o) * self.expr)

    def __truediv__(self, o: Any) -> Sym:
        return Sym(self.expr / _coerce(o))

    def __rtruediv__(self, o: Any) -> Sym:
        return Sym(_coerce(o) / self.expr)

    def __pow__(self, o: Any) -> Sym:
        return Sym(self.expr ** _coerce(o))

    def __rpow__(self, o: Any) -> Sym:
        return Sym(_coerce(o) ** self.expr)

    def __neg__(self) -> Sym:
        return Sym(-self.expr)

    def __pos__(self) -> Sym:
        return self

    def __abs__(self) -> Sym:
        try:
            return self if _sign(self.expr) >= 0 else Sym(-self.expr)
        except UndecidedComparison:
            return Sym(sp.Abs(self.expr))

    # comparisons: decided or raise
    def _cmp(self, o: Any) -> int:
        return _sign(self.expr - _coerce(o))

    def __lt__(self, o: Any) -> bool:
        return self._cmp(o) < 0

    def __le__(self, o: Any) -> bool:
        return self._cmp(o) <= 0

    def __gt__(self, o: Any) -> bool:
        return self._cmp(o) > 0

    def __ge__(self, o: Any) -> bool:
        return self._cmp(o) >= 0

    def __eq__(self, o: object) -> bool:
        return self._cmp(o) == 0

    def __ne__(self, o: object) -> bool:
        return self._cmp(o) != 0

    def __hash__(self) -> int:
        return hash(self.expr)

    def __bool__(self) -> bool:
        return _sign(self.expr) != 0

    # the methods numpy's object-array ufuncs call
    def exp(self) -> Sym:
        return Sym(sp.exp(self.expr))

    def log(self) -> Sym:
        return Sym(sp.log(self.expr))

    def log1p(self) -> Sym:
        return Sym(sp.log(1 + self.expr))

    def expm1(self) -> Sym:
        return Sym(sp.exp(self.expr) - 1)

    def tanh(self) -> Sym:
        return Sym(sp.tanh(self.expr))

    def sqrt(self) -> Sym:
        return Sym(sp.sqrt(self.expr))

    def erf(self) -> Sym:
        return Sym(sp.erf(self.expr))

    def erfc(self) -> Sym:
        return Sym(sp.erfc(self.expr))


_to_sym = np.frompyfunc(lambda v: v if isinstance(v, Sym) else Sym(v), 1, 1)


def _plain(x: Any) -> Any:
    """An operand as numpy sees it: object arrays of Sym (bool arrays and bools left alone)."""
    if isinstance(x, np.ndarray):
        base = x.view(np.ndarray) if isinstance(x, SymArray) else x
        if base.dtype == np.bool_:
            return base
        return np.asarray(_to_sym(base), dtype=object)
    if isinstance(x, bool | np.bool_):
        return x
    if isinstance(x, int | float | np.integer | np.floating | sp.Basic):
        return Sym(x)
    return x


def _wrap(r: Any) -> Any:
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, np.ndarray) and r.dtype == object:
        return np.asarray(_to_sym(r), dtype=object).view(SymArray) if r.ndim else _to_sym(r)
    return r


def _heaviside(x: sp.Basic, h0: sp.Basic) -> sp.Basic:
    s = _sign(x)
    return sp.Integer(1) if s > 0 else sp.Integer(0) if s < 0 else h0


_SYMPY_UFUNCS: dict[np.ufunc, Any] = {
    np.sinh: sp.sinh, np.cosh: sp.cosh, np.tanh: sp.tanh,
    np.sin: sp.sin, np.cos: sp.cos, np.tan: sp.tan,
    np.arcsin: sp.asin, np.arccos: sp.acos, np.arctan: sp.atan,
    np.arcsinh: sp.asinh, np.arccosh: sp.acosh, np.arctanh: sp.atanh,
    np.exp2: lambda x: 2 ** x, np.log2: lambda x: sp.log(x, 2), np.log10: lambda x: sp.log(x, 10),
    np.cbrt: sp.cbrt,
    np.logaddexp: lambda x, y: sp.log(sp.exp(x) + sp.exp(y)),
    np.logaddexp2: lambda x, y: sp.log(2 ** x + 2 ** y, 2),
    np.hypot: lambda x, y: sp.sqrt(x * x + y * y),
    np.arctan2: sp.atan2,
    np.float_power: lambda x, y: x ** y,
    np.heaviside: _heaviside,
}
"""numpy functions numpy has no object loop for (or whose loop calls a method :class:`Sym` lacks), as
SymPy functions of the elements' expressions. The arithmetic, comparisons, ``abs``, ``sign``,
``maximum``/``minimum``, ``square``, ``reciprocal``, ``exp``, ``log``, ``log1p``, ``expm1``, ``sqrt``
and ``erf`` go through numpy's object loops to :class:`Sym`'s own methods."""

SUPPORTED_UFUNCS = tuple(sorted({f"np.{u.__name__}" for u in _SYMPY_UFUNCS} | {
    "np.add", "np.subtract", "np.multiply", "np.divide", "np.negative", "np.positive", "np.power",
    "np.square", "np.reciprocal", "np.absolute", "np.sign", "np.maximum", "np.minimum", "np.fmax",
    "np.fmin", "np.exp", "np.log", "np.log1p", "np.expm1", "np.sqrt", "np.less", "np.less_equal",
    "np.greater", "np.greater_equal", "np.equal", "np.not_equal"}))
"""The numpy ufuncs hand-written rules may use in :func:`~handgrad.reference.proofs.prove_activation`
(plus handgrad's ``erf``/``erfc`` and reductions such as ``np.sum``); others raise
:class:`UnsupportedOperation`."""


def _unsupported(function: str) -> UnsupportedOperation:
    return UnsupportedOperation(
        f"{function} is not supported by the exact arithmetic of the proofs (SymPy expressions); "
        f"supported numpy functions: {', '.join(SUPPORTED_UFUNCS)}")


class SymArray(np.ndarray):
    """An object array of :class:`Sym` whose every ufunc sees :class:`Sym` operands only."""

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(o) for o in kwargs["out"])
        rule = _SYMPY_UFUNCS.get(ufunc)
        if rule is not None:
            if method != "__call__" or kwargs:
                raise _unsupported(f"np.{ufunc.__name__}.{method}" if method != "__call__" else
                                   f"np.{ufunc.__name__} with {sorted(kwargs)}")
            lifted = np.frompyfunc(lambda *xs: Sym(rule(*(_coerce(x) for x in xs))), ufunc.nin, 1)
            return _wrap(lifted(*(_plain(x) for x in inputs)))
        try:
            return _wrap(getattr(ufunc, method)(*(_plain(x) for x in inputs), **kwargs))
        except (TypeError, AttributeError) as exc:
            if isinstance(exc, UnsupportedOperation):
                raise
            name = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
            raise _unsupported(name) from exc


def symarray(values: Any) -> SymArray:
    """A :class:`SymArray` holding ``values`` (nested lists of SymPy expressions or numbers)."""
    arr = np.empty(np.shape(values), dtype=object)
    flat = arr.reshape(-1)
    for i, v in enumerate(np.asarray(values, dtype=object).reshape(-1)):
        flat[i] = v if isinstance(v, Sym) else Sym(v)
    return arr.view(SymArray)


def _to_expr(v: Any) -> sp.Basic:
    return _coerce(v)


@contextmanager
def _collect_constants() -> Iterator[list[ConstantMatch]]:
    """Record every non-integer constant :func:`exact_constant` reads while the block runs."""
    global _SEEN_CONSTANTS
    seen: list[ConstantMatch] = []
    _SEEN_CONSTANTS = seen
    try:
        yield seen
    finally:
        _SEEN_CONSTANTS = None
