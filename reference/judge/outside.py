r"""Deciding the cases the float64 oracles cannot: against the high-precision oracle alone.

Where :func:`~handgrad.reference.oracles.mp_oracle.float64_domain` is False -- an unfused
probability loss with a prediction within :math:`10^{-9}` of 0 or 1, or a pre-activation beyond
300 in magnitude -- JAX, SymPy and finite differences evaluate the definitions in float64 and
cannot decide; the certify runner counts such cases "outside". :func:`referee_outside` decides them
against :mod:`~handgrad.reference.oracles.mp_oracle` (the exact gradient, correctly rounded) with
:func:`~handgrad.reference.judge.tolerance.budget_against_exact`, whose derivation and measurements
are docs/tolerances.md section 13. A case it cannot decide (the oracle declines: more than 200
parameters or 16 samples; a prediction a correct forward in the hand dtype may round onto 0 or 1;
a kink within rounding reach; a magnitude that overflows) is ``inconclusive`` with the reason.

One reference, not two: the mpmath oracle is exact to :math:`10^{-30}` relative (measured on each
call at two precisions), so the certificate's "two references per element" is replaced, for these
cases only, by one reference with a proved accuracy. The report says so in a note.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from handgrad import Network, Params
from handgrad.notation import element_name

from ..oracles.mp_oracle import float64_domain, mp_grads_unchecked
from .referee import provider_grads
from .reports import Mismatch, Report, TensorCheck
from .tolerance import DEFAULT_POLICY, TolerancePolicy, budget_against_exact
from .user_view import conventions_of, without_declared_biases

__all__ = ["PAIR", "referee_outside"]

PAIR = "hand vs mpmath"
"""The comparison's name in reports."""


def referee_outside(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
                    grads: Mapping[str, np.ndarray] | Callable[[Params, np.ndarray, np.ndarray], Params], *,
                    policy: TolerancePolicy | str = DEFAULT_POLICY, reproduce: str = "",
                    seed: int | None = None, nondeterminism_tolerance: float = 0.0) -> Report:
    """Referee a case outside the float64 oracles' domain against the mpmath oracle.

    Steps: (1) the case must be outside (``ValueError`` otherwise: the ordinary referee decides it);
    (2) the exact gradient (the oracle declines: inconclusive); (3) the budget (None: inconclusive,
    with the reason -- before the backward is called, since a correct one may return inf there);
    (4) the hand gradients, a dict or a backward called through the referee's call phase
    (:func:`~handgrad.reference.judge.referee.provider_grads`: twice on fresh copies, ``np.random``
    seeded from ``seed``, the calls compared within ``nondeterminism_tolerance``, in-place changes
    noted, the structure checked), numpy's floating-point warnings off while it runs (a correct
    backward may overflow harmlessly out here); (5) every element compared, the worst element of
    each failing tensor recorded with both values.
    """
    net.check_batch(params, X, Y)
    if float64_domain(net, params, X):
        raise ValueError("the case is inside the float64 oracles' domain: referee it with referee()")
    conv = conventions_of(None, grads)
    params, keys, bias_note = without_declared_biases(net, params, conv)
    dtype = np.asarray(params[net.param_names[0]]).dtype
    report = Report(net.describe(), str(dtype), X.shape[1], "certified", reproduce=reproduce, seed=seed)
    if bias_note:
        report.notes.append(bias_note)
    report.notes.append("outside the float64 oracles' domain: decided against the mpmath oracle alone "
                        "(exact to 1e-30 relative), with the budget of docs/tolerances.md section 13")
    try:
        ref = mp_grads_unchecked(net, params, X, Y)
    except (ValueError, ArithmeticError) as exc:
        return _inconclusive(report, f"the mpmath oracle declined: {exc}")
    budget = budget_against_exact(net, params, X, Y, ref, policy)
    if budget is None:
        return _inconclusive(report, "no meaningful budget: a prediction a correct forward may round onto 0 or 1, "
                                     "a kink within rounding reach, or a magnitude beyond float64")
    with np.errstate(all="ignore"):
        hand = provider_grads(net, params, X, Y, grads, dtype, report, seed, nondeterminism_tolerance, keys, conv)
    if hand is None:
        return report
    for k in keys:  # a B declared absent is not asked for
        _judge(k, hand[k], ref[k], budget[k], report)
    return report


def _inconclusive(report: Report, why: str) -> Report:
    report.verdict = "inconclusive"
    report.notes.append(why)
    return report


def _judge(k: str, hand: np.ndarray, ref: np.ndarray, budget: np.ndarray, report: Report) -> None:
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(hand.astype(np.float64) - ref)
    diff = np.where(np.isfinite(diff), diff, np.inf)
    ratio = diff / budget
    bad = ratio > 1
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
    scale = max(float(np.max(np.abs(ref))), float(np.finfo(np.float64).tiny))
    report.checks.append(TensorCheck(pair=PAIR, tensor=k, max_abs=float(np.max(diff)),
                                     max_rel=float(np.max(diff)) / scale, ratio=float(np.max(ratio)),
                                     worst=element_name(k, worst), ok=not bool(bad.any()), n_bad=int(bad.sum())))
    if bad.any():
        report.verdict = "mismatch"
        report.mismatches.append(Mismatch(pair=PAIR, tensor=k, index=worst, element=element_name(k, worst),
                                          values={"hand": float(hand[worst]), "mpmath": float(ref[worst])},
                                          budget=float(budget[worst]), ratio=float(ratio[worst]),
                                          n_bad=int(bad.sum())))
