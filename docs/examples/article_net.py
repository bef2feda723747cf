"""The article's 2-3-3-1 sigmoid net with squared error, written as a class, certified as written.

The article's conventions are the suite's own (samples as columns, W of shape (out, in), B of
shape (out, 1), the mean over the batch of (y_hat - y)^2), so ``Conventions()`` declares nothing
new; the model object is used as it is: a ``params`` dict and ``backward(X, Y)``.

Run it: ``python docs/examples/article_net.py`` (tested by tests/test_users_code_examples.py).
"""

from __future__ import annotations

import numpy as np
from handgrad.reference import Certificate, CertificationError, Conventions, certify_backward

__all__ = ["ArticleNet", "TransposedW2", "certify"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


class ArticleNet:
    """x -> sigmoid(W1 x + B1) -> sigmoid(W2 . + B2) -> sigmoid(W3 . + B3) = y_hat."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.params = {}
        for l, (n_in, n_out) in enumerate(((2, 3), (3, 3), (3, 1)), start=1):
            self.params[f"W{l}"] = rng.standard_normal((n_out, n_in))
            self.params[f"B{l}"] = rng.standard_normal((n_out, 1))

    def dW(self, delta: np.ndarray, a_prev: np.ndarray, layer: int) -> np.ndarray:
        """dL/dW(l) = delta(l) x(l-1)^T, the article's matrix form."""
        return delta @ a_prev.T

    def backward(self, X: np.ndarray, Y: np.ndarray) -> dict:
        p, m = self.params, X.shape[1]
        a = [X]
        for l in (1, 2, 3):
            a.append(sigmoid(p[f"W{l}"] @ a[-1] + p[f"B{l}"]))
        grads = {}
        upstream = 2 * (a[3] - Y) / m  # dL/dy_hat of the mean of (y_hat - y)^2
        for l in (3, 2, 1):
            delta = upstream * a[l] * (1 - a[l])
            grads[f"W{l}"] = self.dW(delta, a[l - 1], l)
            grads[f"B{l}"] = delta.sum(axis=1, keepdims=True)
            upstream = p[f"W{l}"].T @ delta
        return grads


class TransposedW2(ArticleNet):
    """The slip a square layer hides: dW(2) written x(1) delta(2)^T, its transpose."""

    def dW(self, delta: np.ndarray, a_prev: np.ndarray, layer: int) -> np.ndarray:
        return (delta @ a_prev.T).T if layer == 2 else delta @ a_prev.T


def certify(model: ArticleNet, **options) -> Certificate:
    """Certify the model's ``backward(X, Y)`` on the article's architecture."""
    return certify_backward(model, (2, 3, 3, 1), "sigmoid", "squared_error", conventions=Conventions(), **options)


if __name__ == "__main__":
    print(certify(ArticleNet()).text())
    try:
        certify(TransposedW2())
    except CertificationError as failure:
        print(failure)
