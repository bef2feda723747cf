"""The domain filter per dtype (issue 10, item (c) of its closing note): an unfused probability
loss's predictions must keep away from 0 and 1 by the float64 oracles' margin *and* by twice
their forward error bound in the case's own dtype, so a float32 run is not filtered with a
float64 number (float32 rounds sigma(17) to 1.0, and log(1 - 1.0) is infinite)."""

from __future__ import annotations

import numpy as np
import pytest
from handgrad.reference import CaseSpec, build_case
from handgrad.reference.cases.spec import PREDICTION_MARGIN_64, in_domain
from handgrad.reference.judge.tolerance import prediction_in_domain

import handgrad as hg


def _one_unit(w: float, dtype: str, *, fuse: bool = False):
    net = hg.Network((1, 1), ["sigmoid"], "bce", fuse=fuse)
    params = {"W1": np.array([[w]], dtype=dtype), "B1": np.zeros((1, 1), dtype=dtype)}
    return net, params, np.ones((1, 1), dtype=dtype)


@pytest.mark.parametrize("w", [13.5, 14.0, -14.0])
def test_a_prediction_near_one_is_inside_in_float64_and_outside_in_float32(w):
    """1 - sigma(14) = 8e-7: far above float64's 1e-9 margin, inside float32's ~1e-5 error reach."""
    assert 1 - 1 / (1 + np.exp(-abs(w))) > PREDICTION_MARGIN_64
    assert in_domain(*_one_unit(w, "float64"))
    assert not in_domain(*_one_unit(w, "float32"))


def test_a_calm_prediction_is_inside_in_both_dtypes_and_the_float64_margin_still_binds():
    for dtype in ("float64", "float32"):
        assert in_domain(*_one_unit(3.0, dtype))
    # 1 - sigma(25) = 1.4e-11: the float64 forward bound alone admits it, the oracles' margin does not.
    net, params, X = _one_unit(25.0, "float64")
    assert prediction_in_domain(net, params, X)
    assert not in_domain(net, params, X)


def test_a_fused_rule_has_no_prediction_margin():
    for dtype in ("float64", "float32"):
        assert in_domain(*_one_unit(14.0, dtype, fuse=True))


def test_build_case_refuses_a_float32_case_outside_naming_the_dtype():
    spec = CaseSpec((3, 4, 1), ("tanh", "sigmoid"), "bce", False, 3, "saturating", 18)
    net, params, X, _ = build_case(spec, "float32", filter_domain=False)
    assert not in_domain(net, params, X)
    with pytest.raises(ValueError, match="outside the oracles' domain in float32"):
        build_case(spec, "float32")


def test_every_float32_case_the_filter_admits_has_a_finite_unfused_loss():
    """The issue's repro, as a property over seeds: whatever the filter lets through in float32 is
    a case the float32 forward can evaluate (no prediction rounded onto 0 or 1)."""
    admitted = 0
    for seed in range(60):
        spec = CaseSpec((3, 4, 1), ("tanh", "sigmoid"), "bce", False, 1 + seed % 4,
                        ("unit", "large", "saturating")[seed % 3], seed)
        net, params, X, Y = build_case(spec, "float32", filter_domain=False)
        if not in_domain(net, params, X):
            continue
        admitted += 1
        p = net.predict(params, X)
        assert np.all((p > 0) & (p < 1)), spec
        assert np.isfinite(net.loss_value(params, X, Y)), spec
    assert admitted >= 20


@pytest.mark.parametrize("seed", [18, 55, 73, 125])
def test_float32_cases_the_float64_margin_admitted_with_a_prediction_rounded_onto_0_or_1(seed):
    """Found by searching seeds: the old filter (1e-9 only) admitted these float32 cases, whose
    float32 forward returns a prediction of exactly 0 or 1 (an infinite binary cross-entropy)."""
    from handgrad.reference.cases.spec import _float64_domain

    spec = CaseSpec((3, 4, 1), ("tanh", "sigmoid"), "bce", False, 1 + seed % 4, "saturating", seed)
    net, params, X, _ = build_case(spec, "float32", filter_domain=False)
    p = net.predict(params, X)
    assert _float64_domain(net, params, X) and not np.all((p > 0) & (p < 1))
    assert not in_domain(net, params, X)
