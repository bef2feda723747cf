r"""The referee at scale: every element of a real-sized gradient, two independent references.

:func:`scale_referee` decides one case of a network with hundreds of thousands of parameters in
seconds. What is compared with what (the guarantee, written out in ``docs/tolerances.md``,
section *The scale path*):

1. **Hand vs JAX, every element**: :math:`|g^{hand}_e - g^{JAX}_e| \le (u_{hand} + u_{64}) K M_e`
   (the budget of :mod:`handgrad.reference.judge.tolerance`, already vectorized numpy: 35 ms at
   235,146 parameters, batch 4).
2. **Finite differences, elementwise on a sample**: every bias element, and for every weight tensor
   ``max(rows, columns)`` elements covering every row and every column
   (:func:`~handgrad.reference.oracles.directional.sample_elements`): hand and JAX each within
   budget + the difference's error estimate.
3. **Finite differences along directions** (:mod:`handgrad.reference.oracles.directional`):
   ``n_random`` random directions over every parameter, one per tensor, one per row and one per
   column of every tensor. For each direction d, :math:`|R(d) - d\cdot g| \le E(d) + \sum_e |d_e|
   \beta_e + \gamma_n \sum_e |d_e||g_e|` for g = hand and g = JAX, with :math:`\beta` the per-element
   budget. Every weight element lies in one row direction and one column direction, each weighting
   it by at least 1 in magnitude, so an error :math:`\delta` in one element shows in both with at
   least :math:`|\delta|`.
4. A failing direction is rechecked with the rigorous rounding bound at its own points; if it still
   fails it is bisected (:func:`~handgrad.reference.oracles.directional.bisect`) down to elements,
   each then confirmed by an elementwise central difference, and named in the report.

Verdicts follow :func:`~handgrad.reference.judge.referee.referee`: JAX vs finite differences first
(a disagreement is ``inconclusive``, the hand code is not blamed), then hand vs each.

:func:`estimate_seconds` predicts the time of a certification run from the architecture, the
number of cases and the batch size, before it starts (for ``certify_backward`` and the CLI).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from handgrad import Network, Params
from handgrad.notation import element_name
from handgrad.validation import check_positive_int

from ..oracles.directional import (
    Direction,
    DirectionSet,
    StackedForward,
    bisect,
    column_directions,
    element_directions,
    random_direction,
    row_directions,
    sample_elements,
    tensor_directions,
)
from .referee import provider_grads
from .reports import Mismatch, Report, TensorCheck
from .tolerance import DEFAULT_POLICY, TolerancePolicy, error_budget
from .user_view import conventions_of, describe_for_user, diagnose_report, user_names, without_declared_biases

__all__ = [
    "COSTS",
    "LONG_RUN_SECONDS",
    "LongRunWarning",
    "SCALE_MIN_PARAMS",
    "CostModel",
    "Coverage",
    "calibrate",
    "estimate_run_seconds",
    "estimate_seconds",
    "long_run_warning",
    "plan_directions",
    "scale_referee",
    "scale_work",
]

SCALE_MIN_PARAMS = 1_000
"""Above this many parameters the scale path is the faster one: both take ~0.05 s at 525, the
scale path 4x less at 4,961 and 23x less at 50,826 (``docs/bench_scale.md``)."""

_U64 = 2.0**-53
_RECHECK_LIMIT = 32
"""At most this many failing directions are rechecked with the rigorous bound and bisected."""

Backward = Callable[[Params, np.ndarray, np.ndarray], Mapping[str, np.ndarray]]


def _gamma(n: int) -> float:
    return n * _U64 / (1 - n * _U64)


@dataclass
class Coverage:
    """How many elements had which references in one case (written into the report's notes)."""

    elements: int
    jax_elementwise: int
    fd_elementwise: int
    directions: dict[str, int]
    evaluations: int

    def sentence(self) -> str:
        dirs = ", ".join(f"{n} {k}" for k, n in self.directions.items())
        return (f"scale path: all {self.elements} elements hand vs JAX elementwise; {self.fd_elementwise} "
                f"elements also by elementwise finite differences (every bias, every row and column of every "
                f"weight tensor); the other {self.elements - self.fd_elementwise} by finite differences along "
                f"directions ({dirs}; {self.evaluations} loss evaluations), each element in one row and one "
                f"column direction with weight >= 1")


def plan_directions(net: Network, rng: np.random.Generator, n_random: int = 2) -> list[Direction]:
    """The directions of one case: random ones, per tensor, per row, per column, and the elementwise
    sample (every bias element is already a one-element row direction)."""
    dirs = [random_direction(net, rng, f"random direction {k + 1}") for k in range(n_random)]
    dirs += tensor_directions(net, rng)
    dirs += row_directions(net, rng)
    dirs += column_directions(net, rng)
    for name, shape in net.param_shapes.items():
        if name.startswith("W"):
            rows, cols = sample_elements(shape, rng)
            dirs += element_directions(name, rows, cols)
    return dirs


def _tensors_of(d: Direction) -> list[str]:
    return [p.tensor for p in d.parts]


class _Pair:
    """The directional comparison of one gradient (hand or JAX) with the finite differences.

    The dot products of the planned directions are computed at once (:class:`DirectionSet`);
    directions made later (bisection halves) one by one."""

    def __init__(self, label: str, grads: Mapping[str, np.ndarray], budget: Mapping[str, np.ndarray],
                 planned: DirectionSet | None = None) -> None:
        self.label = label
        self.grads = grads
        self.budget = budget
        self._index: dict[int, int] = {}
        if planned is not None:
            self._index = {id(d): k for k, d in enumerate(planned.directions)}
            self._planned = planned.directions
            self.dot = planned.dots(grads)
            gamma = planned.sizes * _U64 / (1 - planned.sizes * _U64)
            self.slack = planned.dots(budget, absolute=True) + gamma * planned.dots(grads, absolute=True)

    def _terms(self, d: Direction) -> tuple[float, float]:
        k = self._index.get(id(d))
        if k is not None and self._planned[k] is d:
            return float(self.dot[k]), float(self.slack[k])
        return d.dot(self.grads), d.abs_dot(self.budget) + _gamma(d.size) * d.abs_dot(self.grads)

    def difference(self, d: Direction, value: float) -> float:
        return abs(value - self._terms(d)[0])

    def tolerance(self, d: Direction, error: float) -> float:
        return error + self._terms(d)[1]

    def ratio(self, d: Direction, value: float, error: float) -> float:
        diff = self.difference(d, value)
        tol = self.tolerance(d, error)
        if not math.isfinite(diff):
            return math.inf
        return diff / tol if tol > 0 else (0.0 if diff == 0 else math.inf)

    def fails(self, d: Direction, value: float, error: float) -> bool:
        return self.ratio(d, value, error) > 1.0

    def ratios(self, value: np.ndarray, error: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Differences and ratios of every planned direction (0 where not usable)."""
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            diff = np.abs(value - self.dot)
            tol = error + self.slack
            ratio = np.where(tol > 0, diff / np.where(tol > 0, tol, 1.0), np.where(diff == 0, 0.0, np.inf))
        ratio = np.where(np.isfinite(diff), ratio, np.inf)
        return np.where(usable, diff, 0.0), np.where(usable, ratio, 0.0)


def _elementwise_checks(hand: Params, ref: Params, budget: Mapping[str, np.ndarray], pair: str,
                        names: Sequence[str]) -> tuple[list[TensorCheck], list[Mismatch]]:
    checks, mismatches = [], []
    for k in names:
        h = hand[k].astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(h - ref[k])
        diff = np.where(np.isfinite(diff), diff, np.inf)
        ratio = diff / budget[k]
        bad = ratio > 1.0
        worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape))
        scale = max(float(np.max(np.abs(ref[k]))), np.finfo(np.float64).tiny)
        checks.append(TensorCheck(pair, k, float(diff.max()), float(diff.max() / scale), float(ratio.max()),
                                  element_name(k, worst), not bool(bad.any()), int(bad.sum())))
        if bad.any():
            mismatches.append(Mismatch(pair, k, worst, element_name(k, worst),
                                       {"hand": float(h[worst]), "JAX": float(ref[k][worst])},
                                       float(budget[k][worst]), float(ratio.max()), int(bad.sum())))
    return checks, mismatches


def _groups(dirs: Sequence[Direction]) -> dict[str, np.ndarray]:
    """Direction indices per tensor they are confined to (``"all"`` for several tensors)."""
    groups: dict[str, list[int]] = {}
    for k, d in enumerate(dirs):
        tensors = _tensors_of(d)
        groups.setdefault(tensors[0] if len(tensors) == 1 else "all", []).append(k)
    return {k: np.array(v) for k, v in groups.items()}


def _directional_checks(pair: _Pair, fd_label: str, dirs: Sequence[Direction], value: np.ndarray,
                        error: np.ndarray, usable: np.ndarray, names: Sequence[str],
                        groups: Mapping[str, np.ndarray]) -> tuple[list[TensorCheck], list[int]]:
    """Per tensor: the worst ratio over the directions confined to it (directions over several
    tensors get one check of their own, tensor ``"all"``); and the failing directions."""
    diffs, ratios = pair.ratios(value, error, usable)
    failing = np.flatnonzero(ratios > 1.0).tolist()
    checks = []
    for name in [*names, "all"]:
        idx = groups.get(name)
        if idx is None or not idx.size:
            continue
        worst = int(idx[np.argmax(ratios[idx])])
        bad = int(np.sum(ratios[idx] > 1.0))
        checks.append(TensorCheck(f"{pair.label} vs {fd_label}", name, float(diffs[idx].max()), 0.0,
                                  float(ratios[worst]), dirs[worst].label, bad == 0, bad))
    return checks, failing


def scale_referee(
    net: Network,
    params: Mapping[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    grads: Mapping[str, np.ndarray] | Backward,
    *,
    policy: TolerancePolicy = DEFAULT_POLICY,
    seed: int = 0,
    n_random: int = 2,
    reproduce: str = "",
    timings: dict[str, float] | None = None,
    nondeterminism_tolerance: float = 0.0,
    conventions: Any = None,
) -> Report:
    r"""Referee one case of a large network: hand vs JAX on every element, hand vs finite
    differences elementwise on a covering sample and along directions (module docstring).

    Args:
      net, params, X, Y: the case, as for :func:`~handgrad.reference.judge.referee.referee`.
      grads: the hand gradients (dict ``W1, B1, ...``) or ``backward(params, X, Y)``, called as the
        referee calls it (its call phase, ``referee.provider_grads``): twice on fresh copies,
        ``np.random`` seeded from ``seed`` for each call, the two results compared
        (``nondeterminism_tolerance``), arguments modified in place noted, malformed output an
        ``error`` in words.
      policy: the constants of the error budget.
      seed: seeds the directions' weights and the elementwise sample, and ``np.random`` while a
        backward function runs (as :func:`~handgrad.reference.judge.referee.referee` does).
      n_random: random directions over every parameter.
      reproduce: a one-line recipe printed in the report.
      timings: if given, filled with seconds per phase (``budget``, ``jax``, ``fd``, ``compare``).
      nondeterminism_tolerance: how far the two calls of a backward function may differ
        (relative; 0: bitwise equal), as for the referee.
      conventions: the user's declared conventions, as for the referee (default: those a wrapped
        backward carries): layers declared without a bias get B = 0 and their B is not asked for
        (it is compared as the reference's own value), failures describe the case as the user's
        code received it, and a mismatch is diagnosed in the user's names.

    Returns:
      a :class:`~handgrad.reference.judge.reports.Report`; its notes state the coverage.
    """
    check_positive_int("n_random", n_random, minimum=0)
    if not (isinstance(nondeterminism_tolerance, int | float) and nondeterminism_tolerance >= 0):
        raise ValueError(f"nondeterminism_tolerance must be a number >= 0, got {nondeterminism_tolerance!r}")
    dtype = net.check_params(params)
    net.check_batch(params, X, Y)
    conv = conventions_of(conventions, grads)
    params, keys, bias_note = without_declared_biases(net, params, conv)
    report = Report(net.describe(), str(dtype), X.shape[1], "certified", reproduce=reproduce, seed=seed)
    if bias_note:
        report.notes.append(bias_note)
    clock = time.perf_counter
    lap: dict[str, float] = timings if timings is not None else {}

    # The referee's call phase, so the scale path checks what the referee checks.
    hand = provider_grads(net, params, X, Y, grads, dtype, report, seed, nondeterminism_tolerance, keys, conv)
    if hand is None:
        describe_for_user(params, X, Y, conv, report)
        return report

    t0 = clock()
    budget = error_budget(net, params, X, Y, policy)
    lap["budget"] = clock() - t0
    if budget.kink_ambiguous(dtype):
        report.verdict = "inconclusive"
        report.notes.append(f"a pre-activation is within rounding reach of a kink ({budget.kink_where(dtype)}); "
                            "a correct backward may take either branch there")
        return report

    t0 = clock()
    from ..oracles.jax_oracle import get_jax_oracle

    try:
        jax_g = get_jax_oracle(net).grads(params, X, Y)
        lap["jax"] = clock() - t0
        t0 = clock()
        forward = StackedForward(net, params, X, Y)
        dirs = plan_directions(net, np.random.default_rng(seed), n_random)
        res = forward.derivatives(dirs)
        lap["fd"] = clock() - t0
    except (ValueError, ArithmeticError, NotImplementedError) as exc:
        # An oracle declining the case (overflow, outside its domain) is not the hand code's fault.
        report.verdict = "inconclusive"
        report.notes.append(f"a reference could not be computed: {type(exc).__name__}: {exc}")
        return report

    t0 = clock()
    names = net.param_names
    b64 = budget.against(np.float64)
    hand_budget = budget.against(dtype)
    # A B declared absent is not the user's claim: it takes the reference's value (compared equal).
    hand = {k: (hand[k] if k in hand else jax_g[k].astype(dtype)) for k in names}
    planned = DirectionSet(dirs)
    groups = _groups(dirs)
    jax_pair = _Pair("JAX", jax_g, b64, planned)
    hand_pair = _Pair("hand", hand, hand_budget, planned)
    usable = ~res.kink
    value, error = res.value.copy(), res.error.copy()
    fd = "finite differences"

    # 3. The oracles among themselves: JAX vs finite differences along every direction.
    jax_checks, jax_failing = _directional_checks(jax_pair, fd, dirs, value, error, usable, names, groups)
    jax_failing = _recheck(forward, dirs, res.step, value, error, jax_failing, jax_pair)
    if jax_failing:
        jax_checks, _ = _directional_checks(jax_pair, fd, dirs, value, error, usable, names, groups)
    report.checks.extend(jax_checks)
    if jax_failing:
        report.verdict = "inconclusive"
        k0 = jax_failing[0]
        d = dirs[k0]
        pinned, _, _ = bisect(forward, d, jax_pair.fails)
        where = (f"; pinned to {', '.join(element_name(p.tensor, p.index) for p in pinned)}" if pinned else "")
        report.notes.append(f"the oracles disagree: JAX vs {fd} along {len(jax_failing)} direction(s), first "
                            f"{d.label} (ratio {jax_pair.ratio(d, float(value[k0]), float(error[k0])):.3g})"
                            f"{where}; no verdict on the hand gradient")
        lap["compare"] = clock() - t0
        return report

    # 4. Hand vs JAX on every element, hand vs finite differences along every direction.
    checks, mismatches = _elementwise_checks(hand, jax_g, hand_budget, "hand vs JAX", keys)
    report.checks.extend(checks)
    report.mismatches.extend(mismatches)
    fd_checks, failing = _directional_checks(hand_pair, fd, dirs, value, error, usable, names, groups)
    failing = _recheck(forward, dirs, res.step, value, error, failing, hand_pair)
    fd_checks, _ = _directional_checks(hand_pair, fd, dirs, value, error, usable, names, groups)
    report.checks.extend(c for c in fd_checks if c.tensor in keys or c.tensor not in names)
    if failing:
        pinned, note = _pin(forward, dirs, failing, hand_pair, hand, jax_g, hand_budget, value, error)
        report.mismatches.extend(pinned)
        report.notes.append(note)
    if report.mismatches:
        report.verdict = "mismatch"
        seen: set[str] = set()
        unique = []
        for mm in report.mismatches:
            if mm.tensor not in seen:
                seen.add(mm.tensor)
                unique.append(mm)
        report.mismatches = [_in_users_names(mm, conv) for mm in unique]
        used = {"jax": {k: (hand_budget[k], None) for k in names if k in keys}}
        diagnose_report(net, {k: hand[k] for k in keys}, {"jax": {k: jax_g[k] for k in keys}}, used, params, X, Y,
                  conv, report)
        describe_for_user(params, X, Y, conv, report)
    n_kink = int(res.kink.sum())
    if n_kink:
        report.notes.append(f"{n_kink} direction(s) crossed a kink of an activation and were not used")
    coverage = _coverage(net, dirs, forward.evaluations)
    report.notes.append(coverage.sentence())
    lap["compare"] = clock() - t0
    return report


def _in_users_names(mm: Mismatch, conv: Any) -> Mismatch:
    """The mismatch with the user's name of its element beside the article's (as the referee's)."""
    label, user_tensor = user_names(mm.tensor, tuple(mm.index), conv)
    return dataclasses.replace(mm, label=label, user_tensor=user_tensor) if label else mm


def _recheck(forward: StackedForward, dirs: Sequence[Direction], steps: np.ndarray, value: np.ndarray,
             error: np.ndarray, failing: list[int], pair: _Pair) -> list[int]:
    """Re-derive the error of failing directions with the rigorous bound at their points; return
    those that still fail (beyond :data:`_RECHECK_LIMIT`, the rest are kept as failing)."""
    still = []
    for n, k in enumerate(failing):
        if n < _RECHECK_LIMIT:
            value[k], error[k] = forward.recheck(dirs[k], float(steps[k]))
            if not pair.fails(dirs[k], float(value[k]), float(error[k])):
                continue
        still.append(k)
    return still


def _pin(forward: StackedForward, dirs: Sequence[Direction], failing: list[int], pair: _Pair, hand: Params,
         jax_g: Params, budget: Mapping[str, np.ndarray], value: np.ndarray,
         error: np.ndarray) -> tuple[list[Mismatch], str]:
    """Name the elements behind failing directions: a one-element direction directly, others by
    bisection (most specific first: rows and columns before tensors and random directions).
    Returns the mismatches and a sentence saying how finite differences found them."""
    order = {"element": 0, "row": 1, "column": 1, "half": 2, "tensor": 3, "random": 4}
    ranked = sorted(failing, key=lambda k: order.get(dirs[k].kind, 5))
    out: list[Mismatch] = []
    for k in ranked[:_RECHECK_LIMIT]:
        d = dirs[k]
        if d.size == 1:
            (tensor, i, j, w), = d.elements()
            found = [(tensor, (i, j), float(value[k]) / w, float(error[k]) / abs(w))]
            path, spent = [d.label], 0
        else:
            leaves, path, spent = bisect(forward, d, pair.fails)
            found = [(p.tensor, p.index, p.fd, p.fd_error) for p in leaves]
        for tensor, idx, fd_value, fd_error in found:
            h = float(hand[tensor][idx])
            bud = float(budget[tensor][idx]) + fd_error
            ratio = abs(h - fd_value) / bud if bud > 0 else math.inf
            out.append(Mismatch("hand vs finite differences", tensor, idx, element_name(tensor, idx),
                                {"hand": h, "JAX": float(jax_g[tensor][idx]), "finite differences": fd_value},
                                bud, ratio, 1))
        if out:
            names = ", ".join(f"{m.element} (hand {m.values['hand']:.6g}, finite differences "
                              f"{m.values['finite differences']:.6g})" for m in out)
            return out, (f"finite differences, independently of JAX: {len(failing)} direction(s) disagree with "
                         f"the hand gradient; bisection {' -> '.join(path)} pinned {names} in {spent} further "
                         f"directional evaluations")
    d = dirs[ranked[0]]
    k = ranked[0]
    mm = Mismatch("hand vs finite differences", d.parts[0].tensor, (0, 0), f"{d.label} (not pinned to an element)",
                  {"hand": pair.difference(d, 0.0), "finite differences": float(value[k])},
                  pair.tolerance(d, float(error[k])), pair.ratio(d, float(value[k]), float(error[k])), len(failing))
    return [mm], (f"finite differences: {len(failing)} direction(s) disagree with the hand gradient, first "
                  f"{d.label}; bisection did not isolate single elements (the error is spread out)")


def _coverage(net: Network, dirs: Sequence[Direction], evaluations: int) -> Coverage:
    kinds: dict[str, int] = {}
    element_set: set[tuple[str, int, int]] = set()
    for d in dirs:
        kinds[d.kind] = kinds.get(d.kind, 0) + 1
        if d.size == 1:
            (tensor, i, j, _), = d.elements()
            element_set.add((tensor, i, j))
    return Coverage(net.n_params, net.n_params, len(element_set), kinds, evaluations)


# ---------------------------------------------------------------------------------------------
# Estimating a run before it starts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostModel:
    r"""Seconds per unit of work, measured on the reference machine (2 cores, one BLAS thread).

    ``mac``: one multiply-add of the stacked forwards; ``entry``: one activation entry evaluated
    through the shared definitions; ``direction``: Python overhead per direction; ``budget``: the
    error budget, per parameter and sample; ``jax_compile``: compiling JAX's grad once per
    architecture and batch bucket (plus ``jax_compile_per_param``); ``jax_run``: per parameter and
    padded sample; ``case``: fixed per case; ``fd_elementwise``: one perturbed point of the
    elementwise witness, per downstream multiply-add (the classic path); ``sympy_node``: SymPy per
    node of its derivative DAG (once per architecture).
    """

    mac: float = 2.7e-10
    entry: float = 4.6e-8
    direction: float = 5.9e-5
    budget: float = 2.5e-6
    jax_compile: float = 1.5
    jax_compile_per_param: float = 2.0e-6
    jax_run: float = 1.0e-8
    case: float = 0.042
    fd_elementwise: float = 6.0e-9
    sympy_node: float = 5.0e-5

    def scaled(self, factor: float) -> CostModel:
        """Every cost times ``factor`` (a machine ``factor`` times slower than the reference)."""
        return CostModel(**{k: v * factor for k, v in self.__dict__.items()})


COSTS = CostModel()
"""Fitted by ``scripts/bench_scale.py`` (``fit_costs``: mac and entry from micro-benchmarks, the rest by
non-negative least squares on the five sizes; within 15% of every measured scale-path case there,
within 2.5x for the elementwise path). Scale it to another machine with :func:`calibrate`."""

_REFERENCE_SECONDS = 0.10
"""The calibration workload's time (best of 7) on the reference machine, measured under the same
shared load as the fit of :data:`COSTS` (load average ~10 on 2 cores; an idle core runs it ~5x
faster, and :func:`calibrate` scales every cost down accordingly)."""


def calibrate(clock: Callable[[], float] = time.perf_counter, repeats: int = 3) -> CostModel:
    r"""Measure this machine against the reference one and return :data:`COSTS` scaled to it.

    The workload is a fixed stacked forward (a 256 x 256 matrix times 256 x 1024 columns, then a
    sigmoid on the result), timed ``repeats`` times with ``clock``; the best time over the
    reference machine's :data:`_REFERENCE_SECONDS` is the factor.
    """
    rng = np.random.default_rng(0)
    W = rng.standard_normal((256, 256))
    A = rng.standard_normal((256, 1024))
    best = math.inf
    for _ in range(repeats):
        start = clock()
        Z = W @ A
        _ = 0.5 * (1 + np.tanh(0.5 * Z))
        best = min(best, clock() - start)
    factor = max(best, 1e-9) / _REFERENCE_SECONDS
    return COSTS.scaled(factor)


def scale_work(sizes: Sequence[int], m: int, n_random: int = 2) -> dict[str, float]:
    """Units of work of one :func:`scale_referee` case, by :class:`CostModel` field: multiply-adds
    of the stacked forwards (``mac``), activation entries (``entry``), directions (``direction``),
    parameter-samples of the budget (``budget``) and of JAX's padded run (``jax_run``)."""
    L = len(sizes) - 1
    P = sum(sizes[l + 1] * (sizes[l] + 1) for l in range(L))
    cols = 6 * m  # six points per direction, m samples each

    def downstream(l: int) -> float:  # multiply-adds per column of the layers after layer l
        return float(sum(sizes[k + 1] * sizes[k] for k in range(l + 1, L)))

    def entries(l: int) -> float:  # activation entries per column from layer l on
        return float(sum(sizes[k + 1] for k in range(l, L)))

    macs = ents = 0.0
    n_dirs = 0
    for l in range(L):
        n_out, n_in = sizes[l + 1], sizes[l]
        row_like = 2 * n_out + max(n_out, n_in)  # W rows, B elements, the elementwise sample
        col_like = n_in + 1 + 2  # W columns, B's column, the two tensor directions
        # rows: the rank-one update of the next layer, then the full forward beyond it
        macs += row_like * cols * ((sizes[l + 2] if l + 1 < L else 0) + downstream(min(l + 1, L - 1)))
        ents += row_like * cols * (1 + entries(l + 1))
        macs += col_like * cols * (downstream(l) + n_out * m / cols * n_in)
        ents += col_like * cols * entries(l)
        n_dirs += row_like + col_like
    macs += n_random * cols * P
    return {"mac": macs, "entry": ents, "direction": float(n_dirs), "budget": float(P * m),
            "jax_run": float(P * max(8, 1 << (m - 1).bit_length())), "case": 1.0}


def _scale_case_seconds(sizes: Sequence[int], m: int, c: CostModel) -> float:
    """One case of :func:`scale_referee` (after JAX has compiled)."""
    return sum(getattr(c, k) * v for k, v in scale_work(sizes, m).items())


def _classic_case_seconds(sizes: Sequence[int], m: int, c: CostModel) -> float:
    """One case of the elementwise referee (finite differences per element, four points each)."""
    L = len(sizes) - 1
    P = sum(sizes[l + 1] * (sizes[l] + 1) for l in range(L))
    work = 0.0
    for l in range(L):
        per_point = sum(sizes[k + 1] * sizes[k] for k in range(l + 1, L)) + sizes[l + 1]
        work += sizes[l + 1] * (sizes[l] + 1) * 4 * m * per_point
    return c.fd_elementwise * work + c.budget * P * m + c.jax_run * P * 8 + c.case


def _n_params(sizes: Sequence[int]) -> int:
    return sum(sizes[l + 1] * (sizes[l] + 1) for l in range(len(sizes) - 1))


def _check_sizes(sizes: Sequence[int]) -> None:
    if len(sizes) < 2:
        raise ValueError(f"sizes must be at least two positive ints, got {sizes!r}")
    for i, n in enumerate(sizes):
        check_positive_int(f"sizes[{i}]", n)


def _chosen_path(sizes: Sequence[int], path: str) -> str:
    if path not in ("auto", "scale", "classic"):
        raise ValueError(f"path must be 'auto', 'scale' or 'classic', got {path!r}")
    return path if path != "auto" else ("scale" if _n_params(sizes) > SCALE_MIN_PARAMS else "classic")


def _once_seconds(sizes: Sequence[int], oracles: Sequence[str], c: CostModel) -> float:
    """The one-time costs of a run: JAX's compile, SymPy's derivation (declined above 600 parameters)."""
    P = _n_params(sizes)
    once = 0.0
    if "jax" in oracles:
        once += c.jax_compile + c.jax_compile_per_param * P
    if "sympy" in oracles and P <= 600:
        once += c.sympy_node * 40 * P  # about 40 DAG nodes per parameter (the oracle's cost model)
    return once


def _case_seconds(sizes: Sequence[int], m: int, chosen: str, c: CostModel) -> float:
    return _scale_case_seconds(sizes, m, c) if chosen == "scale" else _classic_case_seconds(sizes, m, c)


def estimate_seconds(sizes: Sequence[int], examples: int, m: int, oracles: Sequence[str] = ("jax", "fd"), *,
                     path: str = "auto", costs: CostModel | None = None) -> float:
    r"""Predicted wall time of certifying ``examples`` cases of ``sizes`` at batch ``m``.

    Args:
      sizes: layer widths ``(n0, ..., nL)``.
      examples: number of cases; m: the (largest) batch size drawn.
      oracles: the references used; ``"sympy"`` adds its one-time derivation (declined above 600
        parameters, as the SymPy oracle does), ``"jax"`` its compile once per architecture.
      path: ``"scale"`` (:func:`scale_referee`), ``"classic"`` (the elementwise referee) or
        ``"auto"`` (scale above :data:`SCALE_MIN_PARAMS` parameters).
      costs: seconds per unit of work; default :data:`COSTS` (the reference machine). Pass
        :func:`calibrate` ``()`` to adapt to this machine.

    Example:
      >>> round(estimate_seconds((2, 3, 3, 1), 30, 4), 2) < 1.0
      True
    """
    _check_sizes(sizes)
    check_positive_int("examples", examples)
    check_positive_int("m", m)
    chosen = _chosen_path(sizes, path)
    c = costs if costs is not None else COSTS
    return _once_seconds(sizes, oracles, c) + examples * _case_seconds(sizes, m, chosen, c)


def estimate_run_seconds(sizes: Sequence[int], batches: Mapping[int, float], oracles: Sequence[str] = ("jax", "fd"),
                         *, path: str = "auto", costs: CostModel | None = None) -> float:
    r"""Predicted wall time of a run whose cases have mixed batch sizes: ``batches`` maps a batch
    size m to the number of cases expected at it (a fraction is an expectation, as for
    hypothesis-drawn cases); the one-time costs are those of :func:`estimate_seconds`.

    ``certify_backward`` estimates its traps (their batch sizes are known) and its random draws
    (the case design's distribution of m, :func:`~handgrad.reference.cases.strategies.batch_size_distribution`)
    with it before any case runs.

    Example:
      >>> a = estimate_run_seconds((2, 3, 3, 1), {4: 30})
      >>> a == estimate_seconds((2, 3, 3, 1), 30, 4)
      True
    """
    _check_sizes(sizes)
    if not batches:
        raise ValueError("batches must map at least one batch size to a number of cases")
    for m, n in batches.items():
        check_positive_int("a batch size in batches", m)
        if not (isinstance(n, int | float) and not isinstance(n, bool) and math.isfinite(n) and n >= 0):
            raise ValueError(f"batches[{m}] must be a number of cases >= 0, got {n!r}")
    chosen = _chosen_path(sizes, path)
    c = costs if costs is not None else COSTS
    return _once_seconds(sizes, oracles, c) + sum(n * _case_seconds(sizes, m, chosen, c) for m, n in batches.items())


LONG_RUN_SECONDS = 60.0
"""Above this estimate, :func:`long_run_warning` returns a warning (the CLI asks for ``--yes``,
``certify_backward`` warns with :class:`LongRunWarning` unless ``expect_long=True``)."""


class LongRunWarning(UserWarning):
    """``certify_backward`` estimated its run above :data:`LONG_RUN_SECONDS` before starting it.

    The message states the estimate and how to silence it (``expect_long=True``, or fewer
    ``examples``); it is a warning, not a refusal: the run goes ahead."""


def long_run_warning(sizes: Sequence[int], examples: int, m: int, oracles: Sequence[str] = ("jax", "fd"), *,
                     threshold: float = LONG_RUN_SECONDS, costs: CostModel | None = None,
                     hint: str = "lower examples= or pass --yes to go ahead") -> str | None:
    """A sentence warning of a run estimated above ``threshold`` seconds, or None.

    For ``handgrad certify`` (print, then require ``--yes``; ``hint`` is the sentence's last clause);
    the estimate is :func:`estimate_seconds` with ``path="auto"``. ``certify_backward`` estimates its
    traps and draws with :func:`estimate_run_seconds` and warns with :class:`LongRunWarning`.
    """
    seconds = estimate_seconds(sizes, examples, m, oracles, costs=costs)
    if seconds <= threshold:
        return None
    per_case = (seconds - estimate_seconds(sizes, 1, m, oracles, costs=costs)) / max(examples - 1, 1)
    return (f"certifying {'-'.join(map(str, sizes))} over {examples} cases (batch up to {m}) is estimated at "
            f"{seconds:.0f} s ({per_case:.2g} s per case); {hint}")
