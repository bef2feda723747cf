r"""Dual numbers modulo p: forward-mode differentiation of a loss definition for the reference.

:class:`_Dual` carries a value of shape (n, m) and tangents of shape (P, n, m) as :class:`ModArray`
residues; :class:`_DualOps` is the ``Ops`` namespace a loss definition is evaluated against, with
``exp``/``log`` values as random atoms and their tangents by the calculus rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .modular import ModArray, UnsupportedOperation, _mod, _Trial

__all__: list[str] = []

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

