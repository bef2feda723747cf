r"""The referee: compare any gradient provider with the oracles, tensor by tensor, element by element.

Sources. ``hand`` is the provider under test (handgrad's backward, or a user's
``backward(params, X, Y) -> grads``). The references are independent of it:

* ``SymPy``: closed forms of :math:`\partial L/\partial w_{ij}^{(l)}` from differentiating the
  composite loss (:mod:`handgrad.reference.oracles.sympy_oracle`), for networks up to its size limit;
* ``JAX``: ``jax.grad`` of an independent ``jax.numpy`` forward (:mod:`handgrad.reference.oracles.jax_oracle`);
* ``finite differences``: central or complex-step differences of a third forward
  (:mod:`handgrad.reference.oracles.finite_diff`), with their own error estimates.

Procedure (shape before values, forward before backward); :func:`referee` runs one helper per step:

1. The case (params, X, Y) is validated once; the oracles receive it unchecked. Layers the user's
   conventions declare without a bias get B = 0 (the declared model) and are not asked for.
2. The provider's output is checked for type, keys, shapes and dtype; a wrong shape or a missing
   key is reported in words, never as a numpy traceback (:func:`check_grads_structure`).
3. The error budget of every element is derived (:mod:`handgrad.reference.judge.tolerance`; the
   derivation is ``docs/tolerances.md``). A kinked unit whose computed pre-activation may fall on
   either side of its kink in the hand dtype masks the gradient elements it can change (the
   report says how many); only when that is every element is the case ``inconclusive``.
4. The references are computed (:mod:`handgrad.reference.oracles.table`); an oracle that declines
   says why in the notes, and fewer usable references than ``min_oracles`` is ``inconclusive``.
   An element the finite differences cannot decide (a kink their steps cross on both sides) is
   checked against the two other references, or masked when there is only one (noted either way).
5. The oracles are cross-checked *among themselves* first (SymPy vs JAX, finite differences vs
   JAX). If they disagree, the case is ``inconclusive`` and the report says which oracle pair
   disagreed: the hand code is never blamed for an oracle's failure.
6. The hand gradient is compared with each reference: |hand - ref| <= budget, where the budget
   is :math:`(u_{hand} + u_{64}) K M` for SymPy and JAX, and :math:`u_{hand} K M` + the
   finite-difference error estimate for finite differences. Where the finite-difference
   perturbation crossed a kink, the hand value must equal the left one-sided quotient (the kink
   convention) or lie between the two one-sided quotients (a kink inside the step).
7. Only after a mismatch: the likely causes that explain it within the same budgets
   (:func:`~handgrad.reference.judge.diagnosis.diagnose`), ``Report.diagnoses``; and, in the
   user's conventions, the case as their code received it.

Conventions. Given (``conventions=``) or carried by a
:func:`~handgrad.reference.judge.conventions.wrap_backward` function, they make every message
speak the user's names and layout with the article's beside it (``dW1[3, 4] (the article's
w_54^(1))``); without them the article's notation is used (``dL/dw_54^(1) (W1[4, 3])``).

Verdicts: ``certified`` (``ok``), ``mismatch`` (a bug: the report names the pair, the tensor, the
element in article notation, every source's value), ``inconclusive`` and ``error`` (the provider
raised or returned malformed output -- reported as a failure, with the reason).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

import numpy as np

from handgrad import NUMPY_OPS, Network, Params, at_kink
from handgrad.notation import code_name, element_name, is_parameter_name
from handgrad.validation import check_positive_int

from ..oracles.table import ORACLES, check_oracles, oracle_label
from .reports import Mismatch, Report, TensorCheck
from .tolerance import DEFAULT_POLICY, Budget, TolerancePolicy, error_budget
from .user_view import (
    conventions_of,
    describe_for_user,
    diagnose_report,
    user_names,
    without_declared_biases,
)

__all__ = [
    "ORACLES",
    "GradsStructureError",
    "provider_grads",
    "random_state_held",
    "Mismatch",
    "Report",
    "TensorCheck",
    "check_grads_structure",
    "referee",
]


Backward = Callable[[Params, np.ndarray, np.ndarray], Mapping[str, np.ndarray]]


class GradsStructureError(ValueError):
    """The provider's gradients have the wrong type, keys, shapes or dtype."""


def check_grads_structure(net: Network, grads: object, dtype: np.dtype,
                          expected: Sequence[str] | None = None) -> Params:
    """Validate a provider's output; raise :class:`GradsStructureError` with a sentence.

    ``expected`` are the tensors it must return (default every one of ``net.param_names``; the B
    of a layer declared without a bias is left out).
    """
    names = list(net.param_names) if expected is None else list(expected)
    if not isinstance(grads, Mapping):
        raise GradsStructureError(
            f"backward returned {type(grads).__name__}; expected a dict with keys {names}")
    missing = [k for k in names if k not in grads]
    extra = [k for k in grads if k not in names]
    if missing or extra:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
        raise GradsStructureError(f"backward returned grads with {' and '.join(parts)}; "
                                  f"expected exactly {names}")
    out: Params = {}
    shapes = net.param_shapes  # a property that builds its dict: once
    for k in names:
        shape = shapes[k]
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


