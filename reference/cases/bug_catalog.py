r"""The bug catalog: realistic backprop mistakes, each written as a wrong ``backward(params, X, Y)``.

A verification suite is only as good as the bugs it catches. Every entry here must be caught by
:func:`handgrad.reference.certify_backward`, with the report naming a tensor the bug corrupts
(``tests/test_bug_catalog.py``). The correct baseline, :class:`Textbook`, is the article's
recurrence written the way a student would write it; each bug overrides exactly one step::

    delta_L = residual * f'(z_L)                      (output_delta)
    for l = L..1:
        dW_l = delta_l a_{l-1}^T                      (weight_grad)
        dB_l = sum over the batch of delta_l          (bias_grad)
        g    = W_l^T delta_l                          (propagate)
        delta_{l-1} = g * f'_{l-1}(z_{l-1})           (hidden_delta, derivative)

Only elementwise activations and squared error are used by the baseline, except where a bug is
about softmax, whose baseline is the unfused cross-entropy with the full Jacobian.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from handgrad import Params

__all__ = ["Bug", "BUGS", "Textbook", "bug_names", "get_bug"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


_F: dict[str, Callable[[np.ndarray], np.ndarray]] = {"sigmoid": _sigmoid, "tanh": np.tanh, "softmax": _softmax}


class Textbook:
    """A correct hand-written backward for sigmoid/tanh layers with squared error (or a softmax
    output with unfused cross-entropy), written from scratch the way the article derives it."""

    def __init__(self, activations: Sequence[str], loss: str = "squared_error") -> None:
        self.acts = list(activations)
        self.loss = loss

    # -- the steps a bug may override --------------------------------------------------------

    def derivative(self, name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return a * (1 - a) if name == "sigmoid" else 1 - a * a

    def residual(self, yhat: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return 2 * (yhat - Y) / Y.shape[1]

    def output_delta(self, z: np.ndarray, a: np.ndarray, Y: np.ndarray) -> np.ndarray:
        if self.acts[-1] == "softmax":  # dl/dp = -y/p, then the full Jacobian a_i(delta_ij - a_j)
            g = -Y / a / Y.shape[1]
            return a * (g - np.sum(g * a, axis=0, keepdims=True))
        return self.residual(a, Y) * self.derivative(self.acts[-1], z, a)

    def weight_grad(self, delta: np.ndarray, a_prev: np.ndarray, X: np.ndarray) -> np.ndarray:
        return delta @ a_prev.T

    def bias_grad(self, delta: np.ndarray) -> np.ndarray:
        return np.sum(delta, axis=1, keepdims=True)

    def propagate(self, W: np.ndarray, dW: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return W.T @ delta

    def hidden_delta(self, layer: int, g: np.ndarray, zs: list, acts: list) -> np.ndarray:
        return g * self.derivative(self.acts[layer - 1], zs[layer - 1], acts[layer])

    # -- the recurrence ----------------------------------------------------------------------

    def __call__(self, params: Params, X: np.ndarray, Y: np.ndarray) -> Params:
        L = len(self.acts)
        zs, acts = [], [X]
        for l in range(1, L + 1):
            zs.append(params[f"W{l}"] @ acts[-1] + params[f"B{l}"])
            acts.append(_F[self.acts[l - 1]](zs[-1]))
        grads: Params = {}
        delta = self.output_delta(zs[-1], acts[-1], Y)
        for l in range(L, 0, -1):
            grads[f"W{l}"] = self.weight_grad(delta, acts[l - 1], X)
            grads[f"B{l}"] = self.bias_grad(delta)
            if l > 1:
                g = self.propagate(params[f"W{l}"], grads[f"W{l}"], delta)
                delta = self.hidden_delta(l - 1, g, zs, acts)
        return grads


# ---------------------------------------------------------------------------------------------
# The bugs: each overrides one step of the textbook recurrence.
# ---------------------------------------------------------------------------------------------

class MissingTranspose(Textbook):
    """g = W delta instead of W^T delta in a square layer, where shapes cannot reveal it (in a
    non-square layer the same slip raises at once, so the student fixed that one)."""

    def propagate(self, W: np.ndarray, dW: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return W @ delta if W.shape[0] == W.shape[1] else W.T @ delta


class DerivativeAtZ(Textbook):
    """sigma'(z) written as z(1 - z): the article's x(1-x) with the pre-activation plugged in."""

    def derivative(self, name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return z * (1 - z) if name == "sigmoid" else 1 - z * z


class ResidualSignFlipped(Textbook):
    """2(y - yhat) instead of 2(yhat - y): the sign the article prints in its GD formulas."""

    def residual(self, yhat: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return 2 * (Y - yhat) / Y.shape[1]


class FactorTwoMissing(Textbook):
    """d/dyhat (yhat - y)^2 taken as (yhat - y)."""

    def residual(self, yhat: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return (yhat - Y) / Y.shape[1]


class BiasNotSummed(Textbook):
    """dB from the first sample only: single-sample code applied to a batch."""

    def bias_grad(self, delta: np.ndarray) -> np.ndarray:
        return delta[:, :1].copy()


class BiasMeanNotSum(Textbook):
    """dB averaged over the batch while dW sums: the 1/m applied twice to the bias."""

    def bias_grad(self, delta: np.ndarray) -> np.ndarray:
        return np.mean(delta, axis=1, keepdims=True)


class UpdatedBeforePropagate(Textbook):
    """W updated (lr 0.1) before it is used to propagate delta to the layer below."""

    def propagate(self, W: np.ndarray, dW: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return (W - 0.1 * dW).T @ delta


class SoftmaxDiagonal(Textbook):
    """Softmax Jacobian taken as its diagonal a(1 - a), like an elementwise activation."""

    def output_delta(self, z: np.ndarray, a: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return (-Y / a / Y.shape[1]) * a * (1 - a)


class TanhPrimeOfZ(Textbook):
    """tanh'(z) written as 1 - z^2 instead of 1 - tanh(z)^2."""

    def derivative(self, name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return 1 - z * z if name == "tanh" else a * (1 - a)


class InputInDeeperLayer(Textbook):
    """Every dW uses the network input X as a_prev (shapes agree when the widths are equal)."""

    def weight_grad(self, delta: np.ndarray, a_prev: np.ndarray, X: np.ndarray) -> np.ndarray:
        return delta @ X.T


class LabelBroadcast(Textbook):
    """Labels flattened to (m,) and reshaped to a column (m, 1): yhat (1, m) - y (m, 1) broadcasts
    to (m, m); averaging it back to (1, m) gives yhat_j - mean(y) instead of yhat_j - y_j."""

    def residual(self, yhat: np.ndarray, Y: np.ndarray) -> np.ndarray:
        y = Y.ravel()[:, None]
        return 2 * np.mean(yhat - y, axis=0, keepdims=True) / Y.shape[1]


class ClippedSaturation(Textbook):
    """The derivative zeroed for 'saturated' units, |z| > 5, as a speed-up."""

    def derivative(self, name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return np.where(np.abs(z) > 5, 0.0, super().derivative(name, z, a))


class WrongLayerDerivative(Textbook):
    """Off by one layer: the hidden layer uses the next layer's activation derivative."""

    def hidden_delta(self, layer: int, g: np.ndarray, zs: list, acts: list) -> np.ndarray:
        return g * self.derivative(self.acts[layer], zs[layer - 1], acts[layer])


class Float32Intermediate(Textbook):
    """delta rounded to float32 on the way down: precision leaking into a float64 backward."""

    def hidden_delta(self, layer: int, g: np.ndarray, zs: list, acts: list) -> np.ndarray:
        return super().hidden_delta(layer, g, zs, acts).astype(np.float32).astype(g.dtype)


@dataclass(frozen=True)
class Bug:
    """One catalog entry: a wrong backward and the architecture it is certified against."""

    name: str
    description: str
    make: Callable[[], Callable[[Params, np.ndarray, np.ndarray], Params]]
    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    fuse: bool
    corrupts: frozenset[str]

    def certify_kwargs(self) -> dict[str, Any]:
        return {"sizes": self.sizes, "activations": list(self.activations), "loss": self.loss, "fuse": self.fuse}


def _bug(cls: type[Textbook], sizes: tuple[int, ...], acts: tuple[str, ...], corrupts: str,
         loss: str = "squared_error", fuse: bool = True) -> Bug:
    doc = (cls.__doc__ or "").strip().splitlines()
    return Bug(cls.__name__, " ".join(line.strip() for line in doc), lambda: cls(acts, loss), sizes, acts, loss,
               fuse, frozenset(corrupts.split()))


SQ = (3, 3, 3, 1)
SIG3 = ("sigmoid", "sigmoid", "sigmoid")
BUGS: list[Bug] = [
    _bug(MissingTranspose, SQ, SIG3, "W1 B1"),
    _bug(DerivativeAtZ, SQ, SIG3, "W1 B1 W2 B2 W3 B3"),
    _bug(ResidualSignFlipped, SQ, SIG3, "W1 B1 W2 B2 W3 B3"),
    _bug(FactorTwoMissing, SQ, SIG3, "W1 B1 W2 B2 W3 B3"),
    _bug(BiasNotSummed, SQ, SIG3, "B1 B2 B3"),
    _bug(BiasMeanNotSum, SQ, SIG3, "B1 B2 B3"),
    _bug(UpdatedBeforePropagate, SQ, SIG3, "W1 B1 W2 B2"),
    _bug(SoftmaxDiagonal, (3, 4, 3), ("tanh", "softmax"), "W1 B1 W2 B2", loss="cross_entropy", fuse=False),
    _bug(TanhPrimeOfZ, (2, 3, 3, 1), ("tanh", "tanh", "sigmoid"), "W1 B1 W2 B2"),
    _bug(InputInDeeperLayer, SQ, SIG3, "W2 W3"),
    _bug(LabelBroadcast, (2, 3, 1), ("sigmoid", "sigmoid"), "W1 B1 W2 B2"),
    _bug(ClippedSaturation, (2, 3, 3, 1), SIG3, "W1 B1 W2 B2 W3 B3"),
    _bug(WrongLayerDerivative, (2, 3, 3, 1), ("tanh", "sigmoid", "sigmoid"), "W1 B1"),
    _bug(Float32Intermediate, SQ, SIG3, "W1 B1 W2 B2"),
]


def bug_names() -> list[str]:
    return [b.name for b in BUGS]


def get_bug(name: str) -> Bug:
    for b in BUGS:
        if b.name == name:
            return b
    raise ValueError(f"unknown bug {name!r}; the catalog has {bug_names()}")
