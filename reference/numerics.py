"""Floating-point facts the whole suite shares: the unit roundoff of each dtype, and erf/erfc.

One definition each. The judge's budgets, the finite-difference witness, the SymPy oracle's
evaluation and the optax comparison all read :data:`UNIT_ROUNDOFF` and :func:`unit_roundoff`
from here; erf and erfc are handgrad's own elementwise versions (``handgrad.NUMPY_OPS``: numpy
has neither, so ``math.erf``/``math.erfc`` are vectorized once, there).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np

from handgrad import NUMPY_OPS

__all__ = ["UNIT_ROUNDOFF", "U64", "erf", "erfc", "stack", "unit_roundoff"]

UNIT_ROUNDOFF: MappingProxyType[np.dtype, float] = MappingProxyType(
    {np.dtype(np.float64): 2.0**-53, np.dtype(np.float32): 2.0**-24}
)
"""u = 2^-p for a p-bit significand: the relative error bound of one correctly rounded operation."""

U64 = UNIT_ROUNDOFF[np.dtype(np.float64)]
"""u of float64, 2^-53: the oracles compute in float64."""

erf = NUMPY_OPS.erf
erfc = NUMPY_OPS.erfc


def unit_roundoff(dtype: Any) -> float:
    """u for float32 / float64 (``ValueError`` naming the dtype otherwise)."""
    dt = np.dtype(dtype)
    if dt not in UNIT_ROUNDOFF:
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return UNIT_ROUNDOFF[dt]


def stack(arrays: Any) -> np.ndarray:
    """Arrays of one shape as a fresh C-contiguous stack ``(len(arrays), *shape)``: ``np.array`` of
    the sequence, the same values and dtype as ``np.stack`` at a quarter of its cost on the small
    arrays of the batched oracles and budgets (a few microseconds a call, hundreds of calls a
    batch). Their agreement with the single case relies on the contiguity: ``numpy.matmul`` leaves
    BLAS for a strided operand. Arrays of different shapes are a ``ValueError``, as for ``np.stack``."""
    return np.array(arrays)
