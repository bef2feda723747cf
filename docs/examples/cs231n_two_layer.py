"""CS231n's two-layer net, certified as the course writes it.

Samples as rows (X of shape (N, D)), W1 of shape (D, H), b1 of shape (H,), ReLU, a softmax
classifier on integer labels y of shape (N,), and L2 regularization ``reg * sum(W * W)`` in the
loss. The model is a class with a ``params`` dict and ``loss(X, y)`` returning ``(loss, grads)``.

Run it: ``python docs/examples/cs231n_two_layer.py`` (tested by tests/test_users_code_examples.py).
"""

from __future__ import annotations

import numpy as np
from handgrad.reference import Certificate, CertificationError, Conventions, certify_backward

__all__ = ["CONVENTIONS", "REG", "ForgotTheTwo", "TwoLayerNet", "certify"]

REG = 0.05


class TwoLayerNet:
    """input - fully connected - ReLU - fully connected - softmax, as in the assignment."""

    l2_factor = 2.0  # d/dW of reg * sum(W * W)

    def __init__(self, input_size: int = 4, hidden_size: int = 10, output_size: int = 3,
                 std: float = 1e-1, reg: float = REG) -> None:
        rng = np.random.default_rng(0)
        self.params = {"W1": std * rng.standard_normal((input_size, hidden_size)), "b1": np.zeros(hidden_size),
                       "W2": std * rng.standard_normal((hidden_size, output_size)), "b2": np.zeros(output_size)}
        self.reg = reg

    def loss(self, X: np.ndarray, y: np.ndarray | None = None):
        W1, b1, W2, b2 = (self.params[k] for k in ("W1", "b1", "W2", "b2"))
        N = X.shape[0]
        hidden = np.maximum(0, X @ W1 + b1)
        scores = hidden @ W2 + b2
        if y is None:
            return scores
        exp = np.exp(scores - scores.max(axis=1, keepdims=True))
        probs = exp / exp.sum(axis=1, keepdims=True)
        loss = -np.log(probs[np.arange(N), y]).mean() + self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2))

        dscores = probs.copy()
        dscores[np.arange(N), y] -= 1
        dscores /= N
        dhidden = dscores @ W2.T
        dhidden[hidden <= 0] = 0
        grads = {"W2": hidden.T @ dscores + self.l2_factor * self.reg * W2, "b2": dscores.sum(axis=0),
                 "W1": X.T @ dhidden + self.l2_factor * self.reg * W1, "b1": dhidden.sum(axis=0)}
        return loss, grads


class ForgotTheTwo(TwoLayerNet):
    """The classic slip: the regularization gradient written ``reg * W`` instead of ``2 * reg * W``."""

    l2_factor = 1.0


CONVENTIONS = Conventions(layout="rows", names="W1/b1", labels="integer", l2=REG)


def certify(model: TwoLayerNet, **options) -> Certificate:
    """Certify the model's ``loss(X, y)`` gradients on the suite's drawn cases."""
    return certify_backward(model, (4, 10, 3), ["relu", "softmax"], "cross_entropy",
                            conventions=CONVENTIONS, **options)


if __name__ == "__main__":
    print(certify(TwoLayerNet()).text())
    try:
        certify(ForgotTheTwo())
    except CertificationError as failure:
        print(failure)
