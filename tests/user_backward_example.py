r"""A user's hand-written backward, as ``handgrad certify --backward`` imports it (used by test_cli).

``correct`` is the article's recurrence for sigmoid layers with squared error, any depth:

.. math::
   \delta^{(L)} = \tfrac{2}{m}(\hat y - y) \odot x^{(L+1)} \odot (1 - x^{(L+1)}), \quad
   \partial L/\partial W^{(l)} = \delta^{(l)} x^{(l)T}, \quad
   \partial L/\partial B^{(l)} = \delta^{(l)} \mathbf 1, \quad
   \delta^{(l-1)} = W^{(l)T}\delta^{(l)} \odot x^{(l)} \odot (1 - x^{(l)})

(here :math:`x^{(l)}` is the input of layer l, as in the article). ``wrong_first_layer`` forgets
the sigmoid derivative when it propagates into the first layer, so only ``W1`` and ``B1`` are wrong.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NOT_CALLABLE", "correct", "wrong_first_layer"]

NOT_CALLABLE = 42


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # Accurate to a few ulps relative to the value everywhere. (0.5 * (1 + tanh(z / 2)) is not: for
    # z << 0 it keeps only absolute accuracy, and the suite rightly flags the gradients it gives.)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _backward(params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray, *, bug: bool) -> dict[str, np.ndarray]:
    L = len(params) // 2
    xs = [X]
    for l in range(1, L + 1):
        xs.append(_sigmoid(params[f"W{l}"] @ xs[-1] + params[f"B{l}"]))
    m = X.shape[1]
    delta = 2.0 / m * (xs[-1] - Y) * xs[-1] * (1 - xs[-1])
    grads = {}
    for l in range(L, 0, -1):
        grads[f"W{l}"] = delta @ xs[l - 1].T
        grads[f"B{l}"] = delta.sum(axis=1, keepdims=True)
        if l > 1:
            g = params[f"W{l}"].T @ delta
            delta = g if (bug and l == 2) else g * xs[l - 1] * (1 - xs[l - 1])
    return grads


def correct(params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
    """The gradients of the mean squared error of a sigmoid network."""
    return _backward(params, X, Y, bug=False)


def wrong_first_layer(params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
    """The same, with the sigmoid derivative of layer 1 forgotten."""
    return _backward(params, X, Y, bug=True)
