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


def _plain_bracket(hand: np.ndarray, fd, k: str, hand_budget: np.ndarray) -> np.ndarray:
    """The kink bracket of one tensor, plainly (the referee's before the case was laid end to end)."""
    h = hand.astype(np.float64)
    le, re_, lerr, rerr = fd.left[k], fd.right[k], fd.left_error[k], fd.right_error[k]
    with np.errstate(invalid="ignore"):
        equals_left = np.abs(h - le) <= lerr + hand_budget
        between = (h >= np.minimum(le - lerr, re_ - rerr) - hand_budget) & (
            h <= np.maximum(le + lerr, re_ + rerr) + hand_budget)
    return fd.kink[k] & (equals_left | between)


_CASE_ARCHS = [((2, 3, 3, 1), ("sigmoid",) * 3, "squared_error", True, "float64"),
               ((3, 4, 2), ("relu", "sigmoid"), "bce", False, "float64"),
               ((2, 5, 4, 3), ("leaky_relu", "relu", "softmax"), "cross_entropy", True, "float32")]


@pytest.mark.parametrize("arch", _CASE_ARCHS, ids=lambda a: "-".join(map(str, a[0])) + "-" + a[4])
def test_a_case_compared_in_one_pass_is_each_pair_compared_tensor_by_tensor(arch) -> None:
    # _compare_case lays every operand end to end and compares all pairs at once; it must give
    # every check, worst element and failing set that comparing each pair tensor by tensor with
    # the budget's dicts gives: kinks the steps cross, masked units, float32 hands and a planted
    # error included.
    from handgrad.reference import build_case
    from handgrad.reference.cases.architecture import Architecture
    from handgrad.reference.cases.traps import trap_specs
    from handgrad.reference.judge.referee import (
        _compare_case,
        _cross_pairs,
        _kink_mask,
        _run_oracles,
        oracle_label,
    )
    from handgrad.reference.judge.reports import Report
    from handgrad.reference.judge.tolerance import error_budget

    sizes, acts, loss, fuse, dtype = arch
    kinks = masks = planted = 0
    for spec in trap_specs(Architecture(sizes, acts, loss, fuse), scales=("unit", "large")):
        net, params, X, Y = build_case(spec, dtype, filter_domain=False)
        budget = error_budget(net, params, X, Y)
        report = Report("", dtype, X.shape[1], "certified")
        mask = _kink_mask(net, budget, np.dtype(dtype), report)
        if mask is None and spec.m % 2 == 0:  # a unit within rounding reach of a kink is rare: mask some anyway
            rng = np.random.default_rng(spec.m)
            mask = {k: rng.random(shape) < 0.3 for k, shape in net.param_shapes.items()}
        refs, fd = _run_oracles(net, params, X, Y, ("sympy", "jax", "fd"), report.notes)
        if len(refs) < 3:
            continue
        hand = {k: v + (1e-3 if spec.m % 3 == 0 and k == "W1" else 0.0) for k, v in refs["jax"].items()}
        if dtype == "float64":
            # just beyond the one-sided quotients at a kink by 1.5 hand budgets: outside the bracket,
            # inside it with the reference's share added (about twice the budget in float64)
            only = budget.hand_only(dtype)
            for k in hand:
                edge = np.maximum(fd.left[k] + fd.left_error[k], fd.right[k] + fd.right_error[k]) + 1.5 * only[k]
                hand[k] = np.where(fd.kink[k], edge, hand[k])
        hand = {k: v.astype(dtype) for k, v in hand.items()}
        got = _compare_case(net, hand, refs, fd, budget, np.dtype(dtype), mask)
        b64, against, hand_only = budget.against(np.float64), budget.against(dtype), budget.hand_only(dtype)
        if mask is not None:
            against = {k: np.where(mask[k], np.inf, v) for k, v in against.items()}
            hand_only = {k: np.where(mask[k], np.inf, v) for k, v in hand_only.items()}
        want = []
        for a, b in _cross_pairs(refs):
            with_fd = "fd" in (a, b)
            want += [_plain(f"{oracle_label(a)} vs {oracle_label(b)}", k, refs[a][k], refs[b][k],
                            b64[k] + fd.error[k] if with_fd else b64[k], fd.kink[k] if with_fd else None)
                     for k in net.param_names]
        for name in refs:
            for k in net.param_names:
                if name == "fd":
                    bud = hand_only[k] + fd.error[k]
                    want.append(_plain(f"hand vs {oracle_label(name)}", k, hand[k], refs[name][k], bud,
                                       _plain_bracket(hand[k], fd, k, hand_only[k])))
                else:
                    want.append(_plain(f"hand vs {oracle_label(name)}", k, hand[k], refs[name][k], against[k]))
        assert [repr(c) for c, _, _ in got.cross + got.hand] == [repr(c) for c, _, _ in want]
        for (check, worst, _), (_, w_worst, w_bad) in zip(got.cross + got.hand, want, strict=True):
            assert worst == w_worst and check.n_bad == int(w_bad.sum())
        kinks += int(any(fd.kink[k].any() for k in fd.kink))
        masks += mask is not None
        planted += any(c.n_bad for c, _, _ in got.hand)
    assert planted  # the comparison found the planted error somewhere
    if "relu" in acts:
        assert kinks  # a trap puts a pre-activation exactly on a kink
