"""The SymPy oracle: closed forms of the composite loss agree with handgrad, at high precision too;
kinks follow the convention; it declines large networks; LaTeX in article notation."""

from __future__ import annotations

import numpy as np
import pytest

import handgrad as hg
from reference import CaseSpec, build_case
from reference.sympy_oracle import SYMPY_MAX_PARAMS, SympyOracle, get_sympy_oracle
from reference.tolerance import error_budget

ARCHS = [
    ((2, 3, 3, 1), ("sigmoid",) * 3, "squared_error", True),
    ((3, 3, 3), ("relu", "identity"), "squared_error", True),
    ((3, 4, 3), ("gelu", "softmax"), "cross_entropy", True),
    ((3, 4, 3), ("tanh", "softmax"), "cross_entropy", False),
    ((2, 3, 2), ("elu", "sigmoid"), "bce", True),
    ((2, 3, 2), ("silu", "sigmoid"), "bce", False),
    ((3, 2, 2), ("softplus", "identity"), "softmax_cross_entropy", True),
    ((2, 3, 1), ("leaky_relu", "tanh"), "squared_error", True),
]


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{'-'.join(map(str, a[0]))}-{'/'.join(a[1])}-{a[2]}-{a[3]}")
def test_closed_forms_agree_with_handgrad_within_budget(arch: tuple) -> None:
    for seed in range(3):
        spec = CaseSpec(*arch, 3, "unit", seed)
        net, p, X, Y = build_case(spec, filter_domain=False)
        oracle = get_sympy_oracle(net)
        budget = error_budget(net, p, X, Y)
        hand, ref = net.backward(p, X, Y), oracle.grads(p, X, Y)
        for k, b in budget.against(np.float64).items():
            assert np.all(np.abs(hand[k] - ref[k]) <= b), (k, spec)
        fb = budget.forward_budget(np.float64)
        assert np.all(np.abs(net.predict(p, X) - oracle.forward(p, X)) <= fb)
        assert oracle.loss(p, X, Y) == pytest.approx(float(net.loss_value(p, X, Y)), rel=1e-12)


def test_high_precision_evaluation_agrees() -> None:
    net, p, X, Y = build_case(CaseSpec(*ARCHS[0], 2, "large", 1), filter_domain=False)
    o = get_sympy_oracle(net)
    mp, f64 = o.grads_mp(p, X, Y, dps=50), o.grads(p, X, Y)
    for k in mp:
        np.testing.assert_allclose(f64[k], mp[k], rtol=1e-12, atol=1e-15)


def test_relu_at_exactly_zero_takes_the_left_branch() -> None:
    net = hg.Network((1, 1, 1), ["relu", "identity"])
    p = {"W1": np.array([[1.0]]), "B1": np.array([[-1.0]]), "W2": np.array([[2.0]]), "B2": np.zeros((1, 1))}
    g = get_sympy_oracle(net).grads(p, np.array([[1.0]]), np.array([[1.0]]))  # z1 = 0 exactly
    assert g["W1"][0, 0] == 0.0 and g["B1"][0, 0] == 0.0


def test_symbols_are_in_article_notation() -> None:
    o = get_sympy_oracle(hg.article_network())
    assert str(o.symbols["W2"][0, 1]) == "w_{12}^{(2)}" and str(o.symbols["B3"][0, 0]) == "b_{1}^{(3)}"
    assert str(o.symbols["X"][1, 0]) == "x_{12}"


def test_latex_reads_like_the_article() -> None:
    o = get_sympy_oracle(hg.article_network())
    tex = o.latex("W3", 1, 1)
    assert tex.startswith(r"\frac{\partial L}{\partial w_{11}^{(3)}} = ")
    for piece in [r"\hat y", r"\left(1 - \hat y\right)", "x_{31}", r"\left(\hat y - y\right)"]:
        assert piece in tex
    assert "x_{22}" in o.latex("W1", 2, 1) and "e^" not in o.latex("W1", 2, 1)
    with pytest.raises(ValueError, match="i must be in 1..1"):
        o.latex("W3", 2, 1)


def test_declines_large_networks() -> None:
    net = hg.Network((8, 16, 16, 1), "tanh")
    assert net.n_params > SYMPY_MAX_PARAMS
    with pytest.raises(ValueError, match="limit"):
        SympyOracle(net)


def test_user_activation_needs_no_change_to_the_oracle() -> None:
    act = hg.register_activation(hg.Activation(
        "cube_test", lambda z, ops: z * z * z / 3, derivative=lambda z, a: z * z))
    try:
        net, p, X, Y = build_case(CaseSpec((2, 2, 1), ("cube_test", "identity"), "squared_error", True, 2,
                                           "small", 0), filter_domain=False)
        ref = get_sympy_oracle(net).grads(p, X, Y)
        hand = net.backward(p, X, Y)
        for k in hand:
            np.testing.assert_allclose(hand[k], ref[k], rtol=1e-12, atol=1e-15)
    finally:
        hg.unregister_activation(act.name)
