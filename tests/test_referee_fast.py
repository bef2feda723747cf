"""The referee's fast paths (issue 12, throughput) compute exactly what the plain ones do."""

from __future__ import annotations

import numpy as np
import pytest
from handgrad.reference.judge.referee import _compare, _compare_tensors, _name
from handgrad.reference.judge.reports import TensorCheck


def _plain(pair: str, tensor: str, hand: np.ndarray, ref: np.ndarray, budget: np.ndarray,
           ok_mask: np.ndarray | None = None) -> tuple[TensorCheck, tuple[int, ...] | None, np.ndarray]:
    """The comparison of one tensor written plainly, one numpy call per quantity (the referee's
    implementation before issue 12): the reference the vectorized one is held to."""
    hand64 = hand.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(hand64 - ref)
    diff = np.where(np.isfinite(diff), diff, np.inf)
    ratio = diff / budget
    if ok_mask is not None:
        ratio = np.where(ok_mask, 0.0, ratio)
        diff = np.where(ok_mask, 0.0, diff)
    bad = ratio > 1.0
    scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, np.finfo(np.float64).tiny)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(ratio)), ratio.shape)) if ratio.size else None
    with np.errstate(over="ignore"):
        max_rel = float(np.float64(float(np.max(diff))) / np.float64(scale)) if diff.size else 0.0
    check = TensorCheck(pair=pair, tensor=tensor, max_abs=float(np.max(diff)) if diff.size else 0.0,
                        max_rel=max_rel, ratio=float(np.max(ratio)) if ratio.size else 0.0,
                        worst=_name(tensor, worst) if worst is not None else "",
                        ok=not bool(bad.any()), n_bad=int(bad.sum()))
    return check, (worst if bad.any() else None), bad


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
        check, worst, bad = _plain("hand vs JAX", k, hands[i], refs[i], buds[i],
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
        slow = [_plain("p", k, h, r, b) for k, h, r, b in zip(["W1", "B1"], hands, refs, buds, strict=True)]
    assert [repr(c) for c, _, _ in fast] == [repr(c) for c, _, _ in slow]  # repr: NaN == NaN
    assert np.isnan(fast[1][0].ratio)


def test_one_tensor_alone_and_empty_or_one_dimensional_tensors_compare_as_plainly() -> None:
    """_compare (one tensor) is the vectorized pass on that tensor alone; an empty tensor and a 1-D
    one (the forward's checks) come out as the plain implementation gives them."""
    rng = np.random.default_rng(1)
    for shape in [(3, 2), (4,), (0, 2)]:
        ref = rng.standard_normal(shape)
        hand = ref + rng.standard_normal(shape) * 1e-9
        bud = np.full(shape, 1e-9)
        got, want = _compare("p", "yhat", hand, ref, bud), _plain("p", "yhat", hand, ref, bud)
        assert repr(got[0]) == repr(want[0]) and got[1] == want[1] and np.array_equal(got[2], want[2])
