r"""Exact certificates, part 1: every hand-written local derivative rule, proved with SymPy.

For an elementwise activation :math:`f` with hand-written rule ``derivative(z, a)`` we prove

.. math::  \texttt{derivative}(z, f(z)) = \frac{d}{dz}\,\texttt{definition}(z) \quad\text{for every real } z,

and for a vector-valued one (softmax) with rule ``vjp(z, a, g)``

.. math::  \texttt{vjp}(z, f(z), g) = J_f(z)^T g \quad\text{for symbolic } z \text{ and } g .

**The hand code itself is run, not a transcription of it**, on the exact wrappers of
:mod:`handgrad.reference.proofs.exact` (:class:`Sym`, :class:`SymArray`), whose comparisons are
decided from the region's assumptions or raise :class:`UndecidedComparison`; float constants are
read as closed forms only within :data:`ULP_BUDGET` ulp (the rule and its reason are there too).

**Branches.** The real line is cut at 0 and at every declared kink (``act.kinks``). On each open
piece :math:`z` is a symbol with assumptions (``z = c + t`` or ``z = c - t`` with ``t > 0``, and
``z = c + g\,t/(1+t)`` between two cuts), so both the hand code's comparisons and the
definition's ``where`` (a SymPy ``Piecewise``) resolve to one branch before anything is
differentiated; SymPy never differentiates a ``Piecewise`` or a ``Heaviside`` here. At each cut
point :math:`c` the hand rule is evaluated at exactly :math:`z = c` and compared with

* at a declared kink: the derivative of the branch *left* of it,
  :math:`\lim_{z\to c^-} f'(z)` (handgrad's convention: relu'(0) = 0, leaky_relu'(0) = slope,
  elu'(0) = alpha);
* elsewhere: the two-sided derivative, after checking that the left and right limits of
  :math:`f'` agree (otherwise the activation has an undeclared kink, which is reported).

Both one-sided limits are computed with ``sympy.limit``; they equal the one-sided derivatives
because every definition is continuous at :math:`c` (checked) and differentiable on each side.

**Zero test.** A case is *proved* when SymPy simplifies ``hand - expected`` to exactly 0 (after
rewriting ``erfc`` as ``1 - erf`` and ``tanh``, ``sinh``, ``cosh`` through ``exp``); *refuted* when
the difference evaluated to 30 digits at a sample point of the region is not 0; *undecided*
otherwise (which counts as not proved).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np
import sympy as sp

import handgrad as hg
from handgrad import Activation, FusedRule, Loss

from ..oracles.ops import SYMPY_OPS
from .errors import UnsupportedOperation
from .exact import (
    ULP_BUDGET,
    ConstantMatch,
    Sym,
    SymArray,
    UndecidedComparison,
    _collect_constants,
    _exactify,
    _to_expr,
    exact_constant,
    symarray,
)

__all__ = [
    "ULP_BUDGET",
    "ActivationProof",
    "CaseProof",
    "ConstantMatch",
    "Sym",
    "SymArray",
    "UndecidedComparison",
    "exact_constant",
    "prove_activation",
    "prove_fused_rule",
    "prove_loss",
    "symarray",
]

_SAMPLE_T = (sp.Rational(1, 3), sp.Rational(7, 5), sp.Rational(13, 4))


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CaseProof:
    """One region of the real line (or one vector size) and what was shown there."""

    region: str
    status: str  # "proved" | "refuted" | "undecided"
    hand: sp.Basic | None = None
    expected: sp.Basic | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "proved"

    def __str__(self) -> str:
        s = f"  [{self.status:>9}] {self.region}"
        if self.hand is not None and self.expected is not None:
            s += f":  hand {self.hand}  vs  d/dz definition {self.expected}"
        if self.detail:
            s += f"  ({self.detail})"
        return s


@dataclass(frozen=True)
class ActivationProof:
    """The outcome of :func:`prove_activation` (also used for losses and fused rules)."""

    name: str
    cases: tuple[CaseProof, ...]
    constants: tuple[ConstantMatch, ...] = ()
    seconds: float = 0.0
    kind: str = "activation"

    @property
    def ok(self) -> bool:
        """True when every case was proved."""
        return all(c.ok for c in self.cases)

    @property
    def first_failure(self) -> CaseProof | None:
        return next((c for c in self.cases if not c.ok), None)

    def __str__(self) -> str:
        verdict = "PROVED" if self.ok else "NOT PROVED"
        lines = [f"{self.kind} {self.name}: {verdict} in {self.seconds:.2f} s"]
        lines += [str(c) for c in self.cases]
        lines += [f"  constant {c}" for c in self.constants]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Zero test
# ---------------------------------------------------------------------------------------------

_HYPERBOLIC = (sp.tanh, sp.sinh, sp.cosh)


def _normal(e: sp.Basic) -> sp.Basic:
    """``erfc`` as ``1 - erf`` and the hyperbolic functions through ``exp`` (a common form for cancel)."""
    if e.has(sp.erfc):
        e = e.rewrite(sp.erf)
    return e.rewrite(list(_HYPERBOLIC), sp.exp) if e.has(*_HYPERBOLIC) else e


def _quiet(f: Callable[[], sp.Basic]) -> sp.Basic | None:
    """``f()``, or None when SymPy gives up with an exception."""
    try:
        return f()
    except (TypeError, NotImplementedError, sp.PolynomialError):  # pragma: no cover - sympy internals
        return None


def _compare(hand: sp.Basic, expected: sp.Basic, samples: Sequence[dict[sp.Symbol, sp.Basic]]) -> tuple[str, str]:
    """("proved" | "refuted" | "undecided", detail)."""
    d = _normal(hand) - _normal(expected)
    if d == 0 or _quiet(lambda: sp.cancel(sp.together(d))) == 0:
        return "proved", ""
    # A counterexample before the expensive simplify: evaluated with 30 significant digits at
    # fixed precision, any |d| > 1e-20 is far above rounding noise for these O(1) expressions
    # at these O(1) points.
    symbols = sorted(d.free_symbols, key=str)
    f = sp.lambdify(symbols, d, modules="mpmath")
    for sub in samples:
        if set(symbols) - set(sub):
            continue
        with mpmath.workdps(30):
            try:
                val = f(*(mpmath.mpf(sp.Rational(sub[s]).p) / sp.Rational(sub[s]).q for s in symbols))
            except (ZeroDivisionError, ValueError, TypeError):
                continue
            if mpmath.isfinite(val) and abs(val) > mpmath.mpf("1e-20"):
                at = ", ".join(f"{k} = {v}" for k, v in sub.items()) or "this point"
                return "refuted", f"differs by {mpmath.nstr(val, 6)} at {at}"
    if _quiet(lambda: sp.simplify(d)) == 0:
        return "proved", ""
    return "undecided", "SymPy did not reduce the difference to 0; no numerical counterexample"


# ---------------------------------------------------------------------------------------------
# Elementwise activations
# ---------------------------------------------------------------------------------------------

def _definition(act_def: Callable[..., Any], *args: Any) -> sp.Basic:
    """The definition on SymPy expressions; if it calls numpy functions itself (``np.logaddexp``
    rather than the ``ops`` namespace), on :class:`SymArray` values instead, which support them."""
    try:
        out = act_def(*args, SYMPY_OPS)
    except UnsupportedOperation:
        raise
    except (TypeError, AttributeError) as exc:
        try:
            out = act_def(*(symarray([[a]]) for a in args), SYMPY_OPS)
        except UnsupportedOperation as inner:
            raise UnsupportedOperation(f"in the activation's definition: {inner}") from exc
        except Exception:
            raise exc from None
    if isinstance(out, np.ndarray):
        out = out.reshape(-1)[0] if out.size == 1 else out
    return _exactify(_to_expr(out) if isinstance(out, Sym) else sp.sympify(out))


class _WrongShape(ValueError):
    """The hand rule returned an array of the wrong shape (a refutation in itself)."""


def _hand_elementwise(act: Activation, z: sp.Basic, a: sp.Basic) -> sp.Basic:
    out = act.derivative(symarray([[z]]), symarray([[a]]))  # type: ignore[misc]
    out = np.asarray(out)
    if out.shape != (1, 1):
        raise _WrongShape(f"derivative returned shape {out.shape} for a (1, 1) input")
    return _to_expr(out[0, 0])


@dataclass
class _Piece:
    label: str
    z: sp.Basic            # z as a function of t > 0
    t_left: sp.Basic       # value of t at the piece's left end
    t_right: sp.Basic      # value of t at the piece's right end
    f: sp.Basic = field(default=sp.S.Zero)
    fprime: sp.Basic = field(default=sp.S.Zero)


def prove_activation(act: Activation | str) -> ActivationProof:
    r"""Prove ``act``'s hand-written derivative rule against d/dz of its definition, exactly.

    Elementwise: branch by branch over the pieces of the real line cut at 0 and the declared
    kinks, plus each cut point exactly (kink convention: the left branch's derivative).
    Vector-valued: ``vjp(z, softmax(z), g) = J^T g`` for symbolic ``z`` and ``g`` of 1, 2 and 3
    rows and two columns (so a sum over the wrong axis is caught).

    Args:
      act: a registered name or an :class:`~handgrad.Activation`.

    Returns:
      An :class:`ActivationProof`; ``.ok`` is True when every case is proved.
    """
    act = hg.get_activation(act)
    start = time.perf_counter()
    with _collect_constants() as seen:
        cases = _prove_elementwise(act) if act.elementwise else _prove_vjp(act)
    constants = tuple(seen)
    return ActivationProof(act.name, tuple(cases), constants, time.perf_counter() - start)


def _pieces(cuts: list[sp.Basic], t: sp.Symbol) -> list[_Piece]:
    pieces = [_Piece(f"z < {cuts[0]}", cuts[0] - t, sp.oo, sp.S.Zero)]
    for lo, hi in itertools.pairwise(cuts):
        gap = hi - lo
        pieces.append(_Piece(f"{lo} < z < {hi}", lo + gap * t / (1 + t), sp.S.Zero, sp.oo))
    pieces.append(_Piece(f"z > {cuts[-1]}", cuts[-1] + t, sp.S.Zero, sp.oo))
    return pieces


def _prove_elementwise(act: Activation) -> list[CaseProof]:
    t = sp.Symbol("t", positive=True)
    kinks = {exact_constant(float(k)) for k in act.kinks}
    cuts = sorted(kinks | {sp.S.Zero}, key=lambda c: float(c))
    pieces = _pieces(cuts, t)
    cases: list[CaseProof] = []
    for piece in pieces:
        try:
            f = _definition(act.definition, piece.z)
            if f.has(sp.Piecewise):
                f = sp.piecewise_fold(f).simplify()
            if f.has(sp.Piecewise):
                raise UndecidedComparison(f"the definition's branch is not decided on {piece.label}")
            piece.f = f
            piece.fprime = sp.diff(f, t) / sp.diff(piece.z, t)
            hand = _hand_elementwise(act, piece.z, f)
        except UndecidedComparison as exc:
            cases.append(CaseProof(piece.label, "undecided", detail=str(exc)))
            continue
        except _WrongShape as exc:
            cases.append(CaseProof(piece.label, "refuted", detail=str(exc)))
            continue
        status, detail = _compare(hand, piece.fprime, [{t: v} for v in _SAMPLE_T])
        cases.append(CaseProof(piece.label, status, _show(hand, piece, t), _show(piece.fprime, piece, t), detail))
    for k, c in enumerate(cuts):
        left, right = pieces[k], pieces[k + 1]
        kink = c in kinks
        label = f"z = {c}" + (" (kink: left-branch derivative)" if kink else "")
        try:
            value = _definition(act.definition, c)
            lim_f = sp.limit(left.f, t, left.t_right, "-" if left.t_right == sp.oo else "+")
            if sp.simplify(_normal(lim_f - value)) != 0:
                cases.append(CaseProof(label, "refuted", detail=f"definition is not continuous at {c}"))
                continue
            left_d = _one_sided(left.fprime, t, left.t_right)
            if not kink:
                right_d = _one_sided(right.fprime, t, right.t_left)
                if sp.simplify(_normal(left_d - right_d)) != 0:
                    cases.append(CaseProof(label, "refuted", detail=(
                        f"f' jumps from {left_d} to {right_d} at {c}: an undeclared kink (add it to kinks)")))
                    continue
            hand = _hand_elementwise(act, c, value)
        except UndecidedComparison as exc:
            cases.append(CaseProof(label, "undecided", detail=str(exc)))
            continue
        except _WrongShape as exc:
            cases.append(CaseProof(label, "refuted", detail=str(exc)))
            continue
        status, detail = _compare(hand, left_d, [{}])
        cases.append(CaseProof(label, status, hand, left_d, detail))
    return cases


def _one_sided(expr: sp.Basic, t: sp.Symbol, end: sp.Basic) -> sp.Basic:
    return sp.simplify(sp.limit(expr, t, end, "-" if end == sp.oo else "+"))


def _show(expr: sp.Basic, piece: _Piece, t: sp.Symbol) -> sp.Basic:
    """Display an expression of t in terms of z where the piece is a plain shift."""
    z = sp.Symbol("z", real=True)
    inv = sp.solve(sp.Eq(piece.z, z), t)
    return expr.subs(t, inv[0]) if len(inv) == 1 else expr


# ---------------------------------------------------------------------------------------------
# Vector-valued activations
# ---------------------------------------------------------------------------------------------

def _prove_vjp(act: Activation) -> list[CaseProof]:
    cases: list[CaseProof] = []
    if act.kinks:
        return [CaseProof("all z", "undecided", detail="piecewise vector-valued activations are not supported")]
    m = 2
    for n in (1, 2, 3):
        zs = sp.Matrix(n, m, lambda i, k: sp.Symbol(f"z{i + 1}{k + 1}", real=True))
        gs = sp.Matrix(n, m, lambda i, k: sp.Symbol(f"g{i + 1}{k + 1}", real=True))
        zarr = np.array(zs.tolist(), dtype=object)
        a = np.asarray(act.definition(zarr, SYMPY_OPS), dtype=object)
        a = np.vectorize(lambda e: _exactify(sp.sympify(e)), otypes=[object])(a)
        expected = np.empty((n, m), dtype=object)
        for k in range(m):
            col = sp.Matrix([a[i, k] for i in range(n)])
            jac = col.jacobian([zs[i, k] for i in range(n)])
            expected[:, k] = list(jac.T * gs[:, k])
        label = f"n = {n} rows, m = {m} columns"
        try:
            out = np.asarray(act.vjp(symarray(zarr), symarray(a), symarray(gs.tolist())))  # type: ignore[misc]
        except UndecidedComparison as exc:
            cases.append(CaseProof(label, "undecided", detail=str(exc)))
            continue
        if out.shape != (n, m):
            cases.append(CaseProof(label, "refuted", detail=f"vjp returned shape {out.shape}, expected {(n, m)}"))
            continue
        samples = [{s: sp.Rational(j + 2 * i + 1, 3 + i) for i, s in enumerate(sorted(
            zs.free_symbols | gs.free_symbols, key=str))} for j in range(2)]
        status, detail = "proved", ""
        for i in range(n):
            for k in range(m):
                status, detail = _compare(_to_expr(out[i, k]), expected[i, k], samples)
                if status != "proved":
                    detail = f"entry ({i + 1}, {k + 1}): {detail}"
                    break
            if status != "proved":
                break
        cases.append(CaseProof(label, status, detail=detail))
    return cases


# ---------------------------------------------------------------------------------------------
# Losses and fused rules
# ---------------------------------------------------------------------------------------------

def _loss_symbols(n: int, m: int, name: str, **assumptions: bool) -> tuple[sp.Matrix, np.ndarray]:
    mat = sp.Matrix(n, m, lambda i, k: sp.Symbol(f"{name}{i + 1}{k + 1}", **assumptions))
    return mat, np.array(mat.tolist(), dtype=object)


def _labels(loss: Loss, n: int, m: int) -> sp.Matrix:
    """Symbolic labels ranging over the loss's target range: (0, 1), (0, oo) or the real line.

    (The label value 0 of the cross-entropies is a separate branch, ``0 log p = 0``, not covered.)
    """
    lo, hi = loss.target_range
    if (lo, hi) == (0.0, 1.0):
        v, _ = _loss_symbols(n, m, "v", positive=True)
        return v.applyfunc(lambda s: s / (1 + s))
    if lo == 0.0 and hi == math.inf:
        return _loss_symbols(n, m, "y", positive=True)[0]
    return _loss_symbols(n, m, "y", real=True)[0]


def _weak_orderings(items: list[int]) -> list[list[list[int]]]:
    """All ways to rank ``items`` with ties: ordered partitions into blocks (largest block first)."""
    if not items:
        return [[]]
    out: list[list[list[int]]] = []
    n = len(items)
    for mask in range(1, 2 ** n):
        first = [items[i] for i in range(n) if mask >> i & 1]
        rest = [items[i] for i in range(n) if not mask >> i & 1]
        out += [[first, *tail] for tail in _weak_orderings(rest)]
    return out


def _ordered_regions(p: sp.Matrix) -> list[tuple[str, dict[sp.Symbol, sp.Basic]]]:
    """Regions of R^(n x m) on which every comparison between entries of a column is decided.

    For each weak ordering of the rows (the same pattern in every column, fresh symbols per
    column), the largest block takes the value ``s``, the next ``s - t1``, then ``s - t1 - t2``...
    with ``t1, t2, ... > 0``.
    """
    n, m = p.shape
    regions = []
    for order in _weak_orderings(list(range(n))):
        sub: dict[sp.Symbol, sp.Basic] = {}
        for k in range(m):
            value: sp.Basic = sp.Symbol(f"s{k + 1}", real=True)
            for b, block in enumerate(order):
                if b:
                    value = value - sp.Symbol(f"t{b}{k + 1}", positive=True)
                for i in block:
                    sub[p[i, k]] = value
        label = " > ".join("=".join(f"row{i + 1}" for i in block) for block in order)
        regions.append((f"ordered {label} in each column", sub))
    return regions


def _check_entries(out: np.ndarray, expected: sp.Matrix, sub: dict[sp.Symbol, sp.Basic]) -> tuple[str, str]:
    n, m = expected.shape
    if out.shape != (n, m):
        return "refuted", f"returned shape {out.shape}, expected {(n, m)}"
    free = set().union(*(sp.sympify(e).free_symbols for e in expected.subs(sub))) if sub else expected.free_symbols
    symbols = sorted(free | {s for e in out.reshape(-1) for s in _to_expr(e).free_symbols}, key=str)
    samples = [{s: sp.Rational(i + 1, i + 3 + j) for i, s in enumerate(symbols)} for j in range(2)]
    for i in range(n):
        for k in range(m):
            status, detail = _compare(_to_expr(out[i, k]), expected[i, k].subs(sub), samples)
            if status != "proved":
                return status, f"entry ({i + 1}, {k + 1}): {detail}"
    return "proved", ""


def prove_loss(loss: Loss | str, *, outputs: Sequence[int] = (1, 2)) -> ActivationProof:
    r"""Prove a loss's hand-written ``grad(yhat, y)`` equals :math:`\partial\ell/\partial\hat y` of its definition.

    The prediction and label are symbols ranging over the loss's domain (predictions
    :math:`u/(1+u)`, :math:`u > 0`, for losses on probabilities; labels likewise in their target
    range), ``outputs`` rows and two columns. The per-sample definition is summed over the columns
    and differentiated by SymPy with respect to generic symbols :math:`p_{ik}`; the hand rule runs
    on the region's values. When the hand code compares entries of a column (a max taken for
    stability), the proof is repeated on every weak ordering of the rows, which covers the space.
    """
    loss = hg.get_loss(loss)
    lo, hi = loss.prediction_range
    start = time.perf_counter()
    cases: list[CaseProof] = []
    for n in outputs:
        m = 2
        p, parr = _loss_symbols(n, m, "p", real=True)
        y = _labels(loss, n, m)
        total = _exactify(sp.sympify(np.sum(loss.definition(parr, np.array(y.tolist(), dtype=object), SYMPY_OPS))))
        expected = p.applyfunc(lambda s, total=total: sp.diff(total, s))
        if (lo, hi) == (0.0, 1.0):
            u = sp.Matrix(n, m, lambda i, k: sp.Symbol(f"u{i + 1}{k + 1}", positive=True))
            unit = {p[i, k]: u[i, k] / (1 + u[i, k]) for i in range(n) for k in range(m)}
            regions = [("predictions in (0, 1)", unit)]
        else:
            regions = [("all real predictions", {})]
        r = 0
        while r < len(regions):
            label, sub = regions[r]
            r += 1
            pa = np.array(p.subs(sub).tolist(), dtype=object)
            try:
                out = np.asarray(loss.grad(symarray(pa), symarray(y.tolist())))
            except UndecidedComparison as exc:
                if not sub and n > 1:  # the hand code compares entries: split by ordering
                    regions += _ordered_regions(p)
                    continue
                cases.append(CaseProof(f"{n} output(s), 2 samples, {label}", "undecided", detail=str(exc)))
                continue
            status, detail = _check_entries(out, expected, sub)
            cases.append(CaseProof(f"{n} output(s), 2 samples, {label}", status, detail=detail))
    return ActivationProof(loss.name, tuple(cases), (), time.perf_counter() - start, kind="loss")


def prove_fused_rule(loss: Loss | str, activation: Activation | str) -> ActivationProof:
    r"""Prove a fused rule: ``delta(z, f(z), y)`` equals :math:`\partial\ell/\partial z` of the rule's definition,
    and the rule's definition equals the loss's definition composed with the activation's.

    Both identities are checked for 1 to 3 outputs and two samples with symbolic logits and labels.
    """
    loss, act = hg.get_loss(loss), hg.get_activation(activation)
    rule: FusedRule | None = loss.fused.get(act.name)
    if rule is None:
        raise ValueError(f"loss {loss.name!r} has no fused rule for activation {act.name!r}; "
                         f"it has rules for {sorted(loss.fused)}")
    start = time.perf_counter()
    cases: list[CaseProof] = []
    sizes = (1, 2, 3) if not act.elementwise else (1, 2)
    for n in sizes:
        m = 2
        z, za = _loss_symbols(n, m, "z", real=True)
        _, ya = _loss_symbols(n, m, "y", real=True)
        a = np.vectorize(lambda e: _exactify(sp.sympify(e)), otypes=[object])(
            np.asarray(act.definition(za, SYMPY_OPS), dtype=object))
        fused_total = _exactify(sp.sympify(np.sum(rule.definition(za, ya, SYMPY_OPS))))
        composed_total = _exactify(sp.sympify(np.sum(loss.definition(a, ya, SYMPY_OPS))))
        symbols = sorted(fused_total.free_symbols | composed_total.free_symbols, key=str)
        samples = [{s: sp.Rational(i + 1, i + 3 + j) for i, s in enumerate(symbols)} for j in range(2)]
        label = f"{n} output(s), 2 samples"
        status, detail = _compare(fused_total, composed_total, samples)
        if status != "proved":
            cases.append(CaseProof(label, status, detail=f"fused definition != loss(activation(z)): {detail}"))
            continue
        try:
            out = np.asarray(rule.delta(symarray(za), symarray(a), symarray(ya)))
        except UndecidedComparison as exc:
            cases.append(CaseProof(label, "undecided", detail=str(exc)))
            continue
        for i in range(n):
            for k in range(m):
                status, detail = _compare(_to_expr(out[i, k]), sp.diff(fused_total, z[i, k]), samples)
                if status != "proved":
                    detail = f"entry ({i + 1}, {k + 1}): {detail}"
                    break
            if status != "proved":
                break
        cases.append(CaseProof(label, status, detail=detail))
    return ActivationProof(f"{loss.name}+{act.name} (fused)", tuple(cases), (), time.perf_counter() - start,
                           kind="fused rule")