@functools.cache
def _name(tensor: str, index: tuple[int, ...]) -> str:
    """The article's name of a parameter element (``w_1,13^(1)``), the code's of any other
    (``yhat[0, 2]``); cached (a few thousand names at most: one per element of the architectures seen)."""
    return element_name(tensor, index) if is_parameter_name(tensor) else code_name(tensor, index)


def _compare(pair: str, tensor: str, hand: np.ndarray, ref: np.ndarray, budget: np.ndarray,
             ok_mask: np.ndarray | None = None) -> tuple[TensorCheck, tuple[int, ...] | None, np.ndarray]:
    """One tensor of one pair: :func:`_compare_tensors` of that tensor alone."""
    return _compare_tensors(pair, [tensor], [hand], [ref], [budget], None if ok_mask is None else [ok_mask])[0]


def _compare_tensors(pair: str | Sequence[str], keys: Sequence[str], hands: Sequence[np.ndarray],
                     refs: Sequence[np.ndarray], budgets: Sequence[Any],
                     ok_masks: Sequence[np.ndarray | None] | None = None,
                     ) -> list[tuple[TensorCheck, tuple[int, ...] | None, np.ndarray]]:
    """Hand vs reference, tensor by tensor, for every tensor of one pair at once (or, ``pair`` a
    sequence, of several pairs: one pair per tensor): per tensor its :class:`TensorCheck`, its
    worst failing element (None when none fails) and the failing elements.

    ``|hand - ref| / budget`` elementwise (a non-finite difference counts as infinite), computed on
    the tensors laid end to end (one pass instead of a dozen numpy calls per tensor); the maxima are
    segment reductions, the worst element the first maximum of its segment (as ``np.argmax``: a NaN
    first). ``ok_masks``: elements decided against a one-sided quotient at a kink (the step crossed
    it); their distance to the central quotient measures nothing, so they are left out of the shown
    maxima (they pass; a mismatch there would have been found against the one-sided quotient).
    ``tests/test_referee_fast.py`` holds it to a plain per-tensor implementation, bitwise."""
    pairs = [pair] * len(keys) if isinstance(pair, str) else list(pair)
    shapes = [np.shape(r) for r in refs]
    sizes = [math.prod(sh) for sh in shapes]
    full = [i for i, n in enumerate(sizes) if n]
    if not (len(pairs) == len(keys) == len(shapes)):
        raise ValueError(f"{len(pairs)} pairs, {len(keys)} tensor names and {len(shapes)} tensors: one each")
    out: list[Any] = [None] * len(keys)
    for i in (j for j, n in enumerate(sizes) if not n):  # an empty tensor: nothing to compare
        out[i] = (TensorCheck(pair=pairs[i], tensor=keys[i], max_abs=0.0, max_rel=0.0, ratio=0.0, worst="", ok=True,
                              n_bad=0), None, np.zeros(shapes[i], dtype=bool))
    if not full:
        return out
    hand64 = np.concatenate([np.asarray(hands[i]).reshape(-1) for i in full]).astype(np.float64)
    ref = np.concatenate([np.asarray(refs[i]).reshape(-1) for i in full]).astype(np.float64, copy=False)
    budget = np.concatenate([(b if b.shape == shapes[i] else np.broadcast_to(b, shapes[i])).reshape(-1)
                             for i in full for b in (np.asarray(budgets[i]),)])
    ok = None
    if ok_masks is not None and any(ok_masks[i] is not None for i in full):
        ok = np.concatenate([np.zeros(sizes[i], dtype=bool) if ok_masks[i] is None
                             else np.asarray(ok_masks[i]).reshape(-1) for i in full])
    for i, result in zip(full, _compare_laid([pairs[i] for i in full], [keys[i] for i in full],
                                             [shapes[i] for i in full], hand64, ref, budget, ok), strict=True):
        out[i] = result
    return out


