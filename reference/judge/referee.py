r"""The referee: compare any gradient provider with the oracles, tensor by tensor, element by element.

Sources. ``hand`` is the provider under test (handgrad's backward, or a user's
``backward(params, X, Y) -> grads``). The references are independent of it:

* ``SymPy``: closed forms of :math:`\partial L/\partial w_{ij}^{(l)}` from differentiating the
  composite loss (:mod:`handgrad.reference.oracles.sympy_oracle`), for networks up to its size limit;
* ``JAX``: ``jax.grad`` of an independent ``jax.numpy`` forward (:mod:`handgrad.reference.oracles.jax_oracle`);
* ``finite differences``: central or complex-step differences of a third forward
  (:mod:`handgrad.reference.oracles.finite_diff`), with their own error estimates.

Procedure (shape before values, forward before backward):

1. The provider's output is checked for type, keys, shapes and finiteness; a wrong shape or a
   missing key is reported in words, never as a numpy traceback.
2. The error budget of every element is derived (:mod:`handgrad.reference.judge.tolerance`).
3. The oracles are cross-checked *among themselves* first (SymPy vs JAX, finite differences vs
   JAX). If they disagree, the case is ``inconclusive`` and the report says which oracle pair
   disagreed: the hand code is never blamed for an oracle's failure.
4. The hand gradient is compared with each reference: |hand - ref| <= budget, where the budget
   is :math:`(u_{hand} + u_{64}) K M` for SymPy and JAX, and :math:`u_{hand} K M` + the
   finite-difference error estimate for finite differences. Where the finite-difference
   perturbation crossed a kink, the hand value must equal the left one-sided quotient (the kink
   convention) or lie between the two one-sided quotients (a kink inside the step).
5. A kinked unit whose computed pre-activation may fall on either side of its kink in the hand
   dtype makes the case ``inconclusive`` (not a failure): the suite's strategies skip such draws.

Verdicts: ``certified`` (``ok``), ``mismatch`` (a bug: the report names the pair, the tensor, the
element in article notation, every source's value), ``inconclusive`` and ``error`` (the provider
raised or returned malformed output -- reported as a failure, with the reason).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from handgrad import Network, Params

from ..oracles.inputs import element_name
from ..oracles.table import ORACLES, check_oracles, oracle_label
from .reports import Mismatch, Report, TensorCheck
from .tolerance import DEFAULT_POLICY, Budget, TolerancePolicy, error_budget, unit_roundoff

__all__ = [
    "ORACLES",
    "GradsStructureError",
    "Mismatch",
    "Report",
    "TensorCheck",
    "check_grads_structure",
    "referee",
]

# Read only by _run_oracles (being moved onto the oracle table's entries); labels come from the table.
_LABEL = {name: oracle_label(name) for name in (*ORACLES, "hand")}

Backward = Callable[[Params, np.ndarray, np.ndarray], Mapping[str, np.ndarray]]


class GradsStructureError(ValueError):
    """The provider's gradients have the wrong type, keys, shapes or dtype."""


def check_grads_structure(net: Network, grads: object, dtype: np.dtype) -> Params:
    """Validate a provider's output; raise :class:`GradsStructureError` with a sentence."""
    if not isinstance(grads, Mapping):
        raise GradsStructureError(
            f"backward returned {type(grads).__name__}; expected a dict with keys {net.param_names}")
    missing = [k for k in net.param_names if k not in grads]
    extra = [k for k in grads if k not in net.param_names]
    if missing or extra:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
        raise GradsStructureError(f"backward returned grads with {' and '.join(parts)}; "
                                  f"expected exactly {net.param_names}")
    out: Params = {}
    for k, shape in net.param_shapes.items():
        g = grads[k]
        if not isinstance(g, np.ndarray):
            raise GradsStructureError(f"grads[{k!r}] is a {type(g).__name__}; expected a numpy array of shape {shape}")
        if g.shape != shape:
            hint = " (transposed?)" if g.shape == shape[::-1] else ""
            raise GradsStructureError(f"grads[{k!r}] has shape {g.shape}; expected {shape} like params[{k!r}]{hint}")
        if g.dtype.kind != "f":
            raise GradsStructureError(f"grads[{k!r}] has dtype {g.dtype}; expected {dtype}")
        out[k] = g
    return out


def _name(tensor: str, index: tuple[int, ...]) -> str:
    if tensor[:1] in ("W", "B") and tensor[1:].isdigit():
        return element_name(tensor, index)
    return f"{tensor}[{', '.join(map(str, index))}]"


def _ratio(num: float, den: float) -> float:
    """num / den without an overflow warning (inf when the quotient exceeds float64)."""
    with np.errstate(over="ignore"):
        return float(np.float64(num) / np.float64(den))


