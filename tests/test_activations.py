"""Activations: shapes, dtypes, stability at extreme inputs, hand derivatives vs differences.

The finite-difference check here is the foundation's own smoke test of each derivative; the
referee's oracles (SymPy, JAX, certified finite differences) cover the same ground with derived
budgets in tests/test_properties.py.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from handgrad.reference.oracles.ops import SYMPY_OPS
from hypothesis import given
from hypothesis import strategies as st

import handgrad as hg

ELEMENTWISE = [a for a in hg.iter_activations() if a.elementwise]


def _reference_derivative(act: hg.Activation, z: float) -> float:
    """d/dz of the shared definition, by SymPy, evaluated to 60 digits (z away from kinks)."""
    t = sp.Symbol("t", real=True)
    f = sp.lambdify(t, sp.diff(act.definition(t, SYMPY_OPS), t), "mpmath")
    # Enough digits to survive the cancellations in SymPy's forms (1 - tanh^2, 1/2 + erf/2): the
    # result can be as small as e^{-4|z|} (tanh: 1.74|z| digits below 1) or, for GELU,
    # e^{-z^2/2} (0.22 z^2 digits).
    digits = 0.22 * z * z if act.name == "gelu" else 1.8 * abs(z)
    with mpmath.workdps(80 + int(digits)):
        return float(f(mpmath.mpf(z)))


@pytest.mark.parametrize("act", list(hg.iter_activations()), ids=lambda a: a.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_and_dtype_preserved(act: hg.Activation, dtype: type) -> None:
    z = np.linspace(-3, 3, 12, dtype=dtype).reshape(3, 4)
    a = act(z)
    assert a.shape == z.shape and a.dtype == z.dtype
    g = np.ones_like(z)
    d = act.backward(z, a, g)
    assert d.shape == z.shape and d.dtype == z.dtype


@pytest.mark.parametrize("act", list(hg.iter_activations()), ids=lambda a: a.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_are_finite_and_silent(act: hg.Activation, dtype: type) -> None:
    # pytest runs with warnings as errors, so an overflow warning fails this test.
    z = np.array([[-1e4, -1000.0, -40.0, 0.0, 40.0, 1000.0, 1e4]], dtype=dtype).T
    z = np.repeat(z, 2, axis=1)
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow to 0 is fine
        a = act(z)
        d = act.backward(z, a, np.ones_like(z))
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(d))


# Points where the hand derivative must match a 50-digit reference to high relative accuracy,
# including the saturated tails where a(1-a) or 1-a^2 would cancel.
EXTREME_POINTS = [-700.0, -100.0, -30.0, -5.0, -0.5, 0.25, 3.0, 30.0, 100.0]


@pytest.mark.parametrize("act", ELEMENTWISE, ids=lambda a: a.name)
def test_derivative_accurate_in_the_tails(act: hg.Activation) -> None:
    z = np.array([EXTREME_POINTS])
    d = act.derivative(z, act(z))[0]
    for zi, di in zip(EXTREME_POINTS, d, strict=True):
        if act.name == "gelu" and abs(zi) > 37:
            continue  # the true value is below 1e-300 (e^{-z^2/2}); both are 0 in float64
        ref = _reference_derivative(act, zi)
        # Relative accuracy of a few ulp wherever the true value is a normal float; the budget is
        # 64 eps for exp/erfc-based formulas with O(1) operations, each exact to 1/2 ulp, plus the
        # conditioning of exp(-|z|) in |z| (|z| * eps relative error from rounding z itself is zero
        # here because z is exact).
        assert abs(di - ref) <= 64 * np.finfo(float).eps * abs(ref) + 1e-300, (act.name, zi, di, ref)


def test_sigmoid_named_edges() -> None:
    sig = hg.get_activation("sigmoid")
    z = np.array([[-1000.0, 1000.0]])
    assert sig(z).tolist() == [[0.0, 1.0]]
    assert sig.derivative(z, sig(z)).tolist() == [[0.0, 0.0]]


def test_relu_at_zero_is_zero() -> None:
    relu = hg.get_activation("relu")
    z = np.zeros((2, 1))
    assert relu.derivative(z, relu(z)).tolist() == [[0.0], [0.0]]


@pytest.mark.parametrize(("act", "expected"), [(hg.leaky_relu(0.2), 0.2), (hg.elu(0.5), 0.5)],
                         ids=["leaky_relu", "elu"])
def test_kink_convention_is_left_branch(act: hg.Activation, expected: float) -> None:
    z = np.zeros((1, 1))
    assert act.derivative(z, act(z))[0, 0] == expected


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("act", list(hg.iter_activations()), ids=lambda a: a.name)
def test_non_finite_input_rejected(act: hg.Activation, bad: float) -> None:
    z = np.array([[0.5, bad]])
    with pytest.raises(ValueError, match="non-finite"):
        act(z)


# Central differences with step h = 1e-5 * max(1, |z|): truncation h^2 |f'''|/6 <= ~1e-10 * |f'''|,
# rounding ~ eps |f| / h <= 2.2e-11 * |f| / max(1,|z|); for |z| <= 8 and these activations
# |f'''| <= 1 and |f| <= 8, so an absolute budget of 1e-8 leaves a margin of > 10x.
@pytest.mark.parametrize("act", ELEMENTWISE, ids=lambda a: a.name)
@given(z=st.floats(-8, 8).filter(lambda v: abs(v) > 1e-3))
def test_derivative_matches_central_difference(act: hg.Activation, z: float) -> None:
    h = 1e-5 * max(1.0, abs(z))
    zz = np.array([[z - h, z, z + h]])
    f = act(zz)[0]
    fd = (f[2] - f[0]) / (2 * h)
    d = act.derivative(zz[:, 1:2], act(zz[:, 1:2]))[0, 0]
    assert math.isclose(d, fd, abs_tol=1e-8), (z, d, fd)


@given(z=st.lists(st.floats(-30, 30), min_size=1, max_size=6), g=st.integers(0, 2**32 - 1))
def test_softmax_vjp_is_jacobian_transpose_product(z: list[float], g: int) -> None:
    sm = hg.get_activation("softmax")
    zc = np.array(z)[:, None]
    a = sm(zc)
    gv = np.random.default_rng(g).standard_normal(zc.shape)
    J = np.diag(a[:, 0]) - a @ a.T  # da_i/dz_j = a_i (delta_ij - a_j), written out in full
    np.testing.assert_allclose(sm.backward(zc, a, gv), J.T @ gv, rtol=1e-12, atol=1e-15)
    assert abs(a.sum() - 1) < 1e-15 * len(z) * 4


def test_numpy_ops_erf_and_erfc_take_python_scalars_and_arrays_alike() -> None:
    import math

    from handgrad import NUMPY_OPS

    for f, ref in ((NUMPY_OPS.erf, math.erf), (NUMPY_OPS.erfc, math.erfc)):
        assert float(f(0.5)) == ref(0.5)
        assert f(np.array([0.5, -2.0])).tolist() == [ref(0.5), ref(-2.0)]
