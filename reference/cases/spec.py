r"""A case: the handful of small numbers that determine it (:class:`CaseSpec`) and the arrays they
make (:func:`build_case`, deterministic), with the scales and the domain filter.

The hypothesis strategies that draw specs live in :mod:`handgrad.reference.cases.strategies`.

Scales (weights are drawn as :math:`\mathcal N(0, (s/\sqrt{n_{l-1}})^2)`, biases
:math:`\mathcal N(0, (s/2)^2)`, inputs :math:`\mathcal N(0, 1)`):

=============  ====  ==================================================================
scale          s     typical :math:`|z|`
=============  ====  ==================================================================
``small``      0.3   0.3: near-linear regime
``unit``       1     1
``large``      4     4: curvature matters
``saturating`` 30    30: sigmoid/tanh saturate (|z| > 20); the hand derivatives must stay
                     accurate where :math:`a(1-a)` would cancel
``near_saturating``  4, then rescaled layer by layer so that max :math:`|z|` lands in [8, 20]
=============  ====  ==================================================================

The case design (issue 10) adds fields to :class:`CaseSpec`, all with defaults that keep an old
spec building the same arrays: ``labels`` (a label family, :data:`LABEL_KINDS`; ``"mixed"`` is
the historical mix), ``x_scale`` (X drawn as :math:`\mathcal N(0, x\_scale^2)`), ``x_zeros``
(about a quarter of X set to exact zeros), ``duplicate`` (the last sample a copy of the first),
``dyadic`` (first layer and X small multiples of 1/4, the first-layer biases chosen so that every
unit sits exactly on its activation's kink for one sample: exact in any binary dtype),
``kink_layer`` (l >= 2: one unit of layer l exactly on its kink, the forward below it exact and
off every kink, :func:`_kink_in_layer`; left out of the repr while 0, so older specs keep their
recipes and their ``numpy_seed``), ``rescale``
(each layer's W and B scaled down so that :math:`|z| \le` :data:`Z_SAFE`, and the output layer of
an unfused probability loss so that predictions keep away from 0 and 1: saturating draws are
brought *into* the oracles' domain instead of rejected) and ``trap`` (the name of the explicit
case it is, empty for a random draw).

Domain filter (applied by :func:`build_case`, documented so it cannot hide a bug): a draw is
rejected (``hypothesis.assume``) when a pre-activation exceeds :data:`Z_MAX` = 300 in magnitude --
the shared definitions are evaluated naively by the JAX and SymPy oracles and overflow beyond
~709 (handgrad's own stability up to 1e4 is tested separately) -- or when an unfused loss on
probabilities would see a prediction within 1e-9 of 0 or 1, where that loss is infinite by
definition (the fused rules cover saturation), or within twice its forward error bound in the
case's dtype (float32: about 1e-5; docs/tolerances.md section 10).
"""

from __future__ import annotations

import math
import zlib
from typing import NamedTuple

import numpy as np

import handgrad as hg
from handgrad import NUMPY_OPS, Network, Params

from .architecture import Architecture

__all__ = ["LABEL_KINDS", "PREDICTION_MARGIN_64", "SCALES", "SOFTMAX_FLOOR_32", "Z_MAX", "Z_SAFE", "CaseSpec",
           "build_case", "in_domain", "label_kinds"]

SCALES: dict[str, float] = {"small": 0.3, "unit": 1.0, "large": 4.0, "saturating": 30.0,
                            "near_saturating": 4.0}
Z_MAX = 300.0
Z_SAFE = 250.0
"""A rescaled layer's largest |z| (inside :data:`Z_MAX` with room for rounding)."""
NEAR_SATURATING_BAND = (8.0, 20.0)

LABEL_KINDS: dict[str, tuple[str, ...]] = {
    "unit": ("hard", "soft"),
    "distribution": ("onehot", "soft", "unnormalized"),
    "real": ("real",),
}
"""Label families per ``Loss.target_kind``: ``hard`` exact 0/1, ``soft`` strictly inside (0, 1)
(a distribution for the cross entropies), ``onehot``, ``unnormalized`` (non-negative entries not
summing to 1, which the cross entropies' definition admits), ``real`` N(0, 1)."""


