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

The baseline handles sigmoid, tanh and relu layers (relu'(0) = 0, the suite's convention) with
squared error or unfused binary cross-entropy, and a softmax output with unfused cross-entropy
(the full Jacobian).

The second part of the catalog (issue 10) holds bugs that only the case design catches -- each
entry's ``trap`` names the explicit case (:mod:`handgrad.reference.cases.traps`) or check that
catches it: batches past a block of 8, duplicated samples, a kink met exactly, saturation brought
into the domain by rescaling, unnormalized labels, and the two calls per case that expose a
nondeterministic backward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from handgrad import Params

__all__ = ["Bug", "BUGS", "CORRECT_WITH_NOTE", "Textbook", "bug_names", "get_bug"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


_F: dict[str, Callable[[np.ndarray], np.ndarray]] = {"sigmoid": _sigmoid, "tanh": np.tanh, "softmax": _softmax,
                                                     "relu": lambda z: np.maximum(z, 0.0)}


class Textbook:
    """A correct hand-written backward for sigmoid/tanh layers with squared error (or a softmax
    output with unfused cross-entropy), written from scratch the way the article derives it."""

    def __init__(self, activations: Sequence[str], loss: str = "squared_error") -> None:
        self.acts = list(activations)
        self.loss = loss

    # -- the steps a bug may override --------------------------------------------------------

    def forward(self, name: str, z: np.ndarray) -> np.ndarray:
        return _F[name](z)

    def derivative(self, name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        if name == "relu":
            return (z > 0).astype(z.dtype)
        return a * (1 - a) if name == "sigmoid" else 1 - a * a

    def residual(self, yhat: np.ndarray, Y: np.ndarray) -> np.ndarray:
        if self.loss == "bce":  # d/dyhat of -(y log yhat + (1 - y) log(1 - yhat)), unfused
            return self.bce_residual(yhat, Y) / Y.shape[1]
        return 2 * (yhat - Y) / Y.shape[1]

    def bce_residual(self, yhat: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return (yhat - Y) / (yhat * (1 - yhat))

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
            acts.append(self.forward(self.acts[l - 1], zs[-1]))
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


# ---------------------------------------------------------------------------------------------
# Bugs only the case design catches (issue 10): each names, in its catalog entry, the trap.
# ---------------------------------------------------------------------------------------------

def _chunks(X: np.ndarray, Y: np.ndarray, size: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(X[:, s:s + size], Y[:, s:s + size]) for s in range(0, X.shape[1], size)]


class ChunkedMeanOfMeans(Textbook):
    """The batch processed in chunks of 8 samples, each chunk's gradient averaged over the chunk
    and the chunk averages averaged: the mean of means, wrong once m > 8 and 8 does not divide m."""

    def __call__(self, params: Params, X: np.ndarray, Y: np.ndarray) -> Params:
        parts = [Textbook.__call__(self, params, x, y) for x, y in _chunks(X, Y)]
        return {k: sum(p[k] for p in parts) / len(parts) for k in parts[0]}


class ChunkedOverwrite(Textbook):
    """Gradients accumulated over chunks of 8 samples with = instead of +=: only the last chunk
    counts (weighted by its share of the batch) once m > 8."""

    def __call__(self, params: Params, X: np.ndarray, Y: np.ndarray) -> Params:
        grads: Params = {}
        for x, y in _chunks(X, Y):
            part = Textbook.__call__(self, params, x, y)
            grads = {k: v * (x.shape[1] / X.shape[1]) for k, v in part.items()}  # forgot the +=
        return grads


class ReluPrimeOneAtZero(Textbook):
    """relu'(z) written (z >= 0): the derivative at the kink is 1, against the suite's relu'(0) = 0."""

    def derivative(self, name: str, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return (z >= 0).astype(z.dtype) if name == "relu" else super().derivative(name, z, a)


class NondeterministicOnceIn20(Textbook):
    """A 'stochastic' speed-up: one call in 20 (through np.random) skips the first layer's bias
    gradient."""

    def __call__(self, params: Params, X: np.ndarray, Y: np.ndarray) -> Params:
        grads = super().__call__(params, X, Y)
        if np.random.random() < 0.05:
            grads["B1"] = np.zeros_like(grads["B1"])
        return grads


class SigmoidViaTanh(Textbook):
    """Correct, not a bug: sigma(z) written 0.5 (1 + tanh(z / 2)) (absolute accuracy u only, 0 where
    the true value is 1e-18), sigma' = a (1 - a). A baseline the referee must certify."""

    def forward(self, name: str, z: np.ndarray) -> np.ndarray:
        return 0.5 * (1 + np.tanh(z / 2)) if name == "sigmoid" else super().forward(name, z)


class ReluPrimeOneBelowLayer1(Textbook):
    """relu'(z) written (z >= 0) in layers 2 and up only: layer 1 follows the convention, so only a
    unit exactly on its kink below the first layer (the deep dyadic trap) can see it."""

    def hidden_delta(self, layer: int, g: np.ndarray, zs: list, acts: list) -> np.ndarray:
        if layer >= 2 and self.acts[layer - 1] == "relu":
            return g * (zs[layer - 1] >= 0).astype(g.dtype)
        return super().hidden_delta(layer, g, zs, acts)


class OsEntropy(Textbook):
    """One call in 10 (decided by os.urandom, which no seed controls) zeroes the first layer's bias
    gradient."""

    def __call__(self, params: Params, X: np.ndarray, Y: np.ndarray) -> Params:
        import os

        grads = super().__call__(params, X, Y)
        if os.urandom(1)[0] < 26:
            grads["B1"] = np.zeros_like(grads["B1"])
        return grads


class BceClipInGradient(Textbook):
    """dL/dyhat of the binary cross-entropy computed on yhat clipped to [1e-7, 1 - 1e-7]
    (a Keras-style epsilon) while the loss is the unclipped one: wrong only where a prediction is
    within 1e-7 of 0 or 1."""

    def bce_residual(self, yhat: np.ndarray, Y: np.ndarray) -> np.ndarray:
        p = np.clip(yhat, 1e-7, 1 - 1e-7)
        return (p - Y) / (p * (1 - p))


class DedupSamples(Textbook):
    """Duplicate samples computed once (np.unique over the columns) to save time, but the mean is
    then taken over the unique samples: duplicates lose their weight."""

    def __call__(self, params: Params, X: np.ndarray, Y: np.ndarray) -> Params:
        u = np.unique(np.vstack([X, Y]), axis=1)
        return super().__call__(params, u[:X.shape[0]], u[X.shape[0]:])


class SoftmaxDeltaAssumesNormalizedLabels(Textbook):
    """The softmax + cross-entropy shortcut dL/dz = a - y, which holds only when each label column
    sums to 1; the cross-entropy's definition admits any non-negative labels, where it is
    a * sum(y) - y. (Code written for one-hot or soft labels declares ``labels=("onehot", "soft")``
    and is certified for them.)"""

    def output_delta(self, z: np.ndarray, a: np.ndarray, Y: np.ndarray) -> np.ndarray:
        if self.acts[-1] == "softmax":
            return (a - Y) / Y.shape[1]
        return super().output_delta(z, a, Y)


class MutatesY(Textbook):
    """Not a bug in the gradients: correct values, but Y is overwritten in place with Y - 1 (the
    caller's labels change). Certified, with a note naming Y."""

    def __call__(self, params: Params, X: np.ndarray, Y: np.ndarray) -> Params:
        grads = super().__call__(params, X, Y)
        Y -= 1.0
        return grads


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
    trap: str = ""
    """For the issue-10 entries: the trap or check that catches the bug (the old design missed it)."""

    def certify_kwargs(self) -> dict[str, Any]:
        return {"sizes": self.sizes, "activations": list(self.activations), "loss": self.loss, "fuse": self.fuse}


def _bug(cls: type[Textbook], sizes: tuple[int, ...], acts: tuple[str, ...], corrupts: str,
         loss: str = "squared_error", fuse: bool = True, trap: str = "") -> Bug:
    doc = (cls.__doc__ or "").strip().splitlines()
    return Bug(cls.__name__, " ".join(line.strip() for line in doc), lambda: cls(acts, loss), sizes, acts, loss,
               fuse, frozenset(corrupts.split()), trap)


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
    # Only the case design of issue 10 catches these (each was certified by the old design):
    _bug(ChunkedMeanOfMeans, (2, 3, 3, 1), SIG3, "W1 B1 W2 B2 W3 B3", trap="past a block of 8"),
    _bug(ChunkedOverwrite, (2, 3, 3, 1), SIG3, "W1 B1 W2 B2 W3 B3", trap="past a block of 8"),
    _bug(ReluPrimeOneAtZero, (2, 3, 3, 1), ("relu", "relu", "sigmoid"), "W1 B1",
         trap="exactly at its kink (dyadic)"),
    _bug(ReluPrimeOneBelowLayer1, (2, 3, 3, 1), ("relu", "relu", "sigmoid"), "W1 B1 W2 B2",
         trap="exactly at its kink in layer 2 (dyadic)"),
    _bug(NondeterministicOnceIn20, (2, 3, 3, 1), SIG3, "B1", trap="nondeterministic backward"),
    _bug(OsEntropy, (2, 3, 3, 1), SIG3, "B1", trap="nondeterministic backward"),
    _bug(BceClipInGradient, (2, 3, 1), ("tanh", "sigmoid"), "W1 B1 W2 B2", loss="bce", fuse=False,
         trap="scale saturating"),
    _bug(DedupSamples, (2, 3, 3, 1), SIG3, "W1 B1 W2 B2 W3 B3", trap="duplicated samples"),
    _bug(SoftmaxDeltaAssumesNormalizedLabels, (3, 4, 3), ("tanh", "softmax"), "W1 B1 W2 B2",
         loss="cross_entropy", fuse=False, trap="labels unnormalized"),
]

CORRECT_WITH_NOTE: list[Bug] = [_bug(MutatesY, (2, 3, 3, 1), SIG3, "", trap="in-place modification noted")]
"""Correct gradients from impure code: certified, with a note naming what it modified."""


def bug_names() -> list[str]:
    return [b.name for b in BUGS]


def get_bug(name: str) -> Bug:
    for b in BUGS:
        if b.name == name:
            return b
    raise ValueError(f"unknown bug {name!r}; the catalog has {bug_names()}")
