"""The referee's fast paths (issue 12, throughput) compute exactly what the plain ones do."""

from __future__ import annotations

import numpy as np
import pytest
from handgrad.reference.judge.referee import _compare, _compare_tensors

SHAPES = [(3, 2), (3, 1), (4, 3), (4, 1), (1, 4), (1, 1)]
KEYS = ["W1", "B1", "W2", "B2", "W3", "B3"]


def _draw(rng: np.random.Generator, special: bool) -> tuple[list, list, list, list]:
    hands, refs, buds, masks = [], [], [], []
    for sh in SHAPES:
        ref = rng.standard_normal(sh)
        hand = (ref + rng.standard_normal(sh) * 10.0 ** rng.integers(-16, 0)).astype(
            rng.choice([np.float32, np.float64]))
        bud = np.abs(rng.standard_normal(sh)) * 10.0 ** rng.integers(-14, -1)
        if special:  # ties, NaN, inf and exact agreement: where argmax and max are easy to get wrong
            flat = hand.reshape(-1)
            i = rng.integers(flat.size)
            flat[i] = rng.choice([np.nan, np.inf, -np.inf, float(ref.reshape(-1)[i])])
            if ref.size > 1 and rng.random() < 0.5:
                hand = ref.astype(hand.dtype)  # every ratio 0: the first element is the worst
        hands.append(hand)
        refs.append(ref)
        buds.append(bud)
        masks.append(rng.random(sh) < 0.3 if rng.random() < 0.5 else None)
    return hands, refs, buds, masks


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("special", [False, True])
def test_compare_tensors_equals_compare_bitwise(seed: int, special: bool) -> None:
    rng = np.random.default_rng(seed)
    hands, refs, buds, masks = _draw(rng, special)
    use_masks = masks if seed % 2 else None
    fast = _compare_tensors("hand vs JAX", KEYS, hands, refs, buds, use_masks)
    for i, k in enumerate(KEYS):
        check, worst, bad = _compare("hand vs JAX", k, hands[i], refs[i], buds[i],
                                     None if use_masks is None else use_masks[i])
        f_check, f_worst, f_bad = fast[i]
        assert repr(f_check) == repr(check)  # repr: a NaN ratio compares equal
        assert f_worst == worst
        assert f_bad.shape == bad.shape and np.array_equal(f_bad, bad)


def test_compare_tensors_nan_ratio_is_the_worst_like_argmax() -> None:
    """0/0 (exact agreement on a zero budget) is NaN: np.max and np.argmax report it first."""
    hands = [np.array([[1.0, 2.0]]), np.array([[0.0], [5.0]])]
    refs = [np.array([[1.0, 2.5]]), np.array([[0.0], [5.0]])]
    buds = [np.array([[1.0, 1.0]]), np.array([[0.0], [1.0]])]
    with np.errstate(invalid="ignore"):
        fast = _compare_tensors("p", ["W1", "B1"], hands, refs, buds)
        slow = [_compare("p", k, h, r, b) for k, h, r, b in zip(["W1", "B1"], hands, refs, buds, strict=True)]
    assert [repr(c) for c, _, _ in fast] == [repr(c) for c, _, _ in slow]  # repr: NaN == NaN
    assert np.isnan(fast[1][0].ratio)
