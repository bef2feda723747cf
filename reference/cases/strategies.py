r"""Hypothesis strategies: architectures, parameters at several scales, batches, whole cases.

Each strategy is a small factory with keyword-only bounds, validated before anything is drawn.
A *case* is drawn as a :class:`CaseSpec` -- a handful of small numbers (sizes, activation and loss
names, batch size, scale, a numpy seed) -- and turned into arrays by :func:`build_case`
deterministically. Hypothesis therefore shrinks the numbers (narrower layers, smaller batches,
seed towards 0), and every case is reproducible from its spec alone::

    net, params, X, Y = build_case(CaseSpec((3, 3, 1), ("tanh", "sigmoid"), "bce", True, 2, "unit", 7))

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

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import handgrad as hg
from handgrad import NUMPY_OPS, Network, Params

from .architecture import Architecture
from .pools import fits_output

__all__ = [
    "SCALES",
    "Z_MAX",
    "Architecture",
    "CaseSpec",
    "examples",
    "activation_names",
    "loss_names",
    "architectures",
    "case_specs",
    "build_case",
    "cases",
    "in_domain",
]

_MULTIPLIER = {"ci": 1, "random": 1, "thorough": 10}

SCALES: dict[str, float] = {"small": 0.3, "unit": 1.0, "large": 4.0, "saturating": 30.0}
Z_MAX = 300.0


def examples(n: int) -> int:
    """``n`` examples under the default (ci) hypothesis profile, 10x under HANDGRAD_PROFILE=thorough."""
    return n * _MULTIPLIER.get(os.environ.get("HANDGRAD_PROFILE", "ci"), 1)


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


def _check_range(name_min: str, lo: int, name_max: str, hi: int, floor: int) -> None:
    for name, v in ((name_min, lo), (name_max, hi)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if lo < floor:
        raise ValueError(f"{name_min} must be >= {floor}, got {lo}")
    if hi < lo:
        raise ValueError(f"{name_max} must be >= {name_min} ({lo}), got {hi}")


def activation_names(*, exclude: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """Registered activation names (read when drawn, so later registrations are included)."""
    return st.deferred(lambda: st.sampled_from([n for n in hg.activation_names() if n not in exclude]))


def loss_names(*, exclude: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """Registered loss names."""
    return st.deferred(lambda: st.sampled_from([n for n in hg.loss_names() if n not in exclude]))


@st.composite
def architectures(
    draw: st.DrawFn,
    *,
    min_depth: int = 1,
    max_depth: int = 5,
    min_width: int = 1,
    max_width: int = 8,
    activations: Sequence[str] | None = None,
    losses: Sequence[str] | None = None,
    square: float = 0.3,
) -> Architecture:
    """An :class:`Architecture` ``(sizes, activations, loss, fuse)``. With probability ``square`` every width is equal
    (square layers hide transposition bugs). The last activation is drawn compatible with the loss
    (probability losses get sigmoid/softmax, fused or not)."""
    _check_range("min_depth", min_depth, "max_depth", max_depth, 1)
    _check_range("min_width", min_width, "max_width", max_width, 1)
    if not 0 <= square <= 1:
        raise ValueError(f"square must be a probability in [0, 1], got {square}")
    acts_pool = list(activations) if activations is not None else hg.activation_names()
    loss_pool = list(losses) if losses is not None else hg.loss_names()
    for a in acts_pool:
        hg.get_activation(a)
    for lo in loss_pool:
        hg.get_loss(lo)
    depth = draw(st.integers(min_depth, max_depth))
    if draw(st.floats(0, 1)) < square:
        w = draw(st.integers(max(min_width, 2), max(max_width, 2)))
        sizes = (w,) * (depth + 1)
    else:
        sizes = tuple(draw(st.integers(min_width, max_width)) for _ in range(depth + 1))
    loss = hg.get_loss(draw(st.sampled_from(loss_pool)))
    fuse = draw(st.booleans())
    hidden = tuple(draw(st.sampled_from(acts_pool)) for _ in range(depth - 1))
    last_pool = [a for a in acts_pool if fits_output(loss, a, fuse)]
    assume(last_pool)
    last = draw(st.sampled_from(last_pool))
    return Architecture(sizes, (*hidden, last), loss.name, fuse)


@st.composite
def case_specs(
    draw: st.DrawFn,
    arch: st.SearchStrategy[Architecture] | None = None,
    *,
    min_batch: int = 1,
    max_batch: int = 8,
    scales: Sequence[str] = tuple(SCALES),
) -> CaseSpec:
    """A :class:`CaseSpec`: an architecture drawn from ``arch`` (default :func:`architectures`;
    plain ``(sizes, activations, loss, fuse)`` tuples are accepted), a batch size (sometimes equal
    to a layer width), a scale and a seed."""
    _check_range("min_batch", min_batch, "max_batch", max_batch, 1)
    for s in scales:
        if s not in SCALES:
            raise ValueError(f"unknown scale {s!r}; choose from {list(SCALES)}")
    sizes, acts, loss, fuse = Architecture(*draw(arch if arch is not None else architectures()))
    widths_in_range = [w for w in sizes if min_batch <= w <= max_batch]
    if widths_in_range and draw(st.integers(0, 3)) == 0:
        m = draw(st.sampled_from(widths_in_range))  # m equal to a layer width: another transposition trap
    else:
        m = draw(st.integers(min_batch, max_batch))
    return CaseSpec(sizes, acts, loss, fuse, m, draw(st.sampled_from(list(scales))),
                    draw(st.integers(0, 2**32 - 1)))


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


def cases(arch: st.SearchStrategy | None = None, *, dtype: str = "float64", min_batch: int = 1,
          max_batch: int = 8, scales: Sequence[str] = tuple(SCALES)) -> st.SearchStrategy:
    """``(spec, net, params, X, Y)`` tuples, domain-filtered."""
    return case_specs(arch, min_batch=min_batch, max_batch=max_batch, scales=scales).map(
        lambda spec: (spec, *build_case(spec, dtype)))
