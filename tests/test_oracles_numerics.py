"""The oracles read the unit roundoff and erf/erfc from handgrad.reference.numerics, and the SymPy
program's erf is bit for bit what it was (math.erf in double precision, lifted to longdouble)."""

from __future__ import annotations

import math

import numpy as np
from handgrad.reference import numerics
from handgrad.reference.oracles import finite_diff, optax_oracle, running_error
from handgrad.reference.oracles.sympy_codegen import _EVAL_DTYPE, _numpy_namespace

import handgrad as hg


def _points() -> np.ndarray:
    rng = np.random.default_rng(20261201)
    special = [0.0, -0.0, 1e-300, -1e-300, 5e-324, 0.5, -0.5, 1.0, 3.0, -3.0, 5.9, 6.0, 26.5, 27.5, -27.5,
               1e3, -1e3, np.inf, -np.inf]
    return np.concatenate([special, rng.normal(0, 3, 2000), rng.uniform(-30, 30, 2000)])


def test_program_erf_is_bit_for_bit_the_old_one() -> None:
    ns = _numpy_namespace()
    x = _points().astype(_EVAL_DTYPE)
    for name, f in (("erf", math.erf), ("erfc", math.erfc)):
        old = np.asarray(np.vectorize(f, otypes=[np.float64])(np.asarray(x, dtype=np.float64)), dtype=_EVAL_DTYPE)
        new = ns[name](x)
        assert new.dtype == _EVAL_DTYPE
        # equal values and signs (a longdouble's padding bytes are not part of its value)
        assert np.array_equal(new, old) and np.array_equal(np.signbit(new), np.signbit(old)), name
    nan = ns["erf"](np.array([np.nan], dtype=_EVAL_DTYPE))
    assert np.isnan(nan).all()
    scalar = ns["erfc"](_EVAL_DTYPE(0.25))
    assert scalar == _EVAL_DTYPE(math.erfc(0.25))


def test_bounded_erf_values_are_numpy_ops_values() -> None:
    x = _points()[np.isfinite(_points())]
    for name in ("erf", "erfc"):
        bounded = getattr(running_error._BOUNDED_OPS, name)(running_error._Bounded(x))
        assert np.array_equal(bounded.v, getattr(hg.NUMPY_OPS, name)(x))
        assert np.array_equal(bounded.v, getattr(numerics, name)(x))


def test_one_unit_roundoff() -> None:
    assert running_error.U == finite_diff.U == numerics.U64 == 2.0**-53
    assert not hasattr(optax_oracle, "UNIT_ROUNDOFF")
    opt = hg.optim.gd(0.1)
    assert optax_oracle.trajectory_tolerance(opt, 10) == (2 * 12 + 16 + 2 * 10) * numerics.U64
