r"""Exact certificates, part 2: handgrad's backward pass equals the derivative of the composite loss.

**What is run.** handgrad's own code: ``net.forward_unchecked`` then ``net.backward_unchecked``
(the network's class is kept, so a subclass with a different backward is what gets certified),
on exact numbers instead of floats. Only the activations are swapped for *opaque* stand-ins: an
:class:`~handgrad.Activation` whose forward returns an opaque atom :math:`f_l(z)` and whose
derivative returns another opaque atom :math:`f_l'(z)`, unrelated to the first. Each activation's
own rule (:math:`f_l'` really is the derivative of :math:`f_l`) is proved separately by
:func:`handgrad.reference.proofs.prove_activation`; this part certifies the network code *for every choice
of activation functions and derivative rules at once*, which, combined with step 1, is the
statement we want.

**What it is compared with.** The derivative of the composite loss
:math:`L = \frac1m\sum_k \ell(f_L(W^{(L)} \cdots f_1(W^{(1)} x_k + B^{(1)}) \cdots + B^{(L)}), y_k)`,
built by this module's own forward pass (never handgrad's) and differentiated

* ``method="symbolic"``: by SymEngine's ``diff`` with :math:`f_l` an undefined function; each
  ``Subs(Derivative(f_l(\xi), \xi), \xi, z)`` the chain rule produces is read as the atom
  :math:`f_l'(z)`, and ``expand(hand - diff) == 0`` is a deterministic proof (both sides are
  polynomials in the parameters, inputs, labels and atoms; atoms with equal expanded arguments
  are the same atom).
* ``method="modular"``: by forward-mode differentiation (never the reverse recurrence): one
  tangent per pre-activation entry :math:`z^{(l)}_{ik}` pushed forward to the loss, then the chain
  rule at the affine map :math:`z^{(l)} = W^{(l)} a^{(l-1)} + B^{(l)}` (see :func:`_reference`),
  in exact arithmetic modulo the prime :data:`PRIME`
  :math:`= 2^{26} - 5`, at random points. This is an exact randomized identity test (next
  paragraphs).

**Randomized identity test.** Parameters, inputs and labels are drawn uniformly from
:math:`\mathbb F_p`. Every atom (:math:`f_l(u)`, :math:`f_l'(u)`, and the loss-head atoms below)
is a *lazily sampled random function* of its argument's value: the first time a value is queried
it gets a fresh uniform draw, later queries of the same value get the same draw (so handgrad's
forward and this module's forward see the same :math:`f_l(z)`, and a backward that evaluates
:math:`f'` at :math:`a` instead of :math:`z` sees different atoms). Both sides are then rational
functions of independent uniform variables, and a trial declares them equal when they agree mod
:math:`p` for every parameter.

*Error bound (Schwartz–Zippel).* If the hand gradient differs from the true one as a formal
expression, one trial misses it with probability at most

.. math::  \varepsilon = \frac{1}{p}\Big(D + \sum_{t} \binom{q_t}{2} e_t\Big),

where :math:`D` bounds the numerator degree of (hand :math:`-` reference) and :math:`q_t`, :math:`e_t`
are the number of queries to atom table :math:`t` and the degree of the difference of two of its
arguments. The first term is Schwartz–Zippel for the difference evaluated at a uniform point;
the sum bounds, by a union bound over pairs and Schwartz–Zippel again (layer by layer, so the
lower atoms are already uniform), the chance that two formally different arguments of the same
atom collide and so make the point non-uniform. Degrees are tracked during the run (each array
carries a bound on the degrees of its numerator and denominator), so the bound also covers a
buggy backward. A mismatch, on the other hand, is certain: a nonzero value proves a nonzero
expression. ``k`` independent trials miss with probability at most :math:`\prod_i \varepsilon_i`;
by default trials are added until that product is below :data:`ERROR_TARGET`. (A division by a
value that is 0 mod p ends a trial early and it is redrawn; it happens with probability at most
degree/p and does not affect soundness.)

*Why* :math:`p < 2^{26}`: see :mod:`handgrad.reference.proofs.modular` (no intermediate of the
int64 arithmetic ever exceeds :math:`2^{63}-1`).

**The loss head.** When the loss's hand-written gradient runs exactly (its code uses only
``+ - * /`` and ``==``: squared error), it is run as it is and the reference differentiates the
loss's *definition* with dual numbers. Otherwise (order comparisons, ``exp``/``log`` in the hand
code, or a fused rule such as sigmoid + bce) the head is opaque too: the loss gradient
:math:`\partial\ell/\partial\hat y` (or, for a fused rule, :math:`\partial\ell/\partial z^{(L)}`) becomes
an atom of the sample's column, and that rule is certified on its own by
:func:`~handgrad.reference.proofs.prove_loss` / :func:`~handgrad.reference.proofs.prove_fused_rule`. Vector-valued
activations (softmax) are opaque with an opaque Jacobian :math:`J(z)` per column, their ``vjp``
being :math:`J^T g` (proved for softmax by ``prove_activation``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from handgrad import FusedRule, Network
from handgrad.validation import check_positive_int

from .duals import _Dual, _DualOps
from .modular import (
    MATMUL_CHUNK,
    PRIME,
    ModArray,
    UnsupportedOperation,
    _deg_max,
    _mod,
    _Trial,
)
from .opaque import _failures, _no_definition, _opaque_activation, _opaque_loss, _swap
from .symbolic import SYMBOLIC_MAX_COST, _prove_symbolic, _symbolic_supported, symbolic_cost

__all__ = [
    "ERROR_TARGET",
    "MATMUL_CHUNK",
    "PRIME",
    "SYMBOLIC_MAX_COST",
    "ModArray",
    "NetworkProof",
    "UnsupportedOperation",
    "prove_network",
    "symbolic_cost",
]

ERROR_TARGET = 1e-12
"""Default: run trials until the probability of missing a wrong gradient is below this."""

_MAX_TRIALS = 64
_P = PRIME


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NetworkProof:
    r"""The outcome of :func:`prove_network`.

    Attributes:
      network: ``net.describe()``.
      ok: True when every parameter's gradient was shown equal to the true derivative. False when
        one was refuted (``failures``), and also when the modular bound reached 1, which certifies
        nothing even though the identity held at every point (``failures`` empty, ``detail`` says so).
      method: ``"symbolic"`` (deterministic) or ``"modular"`` (randomized, exact arithmetic).
      error_bound: probability that a wrong gradient passed (0.0 for ``"symbolic"``, and 0.0 for a
        failure, which is certain: a nonzero difference at a point proves a nonzero expression).
      first_failure: article name of the first parameter (in W1, B1, W2, ... order, row-major)
        whose identity fails, e.g. ``"w_12^(2)"``; None when ``ok``.
      failures: all failing parameters, same order.
      seconds: wall time.
      n_params, trials, batch: parameters certified, trials run, samples per trial (columns of X).
      head: how the loss entered the proof.
      relies_on: the local rules (proved by ``prove_activation``/``prove_loss``/``prove_fused_rule``)
        this certificate takes as given.
    """

    network: str
    ok: bool
    method: str
    error_bound: float
    first_failure: str | None
    failures: tuple[str, ...]
    seconds: float
    n_params: int
    trials: int
    batch: int
    head: str
    relies_on: tuple[str, ...]
    detail: str = ""

    def __str__(self) -> str:
        verdict = "PROVED" if self.ok else ("NOT DECIDED" if not self.failures else "FAILED")
        if self.method == "symbolic":
            how = "deterministic (SymEngine diff + expand)"
        elif self.ok:
            how = (f"exact randomized identity test mod {PRIME}, {self.trials} trial(s), "
                   f"P(wrong gradient passes) <= {self.error_bound:.1e}")
        elif not self.failures:
            how = (f"exact randomized identity test mod {PRIME}, {self.trials} trial(s): held at every point, "
                   f"but P(wrong gradient passes) <= {self.error_bound:.2g} bounds nothing")
        else:
            how = f"exact randomized identity test mod {PRIME}: refuted in trial {self.trials}, which is certain"
        lines = [f"{self.network}: {verdict} ({self.n_params} parameters, {self.seconds:.3f} s, {how})",
                 f"  loss head: {self.head}",
                 f"  relies on the local rules: {', '.join(self.relies_on)}"]
        if self.failures:
            shown = ", ".join(self.failures[:8]) + (" ..." if len(self.failures) > 8 else "")
            lines.append(f"  first failing parameter: {self.first_failure}; {len(self.failures)} failing: {shown}")
        if self.detail:
            lines.append(f"  {self.detail}")
        return "\n".join(lines)


def _relies_on(net: Network, head: str) -> tuple[str, ...]:
    rules = [f"{a.name}'" if a.elementwise else f"{a.name} vjp" for a in net.activations]
    if head == "fused":
        rules.append(f"fused {net.loss.name}+{net.activations[-1].name} delta")
    elif head == "opaque":
        rules.append(f"{net.loss.name} gradient")
    return tuple(dict.fromkeys(rules))


_HEAD_TEXT = {
    "exact": "the loss's hand gradient run exactly; the reference differentiates its definition",
    "opaque": "opaque (its hand gradient is certified by prove_loss)",
    "fused": "opaque fused rule (its delta is certified by prove_fused_rule)",
}


# ---------------------------------------------------------------------------------------------
# Modular method
# ---------------------------------------------------------------------------------------------

def _head_kind(net: Network, rng: np.random.Generator, m: int) -> str:
    """"fused", "exact" (hand loss gradient and definition both run mod p) or "opaque"."""
    if net.fused_rule is not None:
        return "fused"
    n = net.sizes[-1]
    trial = _Trial(rng, net.sizes)
    yhat = _mod(rng.integers(0, _P, (n, m)), (1, 0))
    y = _mod(rng.integers(0, _P, (n, m)), (1, 0))
    try:
        g = net.loss.grad(yhat, y)
        ok = isinstance(g, ModArray) and g.shape == (n, m)
        out = net.loss.definition(_Dual(yhat, _mod(np.ones((1, n, m)), (0, 0))), y, _DualOps(trial))
        ok = ok and isinstance(out, _Dual) and out.v.shape == (1, m)
    except Exception:  # any failure of this probe of the loss alone means: opaque head
        ok = False
    return "exact" if ok else "opaque"


def _modular_trial(net: Network, head: str, rng: np.random.Generator, m: int) -> tuple[list[str], float]:
    """Run one trial; return (failing parameter names, epsilon of this trial)."""
    sizes = net.sizes
    trial = _Trial(rng, sizes)
    acts = []
    for l, act in enumerate(net.activations, start=1):
        if act.elementwise:
            acts.append(_opaque_activation(
                act, l, lambda z, l=l: trial.f(l, z), lambda z, a, l=l: trial.fprime(l, z), None))
        else:
            def vjp(z: ModArray, a: Any, g: ModArray, l: int = l) -> ModArray:
                jt = np.swapaxes(trial.jacobian(l, z), 1, 2)                # (m, n, n): J^T
                gc = np.moveaxis(g, 1, 0)[..., None]                         # (m, n, 1)
                return np.moveaxis((jt @ gc)[..., 0], 0, 1)                  # (n, m)
            acts.append(_opaque_activation(act, l, lambda z, l=l: trial.vec_f(l, z), None, vjp))
    if head == "fused":
        rule = FusedRule(_no_definition, _no_definition, lambda z, a, y: trial.head_grad(z, y))
        loss = _opaque_loss(net.loss, None, {acts[-1].name: rule})
    elif head == "opaque":
        loss = _opaque_loss(net.loss, lambda yhat, y: trial.head_grad(yhat, y), {})
    else:
        loss = net.loss
    onet = _swap(net, acts, loss)

    params = {name: _mod(rng.integers(0, _P, shape), (1, 0)) for name, shape in net.param_shapes.items()}
    X = _mod(rng.integers(0, _P, (sizes[0], m)), (1, 0))
    Y = _mod(rng.integers(0, _P, (sizes[-1], m)), (1, 0))

    hand = onet.backward_unchecked(params, onet.forward_unchecked(params, X), Y)
    ref = _reference(net, trial, head, params, X, Y, m)

    degree = 0
    for name in net.param_names:
        h, r = hand.get(name), ref[name]
        hd = h.deg if isinstance(h, ModArray) else (0, 0)
        degree = max(degree, hd[0] + r.deg[1], r.deg[0] + hd[1])

    def equal(h: Any, r: ModArray) -> np.ndarray:
        if not isinstance(h, ModArray):
            return np.zeros(np.shape(r), dtype=bool)  # the hand code left exact arithmetic
        return h.view(np.ndarray) % _P == r.view(np.ndarray)

    return _failures(net, hand, ref, equal), trial.epsilon(degree)


def _act_tangent(local: ModArray, t: ModArray) -> ModArray:
    """d a^(l) from d z^(l) (tangents (P, n, m)) given the layer's local derivative atoms:
    f'(z) of shape (n, m) for an elementwise activation, Jacobians (m, n, n) otherwise."""
    if local.ndim == 2:
        return local * t
    tc = np.moveaxis(t, 2, 1)[..., None]                           # (P, m, n, 1)
    return np.moveaxis((local[None] @ tc)[..., 0], 1, 2)           # (P, n, m)


