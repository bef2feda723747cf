"""The high-precision reference (reference/oracles/mp_oracle.py): agrees with JAX inside the
float64 domain, decides cases beyond it against closed forms, declines large nets in a sentence."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from handgrad.reference import CaseSpec, build_case
from handgrad.reference.judge.tolerance import error_budget
from handgrad.reference.oracles.jax_oracle import jax_grads
from handgrad.reference.oracles.mp_oracle import float64_domain, mp_grads
from handgrad.reference.oracles.table import ORACLE_TABLE

import handgrad as hg

SPECS = [
    CaseSpec((3, 4, 4, 2), ("sigmoid", "tanh", "sigmoid"), "squared_error", True, 3, "unit", 1),
    CaseSpec((3, 4, 2), ("relu", "softmax"), "cross_entropy", False, 3, "large", 2),
    CaseSpec((2, 3, 1), ("gelu", "sigmoid"), "bce", False, 2, "unit", 3),
    CaseSpec((3, 4, 3), ("softplus", "softmax"), "cross_entropy", True, 4, "saturating", 4),
    CaseSpec((2, 3, 2), ("silu", "elu"), "squared_error", True, 2, "unit", 5),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(s.activations) + "-" + s.loss)
def test_mp_agrees_with_jax_within_the_jax_share_of_the_budget(spec: CaseSpec) -> None:
    net, p, X, Y = build_case(spec, filter_domain=False)
    mp, jx = mp_grads(net, p, X, Y), jax_grads(net, p, X, Y)
    budget = error_budget(net, p, X, Y)
    jax_share = {k: 2.0**-53 * budget.K * budget.magnitude[k] for k in mp}
    for k in mp:
        assert np.all(np.abs(mp[k] - jx[k]) <= jax_share[k] + 2.0**-53 * np.abs(mp[k])), k


def _closed_form_bce_sigmoid(w: float, x: float, y: float) -> float:
    """d/dw of the BCE after a sigmoid, exactly (sigma(wx) - y) x, at 60 digits."""
    with mpmath.workdps(60):
        z = mpmath.mpf(w) * mpmath.mpf(x)
        return float((1 / (1 + mpmath.exp(-z)) - mpmath.mpf(y)) * mpmath.mpf(x))


@pytest.mark.parametrize(("w", "y"), [(-800.0, 0.0), (-800.0, 1.0), (30.0, 1.0), (40.0, 0.0), (-25.0, 1.0)])
def test_mp_decides_unfused_bce_beyond_the_float64_domain(w: float, y: float) -> None:
    net = hg.Network((1, 1), ["sigmoid"], "bce", fuse=False)
    p = {"W1": np.array([[w]]), "B1": np.array([[0.0]])}
    X, Y = np.array([[1.0]]), np.array([[y]])
    assert not float64_domain(net, p, X)
    g = mp_grads(net, p, X, Y)
    expected = _closed_form_bce_sigmoid(w, 1.0, y)
    assert g["W1"][0, 0] == pytest.approx(expected, rel=4e-16, abs=0)
    assert g["B1"][0, 0] == pytest.approx(expected, rel=4e-16, abs=0)


def test_mp_gives_relatively_accurate_saturated_derivatives() -> None:
    # tanh'(300) = 4 exp(-600) ~ 1e-260: relative accuracy, where JAX's 1 - tanh^2 gives 0.
    net = hg.Network((1, 1, 1), ["tanh", "identity"], "squared_error")
    p = {"W1": np.array([[300.0]]), "B1": np.array([[0.0]]), "W2": np.array([[1.0]]), "B2": np.array([[0.0]])}
    X, Y = np.array([[1.0]]), np.array([[0.0]])
    g = mp_grads(net, p, X, Y)
    with mpmath.workdps(60):
        t = mpmath.tanh(300)
        expected = float(2 * t / mpmath.cosh(300) ** 2)
    assert g["W1"][0, 0] == pytest.approx(expected, rel=4e-16) and g["W1"][0, 0] > 0


def test_float64_domain_inside() -> None:
    net, p, X, _ = build_case(SPECS[0], filter_domain=False)
    assert float64_domain(net, p, X)
    net = hg.Network((1, 1), ["sigmoid"], "bce", fuse=True)  # fused: no prediction margin
    assert float64_domain(net, {"W1": np.array([[-40.0]]), "B1": np.array([[0.0]])}, np.array([[1.0]]))


def test_mp_declines_large_nets_and_batches_with_a_sentence() -> None:
    net = hg.Network((20, 20, 1), ["tanh", "identity"])
    p = net.init(np.random.default_rng(0))
    with pytest.raises(ValueError, match="441 parameters, above its limit of 200"):
        mp_grads(net, p, np.zeros((20, 2)), np.zeros((1, 2)))
    small = hg.Network((1, 1), ["tanh"])
    with pytest.raises(ValueError, match="batch of 17 samples is above its limit of 16"):
        mp_grads(small, small.init(np.random.default_rng(0)), np.zeros((1, 17)), np.zeros((1, 17)))


def test_mp_is_in_the_oracle_table() -> None:
    entry = ORACLE_TABLE["mp"]
    net, p, X, Y = build_case(SPECS[4], filter_domain=False)
    g = entry.compute(net, p, X, Y)
    assert set(g) == set(net.param_names)


def test_a_budget_that_overflows_float64_says_so() -> None:
    # softplus at z = 1000 is exp(1000) = inf in the float64 definition: the magnitudes overflow
    # (inf * 0 = nan downstream); finite() tells the caller.
    net = hg.Network((1, 2, 1), ["softplus", "tanh"], "squared_error")
    p = {"W1": np.array([[1e3], [1.0]]), "B1": np.zeros((2, 1)), "W2": np.array([[0.0, 1.0]]), "B2": np.array([[0.0]])}
    with np.errstate(all="ignore"):
        budget = error_budget(net, p, np.array([[1.0]]), np.array([[0.0]]))
    assert not budget.finite()
    net, p, X, Y = build_case(SPECS[0], filter_domain=False)
    assert error_budget(net, p, X, Y).finite()
