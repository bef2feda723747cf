r"""Error budgets: how far a *correct* hand gradient may be from a reference, derived per dtype.

The referee never uses one hidden tolerance. For every element of every gradient tensor,
:func:`error_budget` runs the article's recurrence on absolute values (with the derivatives of
the *definitions*, taken by SymPy, never the hand code) to get a magnitude :math:`M` that bounds,
in units of :math:`K u`, the rounding error a correct implementation can accumulate there.
:math:`K = \text{safety}\,(\sum_l n_l + m + c\,(L+1))` is the path constant
(:class:`TolerancePolicy`). A comparison's budget is :math:`(u_d + u_{64}) K M` + an underflow
floor for hand (dtype d) vs a float64 reference, and :math:`u_d K M` + the finite-difference error
estimate for hand vs finite differences; a ratio |difference| / budget above 1 is a mismatch.
:class:`Budget` also lists the kinked units close enough to their kink that a correct backward
may take either branch (the referee calls those cases inconclusive).

The derivation (the model, every line of the recurrence, why :math:`\max(|a|, 1)` and
:math:`\max(|f'|, 1)` appear, what the budgets catch) is ``docs/tolerances.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from handgrad import NUMPY_OPS, Activation, Network

from ..numerics import UNIT_ROUNDOFF, erf, erfc, unit_roundoff

__all__ = [
    "DEFAULT_POLICY",
    "UNIT_ROUNDOFF",
    "Budget",
    "TolerancePolicy",
    "error_budget",
    "unit_roundoff",
]


@dataclass(frozen=True)
class TolerancePolicy:
    """The constants of the budget, overridable by callers (see the module docstring).

    Args:
      ops_per_layer: c, elementary operations per layer counted in K.
      safety: the factor in front of K.
      kink_margin: a kinked unit whose pre-activation lies within ``kink_margin`` times its own
        error bound of the kink is *ambiguous* (a correct float32 backward may take the other
        branch); the referee reports such cases as inconclusive instead of guessing.
    """

    ops_per_layer: int = 10
    safety: float = 2.0
    kink_margin: float = 4.0

    def __post_init__(self) -> None:
        if self.ops_per_layer < 1:
            raise ValueError(f"ops_per_layer must be >= 1, got {self.ops_per_layer}")
        if not self.safety >= 1:
            raise ValueError(f"safety must be >= 1, got {self.safety}")
        if not self.kink_margin >= 1:
            raise ValueError(f"kink_margin must be >= 1, got {self.kink_margin}")

    def path_constant(self, sizes: tuple[int, ...], m: int) -> float:
        """K = safety * (sum of widths + m + c (L + 1))."""
        return self.safety * (sum(sizes) + m + self.ops_per_layer * len(sizes))


DEFAULT_POLICY = TolerancePolicy()


@dataclass(frozen=True)
class Budget:
    """Magnitudes (units of K u) for every parameter, plus what the kink check needs.

    ``magnitude[name]`` has the parameter's shape; ``K`` the path constant; ``kink_units`` lists,
    for kinked pre-activations close to their kink, ``(distance, exact_bits, where)``: the distance
    from the kink in units of the unit's own error bound :math:`K M_z`, and -- for first-layer units
    whose pre-activation is computed *exactly* in any summation order -- the number of significand
    bits that exactness needs (None otherwise).
    """

    magnitude: dict[str, np.ndarray]
    forward_magnitude: np.ndarray
    K: float
    kink_units: list[tuple[float, int | None, str]]
    policy: TolerancePolicy = DEFAULT_POLICY

    def kink_ambiguous(self, dtype_hand: Any) -> bool:
        """True when a correct backward in ``dtype_hand`` could land on the other side of a kink."""
        return bool(self.kink_where(dtype_hand))

    def kink_where(self, dtype_hand: Any) -> str:
        """The first ambiguous unit (empty string when there is none)."""
        limit = self.policy.kink_margin * (unit_roundoff(dtype_hand) + 2.0**-53)
        bits = np.finfo(np.dtype(dtype_hand)).nmant + 1
        for dist, exact_bits, where in self.kink_units:
            if dist <= limit and not (exact_bits is not None and exact_bits <= bits):
                return where
        return ""

    def against(self, dtype_hand: Any, dtype_ref: Any = np.float64) -> dict[str, np.ndarray]:
        """Budget of hand (``dtype_hand``) vs a reference computed in ``dtype_ref``."""
        scale = (unit_roundoff(dtype_hand) + unit_roundoff(dtype_ref)) * self.K
        floor = self.K * float(np.finfo(np.dtype(dtype_hand)).tiny)
        return {k: scale * v + floor for k, v in self.magnitude.items()}

    def hand_only(self, dtype_hand: Any) -> dict[str, np.ndarray]:
        """The hand side's share alone (added to a finite-difference error estimate)."""
        scale = unit_roundoff(dtype_hand) * self.K
        floor = self.K * float(np.finfo(np.dtype(dtype_hand)).tiny)
        return {k: scale * v + floor for k, v in self.magnitude.items()}

    def forward_budget(self, dtype_hand: Any, dtype_ref: Any = np.float64) -> np.ndarray:
        scale = (unit_roundoff(dtype_hand) + unit_roundoff(dtype_ref)) * self.K
        return scale * self.forward_magnitude + self.K * float(np.finfo(np.dtype(dtype_hand)).tiny)