_TANGENT_CHUNK = 4096
"""Tangents pushed forward together (bounds the memory of one batch of tangents)."""


def _reference(net: Network, trial: _Trial, head: str, params: dict[str, ModArray], X: ModArray,
               Y: ModArray, m: int) -> dict[str, ModArray]:
    r"""Forward mode through this module's own forward pass, then the chain rule at each affine map.

    For each layer :math:`l`, one tangent per pre-activation entry :math:`z^{(l)}_{ik}` (unit i,
    sample k) is pushed forward through the layers above it to the loss, giving
    :math:`\partial L/\partial z^{(l)}_{ik}` (:func:`_pre_activation_gradient`). A parameter of layer
    :math:`l` enters :math:`L` only through :math:`z^{(l)} = W^{(l)} a^{(l-1)} + B^{(l)}`, whose row i
    alone depends on :math:`w_{ij}` and :math:`b_i`, with :math:`\partial z_{ik}/\partial w_{ij} = a_{jk}`
    and :math:`\partial z_{ik}/\partial b_i = 1`; so
    :math:`\partial L/\partial w_{ij} = \sum_k \partial L/\partial z_{ik}\, a_{jk}` and
    :math:`\partial L/\partial b_i = \sum_k \partial L/\partial z_{ik}`. These are the same numbers as
    one tangent per parameter (the seed of :math:`w_{ij}` is :math:`\sum_k a_{jk}` times the seed of
    :math:`z_{ik}`, and tangents are linear in their seed), for :math:`n_l m` tangents per layer
    instead of :math:`n_l n_{l-1}`. Nothing is passed backward between layers: no :math:`W^T`, no
    :math:`\delta` recurrence.
    """
    depth = net.depth
    a, z, local = [X], [], []
    for l in range(1, depth + 1):
        z.append(params[f"W{l}"] @ a[-1] + params[f"B{l}"])
        act = net.activations[l - 1]
        a.append(trial.f(l, z[-1]) if act.elementwise else trial.vec_f(l, z[-1]))
        # queried once per layer: every tangent uses the same atoms f_l'(z) (or J_l(z))
        if l < depth or head != "fused":
            local.append(trial.fprime(l, z[-1]) if act.elementwise else trial.jacobian(l, z[-1]))
    g_out = None
    if head == "fused":
        g_out = trial.head_grad(z[-1], Y)
    elif head == "opaque":
        g_out = trial.head_grad(a[-1], Y)

    def loss_tangent(t: ModArray) -> ModArray:
        """dL for tangents t = d z^(L), shape (P, nL, m) -> (P,)."""
        if head == "fused":
            return (g_out * t).sum(axis=(1, 2)) / m
        da = _act_tangent(local[depth - 1], t)
        if head == "opaque":
            return (g_out * da).sum(axis=(1, 2)) / m
        ell = net.loss.definition(_Dual(a[-1], da), Y, _DualOps(trial))
        return ell.t.sum(axis=(1, 2)) / m

    grads: dict[str, ModArray] = {}
    for l0 in range(1, depth + 1):
        dz = _pre_activation_gradient(l0, net.sizes[l0], m, params, local, loss_tangent, depth)
        grads[f"W{l0}"] = dz @ a[l0 - 1].T
        grads[f"B{l0}"] = dz.sum(axis=1, keepdims=True)
    return grads


