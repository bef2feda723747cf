r"""The optax oracle: each handgrad optimizer's trajectory, recomputed by optax.

optax (DeepMind's JAX optimizer library) is the independent implementation the optimizers of
:mod:`handgrad.optim` are certified against. For a handgrad optimizer ``opt`` (its ``name`` and
``hyperparams`` only are read; none of handgrad's optimizer code runs here),
:func:`optax_equivalent` builds optax's optimizer for the same rule, mapping the hyperparameters
where the two libraries' conventions differ:

=============  ==========================================  ===================================
handgrad       optax equivalent                            what differs, and the mapping
=============  ==========================================  ===================================
``gd``         ``sgd(lr)``                                 nothing
``momentum``   ``sgd(lr, momentum=beta)``                  handgrad keeps the velocity
                                                           :math:`v_t = \beta v_{t-1} - \alpha g_t`,
                                                           optax the trace :math:`m_t = g_t +
                                                           \beta m_{t-1}`; :math:`v_t = -\alpha m_t`,
                                                           same steps (constant :math:`\alpha`)
``nesterov``   ``sgd(lr, momentum=beta, nesterov=True)``   as above; both take the gradient at the
                                                           current point (not the look-ahead form)
``adagrad``    ``adagrad(lr, initial_accumulator_value=    initial accumulator 0 (optax's default
               G0, eps=eps)``                              0.1) is passed explicitly; eps inside
                                                           the root in both
``rmsprop``    ``rmsprop(lr, decay=rho, eps=eps,           handgrad adds eps outside the root,
               eps_in_sqrt=False)``                        optax's default inside
``adam``       ``adam(lr, b1, b2, eps)``                   nothing (``eps_root=0``)
``adamw``      ``adamw(lr, b1, b2, eps, weight_decay=wd)`` nothing: both scale the decay by lr
=============  ==========================================  ===================================

Speed. Every rule is elementwise, so the parameter dict is flattened in key order into one
vector, padded with zeros to a bucket of :data:`BUCKET` elements (a zero gradient on a zero
parameter gives a zero update under every rule, and padded entries are never compared), and the
whole trajectory is one jitted ``lax.scan`` with the hyperparameters as traced arguments: one
compilation per (optimizer, bucket, number of steps) instead of optax running op by op.

Scale of the comparison (what "relative" means for a trajectory). A parameter is a running sum
:math:`w_t = w_0 + \sum_s u_s` whose terms may cancel, and Adam's moment :math:`m_t` is itself a
sum of gradients that may cancel; an error relative to :math:`|w_t|` is then meaningless. The
natural scale is the *magnitude run*: the same optax optimizer fed :math:`|g_s|` (and
:math:`|w_{s-1}|` for weight decay), whose updates :math:`\bar u_s \ge 0` bound every term that
enters :math:`u_s` (traces and first moments of :math:`|g|` bound those of :math:`g`, second
moments are unchanged), and

.. math:: S_t = |w_0| + \sum_{s \le t} |\bar u_s| .

:func:`trajectory_tolerance` derives the rounding bound :math:`|w_t - \tilde w_t| \le
c\,u\,S_t` (:math:`u = 2^{-53}`) that two correct float64 implementations satisfy, and
:func:`certify_optimizer` checks handgrad against optax with it, step by step, for the params and
for each step's update (:math:`|u_t - \tilde u_t| \le c\,u\,(\bar u_t + \alpha\lambda S_{t-1})`, the
second term for AdamW's weight decay, which reads params that already differ).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from handgrad.notation import element_label  # noqa: E402
from handgrad.optim import Optimizer, apply_updates  # noqa: E402
from handgrad.validation import check_positive_int  # noqa: E402

from ..numerics import U64  # noqa: E402

__all__ = [
    "BUCKET",
    "OPTAX_EQUIVALENTS",
    "Mismatch",
    "OptaxTrajectory",
    "OptimizerReport",
    "certify_optimizer",
    "handgrad_trajectory",
    "optax_equivalent",
    "optax_trajectory",
    "trajectory_tolerance",
]

BUCKET = 64
"""Trajectories are padded to a multiple of this many elements (one compilation per bucket)."""

Hyper = Mapping[str, Any]

OPTAX_EQUIVALENTS: dict[str, Callable[[Hyper], optax.GradientTransformation]] = {
    "gd": lambda h: optax.sgd(h["learning_rate"]),
    "momentum": lambda h: optax.sgd(h["learning_rate"], momentum=h["beta"]),
    "nesterov": lambda h: optax.sgd(h["learning_rate"], momentum=h["beta"], nesterov=True),
    "adagrad": lambda h: optax.adagrad(h["learning_rate"], initial_accumulator_value=h["initial_accumulator"],
                                       eps=h["eps"]),
    "rmsprop": lambda h: optax.rmsprop(h["learning_rate"], decay=h["decay"], eps=h["eps"], eps_in_sqrt=False),
    "adam": lambda h: optax.adam(h["learning_rate"], b1=h["b1"], b2=h["b2"], eps=h["eps"]),
    "adamw": lambda h: optax.adamw(h["learning_rate"], b1=h["b1"], b2=h["b2"], eps=h["eps"],
                                   weight_decay=h["weight_decay"]),
}
"""handgrad optimizer name -> builder of the equivalent optax optimizer from its hyperparams."""

_NUMERIC = {"nesterov"}  # hyperparams that are not traced floats (none of the aliases has one)


def _check_optimizer(opt: object) -> Optimizer:
    if not isinstance(opt, Optimizer):
        raise TypeError(f"opt must be a handgrad.optim.Optimizer, got {type(opt).__name__}")
    if opt.name not in OPTAX_EQUIVALENTS:
        raise ValueError(f"no optax equivalent is known for optimizer {opt.name!r}; "
                         f"known: {sorted(OPTAX_EQUIVALENTS)}")
    return opt


def optax_equivalent(opt: Optimizer) -> optax.GradientTransformation:
    """optax's optimizer for the same update rule as ``opt``, hyperparameters mapped (table above).

    Example:
      >>> import handgrad as hg
      >>> tx = optax_equivalent(hg.optim.rmsprop(0.01, decay=0.9, eps=1e-8))
      >>> type(tx).__name__
      'GradientTransformationExtraArgs'
    """
    opt = _check_optimizer(opt)
    return OPTAX_EQUIVALENTS[opt.name](dict(opt.hyperparams))


# -- flattening ---------------------------------------------------------------------------------


def _layout(params: Mapping[str, np.ndarray]) -> tuple[list[str], list[tuple[int, ...]], int]:
    keys = list(params)
    shapes = [tuple(np.shape(params[k])) for k in keys]
    n = sum(int(np.prod(s)) for s in shapes)
    return keys, shapes, n


def _flatten(tree: Mapping[str, np.ndarray], keys: Sequence[str], npad: int) -> np.ndarray:
    flat = np.concatenate([np.asarray(tree[k], dtype=np.float64).ravel() for k in keys])
    return np.concatenate([flat, np.zeros(npad - flat.size)])


def _check_sequence(params0: Mapping[str, np.ndarray], grads: Sequence[Mapping[str, np.ndarray]]) -> None:
    if not isinstance(params0, Mapping) or not params0:
        raise TypeError(f"params0 must be a non-empty dict of arrays, got {type(params0).__name__}")
    if isinstance(grads, Mapping) or not isinstance(grads, Sequence) or len(grads) == 0:
        raise TypeError("grads must be a non-empty sequence (list) of gradient dicts, one per step")
    for t, g in enumerate(grads):
        if not isinstance(g, Mapping) or list(g) != list(params0):
            raise ValueError(f"grads[{t}] must be a dict with the keys of params0 in the same order "
                             f"{list(params0)}, got {list(g) if isinstance(g, Mapping) else type(g).__name__}")
        for k in params0:
            if np.shape(g[k]) != np.shape(params0[k]):
                raise ValueError(f"grads[{t}][{k!r}] has shape {np.shape(g[k])} but params0[{k!r}] has "
                                 f"shape {np.shape(params0[k])}")


# -- the jitted trajectory ----------------------------------------------------------------------


class OptaxTrajectory(NamedTuple):
    """optax's trajectory, flattened: row t of ``params`` is :math:`\\tilde w_t` (row 0 the start).

    Attributes:
      keys, shapes: the layout of the flat vectors (params in key order, each raveled in C order).
      params: (T+1, N) optax's parameters after each step.
      updates: (T, N) optax's update of each step.
      magnitude_updates: (T, N) the magnitude run's updates :math:`\\bar u_t \\ge 0`.
      scale: (T+1, N) :math:`S_t = |w_0| + \\sum_{s\\le t} \\bar u_s`.
    """

    keys: list[str]
    shapes: list[tuple[int, ...]]
    params: np.ndarray
    updates: np.ndarray
    magnitude_updates: np.ndarray
    scale: np.ndarray


@functools.lru_cache(maxsize=64)
def _compiled(name: str, hyper_names: tuple[str, ...], npad: int, steps: int) -> Callable[..., Any]:
    build = OPTAX_EQUIVALENTS[name]

    def run(hyper: tuple[Any, ...], p0: jax.Array, G: jax.Array) -> tuple[jax.Array, ...]:
        tx = build(dict(zip(hyper_names, hyper, strict=True)))

        def body(carry: tuple[Any, ...], g: jax.Array) -> tuple[tuple[Any, ...], tuple[jax.Array, ...]]:
            p, state, S, mstate = carry
            u, state = tx.update(g, state, p)
            ubar, mstate = tx.update(jnp.abs(g), mstate, jnp.abs(p))
            ubar = jnp.abs(ubar)
            p = optax.apply_updates(p, u)
            S = S + ubar
            return (p, state, S, mstate), (p, u, ubar, S)

        carry = (p0, tx.init(p0), jnp.abs(p0), tx.init(jnp.abs(p0)))
        _, (P, U, Ubar, S) = jax.lax.scan(body, carry, G)
        return P, U, Ubar, S

    return jax.jit(run)


def optax_trajectory(opt: Optimizer, params0: Mapping[str, np.ndarray],
                     grads: Sequence[Mapping[str, np.ndarray]]) -> OptaxTrajectory:
    r"""Run optax's equivalent of ``opt`` from ``params0`` on the gradient sequence ``grads``.

    Step t receives ``grads[t-1]`` regardless of the params (an open-loop trajectory: the same
    sequence is fed to handgrad by :func:`handgrad_trajectory`). Always float64.

    Example:
      >>> import numpy as np, handgrad as hg
      >>> tr = optax_trajectory(hg.optim.gd(0.5), {"w": np.array([1.0])}, [{"w": np.array([2.0])}])
      >>> tr.params[:, 0].tolist()
      [1.0, 0.0]
    """
    opt = _check_optimizer(opt)
    _check_sequence(params0, grads)
    keys, shapes, n = _layout(params0)
    npad = BUCKET * max(1, math.ceil(n / BUCKET))
    hyper_names = tuple(k for k in opt.hyperparams if k not in _NUMERIC)
    hyper = tuple(jnp.float64(opt.hyperparams[k]) for k in hyper_names)
    p0 = _flatten(params0, keys, npad)
    G = np.stack([_flatten(g, keys, npad) for g in grads])
    P, U, Ubar, S = _compiled(opt.name, hyper_names, npad, len(grads))(hyper, jnp.asarray(p0), jnp.asarray(G))
    P, U, Ubar, S = (np.asarray(a)[:, :n] for a in (P, U, Ubar, S))
    P = np.concatenate([p0[None, :n], P])
    S = np.concatenate([np.abs(p0[None, :n]), S])
    return OptaxTrajectory(keys, shapes, P, U, Ubar, S)


def handgrad_trajectory(opt: Optimizer, params0: Mapping[str, np.ndarray],
                        grads: Sequence[Mapping[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """handgrad's trajectory for the same open loop: ``(params (T+1, N), updates (T, N))``, flattened.

    Uses only the public API: ``opt.init``, ``opt.update`` and :func:`handgrad.optim.apply_updates`.
    """
    opt = _check_optimizer(opt)
    _check_sequence(params0, grads)
    keys, _, n = _layout(params0)
    p = {k: np.asarray(params0[k]) for k in keys}
    state = opt.init(p)
    P, U = [_flatten(p, keys, n)], []
    for g in grads:
        u, state = opt.update(g, state, p)
        p = apply_updates(p, u)
        U.append(_flatten(u, keys, n))
        P.append(_flatten(p, keys, n))
    return np.stack(P), np.stack(U)


# -- the tolerance and the certificate ----------------------------------------------------------


def trajectory_tolerance(opt: Optimizer, steps: int, *, pow_ulps: float = 1.0) -> float:
    r"""The relative bound :math:`c\,u` on :math:`|w_t - \tilde w_t| / S_t` after ``steps`` steps.

    Rounding model: each float64 operation has relative error at most :math:`u = 2^{-53}`; a
    quantity accumulated over :math:`k` steps by :math:`x_k = a x_{k-1} + b y_k` with
    :math:`a, b \ge 0` has absolute error at most :math:`\gamma_{k+2} \approx (k+2)u` times the
    same recursion run on :math:`|y|` (Higham, *Accuracy and Stability*, sec. 3.1). Both
    implementations obey it, so their difference is bounded by the sum of both bounds:

    * moments and traces: :math:`2(T + 2)` (the second moment enters through a square root,
      which halves its relative error; we do not claim the half);
    * the elementwise tail of a step (root, ``+ eps``, quotient, weight decay, times
      :math:`-\alpha`): at most 8 roundings per implementation, :math:`16`;
    * the parameter sums :math:`w_s = w_{s-1} + u_s`: one rounding of at most :math:`u|w_s| \le
      u S_s \le u S_t` per step and implementation, :math:`2T`;
    * Adam's bias corrections :math:`1-\beta^t` (handgrad: ``-expm1(t log beta)``, a few ulp;
      optax: ``1 - beta**t``): an error of ``pow_ulps`` ulp in :math:`\beta^t` becomes a
      relative error of :math:`\kappa = \beta^t/(1-\beta^t) \le \beta^2/(1-\beta^2)` ulp in the
      difference (:math:`t \ge 2`; at :math:`t = 1` optax's ``beta**1`` is exact). Per step:
      :math:`4 + \text{pow\_ulps}\,(\kappa_1 + \kappa_2/2)`, with :math:`\kappa_2` halved by the
      root. ``pow_ulps = 1`` is XLA's and glibc's accuracy for ``pow`` (tests/test_optim.py
      measures it against mpmath).

    A step's update error adds at most that per-step bound times :math:`\bar u_s`, and the
    :math:`\bar u_s` sum into :math:`S_t`. Weight decay feeds a parameter error back through
    :math:`u_s \ni -\alpha\lambda w_{s-1}`, a contraction by :math:`1 - \alpha\lambda` when
    :math:`\alpha\lambda \le 2`, so it adds nothing.

    For :math:`T \le 64` and :math:`\beta \le 0.999` the bound is below :math:`1.1 \times
    10^{-13}`, well inside the issue's :math:`10^{-12}`; it exceeds :math:`10^{-12}` only for
    :math:`\beta` within about :math:`1.5\times 10^{-4}` of 1, where optax's ``1 - beta**t`` itself
    loses that many digits.
    """
    opt = _check_optimizer(opt)
    check_positive_int("steps", steps)
    c = 2 * (steps + 2) + 16 + 2 * steps
    if "b1" in opt.hyperparams:
        def kappa(b: float) -> float:
            return b * b / (1.0 - b * b)

        c += 4 + pow_ulps * (kappa(opt.hyperparams["b1"]) + kappa(opt.hyperparams["b2"]) / 2)
    return c * U64


class Mismatch(NamedTuple):
    """One element where handgrad and optax disagree beyond the bound."""

    what: str  # "params" or "updates"
    step: int
    element: str
    handgrad: float
    optax: float
    bound: float


class OptimizerReport(NamedTuple):
    """The certificate of one trajectory: ``ok`` iff no mismatch; ``worst`` is max |diff|/scale."""

    optimizer: str
    steps: int
    rtol: float
    worst: float
    mismatches: list[Mismatch]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def message(self, limit: int = 5) -> str:
        """A readable account of the first mismatches (or of the success)."""
        head = (f"{self.optimizer}: handgrad vs optax over {self.steps} steps, bound {self.rtol:.3g} x scale, "
                f"worst {self.worst:.3g} x scale")
        if self.ok:
            return head + ": agree"
        lines = [head + f": {len(self.mismatches)} element(s) disagree"]
        for m in self.mismatches[:limit]:
            lines.append(f"  {m.what} after step {m.step}, {m.element}: handgrad {m.handgrad!r} vs optax "
                         f"{m.optax!r} (|diff| {abs(m.handgrad - m.optax):.3g} > {m.bound:.3g})")
        return "\n".join(lines)


def certify_optimizer(opt: Optimizer, params0: Mapping[str, np.ndarray],
                      grads: Sequence[Mapping[str, np.ndarray]], *, rtol: float | None = None) -> OptimizerReport:
    r"""Run ``opt`` (handgrad) and its optax equivalent on the same open-loop gradient sequence.

    Checks, for every step t and element: :math:`|w_t - \tilde w_t| \le r S_t` and
    :math:`|u_t - \tilde u_t| \le r (\bar u_t + \alpha\lambda S_{t-1})` with :math:`r` = ``rtol``
    (default :func:`trajectory_tolerance`); the second term is the parameter discrepancy that
    weight decay (:math:`\lambda`, AdamW only) feeds into the update. ``params0`` and ``grads``
    must be float64.

    Example:
      >>> import numpy as np, handgrad as hg
      >>> rng = np.random.default_rng(0)
      >>> p0 = {"W1": rng.standard_normal((2, 3))}
      >>> gs = [{"W1": rng.standard_normal((2, 3))} for _ in range(60)]
      >>> certify_optimizer(hg.optim.adam(0.1), p0, gs).ok
      True
    """
    opt = _check_optimizer(opt)
    for t, tree in enumerate([params0, *grads]):
        for k, v in tree.items():
            if not isinstance(v, np.ndarray) or v.dtype != np.float64:
                where = "params0" if t == 0 else f"grads[{t - 1}]"
                raise TypeError(f"{where}[{k!r}] must be a float64 numpy array (the certificate is float64)")
    r = trajectory_tolerance(opt, len(grads)) if rtol is None else float(rtol)
    oracle = optax_trajectory(opt, params0, grads)
    P, U = handgrad_trajectory(opt, params0, grads)
    labels = _labels(oracle.keys, oracle.shapes)
    mismatches: list[Mismatch] = []
    worst = 0.0
    # An update reads the params (weight decay), which already differ by up to r S_{t-1}: that
    # difference reaches the update times lr * weight_decay.
    feedback = opt.hyperparams.get("learning_rate", 0.0) * opt.hyperparams.get("weight_decay", 0.0)
    update_scale = oracle.magnitude_updates + feedback * oracle.scale[:-1]
    for what, ours, theirs, scale, offset in (("params", P, oracle.params, oracle.scale, 0),
                                              ("updates", U, oracle.updates, update_scale, 1)):
        diff = np.abs(ours - theirs)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(diff == 0, 0.0, diff / scale)
        worst = max(worst, float(np.max(ratio)))
        for t, e in zip(*np.nonzero(diff > r * scale), strict=True):
            mismatches.append(Mismatch(what, int(t) + offset, labels[e], float(ours[t, e]), float(theirs[t, e]),
                                       float(r * scale[t, e])))
    mismatches.sort(key=lambda m: m.step)
    return OptimizerReport(opt.name, len(grads), r, worst, mismatches)


def _labels(keys: Sequence[str], shapes: Sequence[tuple[int, ...]]) -> list[str]:
    out = []
    for k, s in zip(keys, shapes, strict=True):
        out.extend(element_label(k, tuple(int(i) for i in idx)) for idx in np.ndindex(*s))
    return out
