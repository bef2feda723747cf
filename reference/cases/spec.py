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
=============  ====  ==================================================================

Domain filter (applied by :func:`build_case`, documented so it cannot hide a bug): a draw is
rejected (``hypothesis.assume``) when a pre-activation exceeds :data:`Z_MAX` = 300 in magnitude --
the shared definitions are evaluated naively by the JAX and SymPy oracles and overflow beyond
~709 (handgrad's own stability up to 1e4 is tested separately) -- or when an unfused loss on
probabilities would see a prediction within 1e-9 of 0 or 1, where that loss is infinite by
definition (the fused rules cover saturation).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import handgrad as hg
from handgrad import NUMPY_OPS, Network, Params

from .architecture import Architecture

__all__ = ["SCALES", "Z_MAX", "CaseSpec", "build_case", "in_domain"]

SCALES: dict[str, float] = {"small": 0.3, "unit": 1.0, "large": 4.0, "saturating": 30.0}
Z_MAX = 300.0


class CaseSpec(NamedTuple):
    """Everything that determines a case; ``build_case`` turns it into arrays."""

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    fuse: bool
    m: int
    scale: str
    seed: int

    @property
    def architecture(self) -> Architecture:
        return Architecture(self.sizes, self.activations, self.loss, self.fuse)

    def network(self) -> Network:
        return self.architecture.network()

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


def build_case(spec: CaseSpec, dtype: str | type = "float64",
               *, filter_domain: bool = True) -> tuple[Network, Params, np.ndarray, np.ndarray]:
    """Arrays for ``spec`` (deterministic). With ``filter_domain`` it calls ``hypothesis.assume``
    to reject draws outside the oracles' domain (see the module docstring)."""
    net = spec.network()
    rng = np.random.default_rng(spec.seed)
    s = SCALES[spec.scale]
    params = net.init(rng, weight_scale=None, bias_scale=0.0)
    for l in range(1, net.depth + 1):
        n_in = net.sizes[l - 1]
        params[f"W{l}"] = rng.standard_normal(net.param_shapes[f"W{l}"]) * (s / np.sqrt(n_in))
        params[f"B{l}"] = rng.standard_normal(net.param_shapes[f"B{l}"]) * (s / 2)
    X = rng.standard_normal((net.sizes[0], spec.m))
    Y = _labels(net.loss, net.sizes[-1], spec.m, rng)
    dt = np.dtype(dtype)
    params = {k: v.astype(dt) for k, v in params.items()}
    X, Y = X.astype(dt), Y.astype(dt)
    if filter_domain:
        from hypothesis import assume  # only inside a hypothesis test: the spec itself needs no hypothesis

        assume(in_domain(net, params, X))
    return net, params, X, Y


def in_domain(net: Network, params: Params, X: np.ndarray) -> bool:
    """True when every |z| <= Z_MAX and, for an unfused probability loss, predictions are not
    within 1e-9 of 0 or 1 (computed from the shared definitions in float64)."""
    a = X.astype(np.float64)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        for l, act in enumerate(net.activations, start=1):
            z = params[f"W{l}"].astype(np.float64) @ a + params[f"B{l}"].astype(np.float64)
            if not np.all(np.abs(z) <= Z_MAX):
                return False
            a = np.asarray(act.definition(z, NUMPY_OPS), dtype=np.float64)
    if net.fused_rule is None and net.loss.prediction_range == (0.0, 1.0):
        return bool(np.all((a > 1e-9) & (a < 1 - 1e-9)))
    return bool(np.all(np.isfinite(a)))