def label_kinds(loss: str | hg.Loss) -> tuple[str, ...]:
    """The label families a loss admits (:data:`LABEL_KINDS` by its ``target_kind``)."""
    return LABEL_KINDS[hg.get_loss(loss).target_kind]


class CaseSpec(NamedTuple):
    """Everything that determines a case; ``build_case`` turns it into arrays."""

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    fuse: bool
    m: int
    scale: str
    seed: int
    labels: str = "mixed"
    x_scale: float = 1.0
    x_zeros: bool = False
    duplicate: bool = False
    dyadic: bool = False
    rescale: bool = False
    trap: str = ""
    kink_layer: int = 0

    def __repr__(self) -> str:
        """The NamedTuple repr, without ``kink_layer`` while it is 0 (older specs' recipes and
        :attr:`numpy_seed` stay what they were)."""
        fields = self._fields if self.kink_layer else self._fields[:-1]
        return f"CaseSpec({', '.join(f'{f}={getattr(self, f)!r}' for f in fields)})"

    @property
    def architecture(self) -> Architecture:
        return Architecture(self.sizes, self.activations, self.loss, self.fuse)

    def network(self) -> Network:
        return self.architecture.network()

    @property
    def numpy_seed(self) -> int:
        """The seed of the global ``np.random`` while a backward runs on this case: derived from the
        whole spec (crc32 of its repr), so two cases that share ``seed`` still get different streams."""
        return zlib.crc32(repr(self).encode("utf-8"))

    def reproduce(self, dtype: str = "float64") -> str:
        return f"handgrad.reference.build_case({self!r}, dtype='{dtype}', filter_domain=False)"