def _compare(pair: str, tensor: str, hand: np.ndarray, ref: np.ndarray, budget: np.ndarray,
             ok_mask: np.ndarray | None = None) -> tuple[TensorCheck, tuple[int, ...] | None, np.ndarray]:
    hand64 = hand.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(hand64 - ref)
    diff = np.where(np.isfinite(diff), diff, np.inf)
    ratio = diff / budget
    if ok_mask is not None:
        ratio = np.where(ok_mask, np.minimum(ratio, 1.0), ratio)
    bad = ratio > 1.0
    # Relative error of the tensor: the largest difference over the tensor's largest reference entry
    # (an elementwise ratio is meaningless where the true gradient is ~0, as in saturated units).
    scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, np.finfo(np.float64).tiny)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape)) if ratio.size else None
    check = TensorCheck(
        pair=pair, tensor=tensor,
        max_abs=float(np.max(diff)) if diff.size else 0.0,
        max_rel=_ratio(float(np.max(diff)), scale) if diff.size else 0.0,
        ratio=float(np.max(ratio)) if ratio.size else 0.0,
        worst=_name(tensor, worst) if worst is not None else "",
        ok=not bool(bad.any()), n_bad=int(bad.sum()),
    )
    return check, (worst if bad.any() else None), bad


def _run_oracles(net: Network, params: Params, X: np.ndarray, Y: np.ndarray, oracles: Sequence[str],
                 notes: list[str]) -> tuple[dict[str, Params], Any]:
    """Each oracle's gradients at the case, read from the oracle table (``entry.compute``), and the
    finite-difference result with its error estimates (None if unused).

    The case was validated once, above; the table's entries are the oracles' unchecked entry
    points. An oracle that declines the case (``ValueError``, ``ArithmeticError``,
    ``NotImplementedError``) leaves a note saying why.
    """
    from ..oracles.table import ORACLE_TABLE

    refs: dict[str, Params] = {}
    fd = None
    for name in oracles:
        entry = ORACLE_TABLE.get(name)
        if entry is None:
            raise ValueError(f"unknown oracle {name!r}; choose from {', '.join(ORACLE_TABLE)}")
        try:
            result = entry.compute(net, params, X, Y)
        except ValueError as exc:
            notes.append(f"{oracle_label(name)} oracle not used: {exc}")
            continue
        except (ArithmeticError, NotImplementedError) as exc:
            notes.append(f"{oracle_label(name)} oracle not used: {type(exc).__name__}: {exc}")
            continue
        refs[name] = dict(result) if isinstance(result, Mapping) else result.grads
        if name == "fd":
            fd = result
    return refs, fd


