"""A numpy net written in PyTorch's layout, with ``MSELoss``'s mean, certified as written.

``nn.Linear`` stores a weight of shape (out, in) and a bias of shape (out,) and computes
``x @ W.T + b``; the parameters are keyed ``fc1.weight``, ``fc1.bias``, ... as in a
``state_dict``; ``MSELoss()`` takes the mean over the batch *and* the outputs.

Run it: ``python docs/examples/torch_mse.py`` (tested by tests/test_users_code_examples.py).
"""

from __future__ import annotations

import numpy as np
from handgrad.reference import Certificate, CertificationError, Conventions, certify_backward

__all__ = ["CONVENTIONS", "backward", "backward_mean_over_batch_only", "certify"]


def backward(params: dict, X: np.ndarray, Y: np.ndarray, *, divisor: str = "all") -> dict:
    """tanh hidden layer, linear output, loss = ((yhat - Y) ** 2).mean()."""
    W1, b1, W2, b2 = (params[k] for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"))
    hidden = np.tanh(X @ W1.T + b1)
    yhat = hidden @ W2.T + b2
    dyhat = 2 * (yhat - Y) / (Y.size if divisor == "all" else Y.shape[0])
    dhidden = dyhat @ W2 * (1 - hidden ** 2)
    return {"fc1.weight": dhidden.T @ X, "fc1.bias": dhidden.sum(axis=0),
            "fc2.weight": dyhat.T @ hidden, "fc2.bias": dyhat.sum(axis=0)}


def backward_mean_over_batch_only(params: dict, X: np.ndarray, Y: np.ndarray) -> dict:
    """The slip: divided by the batch size N where MSELoss divides by N times the output width."""
    return backward(params, X, Y, divisor="batch")


CONVENTIONS = Conventions(layout="torch", names="fc1.weight/fc1.bias", reduction="mean_all")


def certify(code, **options) -> Certificate:
    """Certify ``code(params, X, Y)`` on a 3-5-3 tanh/identity net with MSELoss's mean."""
    return certify_backward(code, (3, 5, 3), ["tanh", "identity"], "squared_error",
                            conventions=CONVENTIONS, **options)


if __name__ == "__main__":
    print(certify(backward).text())
    try:
        certify(backward_mean_over_batch_only)
    except CertificationError as failure:
        print(failure)