def _labels(loss: hg.Loss, n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    if loss.target_kind == "unit":
        y = rng.uniform(0, 1, (n, m))
        hard = rng.uniform(size=(n, m)) < 0.3  # some exact 0/1 labels, as in classification
        y[hard] = np.round(y[hard])
        return y
    if loss.target_kind == "distribution":
        if rng.uniform() < 0.5:
            return np.eye(n)[:, rng.integers(0, n, m)]
        return rng.dirichlet(np.ones(n), m).T
    return rng.standard_normal((n, m))


def _label_family(kind: str, loss: hg.Loss, n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Labels of one family (:data:`LABEL_KINDS`); ``ValueError`` naming it when the loss does not admit it."""
    allowed = LABEL_KINDS[loss.target_kind]
    if kind not in allowed:
        raise ValueError(f"labels {kind!r} do not fit loss {loss.name!r}; choose from {list(allowed)}")
    if kind == "real":
        return rng.standard_normal((n, m))
    if kind == "hard":
        return rng.integers(0, 2, (n, m)).astype(np.float64)
    if kind == "onehot":
        return np.eye(n)[:, rng.integers(0, n, m)]
    if kind == "unnormalized":
        y = rng.uniform(0, 2, (n, m))
        y[rng.uniform(size=(n, m)) < 0.25] = 0.0
        return y
    if loss.target_kind == "distribution":
        return rng.dirichlet(np.ones(n), m).T
    return rng.uniform(0.02, 0.98, (n, m))


def _dyadic_first_layer(net: Network, params: Params, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """W1 and X become multiples of 1/4 in [-1, 1]; B1[i] puts unit i exactly on its activation's
    first kink for sample ``i mod m`` (every product and sum is exact in float32 and float64)."""
    kinks = net.activations[0].kinks
    W = rng.integers(-4, 5, net.param_shapes["W1"]) / 4.0
    X = rng.integers(-4, 5, X.shape) / 4.0
    m = X.shape[1]
    X = _distinct_columns(X, rng)
    for i in range(W.shape[0]):
        W[i] = _untied_row(W[i], X, i % m, rng, 4)
    z = W @ X
    k = float(kinks[0]) if kinks else 0.0
    B = np.array([[k - z[i, i % m]] for i in range(W.shape[0])])
    params["W1"], params["B1"] = W, B
    return X


_TRIES = 64


def _distinct_columns(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Redraw (multiples of 1/4) the columns of X that repeat an earlier one, so that no two
    samples put a unit on its kink together (a repeat is left after :data:`_TRIES` redraws: too
    few distinct columns exist). Nothing is drawn when no column repeats."""
    for s in range(1, X.shape[1]):
        for _ in range(_TRIES):
            if not any(np.array_equal(X[:, s], X[:, t]) for t in range(s)):
                break
            X[:, s] = rng.integers(-4, 5, X.shape[0]) / 4.0
    return X


def _untied_row(w: np.ndarray, a: np.ndarray, target: int, rng: np.random.Generator, high: int,
                allowed: np.ndarray | None = None) -> np.ndarray:
    r"""A weight row (multiples of 1/4 in [-high/4, high/4], 0 outside ``allowed``) whose product
    with ``a`` at sample ``target`` differs from every other sample's: the bias that puts the unit
    on its kink for ``target`` then leaves it off the kink everywhere else. Why: a perturbation that
    moves one unit across its kink in two samples at once can have a convention derivative outside
    both one-sided quotients (the two samples may sit on opposite sides), so the finite-difference
    witness would refuse a correct backward. ``w`` is returned unchanged (nothing drawn) when it
    has no tie."""
    keep = np.ones(w.shape, dtype=bool) if allowed is None else allowed
    w = np.where(keep, w, 0.0)
    for _ in range(_TRIES):
        p = w @ a
        if np.sum(p == p[target]) == 1:
            break
        w = np.where(keep, rng.integers(-high, high + 1, w.shape) / 4.0, 0.0)
    return w


def _kink_in_layer(net: Network, params: Params, X: np.ndarray, layer: int,
                   rng: np.random.Generator) -> np.ndarray:
    r"""The deep-kink family (``kink_layer``, issue 10 item 4): exactly one pre-activation of layer
    ``layer`` (>= 2) exactly on its activation's kink, computed exactly in float32 and float64;
    no other unit of the case on a kink.

    Below it, X and the weights are small multiples of 1/4 (``W`` in [-1/2, 1/2] from layer 2)
    and every bias an *odd* multiple of half the granularity of :math:`W a` (:math:`2^{-(g+3)}` when
    :math:`a` is a multiple of :math:`2^{-g}`), so every pre-activation below is an odd multiple of
    it: exact and never 0. In ``layer``, unit :math:`i^*` (the one whose outgoing weights are
    largest) gets the bias :math:`k - (Wa)_{i^*s^*}` for the first sample :math:`s^*` with an input
    computed exactly, its weights from inputs that are not exact there (leaky relu, elu below 0)
    held at 0 while they are redrawn to untie :math:`s^*` from the other samples; its other units
    are kept off the kink as below. (A sample without any exact input cannot be singled out: with
    none in the case, every weight of the row is 0 and every sample sits on the kink, which the
    finite differences then leave to SymPy and JAX.) The layers above keep their random draw.

    Why one unit: finite differences are the independent witness at a kink, and a perturbation
    that moves two kinked units at once (two layers, or two samples) can have a derivative by the
    chain rule with relu'(0) = 0 that is *neither* one-sided quotient (relu(t) - relu(-t) = t gets 0
    at t = 0): a correct backward would be refused. With one kinked unit the convention's value is
    the one-sided quotient on the side where z <= 0, as the referee's kink bracket expects.
    """
    X = _distinct_columns(rng.integers(-4, 5, X.shape) / 4.0, rng)
    a, g = X, 2
    exact = np.ones(X.shape, dtype=bool)
    act = net.activations[layer - 1]
    for l in range(1, layer + 1):
        high = 4 if l == 1 else 2
        W = rng.integers(-high, high + 1, net.param_shapes[f"W{l}"]) / 4.0
        step = 2.0 ** -(g + 3)
        B = (2 * rng.integers(-2 ** (g + 2), 2 ** (g + 2), (W.shape[0], 1)) + 1) * step
        if l == layer:
            above = net.param_shapes.get(f"W{l + 1}")
            target = int(np.argmax(np.abs(params[f"W{l + 1}"]).sum(axis=0))) if above else 0
            # The sample put on the kink: the first with an exactly computed input (with none, the
            # row would be all zeros and every sample on the kink at once).
            s_star = next((s for s in range(a.shape[1]) if exact[:, s].any()), 0)
            W[target] = _untied_row(W[target], a, s_star, rng, high, allowed=exact[:, s_star])
            k = float(act.kinks[0]) if act.kinks else 0.0
            B[target, 0] = k - float((W @ a)[target, s_star])
        params[f"W{l}"], params[f"B{l}"] = W, B
        z = W @ a + B
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            a = np.asarray(net.activations[l - 1].definition(z, NUMPY_OPS), dtype=np.float64)
        exact = np.all((W == 0)[:, :, None] | exact[None, :, :], axis=1) & ((a == z) | (a == 0))
        g += 3
    return X


SOFTMAX_FLOOR_32 = 1e-3
"""The smallest prediction a rescaled float32 softmax output of an unfused probability loss keeps
(:func:`_cap`): fifty times the ~2e-5 below which a float32 prediction is outside the domain."""


def _cap(net: Network, layer: int, dtype: np.dtype) -> float:
    """The largest |z| a rescaled layer keeps: :data:`Z_SAFE`, or for the output of an unfused
    probability loss a value whose prediction stays well away from 0 and 1 in ``dtype``.

    For a softmax output over n units, :math:`|z| \\le c` gives every prediction at least
    :math:`e^{-2c}/n`. In float64, c = 9 keeps that above the 1e-9 margin up to n = 15; in
    float32 c is at most 7 and at most :math:`\\tfrac12\\ln(1/(n \\cdot` :data:`SOFTMAX_FLOOR_32`
    :math:`))`: with c = 7, a float32 softmax over 6 to 8 units put a prediction below the float32
    margin (about 2e-5) in all four draws of a trap, and the certificate was refused for that trap
    (three of the 60 architectures of ``scripts/check_batched.py --seed 20261210``)."""
    if layer == net.depth and net.fused_rule is None and net.loss.prediction_range == (0.0, 1.0):
        elementwise = net.activations[-1].elementwise
        if dtype != np.float64:
            n = net.sizes[-1]
            return 7.0 if elementwise else min(7.0, 0.5 * math.log(1.0 / (n * SOFTMAX_FLOOR_32)))
        return 19.0 if elementwise else 9.0
    return Z_SAFE


def _rescale(net: Network, params: Params, X: np.ndarray, spec: CaseSpec, dtype: np.dtype,
             rng: np.random.Generator) -> None:
    """Scale each layer's W and B (in place, layer by layer) so that max|z| is in the
    near-saturating band (scale ``near_saturating``) or at most the layer's cap (``rescale``)."""
    a = X
    for l, act in enumerate(net.activations, start=1):
        W, B = params[f"W{l}"], params[f"B{l}"]
        top = float(np.abs(W @ a + B).max()) if a.size else 0.0
        cap = _cap(net, l, dtype)
        target = None
        if spec.scale == "near_saturating":
            lo, hi = NEAR_SATURATING_BAND
            target = min(rng.uniform(lo, hi), cap)
        elif top > cap:
            target = cap
        if target is not None and top > 0:
            params[f"W{l}"], params[f"B{l}"] = W * (target / top), B * (target / top)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            a = np.asarray(act.definition(params[f"W{l}"] @ a + params[f"B{l}"], NUMPY_OPS), dtype=np.float64)


def build_case(spec: CaseSpec, dtype: str | type = "float64",
               *, filter_domain: bool = True) -> tuple[Network, Params, np.ndarray, np.ndarray]:
    """Arrays for ``spec`` (deterministic). With ``filter_domain`` a draw outside the oracles'
    domain (see the module docstring) is rejected: ``hypothesis.assume`` inside a hypothesis test,
    ``ValueError`` outside one (no hypothesis call, so no deprecation warning)."""
    net = spec.network()
    rng = np.random.default_rng(spec.seed)
    s = SCALES[spec.scale]
    # The historical draw first consumed a net.init(rng) it then replaced: the same normals, drawn
    # and dropped in one call (a Generator fills any size one normal after another, so its stream
    # is where net.init left it; tests/test_case_design.py holds it).
    rng.standard_normal(net.n_params)
    params: Params = {}
    shapes = net.param_shapes
    for l in range(1, net.depth + 1):
        n_in = net.sizes[l - 1]
        params[f"W{l}"] = rng.standard_normal(shapes[f"W{l}"]) * (s / np.sqrt(n_in))
        params[f"B{l}"] = rng.standard_normal(shapes[f"B{l}"]) * (s / 2)
    X = rng.standard_normal((net.sizes[0], spec.m))
    if spec.labels == "mixed":
        Y = _labels(net.loss, net.sizes[-1], spec.m, rng)
    else:
        Y = _label_family(spec.labels, net.loss, net.sizes[-1], spec.m, rng)
    dt = np.dtype(dtype)
    X = _shape_inputs(net, params, X, Y, spec, dt)
    params = {k: v.astype(dt) for k, v in params.items()}
    X, Y = X.astype(dt), Y.astype(dt)
    if filter_domain and not in_domain(net, params, X):
        from hypothesis import assume  # only inside a hypothesis test: the spec itself needs no hypothesis
        from hypothesis.control import currently_in_test_context

        if not currently_in_test_context():
            raise ValueError(f"spec {spec!r} is outside the oracles' domain in {dt} (a |z| above {Z_MAX:g}, "
                             f"or a prediction within {PREDICTION_MARGIN_64:g} of 0 or 1 -- or within its "
                             "forward error bound in that dtype -- for an unfused probability loss); pass "
                             "filter_domain=False to build it anyway")
        assume(False)
    return net, params, X, Y


def _shape_inputs(net: Network, params: Params, X: np.ndarray, Y: np.ndarray, spec: CaseSpec,
                  dt: np.dtype) -> np.ndarray:
    """The design fields after the historical draw (their own generator, so a spec with the
    defaults builds exactly what it always built); ``params`` and ``Y`` are changed in place."""
    extra = np.random.default_rng([spec.seed, 10])
    X = X * spec.x_scale
    if spec.dyadic:
        X = _dyadic_first_layer(net, params, X, extra)
    if spec.kink_layer >= 2:
        X = _kink_in_layer(net, params, X, spec.kink_layer, extra)
    if spec.x_zeros:
        zero = extra.uniform(size=X.shape) < 0.25
        zero.flat[extra.integers(0, X.size)] = True
        X = np.where(zero, 0.0, X)
    if spec.duplicate and spec.m >= 2:
        X[:, -1] = X[:, 0]
        Y[:, -1] = Y[:, 0]
    if spec.rescale or spec.scale == "near_saturating":
        _rescale(net, params, X, spec, dt, extra)
    return X


PREDICTION_MARGIN_64 = 1e-9
"""How close to 0 or 1 the float64 oracles let a prediction of an unfused probability loss come."""


def in_domain(net: Network, params: Params, X: np.ndarray) -> bool:
    """True when every |z| <= Z_MAX and, for an unfused probability loss, predictions are not
    within :data:`PREDICTION_MARGIN_64` of 0 or 1 (computed from the shared definitions in float64:
    the float64 oracles' margin) nor within twice their forward error bound *in the params' dtype*
    (:func:`handgrad.reference.judge.tolerance.prediction_in_domain`: about 1e-5 in float32, where
    a correct forward may round a prediction onto 1; below 1e-13 in float64, where 1e-9 binds)."""
    if not _float64_domain(net, params, X):
        return False
    from ..judge.tolerance import prediction_in_domain

    return prediction_in_domain(net, params, X)


def _float64_domain(net: Network, params: Params, X: np.ndarray) -> bool:
    """The float64 oracles' domain: every |z| <= Z_MAX, predictions finite and, for an unfused
    probability loss, farther than :data:`PREDICTION_MARGIN_64` from 0 and 1."""
    a = X.astype(np.float64)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        for l, act in enumerate(net.activations, start=1):
            z = params[f"W{l}"].astype(np.float64) @ a + params[f"B{l}"].astype(np.float64)
            if not (np.abs(z) <= Z_MAX).all():
                return False
            a = np.asarray(act.definition(z, NUMPY_OPS), dtype=np.float64)
    if net.fused_rule is None and net.loss.prediction_range == (0.0, 1.0):
        return bool(((a > PREDICTION_MARGIN_64) & (a < 1 - PREDICTION_MARGIN_64)).all())
    return bool(np.isfinite(a).all())
