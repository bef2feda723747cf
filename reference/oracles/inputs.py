"""Input checks and errors shared by the JAX oracle and the finite-difference witness.

The oracles take exactly what handgrad's ``Network.backward`` takes, and reject exactly what it
rejects, with the same messages: a ``Network``, a params dict with the keys and shapes of
``net.param_shapes`` in one float dtype, ``X`` of shape ``(n0, m)`` with ``m >= 1`` and ``Y`` of
shape ``(nL, m)`` in that same dtype, all finite, labels inside the loss's target range.
Nothing is coerced or broadcast; the oracles cast *copies* to float64 afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from handgrad import Network
from handgrad.validation import check_array

__all__ = [
    "NonFiniteError",
    "OracleRangeError",
    "as_float64",
    "check_batch",
    "check_network",
    "first_nonfinite",
]


class NonFiniteError(FloatingPointError):
    """An oracle produced inf or NaN from valid, finite input.

    It almost always means a shared *definition* overflowed in float64 (``exp`` of more than
    ~709.78), which handgrad's stable numpy forms avoid; the message names the tensor.
    """


class OracleRangeError(FloatingPointError):
    """An oracle's float64 evaluation would silently lose terms at this point (no inf or NaN
    shows it), so it declines to referee it; the message says why and where."""


def check_network(net: object, who: str) -> Network:
    """Raise ``TypeError`` unless ``net`` is a :class:`handgrad.Network`."""
    if not isinstance(net, Network):
        raise TypeError(f"{who}: net must be a handgrad.Network, got {type(net).__name__}")
    return net


def check_batch(net: Network, params: Mapping[str, np.ndarray], X: object, Y: object | None) -> None:
    """Validate ``params``, ``X`` (and ``Y`` unless it is None) against ``net``."""
    dtype = net.check_params(params)
    check_array("X", X, (net.sizes[0], None), dtype=dtype)
    assert isinstance(X, np.ndarray)
    if X.shape[1] == 0:
        raise ValueError(f"X has shape {X.shape}: the batch is empty (expected ({net.sizes[0]}, m) with m >= 1)")
    if Y is not None:
        check_array("Y", Y, (net.sizes[-1], X.shape[1]), dtype=dtype)
        assert isinstance(Y, np.ndarray)
        net.loss.check_target(Y)


def as_float64(params: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    """Float64 copies of ``params`` in the order ``names`` (W1, B1, W2, ...)."""
    return [np.array(params[k], dtype=np.float64) for k in names]


def first_nonfinite(x: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first inf/NaN in ``x``, or None if every entry is finite."""
    finite = np.isfinite(x)
    if finite.all():
        return None
    return tuple(int(i) for i in np.argwhere(~finite)[0])
