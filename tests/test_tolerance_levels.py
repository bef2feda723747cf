"""The two accuracy levels of the budget (issue 10, item 7): ``"textbook"`` (the default) allows a
computed derivative an absolute error of order u; ``"strict"`` asks it to be accurate relative to
its own size, so a derivative clipped to 0 at a threshold is caught."""

from __future__ import annotations

import numpy as np
import pytest
from handgrad.reference import CaseSpec, build_case, referee
from handgrad.reference.cases.bug_catalog import SigmoidViaTanh, Textbook
from handgrad.reference.judge.tolerance import (
    DEFAULT_POLICY,
    POLICIES,
    STRICT_POLICY,
    TolerancePolicy,
    error_budget,
    resolve_policy,
)
from handgrad.reference.oracles.mp_oracle import mp_grads

import handgrad as hg

ORACLES = ("jax", "fd")


def _tanh_net(threshold: float | None):
    """A 1-1-1 tanh/identity backward whose tanh' is set to 0 beyond ``threshold`` (None: exact)."""

    def backward(params: dict, X: np.ndarray, Y: np.ndarray) -> dict:
        z1 = params["W1"] @ X + params["B1"]
        a1 = np.tanh(z1)
        z2 = params["W2"] @ a1 + params["B2"]
        d2 = 2 * (z2 - Y) / X.shape[1]
        d1 = params["W2"].T @ d2
        d1 = d1 * (1 - a1 * a1 if threshold is None else np.where(np.abs(z1) > threshold, 0.0, 1 - a1 * a1))
        return {"W1": d1 @ X.T, "B1": np.sum(d1, axis=1, keepdims=True),
                "W2": d2 @ a1.T, "B2": np.sum(d2, axis=1, keepdims=True)}

    return backward


def _saturated_case(w: float) -> tuple:
    net = hg.Network((1, 1, 1), ["tanh", "identity"], "squared_error")
    params = {"W1": np.array([[w]]), "B1": np.array([[0.0]]), "W2": np.array([[1.0]]), "B2": np.array([[0.0]])}
    return net, params, np.array([[1.0]]), np.array([[0.0]])


def _strict_ratio_vs_mp(net, p, X, Y, backward) -> float:
    """Worst |hand - mp| / budget under the strict level (JAX's own tanh' is 1 - tanh^2, accurate
    only absolutely, so the relative requirement is judged against the high-precision oracle)."""
    ref = mp_grads(net, p, X, Y)
    hand = backward(p, X, Y)
    budget = error_budget(net, p, X, Y, "strict").against_exact(np.float64, ref)
    return max(float(np.max(np.abs(hand[k] - ref[k]) / budget[k])) for k in ref)


@pytest.mark.parametrize("z", [16.0, 17.0, 18.0])
def test_tanh_derivative_clipped_at_15_passes_textbook_and_fails_strict(z: float) -> None:
    net, p, X, Y = _saturated_case(z)
    clipped = _tanh_net(15.0)
    textbook = referee(net, p, X, Y, clipped, oracles=ORACLES)
    assert textbook.verdict == "certified"  # the documented price of the absolute allowance
    assert _strict_ratio_vs_mp(net, p, X, Y, clipped) > 4  # 1 / relative_share = 8


@pytest.mark.parametrize("threshold", [3.0, 6.0, 10.0, 14.0, 17.0, 20.0, 30.0, 100.0])
def test_strict_catches_clipping_at_every_threshold(threshold: float) -> None:
    # One unit just past the threshold: tanh'(100.5) ~ 1e-87 is still a relative requirement.
    net, p, X, Y = _saturated_case(threshold + 0.5)
    assert _strict_ratio_vs_mp(net, p, X, Y, _tanh_net(threshold)) > 4


def test_strict_with_jax_catches_clipping_where_the_reference_can_see_it() -> None:
    net, p, X, Y = _saturated_case(15.5)
    assert referee(net, p, X, Y, _tanh_net(15.0), oracles=ORACLES, policy="strict").verdict == "mismatch"


def _tanh_exact(params: dict, X: np.ndarray, Y: np.ndarray) -> dict:
    """tanh' as 1 / cosh(z)^2: relatively accurate at every z."""
    z1 = params["W1"] @ X + params["B1"]
    a1 = np.tanh(z1)
    z2 = params["W2"] @ a1 + params["B2"]
    d2 = 2 * (z2 - Y) / X.shape[1]
    d1 = (params["W2"].T @ d2) / np.cosh(z1) ** 2
    return {"W1": d1 @ X.T, "B1": np.sum(d1, axis=1, keepdims=True),
            "W2": d2 @ a1.T, "B2": np.sum(d2, axis=1, keepdims=True)}


