r"""A high-precision reference: forward-mode dual numbers in mpmath over the shared definitions.

Where the float64 oracles are blind -- unfused probability losses with a prediction within
:math:`10^{-9}` of 0 or 1, pre-activations beyond a few hundred (``exp`` overflows float64 at
709.78, and JAX and SymPy evaluate the definitions naively) -- this oracle still decides. It
evaluates the mean batch loss

.. math:: L = \frac1m \sum_s \ell\big(f_L(W^{(L)} \cdots f_1(W^{(1)} x_s + B^{(1)}) \cdots + B^{(L)}), y_s\big)

(the sum instead of the mean, and an L2 penalty added, when the loss declares them: Note [Declared
loss] in ``judge/conventions.py``) with every activation's, loss's and fused rule's ``definition``
on :class:`Dual` numbers whose value and tangents are mpmath numbers (``mpmath.mp.dps`` digits):
one forward pass carries all P tangents :math:`\partial/\partial\theta_k`, so the result is the
exact gradient up to mpmath's rounding, computed from the definitions only -- independent of
handgrad's backward, of JAX and of SymPy. The derivative of each primitive (exp, log, log1p,
expm1, tanh, erf, erfc, sqrt) is written here in its relatively accurate form (:math:`\tanh' =
1/\cosh^2`, never :math:`1 - \tanh^2`).

Accuracy is *measured*, not assumed: the gradient is computed at ``dps`` and at ``dps + 20``
digits, and accepted when the two agree to :math:`10^{-30}` relative to the largest element
(otherwise the precision doubles, up to :data:`MAX_DPS`, then the oracle declines). The float64
values returned are therefore correctly rounded to within one ulp, and the budget of a hand value
against them is :func:`~handgrad.reference.judge.tolerance.budget_against_exact` (docs/tolerances.md
section 13: :meth:`Budget.against_exact` on magnitudes whose unfused output term stays meaningful
near 0 and 1); :func:`handgrad.reference.judge.outside.referee_outside` decides a case with it.

Small nets only: at most :data:`MAX_PARAMS` parameters and :data:`MAX_BATCH` samples (the cost is
P tangents times the forward's operations, all in Python objects); larger cases are declined with
a ``ValueError`` that says so. :func:`float64_domain` tells a caller when the float64 oracles cannot
decide a case, so that it can be routed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from handgrad import NUMPY_OPS, Network, Params

__all__ = ["FLOAT64_MARGIN", "FLOAT64_Z_MAX", "MAX_BATCH", "MAX_DPS", "MAX_PARAMS", "Dual",
           "float64_domain", "mp_grads", "mp_grads_unchecked"]

FOLLOWS_DECLARED_LOSS = True
"""Note [Declared loss] (judge/conventions.py): a declared ``reduction="sum"`` and L2 penalty are
part of the loss this oracle differentiates."""

MAX_PARAMS = 200
MAX_BATCH = 16
DPS = 50
MAX_DPS = 800
AGREE = 1e-30
FLOAT64_Z_MAX = 300.0
"""The largest |z| the float64 oracles evaluate (``reference/cases/spec.py``'s ``Z_MAX``)."""
FLOAT64_MARGIN = 1e-9
"""How far from 0 and 1 an unfused probability loss's predictions must be for the float64 oracles."""


class Dual:
    """A value and its tangents (a numpy object array of mpmath numbers, one per parameter)."""

    __slots__ = ("d", "v")

    def __init__(self, v: Any, d: Any) -> None:
        self.v = v
        self.d = d

    # arithmetic ------------------------------------------------------------------------------
    def __add__(self, o: Any) -> Dual:
        if isinstance(o, Dual):
            return Dual(self.v + o.v, self.d + o.d)
        return Dual(self.v + o, self.d)

    __radd__ = __add__

    def __neg__(self) -> Dual:
        return Dual(-self.v, -self.d)

    def __sub__(self, o: Any) -> Dual:
        if isinstance(o, Dual):
            return Dual(self.v - o.v, self.d - o.d)
        return Dual(self.v - o, self.d)

    def __rsub__(self, o: Any) -> Dual:
        return Dual(o - self.v, -self.d)

    def __mul__(self, o: Any) -> Dual:
        if isinstance(o, Dual):
            return Dual(self.v * o.v, self.d * o.v + o.d * self.v)
        return Dual(self.v * o, self.d * o)

    __rmul__ = __mul__

    def __truediv__(self, o: Any) -> Dual:
        if isinstance(o, Dual):
            q = self.v / o.v
            return Dual(q, (self.d - o.d * q) / o.v)
        return Dual(self.v / o, self.d / o)

    def __rtruediv__(self, o: Any) -> Dual:
        q = o / self.v
        return Dual(q, -self.d * (q / self.v))

    def __pow__(self, n: Any) -> Dual:
        if isinstance(n, Dual):
            raise NotImplementedError("mp oracle: a definition raises to a power that depends on the parameters")
        return Dual(self.v**n, self.d * (n * self.v ** (n - 1)))

    # comparisons act on the value (a kinked definition's where(z > 0, ...)) -------------------
    def __gt__(self, o: Any) -> bool:
        return bool(self.v > _value(o))

    def __ge__(self, o: Any) -> bool:
        return bool(self.v >= _value(o))

    def __lt__(self, o: Any) -> bool:
        return bool(self.v < _value(o))

    def __le__(self, o: Any) -> bool:
        return bool(self.v <= _value(o))


def _value(x: Any) -> Any:
    return x.v if isinstance(x, Dual) else x


def _primitive(f: Any, df: Any) -> Any:
    """A scalar function on Duals (chain rule with ``df``) and on plain numbers, lifted to arrays."""

    def scalar(x: Any) -> Any:
        if isinstance(x, Dual):
            return Dual(f(x.v), x.d * df(x.v))
        return f(x)

    lifted = np.frompyfunc(scalar, 1, 1)

    def g(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return lifted(x).astype(object) if x.ndim else scalar(x.item())
        return scalar(x)

    return g


class _DualOps:
    """``Ops`` on numpy object arrays of :class:`Dual` and mpmath numbers."""

    def __init__(self) -> None:
        import mpmath

        mp = mpmath
        self.pi = mp.pi
        two_over_sqrt_pi = lambda: 2 / mp.sqrt(mp.pi)  # noqa: E731  (at the working precision)
        self.exp = _primitive(mp.exp, mp.exp)
        self.log = _primitive(mp.log, lambda x: 1 / x)
        self.log1p = _primitive(mp.log1p, lambda x: 1 / (1 + x))
        self.expm1 = _primitive(mp.expm1, mp.exp)
        self.tanh = _primitive(mp.tanh, lambda x: 1 / mp.cosh(x) ** 2)
        self.erf = _primitive(mp.erf, lambda x: two_over_sqrt_pi() * mp.exp(-x * x))
        self.erfc = _primitive(mp.erfc, lambda x: -two_over_sqrt_pi() * mp.exp(-x * x))
        self.sqrt = _primitive(mp.sqrt, lambda x: 1 / (2 * mp.sqrt(x)))

    @staticmethod
    def where(cond: Any, x: Any, y: Any) -> Any:
        return np.where(np.asarray(cond, dtype=bool), x, y)

    @staticmethod
    def colsum(x: Any) -> Any:
        return np.sum(x, axis=0, keepdims=True)


_OPS: _DualOps | None = None


def _ops() -> _DualOps:
    global _OPS
    if _OPS is None:
        _OPS = _DualOps()
    return _OPS


def _check_size(net: Network, X: np.ndarray) -> None:
    P = sum(int(np.prod(s)) for s in net.param_shapes.values())
    if P > MAX_PARAMS:
        raise ValueError(f"mp oracle: {net.describe()} has {P} parameters, above its limit of {MAX_PARAMS} "
                         f"(every parameter is a tangent of one mpmath forward pass); use the float64 oracles")
    if X.shape[1] > MAX_BATCH:
        raise ValueError(f"mp oracle: batch of {X.shape[1]} samples is above its limit of {MAX_BATCH}")


def _gradient(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
              dps: int) -> list[Any]:
    """The mean batch loss's gradient at ``dps`` digits, as a flat list of mpmath numbers."""
    import mpmath

    with mpmath.workdps(dps):
        ops = _ops()
        names = net.param_names
        P = sum(int(np.asarray(params[k]).size) for k in names)
        zero = mpmath.mpf(0)
        duals: dict[str, np.ndarray] = {}
        k = 0
        for name in names:
            arr = np.asarray(params[name], dtype=np.float64)
            out = np.empty(arr.shape, dtype=object)
            for idx in np.ndindex(arr.shape):
                d = np.full(P, zero, dtype=object)
                d[k] = mpmath.mpf(1)
                out[idx] = Dual(mpmath.mpf(float(arr[idx])), d)
                k += 1
            duals[name] = out
        a: Any = _exact(X)
        y = _exact(Y)
        z = a
        for l, act in enumerate(net.activations, start=1):
            z = duals[f"W{l}"] @ a + duals[f"B{l}"]
            a = act.definition(z, ops)
        rule = net.fused_rule
        per_sample = rule.definition(z, y, ops) if rule is not None else net.loss.definition(a, y, ops)
        total = np.sum(np.asarray(per_sample, dtype=object))
        # Note [Declared loss] (judge/conventions.py): the batch reduction and the penalty declared.
        if getattr(net.loss, "reduction", "mean") != "sum":
            total = total / X.shape[1]
        if getattr(net.loss, "has_penalty", False):
            for name in names:
                if net.loss.penalized(name):
                    total = total + np.sum(np.asarray(net.loss.penalty_terms(duals[name], ops), dtype=object))
        if not isinstance(total, Dual):
            return [zero] * P
        return [+g for g in total.d]  # unary plus rounds to the working precision


def _exact(A: np.ndarray) -> np.ndarray:
    import mpmath

    B = np.asarray(A, dtype=np.float64)
    out = np.empty(B.shape, dtype=object)
    for idx in np.ndindex(B.shape):
        out[idx] = mpmath.mpf(float(B[idx]))
    return out


def mp_grads_unchecked(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> Params:
    """:func:`mp_grads` without validating the case (the referee validates it once)."""
    import mpmath

    _check_size(net, X)
    dps = DPS
    while True:
        try:
            low = _gradient(net, params, X, Y, dps)
            high = _gradient(net, params, X, Y, dps + 20)
        except (ZeroDivisionError, ValueError) as exc:  # log(0), 1/0 at this precision
            low = high = None
            reason = f"{type(exc).__name__}: {exc}"
        if low is not None and high is not None:
            with mpmath.workdps(dps + 20):
                scale = max((abs(g) for g in high), default=mpmath.mpf(0))
                worst = max((abs(g - h) for g, h in zip(low, high, strict=True)), default=mpmath.mpf(0))
            if worst <= AGREE * scale or scale == 0:
                return _unflatten(net, params, [float(g) for g in high])
            reason = f"gradients at {dps} and {dps + 20} digits differ by {float(worst / scale):.2g} relative"
        if dps * 2 > MAX_DPS:
            raise ArithmeticError(f"mp oracle: no stable gradient up to {MAX_DPS} digits ({reason}) "
                                  f"for {net.describe()}")
        dps *= 2


def _unflatten(net: Network, params: Mapping[str, np.ndarray], flat: list[float]) -> Params:
    out: Params = {}
    k = 0
    for name in net.param_names:
        shape = np.asarray(params[name]).shape
        n = int(np.prod(shape))
        out[name] = np.array(flat[k:k + n], dtype=np.float64).reshape(shape)
        k += n
    return out


def mp_grads(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> Params:
    """Gradients of the mean batch loss of ``net`` at (params, X, Y), from the shared definitions in
    mpmath (see the module docstring); float64 arrays shaped like ``params``, each element within
    about one ulp of the exact gradient.

    Raises:
      ValueError: the case is invalid, or above :data:`MAX_PARAMS` / :data:`MAX_BATCH`.
      ArithmeticError: no stable result up to :data:`MAX_DPS` digits.
    """
    net.check_batch(params, X, Y)
    return mp_grads_unchecked(net, params, X, Y)


def float64_domain(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray) -> bool:
    """True when the float64 oracles (JAX, SymPy, finite differences) can decide the case: every
    pre-activation within :data:`FLOAT64_Z_MAX` and, for an unfused loss on probabilities, every
    prediction farther than :data:`FLOAT64_MARGIN` from 0 and 1 (the shared definitions evaluated
    in float64). False means: route the case to this oracle (``"mp"`` in the oracle table)."""
    a = np.asarray(X, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        for l, act in enumerate(net.activations, start=1):
            z = np.asarray(params[f"W{l}"], dtype=np.float64) @ a + np.asarray(params[f"B{l}"], dtype=np.float64)
            if not np.all(np.abs(z) <= FLOAT64_Z_MAX):
                return False
            a = np.asarray(act.definition(z, NUMPY_OPS), dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return False
    if net.fused_rule is None and net.loss.prediction_range == (0.0, 1.0):
        return bool(np.all((a > FLOAT64_MARGIN) & (a < 1 - FLOAT64_MARGIN)))
    return True