def _pre_activation_gradient(l0: int, n: int, m: int, params: dict[str, ModArray], local: list[ModArray],
                             loss_tangent: Callable[[ModArray], ModArray], depth: int) -> ModArray:
    r""":math:`\partial L/\partial z^{(l_0)}`, shape (n, m): the unit tangent of each entry (i, k) of
    :math:`z^{(l_0)}` pushed forward, :math:`dz^{(l+1)} = W^{(l+1)} (f_l'(z^{(l)}) \odot dz^{(l)})`,
    up to the loss, in batches of :data:`_TANGENT_CHUNK` tangents."""
    count = n * m
    parts = []
    for s in range(0, count, _TANGENT_CHUNK):
        idx = np.arange(s, min(count, s + _TANGENT_CHUNK))
        seed = np.zeros((idx.size, n, m), dtype=np.int64)
        seed[np.arange(idx.size), idx // m, idx % m] = 1
        t = _mod(seed, (0, 0))
        for l in range(l0, depth):
            t = params[f"W{l + 1}"] @ _act_tangent(local[l - 1], t)
        parts.append(loss_tangent(t))
    flat = parts[0] if len(parts) == 1 else _mod(np.concatenate([p.view(np.ndarray) for p in parts]),
                                                 _deg_max(*(p.deg for p in parts)))
    return flat.reshape(n, m)


def _prove_modular(net: Network, trials: int | None, seed: int, batch: int) -> tuple[
        bool, list[str], float, int, str]:
    rng = np.random.default_rng(seed)
    head = _head_kind(net, rng, batch)
    bound, done, redraws = 1.0, 0, 0
    failures: list[str] = []
    while True:
        try:
            failures, eps = _modular_trial(net, head, rng, batch)
        except ZeroDivisionError:
            redraws += 1
            if redraws > 8:
                raise
            continue
        done += 1
        bound *= min(1.0, eps)
        if failures:
            break
        if trials is not None and done >= trials:
            break
        if trials is None and (bound <= ERROR_TARGET or done >= _MAX_TRIALS or eps >= 1.0):
            break  # eps >= 1: further trials cannot lower the bound (see _target_note)
    return not failures, failures, bound, done, head


def _target_note(bound: float, trials: int | None) -> str:
    """A sentence when the default run stopped above :data:`ERROR_TARGET` (empty otherwise)."""
    if trials is not None or bound <= ERROR_TARGET:
        return ""
    if bound >= 1.0:
        return ("error target not reached: at this width one trial's bound is >= 1 (the collision term "
                "C(q, 2) e / p grows with the square of the atom queries per layer), so this run certifies nothing; "
                "the identity held at every point tried")
    return f"error target {ERROR_TARGET:g} not reached within {_MAX_TRIALS} trials"

# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------

def prove_network(
    net: Network,
    *,
    method: str = "auto",
    trials: int | None = None,
    seed: int = 0,
    batch: int = 2,
) -> NetworkProof:
    r"""Certify ``net``'s backward pass against the derivative of the composite loss, exactly.

    Every :math:`\partial L/\partial w_{ij}^{(l)}` and :math:`\partial L/\partial b_i^{(l)}` that
    ``net.backward_unchecked`` computes (on ``net.forward_unchecked``'s cache, with opaque
    activations, see the module docstring) is compared with the true derivative of
    :math:`L = \frac1m\sum_{k=1}^m \ell(\hat y_k, y_k)` over a batch of ``batch`` samples.

    Args:
      net: the network; its class is kept, so a subclass's ``backward_unchecked`` is what is proved.
      method: ``"symbolic"`` (deterministic, SymEngine), ``"modular"`` (exact randomized identity
        test) or ``"auto"`` (symbolic when it applies and :func:`symbolic_cost` is at most
        :data:`SYMBOLIC_MAX_COST`, modular otherwise).
      trials: modular trials to run; ``None`` runs until the miss probability is below
        :data:`ERROR_TARGET`. Ignored by the symbolic method.
      seed: seed of the modular method's random points and atoms.
      batch: samples per batch, :math:`m \ge 1` (2 by default, so that a bias gradient not summed
        over the batch or a missing :math:`1/m` is caught).

    Returns:
      A :class:`NetworkProof` (``.ok``, ``.method``, ``.error_bound``, ``.first_failure``, ...).

    Example:
      >>> import handgrad as hg
      >>> print(prove_network(hg.article_network()).ok)
      True
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a handgrad.Network, got {type(net).__name__}")
    if method not in ("auto", "symbolic", "modular"):
        raise ValueError(f"method must be 'auto', 'symbolic' or 'modular', got {method!r}")
    if trials is not None:
        check_positive_int("trials", trials)
    check_positive_int("seed", seed, minimum=0)
    check_positive_int("batch", batch)
    start = time.perf_counter()
    reason = _symbolic_supported(net)
    if method == "symbolic" and reason is not None:
        raise ValueError(f"method='symbolic' does not support {net.describe()}: {reason}; use method='modular'")
    symbolic = method == "symbolic" or (method == "auto" and reason is None
                                        and symbolic_cost(net) <= SYMBOLIC_MAX_COST)
    detail = "" if reason is None or method != "auto" else f"modular because of {reason}"
    if symbolic:
        ok, failures = _prove_symbolic(net, int(batch))
        head, bound, done = "exact", 0.0, 1
    else:
        ok, failures, bound, done, head = _prove_modular(net, trials, int(seed), int(batch))
        if not ok:
            bound = 0.0
        elif bound >= 1.0:  # the identity held at every point, but the bound certifies nothing
            ok = False
        detail = "; ".join(d for d in (detail, _target_note(bound, trials)) if d)
    return NetworkProof(
        network=net.describe(), ok=ok, method="symbolic" if symbolic else "modular",
        error_bound=bound, first_failure=failures[0] if failures else None, failures=tuple(failures),
        seconds=time.perf_counter() - start, n_params=net.n_params, trials=done, batch=int(batch),
        head=_HEAD_TEXT[head], relies_on=_relies_on(net, head), detail=detail)
