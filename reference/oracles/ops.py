"""The ``Ops`` namespaces the oracles evaluate shared definitions with.

An activation's or loss's ``definition(z, ops)`` is written once (see ``handgrad.activations``);
here are the namespaces the oracles plug in:

* :func:`jax_ops` -- ``jax.numpy`` (x64 enabled), so that ``jax.grad`` differentiates it.
* :data:`SYMPY_OPS` -- SymPy, on SymPy scalars or on numpy *object* arrays of SymPy expressions;
  ``where(c, x, y)`` becomes ``Piecewise((x, c), (y, True))``.
* :data:`MPMATH_OPS` -- mpmath on numpy object arrays of mpmath numbers (high-precision references
  in tests and measurement scripts).

``SYMPY_OPS`` and ``MPMATH_OPS`` are built on first access and ``jax_ops()`` on its first call, so
importing this module loads none of SymPy, mpmath or JAX.

No namespace knows any derivative: differentiation is the oracle's job.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["MPMATH_OPS", "SYMPY_OPS", "SympyOps", "import_jax", "jax_ops"]


def _lift(f: Any) -> Any:
    """Apply scalar SymPy function ``f`` elementwise to object arrays, or directly to a scalar."""
    uf = np.frompyfunc(f, 1, 1)

    def g(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return uf(x).astype(object) if x.ndim else f(x.item())
        return f(x)

    return g


class SympyOps:
    """``Ops`` on SymPy expressions (scalars or object arrays)."""

    def __init__(self) -> None:
        import sympy as sp

        self._sp = sp
        self.pi = sp.pi
        self.exp = _lift(sp.exp)
        self.log = _lift(sp.log)
        self.log1p = _lift(lambda x: sp.log(1 + x))
        self.expm1 = _lift(lambda x: sp.exp(x) - 1)
        self.tanh = _lift(sp.tanh)
        self.erf = _lift(sp.erf)
        self.erfc = _lift(sp.erfc)
        self.sqrt = _lift(sp.sqrt)
        self._where = np.frompyfunc(lambda c, x, y: sp.Piecewise((x, c), (y, True)), 3, 1)

    def where(self, cond: Any, x: Any, y: Any) -> Any:
        if any(isinstance(v, np.ndarray) for v in (cond, x, y)):
            return self._where(cond, x, y).astype(object)
        return self._sp.Piecewise((x, cond), (y, True))

    @staticmethod
    def colsum(x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return np.sum(x, axis=0, keepdims=True)
        return x



def import_jax() -> Any:
    """``import jax``, leaving ``np.random``'s global state as it found it: the first import of
    JAX draws from it, and the referee promises a caller's global state back after a case (it was
    found by ``tests/test_case_design.py::test_np_random_is_seeded_per_case_and_restored`` run alone,
    as the first use of JAX in a process)."""
    import sys

    if "jax" not in sys.modules:
        state = np.random.get_state()
        try:
            import jax
        finally:
            np.random.set_state(state)
    import jax

    return jax


class _JaxOps:
    pi = math.pi

    def __init__(self) -> None:
        jax = import_jax()
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        import jax.scipy.special as jsp

        self.exp, self.log, self.log1p, self.expm1 = jnp.exp, jnp.log, jnp.log1p, jnp.expm1
        self.tanh, self.sqrt, self.where, self.erf, self.erfc = jnp.tanh, jnp.sqrt, jnp.where, jsp.erf, jsp.erfc
        self._jnp = jnp

    def colsum(self, x: Any) -> Any:
        return self._jnp.sum(x, axis=0, keepdims=True)


_JAX_OPS: _JaxOps | None = None


def jax_ops() -> _JaxOps:
    """The ``jax.numpy`` namespace (created on first use, so importing this module needs no JAX)."""
    global _JAX_OPS
    if _JAX_OPS is None:
        _JAX_OPS = _JaxOps()
    return _JAX_OPS


class _MpmathOps:
    """``Ops`` on numpy object arrays of mpmath numbers (precision set by ``mpmath.workdps``)."""

    def __init__(self) -> None:
        import mpmath

        self.pi = mpmath.pi
        for name in ("exp", "log", "log1p", "expm1", "tanh", "erf", "erfc", "sqrt"):
            setattr(self, name, np.frompyfunc(getattr(mpmath, name), 1, 1))
        self.where = np.where

    @staticmethod
    def colsum(x: Any) -> Any:
        return np.sum(x, axis=0, keepdims=True)


SYMPY_OPS: SympyOps  # built on first access, see __getattr__
MPMATH_OPS: _MpmathOps

_LAZY: dict[str, Callable[[], Any]] = {"SYMPY_OPS": SympyOps, "MPMATH_OPS": _MpmathOps}
"""The namespaces built on first access (PEP 562): importing this module loads neither SymPy nor
mpmath."""


def __getattr__(name: str) -> Any:
    build = _LAZY.get(name)
    if build is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = build()  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
