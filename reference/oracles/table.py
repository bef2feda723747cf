"""The oracle table: every independent reference the referee can consult, in one place.

The referee, the cross-check pairs, ``certify_backward(oracles=...)``, the CLI's ``--oracles`` and
the docs all read this table, so adding an oracle touches one place: write its module, then add
one :class:`OracleEntry` to :data:`ORACLE_TABLE`. Modules are imported only when an oracle is run
(JAX and SymPy take seconds to load).

An entry's ``compute(net, params, X, Y)`` returns the oracle's result: a params-shaped dict of
float64 gradients, or an object with a ``.grads`` dict and more (finite differences carry their
error estimates). It trusts its caller to have validated the case (``net.check_batch``, as the
referee does once per case): targets are the oracles' ``*_unchecked`` entry points, while the
public ``sympy_grads``, ``jax_grads`` and ``fd_grads`` keep validating for direct callers.
It declines a case by raising ``ValueError`` (outside its size or domain),
``ArithmeticError`` or ``NotImplementedError``, with a sentence saying why.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = ["MIN_REFERENCES", "ORACLES", "ORACLE_TABLE", "OracleEntry", "check_oracles", "oracle_label"]


class OracleEntry(NamedTuple):
    """One reference: its short ``name`` (``--oracles``), its ``label`` in reports, and where its
    ``compute`` function lives (``module:function``, imported lazily)."""

    name: str
    label: str
    target: str
    summary: str

    def compute(self, net: Any, params: Mapping[str, Any], X: Any, Y: Any) -> Any:
        module, func = self.target.split(":")
        fn: Callable[..., Any] = getattr(importlib.import_module(module), func)
        return fn(net, params, X, Y)


_PKG = __name__.rsplit(".", 1)[0]

ORACLE_TABLE: Mapping[str, OracleEntry] = MappingProxyType({
    e.name: e for e in (
        OracleEntry("sympy", "SymPy", f"{_PKG}.sympy_oracle:sympy_grads_unchecked",
                    "closed forms of the composite loss, differentiated symbol by symbol"),
        OracleEntry("jax", "JAX", f"{_PKG}.jax_oracle:jax_grads_unchecked",
                    "jax.grad of an independent jax.numpy forward"),
        OracleEntry("fd", "finite differences", f"{_PKG}.finite_diff:fd_grads_unchecked",
                    "central or complex-step differences of a third forward, with error bounds"),
        OracleEntry("mp", "mpmath", f"{_PKG}.mp_oracle:mp_grads_unchecked",
                    "forward-mode dual numbers over the definitions at 50+ digits (small nets)"),
    )
})

ORACLES: tuple[str, ...] = tuple(n for n in ORACLE_TABLE if n != "mp")
"""The oracles the referee consults by default, in order. ``"mp"`` (high precision, small nets,
~0.1-1 s a case) is consulted when named, or for cases outside ``mp_oracle.float64_domain``."""

MIN_REFERENCES = 2
"""A certificate needs every element compared with at least this many independent references."""


def oracle_label(name: str) -> str:
    """The report label of an oracle (``"fd"`` -> ``"finite differences"``); ``"hand"`` is the
    provider under test."""
    return "hand" if name == "hand" else ORACLE_TABLE[name].label


def check_oracles(oracles: object, argument: str = "oracles") -> tuple[str, ...]:
    """Validate a choice of oracles and return it as a tuple of names.

    A string is refused (``"jax"`` would read as three one-letter names), as is an unknown name or
    fewer than :data:`MIN_REFERENCES` distinct oracles (one reference cannot decide a case).
    """
    if isinstance(oracles, str) or not isinstance(oracles, Sequence):
        raise TypeError(f"{argument} must be a sequence of oracle names such as {ORACLES}, "
                        f"got {type(oracles).__name__} {oracles!r}")
    names = tuple(oracles)
    unknown = [n for n in names if n not in ORACLE_TABLE]
    if unknown:
        raise ValueError(f"{argument} has unknown oracle {unknown[0]!r}; choose from {', '.join(ORACLES)}")
    if len(set(names)) < MIN_REFERENCES:
        raise ValueError(f"{argument} names {len(set(names))} distinct oracle(s) ({', '.join(names) or 'none'}): "
                         f"a case needs at least {MIN_REFERENCES} independent references, "
                         f"choose from {', '.join(ORACLES)}")
    return names
