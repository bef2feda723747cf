"""Losses: conventions, hand gradients vs differences, fused rules, stability, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import handgrad as hg

RNG_SEEDS = st.integers(0, 2**32 - 1)


def _draw(loss: hg.Loss, n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if loss.prediction_range == (0.0, 1.0):
        yhat = rng.uniform(0.05, 0.95, (n, m))
    else:
        yhat = rng.standard_normal((n, m))
    if loss.target_kind == "unit":
        y = rng.uniform(0, 1, (n, m))
    elif loss.target_kind == "distribution":
        y = rng.dirichlet(np.ones(n), m).T
    else:
        y = rng.standard_normal((n, m))
    return yhat, y


def test_squared_error_is_the_articles_for_one_sample() -> None:
    se = hg.get_loss("squared_error")
    assert se(np.array([[0.8]]), np.array([[0.6]])) == pytest.approx(0.04, rel=1e-15)
    np.testing.assert_allclose(se.gradient(np.array([[0.8]]), np.array([[0.6]])), [[0.4]], rtol=1e-15)


def test_batch_loss_is_mean_over_samples_and_sum_over_outputs() -> None:
    se = hg.get_loss("squared_error")
    yhat = np.array([[1.0, 2.0], [0.0, 1.0]])
    y = np.zeros((2, 2))
    assert se(yhat, y) == pytest.approx(((1 + 0) + (4 + 1)) / 2)


# Central differences, h = 1e-6: truncation h^2 |l'''|/6 and rounding eps |l| / h; predictions are
# kept >= 0.05 from 0 and 1, where |l'''| <= 2/0.05^3 = 1.6e4, so truncation <= 2.7e-9, and
# |l| <= 30 gives rounding <= 7e-9: an absolute budget of 1e-7 holds with margin.
@pytest.mark.parametrize("loss", list(hg.iter_losses()), ids=lambda lo: lo.name)
@given(n=st.integers(1, 4), m=st.integers(1, 3), seed=RNG_SEEDS)
def test_gradient_matches_central_difference(loss: hg.Loss, n: int, m: int, seed: int) -> None:
    yhat, y = _draw(loss, n, m, seed)
    g = loss.gradient(yhat, y)
    h = 1e-6
    for idx in np.ndindex(*yhat.shape):
        up, dn = yhat.copy(), yhat.copy()
        up[idx] += h
        dn[idx] -= h
        fd = (loss(up, y) - loss(dn, y)) / (2 * h)
        assert abs(g[idx] - fd) <= 1e-7, (loss.name, idx, g[idx], fd)


@pytest.mark.parametrize(("loss_name", "act_name"), [("bce", "sigmoid"), ("cross_entropy", "softmax")])
@given(n=st.integers(1, 4), m=st.integers(1, 3), seed=RNG_SEEDS)
def test_fused_rule_equals_unfused_chain(loss_name: str, act_name: str, n: int, m: int, seed: int) -> None:
    loss, act = hg.get_loss(loss_name), hg.get_activation(act_name)
    if act_name == "sigmoid" or n > 1:
        rng = np.random.default_rng(seed)
        z = rng.uniform(-4, 4, (n, m))
        _, y = _draw(loss, n, m, seed)
        a = act(z)
        rule = loss.fused[act_name]
        np.testing.assert_allclose(rule.value(z, y), loss.value(a, y), rtol=1e-12, atol=1e-14)
        chain = act.backward(z, a, loss.grad(a, y))
        np.testing.assert_allclose(rule.delta(z, a, y), chain, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("z", [-1e4, -1000.0, -40.0, 40.0, 1000.0, 1e4])
def test_fused_losses_stay_finite_when_saturated(z: float) -> None:
    for loss_name, act_name, n in [("bce", "sigmoid", 1), ("cross_entropy", "softmax", 3)]:
        net = hg.Network((2, n), act_name, loss_name)
        params = {"W1": np.zeros((n, 2)), "B1": np.full((n, 1), z)}
        if n > 1:
            params["B1"][0, 0] = -z
        X = np.ones((2, 2))
        Y = np.zeros((n, 2))
        Y[0] = 1.0
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            loss, grads = net.loss_and_grads(params, X, Y)
        assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads.values())


def test_unfused_bce_at_saturation_is_a_clear_error() -> None:
    bce = hg.get_loss("bce")
    with pytest.raises(ValueError, match="fused"):
        bce.value(np.array([[1.0]]), np.array([[0.0]]))


def test_label_out_of_range_rejected() -> None:
    with pytest.raises(ValueError, match=r"y must lie in \[0.0, 1.0\]"):
        hg.get_loss("bce")(np.array([[0.5]]), np.array([[2.0]]))


def test_softmax_cross_entropy_on_logits_matches_fused_rule() -> None:
    rng = np.random.default_rng(3)
    z, y = rng.standard_normal((4, 3)), rng.dirichlet(np.ones(4), 3).T
    sce, ce = hg.get_loss("softmax_cross_entropy"), hg.get_loss("cross_entropy")
    sm = hg.get_activation("softmax")
    np.testing.assert_allclose(sce.value(z, y), ce.value(sm(z), y), rtol=1e-13)
    np.testing.assert_allclose(sce.grad(z, y), ce.fused["softmax"].delta(z, sm(z), y), rtol=1e-15)


def test_bce_gradient_at_the_ends_the_label_allows_is_the_finite_limit() -> None:
    # p = 0 with y = 0 and p = 1 with y = 1: bce is 0 there and its derivative has a finite limit
    # (1/(1-p) = 1 and -1/p = -1), not the 0/0 of (p - y)/(p(1-p)); found by mutation testing.
    from handgrad import get_loss

    bce = get_loss("bce")
    p = np.array([[0.0, 1.0, 0.25]])
    y = np.array([[0.0, 1.0, 1.0]])
    g = bce.grad(p, y)
    assert g.tolist() == [[1.0, -1.0, (0.25 - 1.0) / (0.25 * 0.75)]]
    with pytest.raises(ValueError, match=r"prediction 0.0 at index \(0, 0\) makes the binary cross-entropy infinite"):
        bce.grad(np.array([[0.0]]), np.array([[1.0]]))
