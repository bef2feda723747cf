r"""Hypothesis strategies: architectures, parameters at several scales, batches, whole cases.

Each strategy is a small factory with keyword-only bounds, validated before anything is drawn.
A *case* is drawn as a :class:`CaseSpec` -- a handful of small numbers (sizes, activation and loss
names, batch size, scale, a numpy seed) -- and turned into arrays by :func:`build_case`
deterministically. Hypothesis therefore shrinks the numbers (narrower layers, smaller batches,
seed towards 0), and every case is reproducible from its spec alone::

    net, params, X, Y = build_case(CaseSpec((3, 3, 1), ("tanh", "sigmoid"), "bce", True, 2, "unit", 7))

The spec, the scales and the domain filter are :mod:`handgrad.reference.cases.spec`.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from functools import cache, lru_cache

from hypothesis import assume
from hypothesis import strategies as st

import handgrad as hg
from handgrad.validation import check_positive_int

from .architecture import Architecture
from .pools import fits_output
from .spec import SCALES, Z_MAX, CaseSpec, build_case, in_domain, label_kinds

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
    "design_specs",
    "batch_size_distribution",
    "build_case",
    "cases",
    "in_domain",
]

_MULTIPLIER = {"ci": 1, "random": 1, "thorough": 10}



def examples(n: int) -> int:
    """``n`` examples under the default (ci) hypothesis profile, 10x under HANDGRAD_PROFILE=thorough."""
    return n * _MULTIPLIER.get(os.environ.get("HANDGRAD_PROFILE", "ci"), 1)


def _check_range(name_min: str, lo: int, name_max: str, hi: int, floor: int) -> None:
    """``floor <= lo <= hi``, both ints (``TypeError``/``ValueError`` naming the argument)."""
    check_positive_int(name_min, lo, minimum=floor)
    check_positive_int(name_max, hi, minimum=lo)


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


_PAST_FIRST_BLOCK = (9, 11, 17, 33)


@lru_cache(maxsize=256)
def _sampled(values: tuple[Hashable, ...]) -> st.SearchStrategy:
    """``st.sampled_from(values)``, one strategy object per tuple of values: hypothesis computes
    properties of every new strategy object it draws from (~0.5 ms each), which made building them
    anew on every draw a fifth of the cost of a certified case on the article's net. The same
    values give the same draws either way."""
    return st.sampled_from(values)


@lru_cache(maxsize=64)
def _integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    """``st.integers(lo, hi)``, one strategy object per bounds (see :func:`_sampled`)."""
    return st.integers(lo, hi)


def _batch_pools(sizes: Sequence[int], min_batch: int, max_batch: int) -> tuple[list[list[int]], list[int]]:
    """The pools of m the case design draws from and their weights (:func:`_batch_sizes`); an empty
    pool falls back to the small one."""
    def fit(ms: Sequence[int]) -> list[int]:
        return sorted({m for m in ms if min_batch <= m <= max_batch})

    small = fit(range(min_batch, min(max_batch, 8) + 1)) or [min_batch]
    pools = [small, fit(sizes), fit((1, 2)), fit(_PAST_FIRST_BLOCK), fit(range(9, 18))]
    return [p or small for p in pools], [4, 2, 2, 1, 1]


def _batch_sizes(draw: st.DrawFn, sizes: Sequence[int], min_batch: int, max_batch: int) -> int:
    """m aimed at bugs: up to 8 (4 in 10), a layer width (2 in 10), 1 or 2 (2 in 10), past a block
    of 8: 9, 11, 17, 33 (1 in 10) or 9..17 (1 in 10), always within [min_batch, max_batch]."""
    # sampled_from, not integers: hypothesis draws integers near their lower bound far more often
    # than uniformly, which made m = 1 a quarter of all cases.
    kinds, pools = _batch_strategies(tuple(sizes), min_batch, max_batch)
    return draw(pools[draw(kinds)])


@cache
def _batch_strategies(sizes: tuple[int, ...], min_batch: int,
                      max_batch: int) -> tuple[st.SearchStrategy[int], tuple[st.SearchStrategy[int], ...]]:
    """:func:`_batch_sizes`' strategies for an architecture's widths and batch range, built once (each
    a :func:`_sampled` of the same values as before: the same draws)."""
    pools, weights = _batch_pools(sizes, min_batch, max_batch)
    return (_sampled(tuple(i for i, w in enumerate(weights) for _ in range(w))),
            tuple(_sampled(tuple(pool)) for pool in pools))


def batch_size_distribution(sizes: Sequence[int], *, min_batch: int = 1, max_batch: int = 33) -> dict[int, float]:
    r"""The probability of each batch size m in :func:`design_specs`'s draws (pool weight times
    uniform choice within the pool; sums to 1), for estimating a run before it starts."""
    _check_range("min_batch", min_batch, "max_batch", max_batch, 1)
    pools, weights = _batch_pools(sizes, min_batch, max_batch)
    total = sum(weights)
    out: dict[int, float] = {}
    for pool, w in zip(pools, weights, strict=True):
        for m in pool:
            out[m] = out.get(m, 0.0) + w / total / len(pool)
    return out


@st.composite
def design_specs(
    draw: st.DrawFn,
    arch: st.SearchStrategy[Architecture],
    *,
    min_batch: int = 1,
    max_batch: int = 33,
    scales: Sequence[str] = tuple(SCALES),
    labels: Sequence[str] | None = None,
) -> CaseSpec:
    """A :class:`CaseSpec` from the case design that aims at bugs (``certify_backward``'s random
    draws): m from :func:`_batch_sizes`, X at scale 0.1, 1 or 10, sometimes exact zeros in X or
    a duplicated sample, a label family from ``labels`` (default: every family the loss admits),
    and every draw rescaled into the oracles' domain (``rescale=True``) instead of rejected."""
    _check_range("min_batch", min_batch, "max_batch", max_batch, 1)
    sizes, acts, loss, fuse = Architecture(*draw(arch))
    kinds = list(labels) if labels is not None else ["mixed", *label_kinds(loss)]
    m = _batch_sizes(draw, sizes, min_batch, max_batch)
    x_scale = draw(_sampled((1.0, 1.0, 1.0, 0.1, 10.0)))
    x_zeros = draw(_integers(0, 7)) == 0
    duplicate = m >= 2 and draw(_integers(0, 7)) == 0
    return CaseSpec(sizes, acts, loss, fuse, m, draw(_sampled(tuple(scales))),
                    draw(_integers(0, 2**32 - 1)), labels=draw(_sampled(tuple(kinds))), x_scale=x_scale,
                    x_zeros=x_zeros, duplicate=duplicate, rescale=True)


def cases(arch: st.SearchStrategy | None = None, *, dtype: str = "float64", min_batch: int = 1,
          max_batch: int = 8, scales: Sequence[str] = tuple(SCALES)) -> st.SearchStrategy:
    """``(spec, net, params, X, Y)`` tuples, domain-filtered."""
    return case_specs(arch, min_batch=min_batch, max_batch=max_batch, scales=scales).map(
        lambda spec: (spec, *build_case(spec, dtype)))
