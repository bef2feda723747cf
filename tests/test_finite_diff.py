r"""The finite-difference witness: agreement with JAX within its own error, kinks, speed, input.

Tolerances are derived, never guessed. Finite differences vs JAX: :math:`|D - g_{JAX}| \le`
``fd.error`` (the witness's own rounding + truncation estimate, derived in
``reference/oracles/finite_diff.py``) + :math:`u K M` (JAX's share: the referee's running-error budget of a
float64 backprop, :meth:`handgrad.reference.judge.tolerance.Budget.hand_only`). Where a perturbation crossed a
kink, ``fd.error`` brackets both one-sided quotients, so the same inequality still holds, and the
kink tests check the one-sided quotients directly. The error estimates themselves are checked
against a 60-digit mpmath reference (here on a few nets; ``scripts/measure_fd_error.py`` runs
hundreds of random cases, results in ``docs/fd_error.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import mpmath
import numpy as np
import pytest
from _oracle_cases import BAD_INPUTS, activation_cases, draw, loss_cases
from handgrad.reference.cases.strategies import examples
from handgrad.reference.judge.tolerance import error_budget
from handgrad.reference.oracles import finite_diff
from handgrad.reference.oracles.finite_diff import (
    H_COMPLEX,
    FDResult,
    NonFiniteError,
    complex_step_supported,
    definition_loss,
    fd_grads,
    loss_rounding_bound,
)
from handgrad.reference.oracles.jax_oracle import jax_grads
from handgrad.reference.oracles.ops import MPMATH_OPS
from hypothesis import given, settings
from hypothesis import strategies as st

import handgrad as hg

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _ratio_to_jax(net: hg.Network, params: dict, X: np.ndarray, Y: np.ndarray, fd: FDResult) -> dict[str, float]:
    """max |D - g_JAX| / (fd.error + u K M) per tensor."""
    ref = jax_grads(net, params, X, Y)
    share = error_budget(net, params, X, Y).hand_only(np.float64)
    return {k: float(np.max(np.abs(fd.grads[k] - ref[k]) / (fd.error[k] + share[k]))) for k in ref}


def _assert_agrees_with_jax(net: hg.Network, params: dict, X: np.ndarray, Y: np.ndarray) -> None:
    methods = ["central"] + (["complex"] if complex_step_supported(net)[0] else [])
    for method in methods:
        fd = fd_grads(net, params, X, Y, method=method)
        assert fd.method == method
        for field in ("grads", "error", "kink", "left", "right", "left_error", "right_error"):
            d = getattr(fd, field)
            assert list(d) == net.param_names, field
            assert all(d[k].shape == net.param_shapes[k] for k in d), field
        assert all(fd.grads[k].dtype == np.float64 and np.all(fd.error[k] >= 0) for k in fd.grads)
        ratios = _ratio_to_jax(net, params, X, Y, fd)
        assert max(ratios.values()) <= 1, f"{method}: |FD - JAX| / (fd.error + JAX share) = {ratios}"


MpOps = MPMATH_OPS  # mpmath on object arrays, from handgrad.reference.oracles.ops


def _mp_loss(net: hg.Network, P: dict, X: np.ndarray, Y: np.ndarray) -> Any:
    a, z = X, None
    for l, act in enumerate(net.activations, start=1):
        z = P[f"W{l}"] @ a + P[f"B{l}"]
        a = act.definition(z, MpOps)
    rule = net.fused_rule
    per = rule.definition(z, Y, MpOps) if rule is not None else net.loss.definition(a, Y, MpOps)
    return mpmath.fsum(per.ravel()) / X.shape[1]


def _mp_reference(net: hg.Network, params: dict, X: np.ndarray, Y: np.ndarray) -> tuple[Any, dict]:
    """Exact loss and gradient (60 digits; central difference with h = 1e-20, error ~1e-40)."""
    to_mp = np.vectorize(lambda v: mpmath.mpf(float(v)), otypes=[object])
    with mpmath.workdps(60):
        P = {k: to_mp(v) for k, v in params.items()}
        Xm, Ym = to_mp(X), to_mp(Y)
        h = mpmath.mpf("1e-20")
        grads = {}
        for k, v in P.items():
            g = np.empty(v.shape)
            for idx in np.ndindex(v.shape):
                w = v[idx]
                v[idx] = w + h
                up = _mp_loss(net, P, Xm, Ym)
                v[idx] = w - h
                dn = _mp_loss(net, P, Xm, Ym)
                v[idx] = w
                g[idx] = float((up - dn) / (2 * h))
            grads[k] = g
        return _mp_loss(net, P, Xm, Ym), grads


def _plain_numpy_loss(net: hg.Network, params: dict, X: np.ndarray, Y: np.ndarray) -> float:
    """The loss from the definitions on handgrad.NUMPY_OPS, nothing else."""
    a, z = X, None
    for l, act in enumerate(net.activations, start=1):
        z = params[f"W{l}"] @ a + params[f"B{l}"]
        a = act.definition(z, hg.NUMPY_OPS)
    rule = net.fused_rule
    per = rule.definition(z, Y, hg.NUMPY_OPS) if rule is not None else net.loss.definition(a, Y, hg.NUMPY_OPS)
    return float(np.sum(per)) / X.shape[1]


@pytest.mark.parametrize("net", activation_cases() + loss_cases())
def test_own_forward_is_numpy_ops_bit_for_bit(net: hg.Network) -> None:
    params, X, Y = draw(net, seed=20, m=4)
    loss = _plain_numpy_loss(net, params, X, Y)
    assert definition_loss(net, params, X, Y) == loss
    # finite, and at least the rounding of the final mean (its validity: the 60-digit test below)
    assert finite_diff.U * abs(loss) <= loss_rounding_bound(net, params, X, Y) < np.inf


# ---------------------------------------------------------------------------------------------
# agreement with JAX, for every registered activation and loss
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("net", activation_cases())
def test_agrees_with_jax_for_every_activation(net: hg.Network) -> None:
    _assert_agrees_with_jax(net, *draw(net, seed=21, m=5))


@pytest.mark.parametrize("net", loss_cases())
def test_agrees_with_jax_for_every_loss(net: hg.Network) -> None:
    _assert_agrees_with_jax(net, *draw(net, seed=22, m=5))


ARTICLE = hg.article_network()


@settings(max_examples=examples(15))
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 8), weight_scale=st.sampled_from([0.3, 1.0, 3.0]))
def test_property_article_network(seed: int, m: int, weight_scale: float) -> None:
    _assert_agrees_with_jax(ARTICLE, *draw(ARTICLE, seed, m, weight_scale=weight_scale))


@pytest.mark.parametrize("net", [c for c in activation_cases() + loss_cases()
                                 if complex_step_supported(c.values[0])[0]])
def test_complex_step_matches_jax_to_1e13(net: hg.Network) -> None:
    params, X, Y = draw(net, seed=23, m=4)
    fd = fd_grads(net, params, X, Y, method="complex")
    central = fd_grads(net, params, X, Y, method="central")
    ref = jax_grads(net, params, X, Y)
    for k in ref:
        assert np.max(np.abs(fd.grads[k] - ref[k])) <= 1e-13 * np.max(np.abs(ref[k])), k
        # and its own error bound knows it is orders of magnitude sharper than central differences
        assert np.max(fd.error[k]) <= 1e-3 * np.max(central.error[k]), k


def test_auto_picks_the_complex_step_when_it_can() -> None:
    params, X, Y = draw(ARTICLE, seed=24, m=2)
    assert fd_grads(ARTICLE, params, X, Y).method == "complex"
    relu_net = hg.Network((2, 3, 1), ["relu", "identity"])
    p, X, Y = draw(relu_net, seed=24, m=2)
    assert fd_grads(relu_net, p, X, Y).method == "central"
    assert complex_step_supported(relu_net) == (False, "activation 'relu' (layer 1) has complex_step=False")
    with pytest.raises(ValueError, match=r"method='complex' is not possible.*'relu'"):
        fd_grads(relu_net, p, X, Y, method="complex")


def test_error_estimates_and_loss_bound_hold_against_a_60_digit_reference() -> None:
    fitted = hg.Network((2, 3, 1), "tanh", "squared_error")
    p_fit, X_fit, _ = draw(fitted, seed=25, m=3)
    Y_fit = fitted.predict(p_fit, X_fit) + 1e-9  # near an exact fit: tiny gradients, cancellation
    cases = [
        (ARTICLE, *draw(ARTICLE, seed=25, m=3, weight_scale=3.0)),
        (hg.Network((2, 3, 2), ["gelu", "softmax"], "cross_entropy"), None, None, None),
        (hg.Network((2, 3, 1), ["elu", "sigmoid"], "bce", fuse=False), None, None, None),
        (fitted, p_fit, X_fit, Y_fit),
    ]
    for net, params, X, Y in cases:
        if params is None:
            params, X, Y = draw(net, seed=26, m=3)
        exact_loss, exact = _mp_reference(net, params, X, Y)
        assert abs(definition_loss(net, params, X, Y) - exact_loss) <= loss_rounding_bound(net, params, X, Y)
        methods = ["central"] + (["complex"] if complex_step_supported(net)[0] else [])
        for method in methods:
            fd = fd_grads(net, params, X, Y, method=method)
            for k in exact:
                assert np.all(np.abs(fd.grads[k] - exact[k]) <= fd.error[k]), (net.describe(), method, k)


# ---------------------------------------------------------------------------------------------
# kinks
# ---------------------------------------------------------------------------------------------


def _kinked_point(b1: float = 0.0) -> tuple[hg.Network, dict, np.ndarray, np.ndarray]:
    """A 2-2-1 ReLU net where z1[0] = 0.5*1 - 0.25*2 + b1 is exact: 0 at b1 = 0."""
    net = hg.Network((2, 2, 1), ["relu", "identity"], "squared_error")
    params = {"W1": np.array([[0.5, -0.25], [1.0, 1.0]]), "B1": np.array([[b1], [0.0]]),
              "W2": np.array([[1.5, -0.5]]), "B2": np.array([[0.25]])}
    return net, params, np.array([[1.0], [2.0]]), np.array([[3.0]])


def _assert_bracketed(fd: FDResult, hand: dict) -> None:
    for k in hand:
        assert np.all(np.abs(fd.grads[k] - hand[k]) <= fd.error[k]), k
        kink = fd.kink[k]
        lo = np.minimum(fd.left[k], fd.right[k]) - np.maximum(fd.left_error[k], fd.right_error[k])
        hi = np.maximum(fd.left[k], fd.right[k]) + np.maximum(fd.left_error[k], fd.right_error[k])
        assert np.all((lo <= hand[k])[kink] & (hand[k] <= hi)[kink]), k
        assert np.all(np.isnan(fd.left[k][~kink])) and np.all(np.isnan(fd.right_error[k][~kink])), k


def test_kink_at_the_centre_is_flagged_and_the_hand_value_is_the_left_quotient() -> None:
    net, params, X, Y = _kinked_point()
    fd = fd_grads(net, params, X, Y)
    assert fd.method == "central"
    assert fd.kink["W1"].tolist() == [[True, True], [False, False]]
    assert fd.kink["B1"].tolist() == [[True], [False]]
    assert not fd.kink["W2"].any() and not fd.kink["B2"].any()
    hand = net.backward(params, X, Y)  # relu'(0) = 0: the left branch
    assert np.all(np.abs(fd.left["W1"][0] - hand["W1"][0]) <= fd.left_error["W1"][0])
    assert abs(fd.left["B1"][0, 0] - hand["B1"][0, 0]) <= fd.left_error["B1"][0, 0]
    # the right branch really differs: yhat = -0.5 * relu(3) + 0.25 = -1.25, so
    # dL/dz = 2 (yhat - y) w_11^(2) = 2 (-4.25) 1.5 = -12.75
    assert fd.right["B1"][0, 0] == pytest.approx(-12.75, abs=fd.right_error["B1"][0, 0])
    _assert_bracketed(fd, hand)


def test_kink_inside_the_step_is_bracketed() -> None:
    net, params, X, Y = _kinked_point(b1=2.0**-20)  # z1[0] = 2^-20 > 0, within one step h = 2^-17
    fd = fd_grads(net, params, X, Y)
    assert fd.kink["B1"][0, 0] and fd.kink["W1"][0].all()
    hand = net.backward(params, X, Y)  # z > 0: the right branch, -12.75
    assert abs(fd.right["B1"][0, 0] - hand["B1"][0, 0]) <= fd.right_error["B1"][0, 0]
    _assert_bracketed(fd, hand)


def _shifted_relu_def(z: Any, ops: hg.Ops) -> Any:
    r""":math:`f(z) = z - 1` for :math:`z > 1`, else 0 (kink at 1)."""
    return ops.where(z > 1, z - 1, 0 * z)


@pytest.fixture
def shifted_relu() -> Iterator[hg.Activation]:
    act = hg.register_activation(hg.Activation(
        "shifted_relu_test", _shifted_relu_def, None, lambda z, a: (z > 1).astype(z.dtype), kinks=(1.0,)))
    yield act
    hg.unregister_activation("shifted_relu_test")


def test_kinks_are_read_from_the_activation(shifted_relu: hg.Activation) -> None:
    net = hg.Network((2, 2, 1), ["shifted_relu_test", "identity"], "squared_error")
    _, params, X, Y = _kinked_point(b1=1.0)  # z1[0] = 1: on the kink of this activation
    params["B1"][1, 0] = 2.0
    fd = fd_grads(net, params, X, Y)
    assert fd.kink["B1"].tolist() == [[True], [False]]
    hand = net.backward(params, X, Y)
    assert abs(fd.left["B1"][0, 0] - hand["B1"][0, 0]) <= fd.left_error["B1"][0, 0]
    _assert_bracketed(fd, hand)


# ---------------------------------------------------------------------------------------------
# bugs, user extensions, dtypes, speed, bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["central", "complex"])
def test_a_wrong_backward_is_detected(method: str) -> None:
    params, X, Y = draw(ARTICLE, seed=27, m=4)
    wrong = {k: 1.01 * v for k, v in ARTICLE.backward(params, X, Y).items()}
    fd = fd_grads(ARTICLE, params, X, Y, method=method)
    share = error_budget(ARTICLE, params, X, Y).hand_only(np.float64)
    ratios = {k: float(np.max(np.abs(wrong[k] - fd.grads[k]) / (fd.error[k] + share[k]))) for k in wrong}
    assert min(ratios.values()) > 100, ratios  # every tensor is flagged, by a wide margin


def _bent_identity_def(z: Any, ops: hg.Ops) -> Any:
    r""":math:`f(z) = (\sqrt{z^2 + 1} - 1)/2 + z`."""
    return (ops.sqrt(z * z + 1) - 1) / 2 + z


@pytest.fixture
def bent_identity() -> Iterator[hg.Activation]:
    act = hg.register_activation(hg.Activation(
        "bent_identity_fd_test", _bent_identity_def, None,
        lambda z, a: z / (2 * np.sqrt(z * z + 1)) + 1, complex_step=True))
    yield act
    hg.unregister_activation("bent_identity_fd_test")


def test_user_registered_activation_works_in_both_oracles(bent_identity: hg.Activation) -> None:
    net = hg.Network((3, 4, 4, 2), ["bent_identity_fd_test", "bent_identity_fd_test", "identity"], "squared_error")
    params, X, Y = draw(net, seed=28, m=3)
    _assert_agrees_with_jax(net, params, X, Y)  # central and complex step
    fd = fd_grads(net, params, X, Y)
    hand = net.backward(params, X, Y)
    share = error_budget(net, params, X, Y).hand_only(np.float64)
    assert all(np.all(np.abs(fd.grads[k] - hand[k]) <= fd.error[k] + share[k]) for k in hand)


@pytest.mark.parametrize("method", ["central", "complex"])
def test_float32_params_are_evaluated_in_float64(method: str) -> None:
    p32, X32, Y32 = draw(ARTICLE, seed=29, m=3, dtype=np.float32)
    fd32 = fd_grads(ARTICLE, p32, X32, Y32, method=method)
    fd64 = fd_grads(ARTICLE, {k: v.astype(np.float64) for k, v in p32.items()}, X32.astype(np.float64),
                    Y32.astype(np.float64), method=method)
    for k in fd32.grads:
        assert fd32.grads[k].dtype == np.float64
        np.testing.assert_array_equal(fd32.grads[k], fd64.grads[k])
        np.testing.assert_array_equal(fd32.error[k], fd64.error[k])


def test_chunking_does_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    net = hg.Network((3, 4, 4, 2), ["relu", "tanh", "softmax"], "cross_entropy")
    params, X, Y = draw(net, seed=30, m=3)
    whole = fd_grads(net, params, X, Y)
    monkeypatch.setattr(finite_diff, "_CHUNK", 1)  # one element per batch
    pieces = fd_grads(net, params, X, Y)
    for k in whole.grads:
        np.testing.assert_array_equal(whole.grads[k], pieces.grads[k])
        np.testing.assert_array_equal(whole.error[k], pieces.error[k])


def test_step_can_be_overridden() -> None:
    params, X, Y = draw(ARTICLE, seed=31, m=2)
    coarse = fd_grads(ARTICLE, params, X, Y, method="central", step=1e-3)
    fine = fd_grads(ARTICLE, params, X, Y, method="central")
    assert all(np.all(np.abs(coarse.grads[k] - fine.grads[k]) <= coarse.error[k] + fine.error[k]) for k in fine.grads)
    assert H_COMPLEX == 2.0**-60
    cs = fd_grads(ARTICLE, params, X, Y, method="complex", step=1e-20)
    assert _ratio_to_jax(ARTICLE, params, X, Y, cs)["W1"] <= 1


@pytest.mark.parametrize("act", ["sigmoid", "relu", "gelu"])
def test_central_is_fast(act: str) -> None:
    net = hg.Network((8, 16, 8, 1), act, "squared_error")  # 289 parameters
    params, X, Y = draw(net, seed=32, m=8)
    fd_grads(net, params, X, Y, method="central")
    best = np.inf
    for _ in range(3):
        t = time.process_time()
        fd_grads(net, params, X, Y, method="central")
        best = min(best, time.process_time() - t)
    assert best < 0.050, f"{best * 1e3:.1f} ms CPU"


def test_overflowing_definition_raises_naming_the_point() -> None:
    net = hg.Network((1, 1), "softplus", "squared_error")  # log1p(exp(z)) = inf for z > 709.78
    params = {"W1": np.array([[800.0]]), "B1": np.array([[0.0]])}
    with pytest.raises(NonFiniteError, match=r"the loss of 1-1 softplus, squared_error is inf.*709"):
        fd_grads(net, params, np.array([[1.0]]), np.array([[0.0]]), method="central")


def test_auto_falls_back_to_central_where_the_complex_evaluation_overflows() -> None:
    # sigmoid(-800) = 1/(1 + inf) = 0 is fine in real arithmetic; exp of a complex argument
    # beyond 709.78 is inf + i inf and the quotient is NaN.
    net = hg.Network((1, 1), "sigmoid", "squared_error")
    params = {"W1": np.array([[-800.0]]), "B1": np.array([[0.0]])}
    X, Y = np.array([[1.0]]), np.array([[0.5]])
    with pytest.raises(NonFiniteError, match=r"L\(w \+ ih\) is not finite when perturbing W1\[0, 0\]"):
        fd_grads(net, params, X, Y, method="complex")
    fd = fd_grads(net, params, X, Y)
    assert fd.method == "central"
    hand = net.backward(params, X, Y)
    # an overflowed intermediate counts as "beyond DBL_MAX", so the error bound stays finite
    assert all(np.isfinite(fd.error[k]).all() and np.all(np.abs(fd.grads[k] - hand[k]) <= fd.error[k])
               for k in hand)


@pytest.mark.parametrize(("make", "exc", "match"), BAD_INPUTS)
def test_bad_input_is_rejected_with_a_clear_message(make: Callable, exc: type, match: str) -> None:
    params, X, Y = make(*draw(ARTICLE, seed=33, m=3))
    with pytest.raises(exc, match=match):
        fd_grads(ARTICLE, params, X, Y)


BAD_OPTIONS = [
    pytest.param({"method": "forward"}, ValueError, "method must be one of", id="method"),
    pytest.param({"method": "central", "step": -1.0}, ValueError, "step must be > 0", id="step-negative"),
    pytest.param({"method": "complex", "step": 0.0}, ValueError, "step must be > 0", id="step-zero"),
    pytest.param({"step": float("inf")}, ValueError, "step must be finite", id="step-inf"),
    pytest.param({"method": "central", "step": 2.0}, ValueError, "must be < 1", id="step-too-big"),
    pytest.param({"step": True}, TypeError, "step must be a real number, got bool", id="step-bool"),
    pytest.param({"step": "small"}, TypeError, "step must be a real number, got str", id="step-str"),
]


@pytest.mark.parametrize(("options", "exc", "match"), BAD_OPTIONS)
def test_bad_options_are_rejected(options: dict, exc: type, match: str) -> None:
    params, X, Y = draw(ARTICLE, seed=34, m=2)
    with pytest.raises(exc, match=match):
        fd_grads(ARTICLE, params, X, Y, **options)


def test_not_a_network_is_a_type_error() -> None:
    params, X, Y = draw(ARTICLE, seed=35, m=2)
    with pytest.raises(TypeError, match=r"fd_grads: net must be a handgrad\.Network"):
        fd_grads("2-3-3-1", params, X, Y)  # type: ignore[arg-type]
