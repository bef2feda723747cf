r"""The JAX oracle against handgrad: forward, loss and gradients, every activation and loss.

Tolerances are derived, never guessed:

* gradients: :math:`|g_{JAX} - g_{hand}| \le 2u\,K M` per element, the referee's budget
  (:func:`handgrad.reference.judge.tolerance.error_budget`, ``against(float64)``): K is the path constant and M
  the running-error magnitude of backpropagation at that element (its derivation is in
  ``reference/tolerance.py`` and ``docs/tolerances.md``);
* forward: the same budget's ``forward_budget(float64)``;
* loss value: the JAX loss and the finite-difference module's numpy evaluation compute the *same*
  definitions in float64, each within the running error bound :math:`\epsilon` of
  :func:`handgrad.reference.oracles.finite_diff.loss_rounding_bound` of the exact value (with library functions
  within ``LIB_ULPS`` u), so they differ by at most :math:`2\epsilon`.

A deliberately wrong backward (1% off) exceeds these budgets by orders of magnitude.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from _oracle_cases import BAD_INPUTS, activation_cases, draw, loss_cases, within
from handgrad.reference.cases.strategies import examples
from handgrad.reference.judge.tolerance import error_budget
from handgrad.reference.oracles.finite_diff import definition_loss, fd_grads, loss_rounding_bound
from handgrad.reference.oracles.jax_oracle import (
    EXP_SQUARE_LIMIT,
    MIN_BUCKET,
    SMALL_NET_BUCKET,
    SMALL_NET_PARAMS,
    JaxOracle,
    NonFiniteError,
    OracleRangeError,
    architecture_key,
    bucket,
    get_jax_oracle,
    jax_grads,
    quotient_of_exponentials,
)
from handgrad.reference.oracles.ops import jax_ops
from hypothesis import given, settings
from hypothesis import strategies as st

import handgrad as hg

BATCHES = (1, 5)  # both pad to MIN_BUCKET columns: one compiled executable per architecture


def _assert_matches_hand(net: hg.Network, params: dict, X: np.ndarray, Y: np.ndarray) -> None:
    oracle = get_jax_oracle(net)
    budget = error_budget(net, params, X, Y)
    yhat = oracle.forward(params, X)
    assert yhat.dtype == np.float64 and yhat.shape == (net.sizes[-1], X.shape[1])
    fwd = np.abs(yhat - net.predict(params, X)) / budget.forward_budget(np.float64)
    assert fwd.max() <= 1, f"forward off by {fwd.max():.3g} budgets"

    loss, grads = oracle.value_and_grads(params, X, Y)
    assert isinstance(loss, float)
    assert abs(loss - definition_loss(net, params, X, Y)) <= 2 * loss_rounding_bound(net, params, X, Y)

    hand = net.backward(params, X, Y)
    assert list(grads) == net.param_names
    for k, g in grads.items():
        assert g.dtype == np.float64 and g.shape == net.param_shapes[k]
    ratios = within({k: grads[k] - hand[k] for k in grads}, budget.against(np.float64))
    assert max(ratios.values()) <= 1, f"JAX vs hand, |diff|/budget per tensor: {ratios}"


@pytest.mark.parametrize("net", activation_cases())
def test_matches_handgrad_for_every_activation(net: hg.Network) -> None:
    for m in BATCHES:
        _assert_matches_hand(net, *draw(net, seed=m, m=m))


@pytest.mark.parametrize("net", loss_cases())
def test_matches_handgrad_for_every_loss(net: hg.Network) -> None:
    for m in BATCHES:
        _assert_matches_hand(net, *draw(net, seed=10 + m, m=m))


ARTICLE = hg.article_network()


@settings(max_examples=examples(15))
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, MIN_BUCKET),
       weight_scale=st.sampled_from([0.3, 1.0, 3.0]))
def test_property_article_network(seed: int, m: int, weight_scale: float) -> None:
    _assert_matches_hand(ARTICLE, *draw(ARTICLE, seed, m, weight_scale=weight_scale))


def test_article_example_point() -> None:
    params = ARTICLE.article_init(np.random.RandomState(0))
    _assert_matches_hand(ARTICLE, params, hg.ARTICLE_X, hg.ARTICLE_LABEL)


def test_batch_beyond_the_first_bucket() -> None:
    _assert_matches_hand(ARTICLE, *draw(ARTICLE, seed=3, m=13))


def test_bucket_sizes() -> None:
    assert [bucket(m) for m in (1, 2, 7, 8, 9, 16, 17, 1000)] == [8, 8, 8, 8, 16, 16, 32, 1024]
    assert [bucket(m, SMALL_NET_BUCKET) for m in (1, 9, 33, 64, 65)] == [64, 64, 64, 64, 128]


def test_a_small_net_compiles_one_executable_for_every_batch_the_traps_use() -> None:
    net = hg.Network((2, 3, 1), ["tanh", "sigmoid"], "squared_error")
    assert net.n_params <= SMALL_NET_PARAMS
    oracle = JaxOracle(net)
    for m in (1, 2, 3, 9, 11, 17, 33):
        params, X, Y = draw(net, seed=m, m=m)
        oracle.grads(params, X, Y)
    assert oracle._run._cache_size() == 1
    big = hg.Network((30, 40, 1), ["tanh", "sigmoid"], "squared_error")
    assert big.n_params > SMALL_NET_PARAMS and JaxOracle(big)._min_bucket == MIN_BUCKET
    with pytest.raises(ValueError, match="m must be >= 1"):
        bucket(0)


def test_padding_leaves_the_mean_exact() -> None:
    # Duplicating every sample leaves the mean loss, hence every gradient, unchanged; m = 5 and
    # m = 10 (m = 40 and m = 80 for a small net) run in different buckets, so padding and masking
    # are both exercised.
    params, X, Y = draw(ARTICLE, seed=4, m=5)
    oracle = get_jax_oracle(ARTICLE)
    if oracle._min_bucket == SMALL_NET_BUCKET:
        params, X, Y = draw(ARTICLE, seed=4, m=40)
    loss5, g5 = oracle.value_and_grads(params, X, Y)
    loss10, g10 = oracle.value_and_grads(params, np.hstack([X, X]), np.hstack([Y, Y]))
    assert bucket(X.shape[1], oracle._min_bucket) != bucket(2 * X.shape[1], oracle._min_bucket)
    budget = error_budget(ARTICLE, params, X, Y).against(np.float64)
    assert max(within({k: g5[k] - g10[k] for k in g5}, budget).values()) <= 1
    assert abs(loss5 - loss10) <= 2 * loss_rounding_bound(ARTICLE, params, X, Y)
    # and the loss is the mean of the per-sample losses
    singles = [oracle.loss(params, X[:, [s]], Y[:, [s]]) for s in range(X.shape[1])]
    assert abs(loss5 - np.mean(singles)) <= 2 * loss_rounding_bound(ARTICLE, params, X, Y)


def test_float32_params_are_computed_in_float64() -> None:
    p32, X32, Y32 = draw(ARTICLE, seed=5, m=3, dtype=np.float32)
    oracle = get_jax_oracle(ARTICLE)
    loss32, g32 = oracle.value_and_grads(p32, X32, Y32)
    p64 = {k: v.astype(np.float64) for k, v in p32.items()}
    loss64, g64 = oracle.value_and_grads(p64, X32.astype(np.float64), Y32.astype(np.float64))
    assert loss32 == loss64
    for k in g32:
        assert g32[k].dtype == np.float64
        np.testing.assert_array_equal(g32[k], g64[k])


def test_cache_per_architecture() -> None:
    a = get_jax_oracle(hg.Network((2, 3, 1), "sigmoid", "bce"))
    assert get_jax_oracle(hg.Network((2, 3, 1), "sigmoid", "bce")) is a
    assert get_jax_oracle(hg.Network((2, 3, 1), "sigmoid", "bce", fuse=False)) is not a
    assert get_jax_oracle(hg.Network((2, 4, 1), "sigmoid", "bce")) is not a
    assert architecture_key(hg.Network((2, 3, 1), "tanh")) != architecture_key(hg.Network((2, 3, 1), "sigmoid"))


def test_reregistered_name_never_reuses_a_stale_executable() -> None:
    def double(z: Any, ops: Any) -> Any:
        return 2 * z

    def triple(z: Any, ops: Any) -> Any:
        return 3 * z

    grads = []
    for definition, slope in ((double, 2.0), (triple, 3.0)):
        act = hg.Activation("cache_probe_test", definition, None, lambda z, a, s=slope: np.full_like(z, s))
        hg.register_activation(act)
        try:
            net = hg.Network((1, 1), "cache_probe_test", "squared_error")
            params = {"W1": np.array([[1.0]]), "B1": np.array([[0.0]])}
            grads.append(jax_grads(net, params, np.array([[1.0]]), np.array([[0.0]]))["W1"][0, 0])
        finally:
            hg.unregister_activation("cache_probe_test")
    # L = (s w x)^2, dL/dw = 2 s^2 w x^2 at w = x = 1
    assert grads == [8.0, 18.0]


def test_relu_gradient_at_the_kink_follows_handgrad_not_jnp_maximum() -> None:
    import jax
    import jax.numpy as jnp

    net = hg.Network((2, 2, 1), ["relu", "identity"], "squared_error")
    params = {"W1": np.array([[0.5, -0.25], [1.0, 1.0]]), "B1": np.zeros((2, 1)),
              "W2": np.array([[1.5, -0.5]]), "B2": np.array([[0.25]])}
    X, Y = np.array([[1.0], [2.0]]), np.array([[3.0]])  # z1[0] = 0.5 - 0.5 = 0 exactly
    g = jax_grads(net, params, X, Y)
    hand = net.backward(params, X, Y)
    assert g["W1"][0].tolist() == [0.0, 0.0] == hand["W1"][0].tolist()  # relu'(0) = 0
    # jax.nn.relu / jnp.maximum split the tie: derivative 1/2 at 0, the convention we avoid.
    assert float(jax.grad(lambda z: jnp.maximum(z, 0.0))(0.0)) == 0.5


def test_overflowing_definition_raises_naming_the_tensor() -> None:
    # ELU's untaken branch expm1(z) overflows for z > 709.78: 0 * inf = nan in JAX's gradient.
    net = hg.Network((1, 1), "elu", "squared_error")
    params = {"W1": np.array([[800.0]]), "B1": np.array([[0.0]])}
    X, Y = np.array([[1.0]]), np.array([[0.0]])
    assert np.isfinite(net.backward(params, X, Y)["W1"]).all()  # handgrad's stable form is fine
    with pytest.raises(NonFiniteError, match=r"grads\['W1'\].*w_11\^\(1\).*709"):
        jax_grads(net, params, X, Y)


def test_quotients_of_exponentials_are_found_by_tracing() -> None:
    ops = jax_ops()
    found = {a.name: quotient_of_exponentials(lambda z, a=a: a.definition(z, ops), (3, 2))
             for a in hg.iter_activations()}
    assert {k for k, v in found.items() if v} >= {"sigmoid", "silu", "softmax"}
    assert not any(found[k] for k in ("identity", "tanh", "relu", "leaky_relu", "softplus"))
    assert EXP_SQUARE_LIMIT == pytest.approx(354.89, abs=0.01)


@pytest.mark.parametrize(("sizes", "act", "loss", "W1", "Y"), [
    pytest.param((1, 2), "softmax", "cross_entropy", [[400.0], [200.0]], [[0.5], [0.5]], id="softmax-ce"),
    pytest.param((1, 1), "sigmoid", "bce", [[-400.0]], [[0.5]], id="sigmoid-bce"),
])
def test_silent_loss_in_jax_quotient_rule_is_declined(sizes: tuple, act: str, loss: str, W1: list,
                                                        Y: list) -> None:
    # Unfused, JAX's d(x/y) = -x y^-2 underflows to 0 here: it returned b_1 = -0.5 instead of
    # 0.5 (softmax) and 0 instead of -0.5 (sigmoid), with no inf or NaN to show it.
    X, Yv = np.array([[1.0]]), np.array(Y)
    params = {"W1": np.array(W1), "B1": np.zeros((sizes[1], 1))}
    unfused = hg.Network(sizes, act, loss, fuse=False)
    with pytest.raises(OracleRangeError, match=rf"layer 1 \('{act}'\).*reach \|z\| = 400.*y\*\*-2"):
        jax_grads(unfused, params, X, Yv)
    hand = unfused.backward(params, X, Yv)
    fd = fd_grads(unfused, params, X, Yv)
    assert all(np.all(np.abs(fd.grads[k] - hand[k]) <= fd.error[k]) for k in hand)
    # fused, the same point is fine: the last activation never enters the loss
    fused = hg.Network(sizes, act, loss)
    _assert_matches_hand(fused, params, X, Yv)


@pytest.mark.parametrize(("make", "exc", "match"), BAD_INPUTS)
def test_bad_input_is_rejected_with_a_clear_message(make: Callable, exc: type, match: str) -> None:
    params, X, Y = make(*draw(ARTICLE, seed=6, m=3))
    oracle = get_jax_oracle(ARTICLE)
    with pytest.raises(exc, match=match):
        oracle.grads(params, X, Y)


def test_not_a_network_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"net must be a handgrad\.Network"):
        get_jax_oracle("2-3-3-1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"net must be a handgrad\.Network"):
        JaxOracle(None)  # type: ignore[arg-type]


def test_a_wrong_backward_is_detected() -> None:
    params, X, Y = draw(ARTICLE, seed=7, m=4)
    wrong = {k: 1.01 * v for k, v in ARTICLE.backward(params, X, Y).items()}
    ratios = within({k: wrong[k] - v for k, v in jax_grads(ARTICLE, params, X, Y).items()},
                    error_budget(ARTICLE, params, X, Y).against(np.float64))
    assert min(ratios.values()) > 1e6, ratios  # every tensor is flagged, by a wide margin


def _bent_identity_def(z: Any, ops: hg.Ops) -> Any:
    r""":math:`f(z) = (\sqrt{z^2 + 1} - 1)/2 + z`."""
    return (ops.sqrt(z * z + 1) - 1) / 2 + z


def _bent_identity_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return z / (2 * np.sqrt(z * z + 1)) + 1


@pytest.fixture
def bent_identity() -> Iterator[hg.Activation]:
    act = hg.register_activation(hg.Activation("bent_identity_test", _bent_identity_def, None,
                                               _bent_identity_derivative, complex_step=True))
    yield act
    hg.unregister_activation("bent_identity_test")


def test_user_registered_activation_needs_no_change_to_reference(bent_identity: hg.Activation) -> None:
    net = hg.Network((3, 4, 4, 2), ["bent_identity_test", "bent_identity_test", "identity"], "squared_error")
    _assert_matches_hand(net, *draw(net, seed=8, m=3))