def referee(
    net: Network,
    params: Mapping[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    grads: Mapping[str, np.ndarray] | Backward,
    *,
    oracles: Sequence[str] = ORACLES,
    policy: TolerancePolicy = DEFAULT_POLICY,
    reproduce: str = "",
    min_oracles: int = 2,
) -> Report:
    r"""Referee one case: ``grads`` (or ``backward(params, X, Y)``) against the oracles.

    Args:
      net: the architecture (sizes, activations, loss, fuse) the gradients claim to be for.
      params, X, Y: the point; their dtype (float32 or float64) is the hand dtype.
      grads: a dict ``W1, B1, ...`` of gradients of the mean batch loss, or a backward function
        called as ``backward(copy_of_params, X.copy(), Y.copy())``.
      oracles: which references to use, at least two of the oracle table's names (``"sympy"``,
        ``"jax"``, ``"fd"``; :mod:`handgrad.reference.oracles.table`). SymPy declines large networks
        and says so in ``notes``.
      min_oracles: fewer usable references than this makes the verdict ``inconclusive``.
      reproduce: a one-line recipe printed in the report.
    """
    oracles = check_oracles(oracles)
    dtype = net.check_params(params)
    net.check_batch(params, X, Y)
    arch, m = net.describe(), X.shape[1]
    report = Report(arch, str(dtype), m, "certified", reproduce=reproduce)

    if callable(grads):
        try:
            out = grads({k: v.copy() for k, v in params.items()}, X.copy(), Y.copy())
        except Exception as exc:  # the provider's own failure is a finding, not a crash
            report.verdict = "error"
            report.notes.append(f"backward raised {type(exc).__name__}: {exc}")
            return report
    else:
        out = grads
    try:
        hand = check_grads_structure(net, out, dtype)
    except GradsStructureError as exc:
        report.verdict = "error"
        report.notes.append(str(exc))
        return report

    budget: Budget = error_budget(net, params, X, Y, policy)
    if budget.kink_ambiguous(dtype):
        report.verdict = "inconclusive"
        report.notes.append(f"a pre-activation is within rounding reach of a kink ({budget.kink_where(dtype)}); "
                            "a correct backward may take either branch there")
        return report

    refs, fd = _run_oracles(net, dict(params), X, Y, oracles, report.notes)
    if len(refs) < min_oracles:
        report.verdict = "inconclusive"
        report.notes.append(f"only {len(refs)} reference(s) available ({', '.join(refs) or 'none'}); "
                            f"at least {min_oracles} are required")
        return report

    # 3. Oracles among themselves (both float64).
    b64 = budget.against(np.float64)
    cross: list[tuple[str, str]] = [(a, "jax") for a in ("sympy", "fd") if a in refs and "jax" in refs]
    if "jax" not in refs and {"sympy", "fd"} <= set(refs):
        cross = [("sympy", "fd")]
    for a, b in cross:
        for k in net.param_names:
            bud = b64[k] + (fd.error[k] if "fd" in (a, b) else 0.0)
            kink = fd.kink[k] if "fd" in (a, b) else None
            check, _, _ = _compare(f"{oracle_label(a)} vs {oracle_label(b)}", k, refs[a][k], refs[b][k], bud, kink)
            report.checks.append(check)
            if not check.ok:
                report.verdict = "inconclusive"
                report.notes.append(f"the oracles disagree: {check.pair} on {check.worst} "
                                    f"(ratio {check.ratio:.3g}); no verdict on the hand gradient")
    if report.verdict == "inconclusive":
        return report

    # 4. Hand vs each reference.
    against = budget.against(dtype)
    hand_only = budget.hand_only(dtype)
    for name, ref in refs.items():
        for k in net.param_names:
            if name == "fd":
                assert fd is not None
                bud = hand_only[k] + fd.error[k]
                kink_ok = _kink_bracket(hand[k], fd, k, hand_only[k])
                check, worst, bad = _compare(f"hand vs {oracle_label(name)}", k, hand[k], ref[k], bud, kink_ok)
            else:
                bud = against[k]
                check, worst, bad = _compare(f"hand vs {oracle_label(name)}", k, hand[k], ref[k], bud)
            report.checks.append(check)
            if worst is not None:
                report.verdict = "mismatch"
                values = {"hand": float(hand[k][worst])}
                values.update({oracle_label(o): float(r[k][worst]) for o, r in refs.items()})
                report.mismatches.append(Mismatch(
                    pair=f"hand vs {oracle_label(name)}", tensor=k, index=worst, element=element_name(k, worst),
                    values=values, budget=float(bud[worst]), ratio=check.ratio, n_bad=int(bad.sum())))
    # One mismatch line per tensor is enough: keep the first pair's line for each tensor.
    seen: set[str] = set()
    unique = []
    for mm in report.mismatches:
        if mm.tensor not in seen:
            seen.add(mm.tensor)
            unique.append(mm)
    report.mismatches = unique
    if "sympy" not in refs and "sympy" in oracles:
        pass  # the note from _run_oracles already says why
    _ = unit_roundoff(dtype)
    return report


def _kink_bracket(hand: np.ndarray, fd: Any, k: str, hand_budget: np.ndarray) -> np.ndarray:
    """Elements where the step crossed a kink and the hand value is the left one-sided quotient
    (the convention) or lies between the one-sided quotients, each within its error."""
    kink = fd.kink[k]
    if not kink.any():
        return np.zeros_like(kink)
    h = hand.astype(np.float64)
    le, re_ = fd.left[k], fd.right[k]
    lerr, rerr = fd.left_error[k], fd.right_error[k]
    with np.errstate(invalid="ignore"):
        equals_left = np.abs(h - le) <= lerr + hand_budget
        lo = np.minimum(le - lerr, re_ - rerr) - hand_budget
        hi = np.maximum(le + lerr, re_ + rerr) + hand_budget
        between = (h >= lo) & (h <= hi)
    return kink & (equals_left | between)


def referee_forward(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray,
                    oracles: Sequence[str] = ("sympy", "jax"),
                    policy: TolerancePolicy = DEFAULT_POLICY) -> list[TensorCheck]:
    r"""Forward before backward: handgrad's :math:`\hat y` against each oracle's forward pass.

    The budget is :math:`(u_{hand} + u_{64}) K M_a^{(L)}` from :mod:`handgrad.reference.judge.tolerance`.
    Returns one :class:`TensorCheck` per oracle (tensor ``"yhat"``); oracles that decline (SymPy
    above its size limit) are left out.
    """
    dtype = net.check_params(params)
    yhat = net.predict(params, X)
    dummy_y = np.zeros((net.sizes[-1], X.shape[1]), dtype=np.float64)
    if net.loss.target_kind == "distribution":
        dummy_y[0] = 1.0
    budget = error_budget(net, params, X, dummy_y, policy).forward_budget(dtype)
    checks = []
    for name in oracles:
        try:
            if name == "sympy":
                from ..oracles.sympy_oracle import get_sympy_oracle

                ref = get_sympy_oracle(net).forward(params, X)
            elif name == "jax":
                from ..oracles.jax_oracle import get_jax_oracle

                ref = get_jax_oracle(net).forward(params, X)
            else:
                raise ValueError(f"forward oracles are 'sympy' and 'jax', got {name!r}")
        except ValueError:
            if name not in ("sympy", "jax"):
                raise
            continue
        check, _, _ = _compare(f"hand vs {oracle_label(name)}", "yhat", yhat, np.asarray(ref, dtype=np.float64), budget)
        checks.append(check)
    return checks