def _compare_laid(pairs: Sequence[str], keys: Sequence[str], shapes: Sequence[tuple[int, ...]], hand64: np.ndarray,
                  ref: np.ndarray, budget: np.ndarray, ok: np.ndarray | None, failing: bool = True,
                  ) -> list[tuple[TensorCheck, tuple[int, ...] | None, Any]]:
    """The body of :func:`_compare_tensors`: its operands already laid end to end (float64 hand and
    reference, the budget, the elements decided at a kink or None), tensor i of ``shapes`` (none
    empty) the i-th segment. ``failing=False``: None instead of each tensor's failing elements
    (the referee reads only their count, ``TensorCheck.n_bad``)."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(hand64 - ref)
    diff = np.where(np.isfinite(diff), diff, np.inf)
    ratio = diff / budget
    if ok is not None:
        ratio = np.where(ok, 0.0, ratio)
        diff = np.where(ok, 0.0, diff)
    bad = ratio > 1.0
    lengths = [math.prod(sh) for sh in shapes]
    starts = np.cumsum([0, *lengths[:-1]])
    ratio_max = np.maximum.reduceat(ratio, starts)
    rep = np.repeat(ratio_max, lengths)
    hits = np.flatnonzero((ratio == rep) | (np.isnan(ratio) & np.isnan(rep)))
    first = (hits[np.searchsorted(hits, starts)] - starts).tolist()
    n_bad = np.add.reduceat(bad, starts, dtype=np.intp).tolist()
    tiny = float(np.finfo(np.float64).tiny)
    out = []
    for pair, key, shape, size, start, i_worst, r_max, d_max, a_max, nb in zip(
            pairs, keys, shapes, lengths, starts.tolist(), first, ratio_max.tolist(),
            np.maximum.reduceat(diff, starts).tolist(), np.maximum.reduceat(np.abs(ref), starts).tolist(), n_bad,
            strict=True):
        worst = divmod(i_worst, shape[1]) if len(shape) == 2 else _unravel(i_worst, shape)
        # Relative error of the tensor: the largest difference over its largest reference entry (an
        # elementwise ratio is meaningless where the true gradient is ~0, as in saturated units).
        # Python float division: correctly rounded, inf on overflow, no warning.
        check = TensorCheck(pair=pair, tensor=key, max_abs=d_max, max_rel=d_max / max(a_max, tiny),
                            ratio=r_max, worst=_name(key, worst), ok=not nb, n_bad=nb)
        out.append((check, worst if nb else None, bad[start:start + size].reshape(shape) if failing else None))
    return out


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``np.unravel_index(flat, shape)`` as a tuple of ints (C order), without a numpy call."""
    index = []
    for n in reversed(shape):
        flat, i = divmod(flat, n)
        index.append(i)
    return tuple(reversed(index))


