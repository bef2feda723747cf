r"""Trap cases: the explicit cases ``certify_backward`` always runs before its random draws.

Random draws find bugs by luck; a trap is a case built where a realistic bug hides, so that the
certificate never depends on hypothesis drawing it. For one architecture the traps are:

* **batch sizes** m = 1 and 2, every layer width (input and output included: a batch axis
  confused with a unit axis only shows when they have the same length), and 9, 11, 17, 33 (code
  that works in blocks or chunks of 8 samples must run past its first block);
* **duplicated samples** (the last column a copy of the first: deduplication, ``np.unique``);
* **exact zeros in X** and **X at scales 0.1 and 10** (not only :math:`\mathcal N(0, 1)`);
* **a kink met on purpose** when the first activation has one (the dyadic family of
  :func:`handgrad.reference.cases.spec.build_case`: every first-layer unit exactly on its kink for
  one sample, computed exactly, so the kink convention is checked), and **one per deeper kinked
  layer** an exact forward reaches (``kink_layer``: one unit of that layer exactly on its kink,
  everything below exact and off the kinks; the budget proves the exactness unit by unit,
  ``Budget.exactly_computed``, so the convention decides it instead of a mask);
* **square layers** (with ``vary_shapes``: every hidden width equal to the input width).

The requested weight scales and label families are dealt round-robin over the traps, so each of
them is met by at least one trap (extra traps are added when there are more of them than traps).
Every trap is rescaled into the oracles' domain (``rescale=True``) except the dyadic one, which
is kept exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import handgrad as hg

from .architecture import Architecture
from .spec import CaseSpec

__all__ = ["PAST_FIRST_BLOCK", "trap_seed", "trap_specs"]

PAST_FIRST_BLOCK = (9, 11, 17, 33)
"""Batch sizes past a first block of 8 (one more, odd, two blocks and one, four blocks and one)."""


def trap_seed(seed: int, index: int, attempt: int = 0) -> int:
    """The numpy seed of trap ``index`` (``attempt`` > 0: a redraw after an undecided case)."""
    return (seed * 1_000_003 + index * 7919 + attempt * 104_729) % 2**32


def _batch_traps(sizes: Sequence[int], min_batch: int, max_batch: int) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for m in sorted({1, 2, *sizes, *PAST_FIRST_BLOCK}):
        if min_batch <= m <= max_batch:
            why = "a layer width" if m in sizes else ("past a block of 8" if m > 8 else "tiny batch")
            out.append((f"m = {m} ({why})", m))
    return out


def trap_specs(arch: Architecture, *, seed: int = 0, scales: Sequence[str] = ("unit",),
               labels: Sequence[str] = ("mixed",), min_batch: int = 1, max_batch: int = 33,
               square: Architecture | None = None) -> list[CaseSpec]:
    """The trap cases for ``arch`` (module docstring), each with its name in ``CaseSpec.trap``."""
    if not scales:
        raise ValueError("scales must name at least one scale")
    if not labels:
        raise ValueError("labels must name at least one label family")
    arch = Architecture(*arch)
    m_mid = min(max(5, min_batch), max_batch)
    plan: list[tuple[str, Architecture, int, dict]] = [(n, arch, m, {}) for n, m in _batch_traps(arch.sizes, min_batch,
                                                                                                  max_batch)]
    if max_batch >= 2:
        plan.append(("duplicated samples", arch, max(m_mid, 2), {"duplicate": True}))
    plan += [("exact zeros in X", arch, m_mid, {"x_zeros": True}),
             ("X at scale 0.1", arch, m_mid, {"x_scale": 0.1}),
             ("X at scale 10", arch, m_mid, {"x_scale": 10.0})]
    if square is not None:
        plan.append(("square layers", Architecture(*square), m_mid, {}))
    i = len(plan)
    while i < max(len(scales), len(labels)):
        plan.append((f"extra draw {i + 1}", arch, m_mid, {}))
        i += 1
    specs = []
    for i, (name, a, m, extra) in enumerate(plan):
        specs.append(CaseSpec(a.sizes, a.activations, a.loss, a.fuse, m, scales[i % len(scales)],
                              trap_seed(seed, i), labels=labels[i % len(labels)], rescale=True,
                              trap=name, **extra))
    calm = "unit" if "unit" in scales else next((s for s in scales if s != "near_saturating"), "unit")
    if hg.get_activation(arch.activations[0]).kinks:
        specs.append(CaseSpec(arch.sizes, arch.activations, arch.loss, arch.fuse, m_mid, calm,
                              trap_seed(seed, len(plan)), labels=labels[len(plan) % len(labels)],
                              dyadic=True, trap=f"{arch.activations[0]} exactly at its kink (dyadic)"))
    for layer in _reachable_kinked_layers(arch.activations):
        i = len(plan) + layer
        specs.append(CaseSpec(arch.sizes, arch.activations, arch.loss, arch.fuse, m_mid, calm,
                              trap_seed(seed, i), labels=labels[i % len(labels)], kink_layer=layer,
                              trap=f"{arch.activations[layer - 1]} exactly at its kink in layer {layer} (dyadic)"))
    return specs


def _reachable_kinked_layers(activations: Sequence[str]) -> list[int]:
    """The kinked layers l >= 2 that an exact (dyadic) forward reaches: every activation below
    them is the identity or kinked (relu-like: exact where it returns z or 0)."""
    out = []
    for l, name in enumerate(activations, start=1):
        act = hg.get_activation(name)
        if act.kinks and l >= 2:
            out.append(l)
        if not act.kinks and act.name != "identity":
            break
    return out