# ---------------------------------------------------------------------------------------------
# Derivatives of the *definitions*, derived by SymPy once per activation (never the hand code).
# ---------------------------------------------------------------------------------------------

_MODULES = {"erf": lambda x: erf(np.asarray(x)), "erfc": lambda x: erfc(np.asarray(x))}
"""What lambdified SymPy forms call for erf/erfc (numpy has neither): the suite's one erf."""


def _lambdify(sym: Any, expr: Any) -> Callable[[np.ndarray], np.ndarray]:
    import sympy as sp

    f = sp.lambdify(sym, expr, modules=[_MODULES, "numpy"])

    def g(z: np.ndarray) -> np.ndarray:
        return _magnitude(f(_wide(z)), z.shape)

    return g


def _wide(x: np.ndarray) -> np.ndarray:
    """Magnitudes are evaluated in numpy's longdouble: SymPy's derivative forms hold products of
    exponentials (exp(z)^3 for softmax) that overflow float64 long before the value they express."""
    return np.asarray(x, dtype=np.longdouble)


_UNBOUNDED = 1e300


def _magnitude(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """|value| as float64; a NaN (an indeterminate form left even in longdouble) becomes the
    conservative 1e300, never 0, so a magnitude can only be over-, not under-estimated."""
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        out = np.abs(np.broadcast_to(np.asarray(value, dtype=np.longdouble), shape)).astype(np.float64)
    return np.nan_to_num(out, nan=_UNBOUNDED, posinf=_UNBOUNDED)


@lru_cache(maxsize=256)
def _elementwise_derivatives(act: Activation) -> tuple[Callable, Callable]:
    """(|f'|, |f''|) as numpy functions, SymPy-derived from ``act.definition``."""
    import sympy as sp

    from ..oracles.ops import SYMPY_OPS

    t = sp.Symbol("t", real=True)
    f = act.definition(t, SYMPY_OPS)
    d1 = sp.diff(f, t)
    d2 = sp.diff(d1, t)
    return _lambdify(t, d1), _lambdify(t, d2)


@lru_cache(maxsize=256)
def _output_sensitivities(act: Activation, loss_name: str, loss_def: Any, fused_def: Any,
                          n: int) -> tuple[Callable, Callable, Callable, Callable | None]:
    r"""Per-sample :math:`\delta = \partial\ell/\partial z^{(L)}`, :math:`|\partial\delta/\partial z|`
    and :math:`|\partial\delta/\partial y|` for the last layer, SymPy-derived from the definitions."""
    import sympy as sp

    from ..oracles.ops import SYMPY_OPS

    z = sp.symbols(f"z1:{n + 1}", real=True)
    y = sp.symbols(f"y1:{n + 1}", real=True)
    zc = np.array([[s] for s in z], dtype=object)
    yc = np.array([[s] for s in y], dtype=object)
    if fused_def is not None:
        ell = fused_def(zc, yc, SYMPY_OPS)
    else:
        # Elementwise definitions take scalars: a kinked one compares (z > 0), which numpy cannot
        # turn into a bool array when z is an object array of symbols.
        a = (np.array([[act.definition(s, SYMPY_OPS)] for s in z], dtype=object) if act.elementwise
             else act.definition(zc, SYMPY_OPS))
        ell = loss_def(a, yc, SYMPY_OPS)
    ell = sp.sympify(np.asarray(ell).reshape(-1)[0])
    delta = [sp.diff(ell, zi) for zi in z]
    hz = [[sp.diff(d, zj) for zj in z] for d in delta]
    hy = [[sp.diff(d, yj) for yj in y] for d in delta]
    args = (*z, *y)
    fd = sp.lambdify(args, delta, modules=[_MODULES, "numpy"])
    fz = sp.lambdify(args, hz, modules=[_MODULES, "numpy"])
    fy = sp.lambdify(args, hy, modules=[_MODULES, "numpy"])
    fa = None
    if fused_def is None:
        # dl/da at a = f(z): the loss gradient the activation's derivative multiplies.
        p = sp.symbols(f"p1:{n + 1}", real=True)
        ell_a = sp.sympify(np.asarray(loss_def(np.array([[s] for s in p], dtype=object), yc, SYMPY_OPS)).reshape(-1)[0])
        ga = [sp.diff(ell_a, pi) for pi in p]
        fa = sp.lambdify((*p, *y), [ga, [[sp.diff(g, pj) for pj in p] for g in ga]], modules=[_MODULES, "numpy"])
    return fd, fz, fy, fa


def _eval_rows(f: Callable, Z: np.ndarray, Y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Evaluate a lambdified list (or list of lists) of per-sample expressions column-wise."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        out = f(*_wide(Z), *_wide(Y))
    m = Z.shape[1]
    rows = out if isinstance(out[0], list) else [out]
    arr = np.array([[_magnitude(c, (m,)) for c in row] for row in rows])
    return arr.reshape(shape)


def _exact_bits(w: np.ndarray, x: np.ndarray, b: float, kink: float) -> int | None:
    r"""Significand bits needed for :math:`z = \sum_j w_j x_j + b` to be computed exactly, in any
    order, when its exact value is the kink; None when z is not exactly the kink.

    Every product :math:`w_j x_j` and :math:`b` is a multiple of :math:`2^e` (their smallest
    power-of-two granularity). If each product needs at most p bits and :math:`\sum|t| < 2^{p+e}`,
    every partial sum in every order is a multiple of :math:`2^e` below :math:`2^{p+e}`: exact in
    a p-bit format. The returned p is the largest of those requirements.
    """
    from fractions import Fraction

    terms = [Fraction(float(a)) * Fraction(float(c)) for a, c in zip(w, x, strict=True)] + [Fraction(float(b))]
    if sum(terms) != Fraction(kink):
        return None
    nonzero = [t for t in terms if t != 0]
    if not nonzero:
        return 1
    e = min((t.denominator.bit_length() - 1) * -1 + _twos(t.numerator) for t in nonzero)
    bits = 1
    for t in nonzero:
        odd = abs(t.numerator) >> _twos(t.numerator)
        bits = max(bits, odd.bit_length())
    total = sum(abs(t) for t in nonzero) / Fraction(2) ** e
    return max(bits, math.ceil(math.log2(float(total) + 1)))


def _twos(n: int) -> int:
    """The exponent of 2 in the integer n (n != 0)."""
    return (abs(n) & -abs(n)).bit_length() - 1


def _abs_jt(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """|J|^T g for a softmax-like Jacobian, :math:`|J_{ij}| \\le a_i(\\delta_{ij} + a_j)`."""
    return a * (g + np.sum(a * g, axis=0, keepdims=True))


def error_budget(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
                 policy: TolerancePolicy = DEFAULT_POLICY) -> Budget:
    """Magnitudes for every gradient element of ``net`` at (params, X, Y); see the module docstring.

    All arithmetic here is float64 on float64 copies of the inputs; derivatives come from SymPy
    differentiating the shared definitions.
    """
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    L, m = net.depth, X.shape[1]
    K = policy.path_constant(net.sizes, m)

    # Forward: values and error magnitudes.
    zs, acts, Mz, Ma = [], [X], [], [np.zeros_like(X)]
    f1s: list[np.ndarray | None] = []
    f2s: list[np.ndarray | None] = []
    kink_units: list[tuple[float, int | None, str]] = []
    for l, act in enumerate(net.activations, start=1):
        W, B = p[f"W{l}"], p[f"B{l}"]
        z = W @ acts[-1] + B
        mz = np.abs(W) @ (np.abs(acts[-1]) + Ma[-1]) + np.abs(B)
        with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
            a = np.asarray(act.definition(z, NUMPY_OPS), dtype=np.float64)
        if act.elementwise:
            d1, d2 = _elementwise_derivatives(act)
            f1, f2 = d1(z), d2(z)
            ma = f1 * mz + np.maximum(np.abs(a), 1.0)
        else:
            # Vector-valued (softmax-like): |J| <= a_i (delta_ij + a_j) column by column.
            f1 = f2 = None
            ma = np.abs(a) * (mz + np.sum(np.abs(a) * mz, axis=0, keepdims=True)) + np.maximum(np.abs(a), 1.0)
        for k in act.kinks:
            # Distance of each kinked pre-activation from the kink, in units of its error bound.
            # mz == 0 means every term of z is exactly 0: z is exact and cannot cross.
            with np.errstate(divide="ignore", invalid="ignore"):
                dist = np.where(mz > 0, np.abs(z - k) / (K * mz), np.inf)
            # Units far from the kink (beyond float32's reach) are never ambiguous.
            for i, s in np.argwhere(dist <= 4 * policy.kink_margin * 2.0**-23):
                exact = _exact_bits(p[f"W{l}"][i], X[:, s], p[f"B{l}"][i, 0], k) if l == 1 else None
                kink_units.append((float(dist[i, s]), exact,
                                   f"layer {l} unit {i + 1} sample {s + 1}: z = {z[i, s]:.3g}, kink at {k:g}"))
        zs.append(z)
        acts.append(a)
        Mz.append(mz)
        Ma.append(ma)
        f1s.append(f1)
        f2s.append(f2)

    # Output delta and its sensitivities (per sample; the mean's 1/m applied after).
    rule = net.fused_rule
    n_out = net.sizes[-1]
    fd, fz, fy, fa = _output_sensitivities(net.activations[-1], net.loss.name, net.loss.definition,
                                       rule.definition if rule is not None else None, n_out)
    zL = zs[-1]
    delta = _eval_rows(fd, zL, Y, (n_out, m)) / m
    Hz = _eval_rows(fz, zL, Y, (n_out, n_out, m)) / m
    Hy = _eval_rows(fy, zL, Y, (n_out, n_out, m)) / m
    A_delta = delta
    aL = np.abs(acts[-1])
    absY = np.abs(Y)
    # Operands of the output delta: (a sum(y) - y) for softmax-type rules, a - y otherwise; added
    # explicitly because SymPy may simplify them away (softmax cross-entropy with one output is 0).
    M_delta = (delta + np.einsum("ijs,js->is", Hy, absY + aL) + np.einsum("ijs,js->is", Hz, Mz[-1])
               + (aL * np.sum(absY, axis=0, keepdims=True) + absY) / m)
    if fa is not None:
        # Unfused: delta = J^T (dl/da), with f' computed to absolute accuracy ~u (see above), and
        # the rounding of a itself moving dl/da by |d2l/da2| |a| (1 - p cancels when p -> 1).
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            ga_raw, ha_raw = fa(*_wide(acts[-1]), *_wide(Y))
        ga = np.array([_magnitude(c, (m,)) for c in ga_raw]) / m
        ha = np.array([[_magnitude(c, (m,)) for c in row] for row in ha_raw]) / m
        sens = ga + np.einsum("ijs,js->is", ha, aL)
        last = net.activations[-1]
        M_delta = M_delta + (sens * np.maximum(f1s[-1], 1.0) if last.elementwise else _abs_jt(aL, sens))

    magnitude: dict[str, np.ndarray] = {}
    for l in range(L, 0, -1):
        a_prev, ma_prev = np.abs(acts[l - 1]), Ma[l - 1]
        magnitude[f"W{l}"] = M_delta @ a_prev.T + A_delta @ ma_prev.T
        magnitude[f"B{l}"] = np.sum(M_delta, axis=1, keepdims=True)
        if l > 1:
            absW = np.abs(p[f"W{l}"])
            A_g, M_g = absW.T @ A_delta, absW.T @ M_delta
            act = net.activations[l - 2]
            if act.elementwise:
                f1, f2 = f1s[l - 2], f2s[l - 2]
                assert f1 is not None and f2 is not None
                A_delta = A_g * f1
                M_delta = M_g * np.maximum(f1, 1.0) + A_g * f2 * Mz[l - 2]
            else:
                a = np.abs(acts[l - 1])
                A_delta = _abs_jt(a, A_g)
                # Second-order term: d(J)/dz is bounded by 3|J| entrywise per unit change of z.
                M_delta = _abs_jt(a, M_g) + 3 * _abs_jt(a, A_g) * np.max(Mz[l - 2], axis=0, keepdims=True)
    ordered = {k: magnitude[k] for k in net.param_names}
    kink_units.sort(key=lambda t: t[0])
    return Budget(ordered, Ma[-1], K, kink_units, policy)