def _run_oracles(net: Network, params: Params, X: np.ndarray, Y: np.ndarray, oracles: Sequence[str],
                 notes: list[str], references: Mapping[str, object] | None = None) -> tuple[dict[str, Params], Any]:
    """Each oracle's gradients at the case, read from the oracle table (``entry.compute``) or from
    ``references`` (a result or the exception computing it raised), and the finite-difference
    result with its error estimates (None if unused).

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
            if references is not None and name in references:
                given = references[name]
                if isinstance(given, BaseException):
                    raise given
                result = given
            else:
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
    seed: int | None = None,
    nondeterminism_tolerance: float = 0.0,
    conventions: Any = None,
    references: Mapping[str, object] | None = None,
    budget: Budget | None = None,
) -> Report:
    r"""Referee one case: ``grads`` (or ``backward(params, X, Y)``) against the oracles.

    Follows the module's procedure, one helper per step.

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
      seed: the case seed; the global ``np.random`` is seeded from it for each call of a backward
        function (restored after), so a backward that draws random numbers is reproducible.
      nondeterminism_tolerance: a backward function is called twice on fresh copies; its two
        results must agree bitwise (0, the default) or within this relative difference.
      conventions: the user's :class:`~handgrad.reference.judge.conventions.Conventions` (default:
        those a :func:`~handgrad.reference.judge.conventions.wrap_backward` function carries, else
        none). Mismatches then name the user's element with the article's beside it
        (``dW1[3, 4] (the article's w_54^(1))``), a failure describes the case as the user's code
        received it, the diagnoses speak the user's names, and the B of a layer in ``no_bias`` is
        0 in the case and not asked for.
      references: each oracle's result for this case computed beforehand (name -> what the oracle
        table's ``compute`` returned, or the exception it raised), as a caller that evaluates many
        cases together passes them (:func:`~handgrad.reference.oracles.finite_diff.fd_grads_many`);
        an oracle missing from it is computed here. The report is the same as without. Ignored,
        like ``budget``, when declared biases change the case.
      budget: this case's :func:`~handgrad.reference.judge.tolerance.error_budget` under ``policy``
        computed beforehand (:func:`~handgrad.reference.judge.tolerance.error_budgets` of many
        cases: bitwise the same).

    A mismatch is diagnosed (:func:`~handgrad.reference.judge.diagnosis.diagnose`): the likely
    causes that explain it within the budget are ``report.diagnoses``; a certified case costs nothing.
    """
    # 1. The case, validated once (the oracles get it unchecked).
    oracles = check_oracles(oracles)
    check_positive_int("min_oracles", min_oracles)
    net.check_batch(params, X, Y)
    conv = conventions_of(conventions, grads)
    given = params
    params, keys, bias_note = without_declared_biases(net, params, conv)
    if params is not given:  # references and budget computed for the case before its biases were set to 0
        references, budget = None, None
    dtype = params[net.param_names[0]].dtype
    report = Report(net.describe(), str(dtype), X.shape[1], "certified", reproduce=reproduce)
    if bias_note:
        report.notes.append(bias_note)

    # 2. The provider's output, in words.
    if not (isinstance(nondeterminism_tolerance, int | float) and nondeterminism_tolerance >= 0):
        raise ValueError(f"nondeterminism_tolerance must be a number >= 0, got {nondeterminism_tolerance!r}")
    hand = provider_grads(net, params, X, Y, grads, dtype, report, seed, nondeterminism_tolerance, keys, conv)
    if hand is None:
        describe_for_user(params, X, Y, conv, report)
        return report
    # 3. The budgets, and a kink within rounding reach.
    if budget is None:
        budget = error_budget(net, params, X, Y, policy)
    mask = _kink_mask(net, budget, dtype, report)
    if report.verdict == "inconclusive":
        return report
    # 4. The references.
    refs, fd = _run_oracles(net, dict(params), X, Y, oracles, report.notes, references)
    if _too_few(refs, min_oracles, report):
        return report
    mask = _fd_undecided(net, refs, fd, mask, report, keys)
    if report.verdict == "inconclusive":
        return report
    # 5. The oracles among themselves, and 6. the hand gradient against each reference (masked
    # elements excluded; one line per tensor): every comparison in one pass, the oracles read first.
    compared = _compare_case(net, hand, refs, fd, budget, dtype, mask, keys)
    if not _cross_check(compared, report):
        return report
    used = _judge_hand(net, hand, refs, compared, report, conv)
    if report.verdict == "mismatch":
        if fd is not None:
            _name_kink_convention(net, hand, refs, fd, budget.hand_only(dtype), report)
        diagnose_report(net, hand, refs, used, params, X, Y, conv, report)
        describe_for_user(params, X, Y, conv, report)
    return report


def provider_grads(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
                    grads: Mapping[str, np.ndarray] | Backward, dtype: np.dtype, report: Report,
                    seed: int | None = None, nondeterminism_tolerance: float = 0.0,
                    keys: Sequence[str] | None = None, conv: Any = None) -> Params | None:
    """Step 2: call the backward twice on fresh copies (``np.random`` seeded from ``seed``, a
    different stream each call) and check its output; None (verdict ``error``, the reason in the
    notes) when it raised, returned malformed gradients or two calls disagree. A backward that
    modifies its arguments in place is noted, not failed."""
    if not callable(grads):
        return _checked(net, grads, dtype, report, keys)
    if seed is None or _HELD.get():  # each call restores the state it found / the holder restores it
        return _called_twice(net, params, X, Y, grads, dtype, report, seed, nondeterminism_tolerance, keys, conv)
    state = np.random.get_state()  # each call is seeded: one restore after both calls (~0.1 ms each)
    try:
        return _called_twice(net, params, X, Y, grads, dtype, report, seed, nondeterminism_tolerance, keys, conv)
    finally:
        np.random.set_state(state)


_HELD: ContextVar[bool] = ContextVar("handgrad_random_state_held", default=False)


@contextmanager
def random_state_held() -> Iterator[None]:
    """Save ``np.random``'s global state once for many :func:`provider_grads` calls and restore it
    when the block ends (also on an exception). Inside, a seeded backward's two calls are seeded
    as always but skip their own save and restore (about 0.1 ms a case: the state is 624 words):
    what each call sees is the same, and so is the state the caller finds after the block.
    ``certify_backward`` holds it for a whole run; unseeded calls still restore after each call."""
    state = np.random.get_state()
    token = _HELD.set(True)
    try:
        yield
    finally:
        _HELD.reset(token)
        np.random.set_state(state)


def _called_twice(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
                  grads: Backward, dtype: np.dtype, report: Report, seed: int | None,
                  nondeterminism_tolerance: float, keys: Sequence[str] | None, conv: Any) -> Params | None:
    """The body of :func:`provider_grads` for a backward function."""
    first = _call(grads, params, X, Y, seed, 0, report)
    if first is None:
        return None
    out, modified = first
    hand = _checked(net, out, dtype, report, keys)
    if hand is None:
        return None
    second = _call(grads, params, X, Y, seed, 1, report)
    if second is None:
        return None
    again = _checked(net, second[0], dtype, report, keys)
    if again is None:
        return None
    if modified:
        report.notes.append(f"the backward modified {', '.join(modified)} in place (it was given copies; "
                            "the gradients were checked as returned)")
    if not _same_twice(net, hand, again, nondeterminism_tolerance, report, conv):
        return None
    if any(g.dtype != dtype for g in hand.values()):
        kinds = sorted({f"{k} is {g.dtype}" for k, g in hand.items() if g.dtype != dtype})
        report.notes.append(f"the backward returned gradients in another dtype than the case's {dtype} "
                            f"({', '.join(kinds)})")
    return hand


def _checked(net: Network, out: object, dtype: np.dtype, report: Report,
             keys: Sequence[str] | None = None) -> Params | None:
    try:
        return check_grads_structure(net, out, dtype, keys)
    except GradsStructureError as exc:
        report.verdict = "error"
        report.notes.append(str(exc))
        report.exception = exc
        return None


def _call(backward: Backward, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
          seed: int | None, call: int, report: Report) -> tuple[object, list[str]] | None:
    """One call on fresh copies, the global ``np.random`` seeded for it and restored after (when
    seeded, by :func:`provider_grads`, once for both calls); the
    output and the names of the arguments it modified in place."""
    p = {k: v.copy() for k, v in params.items()}
    x, y = X.copy(), Y.copy()
    state = np.random.get_state() if seed is None else None  # seeded: provider_grads restores it
    if seed is not None:
        np.random.seed((int(seed) + 7_777_777 * call) % 2**32)
    try:
        out = backward(p, x, y)
    except GradsStructureError as exc:
        # Raised by a wrapper around the user's code (UserGradsError: a wrong key or shape stated
        # in their names): what their gradients are, not "backward raised".
        report.verdict = "error"
        report.notes.append(str(exc))
        report.exception = exc
        return None
    except Exception as exc:  # the provider's own failure is a finding, not a crash
        report.verdict = "error"
        report.notes.append(f"backward raised {type(exc).__name__}: {exc}")
        report.exception = exc
        return None
    finally:
        if state is not None:
            np.random.set_state(state)
    modified = [f"params[{k!r}]" for k in params if not _same_array(p.get(k), params[k])]
    modified += [n for n, a, b in (("X", x, X), ("Y", y, Y)) if not _same_array(a, b)]
    return out, modified


def _same_array(a: object, b: np.ndarray) -> bool:
    """Equal shape and values (NaN equal to NaN, -0.0 to 0.0); identical bytes decide it at once."""
    if not (isinstance(a, np.ndarray) and a.shape == b.shape):
        return False
    if a.dtype == b.dtype and a.tobytes() == b.tobytes():
        return True
    return bool(np.array_equal(a, b, equal_nan=True))


def _same_twice(net: Network, first: Params, second: Params, tol: float, report: Report,
                conv: Any = None) -> bool:
    """Two calls on the same input agree bitwise (``tol`` = 0) or within ``tol`` relative to the
    larger |value|; otherwise verdict ``error`` with the first differing element named."""
    for k in first:
        if first[k].dtype == second[k].dtype and first[k].tobytes() == second[k].tobytes():
            continue  # the same bytes: the same values (what almost every call gives)
        a, b = first[k].astype(np.float64), second[k].astype(np.float64)
        with np.errstate(invalid="ignore"):
            differ = ~((a == b) | (np.abs(a - b) <= tol * np.maximum(np.abs(a), np.abs(b))))
        differ &= ~(np.isnan(a) & np.isnan(b))  # a == b covers an infinity returned twice
        if first[k].dtype != second[k].dtype:
            differ[...] = True
        if differ.any():
            idx = tuple(int(i) for i in np.argwhere(differ)[0])
            label, user_tensor = user_names(k, idx, conv)
            report.verdict = "error"
            report.notes.append(f"nondeterministic backward: two calls on the same input differ at "
                                f"{label or f'dL/d{_name(k, idx)} ({code_name(k, idx)})'}: first call "
                                f"{float(a[idx])!r}, second call {float(b[idx])!r}")
            report.mismatches.append(Mismatch(pair="hand vs hand (second call)", tensor=k, index=idx,
                                              element=_name(k, idx),
                                              values={"hand": float(a[idx]), "hand, second call": float(b[idx])},
                                              budget=0.0, ratio=float("inf"), n_bad=int(differ.sum()),
                                              label=label, user_tensor=user_tensor))
            return False
    return True




def _kink_mask(net: Network, budget: Budget, dtype: np.dtype, report: Report) -> dict[str, np.ndarray] | None:
    """Step 3: the gradient elements a kinked unit within rounding reach of its kink can change
    (True = masked), or None when no unit is ambiguous.

    A unit ``(l, i, s)`` whose derivative may take either branch changes delta_l[i, s]: row i of
    W_l and B_l, and through back-propagation every parameter of the layers below l. Layers above
    only see a_l, which is continuous at the kink. The case is decided on the rest; when nothing is
    left (or the unit cannot be located) it is ``inconclusive``.
    """
    cells = budget.ambiguous_units(dtype)
    if not cells:
        return None
    where = budget.kink_where(dtype)
    mask = {k: np.zeros(shape, dtype=bool) for k, shape in net.param_shapes.items()}
    units = sorted({(layer, unit) for layer, unit, _ in cells})
    for layer, unit in units:
        mask[f"W{layer}"][unit - 1, :] = True
        mask[f"B{layer}"][unit - 1, :] = True
        for below in range(1, layer):
            mask[f"W{below}"][...] = True
            mask[f"B{below}"][...] = True
    n = int(sum(int(v.sum()) for v in mask.values()))
    total = int(sum(v.size for v in mask.values()))
    report.masked = n
    if n >= total:
        report.verdict = "inconclusive"
        report.notes.append(f"a pre-activation is within rounding reach of a kink ({where}); "
                            "a correct backward may take either branch there")
        return None
    report.notes.append(f"{n} of {total} gradient elements masked: {len(cells)} pre-activation(s) within "
                        f"rounding reach of a kink ({where}{', ...' if len(cells) > 1 else ''}), where a "
                        "correct backward may take either branch; the other elements are checked")
    return mask


def _fd_undecided(net: Network, refs: Mapping[str, Params], fd: Any, mask: dict[str, np.ndarray] | None,
                  report: Report, keys: Sequence[str] | None = None) -> dict[str, np.ndarray] | None:
    """Step 4b: elements the finite differences cannot decide (a kink their steps cross on both
    sides, where the one-sided quotients bracket no convention: ``error`` is inf there). Checked
    against the other references when there are two of them (noted); otherwise masked like a kink
    within rounding reach (noted; ``inconclusive`` when nothing is left)."""
    if fd is None:
        return mask
    names = list(net.param_names if keys is None else keys)
    if not any(fd.kink[k].any() for k in names):  # no step crossed a kink: nothing is undecided
        return mask
    undecided = {k: fd.kink[k] & ~np.isfinite(fd.error[k]) for k in names}
    n = int(sum(int(v.sum()) for v in undecided.values()))
    if not n:
        return mask
    others = [oracle_label(o) for o in refs if o != "fd"]
    where = "at a kink the finite-difference steps cross on both sides (inputs of both signs across the samples)"
    if len(others) >= 2:
        report.notes.append(f"{n} gradient element(s) {where} are checked against {' and '.join(others)} only")
        return mask
    merged = {k: np.zeros(shape, dtype=bool) if mask is None else mask[k].copy()
              for k, shape in net.param_shapes.items()}
    before = int(sum(int(v.sum()) for v in merged.values()))
    for k, v in undecided.items():
        merged[k] |= v
    total = int(sum(v.size for v in merged.values()))
    masked = int(sum(int(v.sum()) for v in merged.values()))
    report.masked += masked - before
    if masked >= total:
        report.verdict = "inconclusive"
        report.notes.append(f"every gradient element is masked: {n} {where}, and "
                            f"{_only_other(others)}")
        return None
    report.notes.append(f"{masked - before} gradient element(s) masked: {where}, and {_only_other(others)}; "
                        "the other elements are checked")
    return merged


def _only_other(others: Sequence[str]) -> str:
    return f"{others[0]} is the only other reference" if others else "there is no other reference"


def _too_few(refs: Mapping[str, Params], min_oracles: int, report: Report) -> bool:
    """Step 4: fewer usable references than ``min_oracles`` (an oracle declined) decides nothing."""
    if len(refs) >= min_oracles:
        return False
    report.verdict = "inconclusive"
    report.notes.append(f"only {len(refs)} reference(s) available ({', '.join(refs) or 'none'}); "
                        f"at least {min_oracles} are required")
    return True


def _cross_pairs(refs: Mapping[str, Params]) -> list[tuple[str, str]]:
    """The oracle pairs compared among themselves: each against JAX, or SymPy against finite
    differences when JAX is not used."""
    pairs = [(a, "jax") for a in ("sympy", "fd") if a in refs and "jax" in refs]
    if "jax" not in refs and {"sympy", "fd"} <= set(refs):
        pairs = [("sympy", "fd")]
    return pairs


class _Compared(NamedTuple):
    """Every comparison of a case (steps 5 and 6), from one vectorized pass: the oracle pairs'
    results first, then hand vs each reference (``refs``' order), each a list over the tensors
    ``names``; and what step 6 reports and a diagnosis reads, laid end to end."""

    names: list[str]
    cross: list[tuple[TensorCheck, tuple[int, ...] | None, None]]
    hand: list[tuple[TensorCheck, tuple[int, ...] | None, None]]
    budgets: list[np.ndarray]  # per reference: the hand-vs-reference budget, laid
    brackets: list[np.ndarray | None]  # per reference: the elements a kink inside the step decides
    starts: list[int]  # each tensor's offset in a laid array


def _laid(tensors: Mapping[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    return np.concatenate([np.asarray(tensors[k]).reshape(-1) for k in names])


def _compare_case(net: Network, hand: Params, refs: Mapping[str, Params], fd: Any, budget: Budget,
                  dtype: np.dtype, mask: Mapping[str, np.ndarray] | None = None,
                  keys: Sequence[str] | None = None) -> _Compared:
    """Steps 5 and 6 computed together: each operand laid end to end once (the hand gradient, each
    reference, the budgets, the finite differences' error estimates and kink flags), then one
    :func:`_compare_laid` of every pair's tensors. Elementwise the same operations as comparing
    tensor by tensor with the budgets' dicts, so bitwise the same checks
    (``tests/test_referee_fast.py``); the oracle pairs are still read first (:func:`_cross_check`)."""
    names = list(net.param_names if keys is None else keys)
    all_shapes = net.param_shapes  # a property that builds its dict: once
    shapes = [all_shapes[k] for k in names]
    lengths = [math.prod(sh) for sh in shapes]
    against, hand_only, b64 = budget.laid(names, dtype)
    if mask is not None:  # a masked element gets an infinite budget: it cannot fail
        masked = _laid(mask, names)
        against, hand_only = np.where(masked, np.inf, against), np.where(masked, np.inf, hand_only)
    laid_refs = {name: _laid(ref, names).astype(np.float64, copy=False) for name, ref in refs.items()}
    fd_error = fd_kink = None
    if fd is not None:
        fd_error, fd_kink = _laid(fd.error, names), _laid(fd.kink, names)
    hand64 = _laid(hand, names).astype(np.float64)
    operands: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = []
    for a, b in _cross_pairs(refs):  # step 5: the oracles among themselves (both float64)
        with_fd = "fd" in (a, b)
        operands.append((f"{oracle_label(a)} vs {oracle_label(b)}", laid_refs[a], laid_refs[b],
                         b64 + fd_error if with_fd else b64, fd_kink if with_fd else None))
    n_cross = len(operands)
    budgets, brackets = [], []
    for name in refs:  # step 6: the hand gradient against each reference
        if name == "fd":
            bud, bracket = hand_only + fd_error, _kink_bracket(hand64, fd, names, fd_kink, hand_only)
        else:
            bud, bracket = against, None
        budgets.append(bud)
        brackets.append(bracket)
        operands.append((f"hand vs {oracle_label(name)}", hand64, laid_refs[name], bud, bracket))
    oks = [ok for *_, ok in operands]
    ok = None if all(o is None for o in oks) else np.concatenate(
        [np.zeros(hand64.size, dtype=bool) if o is None else o for o in oks])
    results = _compare_laid([pair for pair, *_ in operands for _ in names], names * len(operands),
                            shapes * len(operands), np.concatenate([first for _, first, *_ in operands]),
                            np.concatenate([second for _, _, second, *_ in operands]),
                            np.concatenate([bud for *_, bud, _ in operands]), ok, failing=False)
    cut = n_cross * len(names)
    return _Compared(names, results[:cut], results[cut:], budgets, brackets,
                     np.cumsum([0, *lengths[:-1]]).tolist())


def _cross_check(compared: _Compared, report: Report) -> bool:
    """Step 5: the oracles among themselves (both float64); False (verdict ``inconclusive``, the
    pair named in the notes) when they disagree: the hand code is never blamed for an oracle."""
    for check, _, _ in compared.cross:
        report.checks.append(check)
        if not check.ok:
            report.verdict = "inconclusive"
            report.notes.append(f"the oracles disagree: {check.pair} on {check.worst} "
                                f"(ratio {check.ratio:.3g}); no verdict on the hand gradient")
    return report.verdict != "inconclusive"


def _judge_hand(net: Network, hand: Params, refs: Mapping[str, Params], compared: _Compared, report: Report,
                conv: Any = None) -> dict[str, dict[str, Any]]:
    """Step 6: hand vs each reference, element by element; a mismatch records every source's
    value at the tensor's worst element (the first pair's line per tensor is kept), named the
    user's way when conventions are declared.

    Returns, after a mismatch, the budget of every reference and tensor as a pair ``(budget,
    decided_by_kink)`` (the latter None, or the elements a kink inside a finite-difference step
    decides), what a diagnosis reads (:func:`diagnosis_budgets`); nothing for a certified case."""
    names = compared.names
    shapes = net.param_shapes

    def tensor(laid: np.ndarray, k: int) -> np.ndarray:
        start = compared.starts[k]
        shape = shapes[names[k]]
        return laid[start:start + math.prod(shape)].reshape(shape)

    for j in range(len(refs)):
        for k, (check, worst, _) in enumerate(compared.hand[j * len(names):(j + 1) * len(names)]):
            report.checks.append(check)
            if worst is None:
                continue
            report.verdict = "mismatch"
            key = names[k]
            label, user_tensor = user_names(key, worst, conv)
            if label:
                check.worst = label
            if any(mm.tensor == key for mm in report.mismatches):
                continue
            values = {"hand": float(hand[key][worst])}
            values.update({oracle_label(o): float(r[key][worst]) for o, r in refs.items()})
            report.mismatches.append(Mismatch(pair=check.pair, tensor=key, index=worst, element=_name(key, worst),
                                              values=values, budget=float(tensor(compared.budgets[j], k)[worst]),
                                              ratio=check.ratio, n_bad=check.n_bad, label=label,
                                              user_tensor=user_tensor))
    if report.verdict != "mismatch":
        return {}
    return {name: {key: (tensor(compared.budgets[j], k),
                         None if compared.brackets[j] is None else tensor(compared.brackets[j], k))
                   for k, key in enumerate(names)} for j, name in enumerate(refs)}


def _kink_convention(net: Network) -> tuple[str, float, float, float] | None:
    """The first kinked elementwise activation: its name, kink, the suite's derivative there and
    the other one-sided derivative (``relu``: 0, 0 and 1)."""
    for act in net.activations:
        if not (act.kinks and act.elementwise and act.derivative is not None):
            continue
        k = float(act.kinks[0])
        try:
            conv, *sides = (_derivative_at(act, z) for z in (k, k - 1e-9, k + 1e-9))
        except Exception:  # a user's activation that cannot be evaluated on its own: no sentence
            continue
        for d in sides:
            if abs(d - conv) > 1e-6:
                return act.name, k, conv, d
    return None


def _derivative_at(act: Any, z: float) -> float:
    """The activation's hand derivative at the scalar ``z`` (its value from the shared definition)."""
    zz = np.array([[z]])
    a = np.asarray(act.definition(zz, NUMPY_OPS), dtype=np.float64)
    return float(np.asarray(act.derivative(zz, a))[0, 0])


def _name_kink_convention(net: Network, hand: Params, refs: Mapping[str, Params], fd: Any,
                          hand_budget: Mapping[str, np.ndarray], report: Report) -> None:
    """After a mismatch: when every mismatching element whose finite-difference step crossed a
    kink has the hand value on the *other* one-sided quotient while the references take the
    suite's branch, say so in a sentence that names the convention."""
    conv = _kink_convention(net)
    exact = [r for n, r in refs.items() if n != "fd"]
    if conv is None or not exact or not report.mismatches:
        return
    other_side = False
    for mm in report.mismatches:
        k, i = mm.tensor, mm.index
        if not bool(fd.kink[k][i]):
            return
        h, ref = float(hand[k][i]), float(exact[0][k][i])
        sides = [(float(fd.left[k][i]), float(fd.left_error[k][i])),
                 (float(fd.right[k][i]), float(fd.right_error[k][i]))]
        tol = float(hand_budget[k][i])
        on = [abs(h - q) <= e + tol for q, e in sides]
        ref_on = [abs(ref - q) <= e + tol for q, e in sides]
        if not (any(on) and any(ref_on) and on != ref_on):
            return
        other_side = True
    if other_side:
        name, k0, d_conv, d_other = conv
        report.notes.insert(0, f"your backward uses {name}'({k0:g}) = {d_other:g}; this suite's convention is "
                               f"{name}'({k0:g}) = {d_conv:g} (a pre-activation sits exactly on the kink)"
                               f"{_declaration_hint(name)}")


def _declaration_hint(name: str) -> str:
    """How to declare the other convention when the activation is a built-in piecewise one."""
    right = name.endswith("[right]")
    side = "left" if right else "right"
    try:
        other = at_kink(name, side)
    except ValueError:
        return ""
    base = name.removesuffix("[right]")
    return f"; if yours is intended, declare it: hg.at_kink({base!r}, {side!r}), named {other.name!r}"


def _kink_bracket(hand64: np.ndarray, fd: Any, names: Sequence[str], kink: np.ndarray,
                 hand_budget: np.ndarray) -> np.ndarray:
    """Elements where the step crossed a kink and the hand value is the left one-sided quotient
    (the convention) or lies between the one-sided quotients, each within its error; laid end to
    end like ``hand64`` (``kink``: the finite differences' kink flags, laid)."""
    if not kink.any():
        return np.zeros_like(kink)
    le, re_ = _laid(fd.left, names), _laid(fd.right, names)
    lerr, rerr = _laid(fd.left_error, names), _laid(fd.right_error, names)
    with np.errstate(invalid="ignore"):
        equals_left = np.abs(hand64 - le) <= lerr + hand_budget
        lo = np.minimum(le - lerr, re_ - rerr) - hand_budget
        hi = np.maximum(le + lerr, re_ + rerr) + hand_budget
        between = (hand64 >= lo) & (hand64 <= hi)
    return kink & (equals_left | between)


def referee_forward(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray,
                    oracles: Sequence[str] = ("sympy", "jax"),
                    policy: TolerancePolicy = DEFAULT_POLICY) -> list[TensorCheck]:
    r"""Forward before backward: handgrad's :math:`\hat y` against each oracle's forward pass.

    The budget is :math:`(u_{hand} + u_{64}) K M_a^{(L)}` from :mod:`handgrad.reference.judge.tolerance`.
    Returns one :class:`TensorCheck` per oracle (tensor ``"yhat"``); oracles that decline (SymPy
    above its size limit) are left out.
    """
    net.check_batch(params, X, None)  # once; the forwards below run unchecked
    dtype = params[net.param_names[0]].dtype
    yhat = net.forward_unchecked(params, X).a[-1]
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