@pytest.mark.parametrize("z", [16.0, 17.0, 18.0, 30.0, 100.0])
def test_a_relatively_accurate_derivative_passes_strict_where_the_clipped_one_fails(z: float) -> None:
    net, p, X, Y = _saturated_case(z)
    assert _strict_ratio_vs_mp(net, p, X, Y, _tanh_exact) <= 1
    assert referee(net, p, X, Y, _tanh_exact, oracles=ORACLES, policy="strict").verdict == "certified"


@pytest.mark.parametrize("z", [16.0, 17.0])
def test_the_textbook_one_minus_a_squared_passes_strict_while_it_keeps_a_correct_bit(z: float) -> None:
    # 1 - a^2 at z = 17: relative error ~ u / tanh'(17) = 2e-2 < relative_share.
    net, p, X, Y = _saturated_case(z)
    assert _strict_ratio_vs_mp(net, p, X, Y, _tanh_net(None)) <= 1


def _sigmoid_via_tanh(activations: list[str]) -> Textbook:
    """The article's recurrence with sigma(z) = 0.5 (1 + tanh(z / 2)) and sigma' = a (1 - a)."""

    return SigmoidViaTanh(activations)


BACKWARDS = {
    "handgrad": lambda net: net.backward,
    "article x(1-x)": lambda net: Textbook([a.name for a in net.activations]),
    "tanh-form sigmoid": lambda net: _sigmoid_via_tanh([a.name for a in net.activations]),
}


@pytest.mark.parametrize("style", list(BACKWARDS))
@pytest.mark.parametrize("scale", ["small", "unit", "large"])
def test_correct_backwards_pass_strict(style: str, scale: str) -> None:
    for seed in range(8):
        spec = CaseSpec((3, 4, 4, 2), ("sigmoid", "tanh", "sigmoid"), "squared_error", True, 1 + seed % 4, scale, seed)
        net, p, X, Y = build_case(spec, filter_domain=False)
        r = referee(net, p, X, Y, BACKWARDS[style](net), oracles=ORACLES, policy="strict")
        assert r.verdict == "certified", r.text()


def test_handgrads_backward_passes_strict_in_saturation() -> None:
    # handgrad computes sigma' and tanh' from z (relatively accurate): strict costs it nothing.
    for seed in range(10):
        spec = CaseSpec((3, 4, 2), ("sigmoid", "tanh"), "squared_error", True, 3, "saturating", seed)
        net, p, X, Y = build_case(spec, filter_domain=False)
        r = referee(net, p, X, Y, net.backward, oracles=ORACLES, policy="strict")
        assert r.verdict == "certified", r.text()


def test_strict_budget_never_exceeds_textbook() -> None:
    for seed, scale in enumerate(["small", "unit", "large", "saturating"] * 2):
        spec = CaseSpec((2, 5, 3, 2), ("tanh", "sigmoid", "softplus"), "squared_error", False, 3, scale, seed)
        net, p, X, Y = build_case(spec, filter_domain=False)
        for dtype in (np.float64, np.float32):
            q = {k: v.astype(dtype) for k, v in p.items()}
            loose = error_budget(net, q, X.astype(dtype), Y.astype(dtype)).magnitude
            tight = error_budget(net, q, X.astype(dtype), Y.astype(dtype), "strict").magnitude
            for k in loose:
                assert np.all(tight[k] <= loose[k] * (1 + 1e-12)), (seed, k)


def test_named_policies_and_their_validation() -> None:
    assert POLICIES["textbook"] is DEFAULT_POLICY and DEFAULT_POLICY.level == "textbook"
    assert POLICIES["strict"] is STRICT_POLICY and STRICT_POLICY == TolerancePolicy.strict()
    assert resolve_policy("strict") is STRICT_POLICY and resolve_policy(DEFAULT_POLICY) is DEFAULT_POLICY
    assert TolerancePolicy.textbook() == DEFAULT_POLICY
    with pytest.raises(ValueError, match="policy must be one of 'textbook', 'strict'"):
        resolve_policy("pedantic")
    with pytest.raises(TypeError, match="policy must be a TolerancePolicy"):
        resolve_policy(3)
    with pytest.raises(ValueError, match="level must be one of"):
        TolerancePolicy(level="lax")
    with pytest.raises(ValueError, match=r"relative_share must be in \(0, 1\)"):
        TolerancePolicy(level="strict", relative_share=1.0)


def test_certify_accepts_the_strict_level_by_name() -> None:
    from handgrad.reference import certify_network

    net = hg.Network((2, 3, 1), ["tanh", "sigmoid"], "squared_error")
    cert = certify_network(net, examples=6, oracles=ORACLES, policy="strict")
    assert cert.ok, str(cert)
