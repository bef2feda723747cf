r"""Losses with hand-written gradients.

Convention (every implementation in this project keeps it: hand, SymPy, JAX, finite differences):

* A loss is defined per sample as :math:`\ell(\hat y, y)`, **summed over the output units**. With
  one output and squared error this is the article's :math:`L = (\hat y - y)^2`.
* Over a batch of m samples (columns) the loss is the **mean over samples**:
  :math:`L = \frac1m \sum_{i=1}^m \ell(\hat y_i, y_i)`, as in the article's batch gradient descent.
  So :math:`\partial L/\partial \hat y_i = \frac1m \partial\ell/\partial\hat y_i`.

A :class:`Loss` carries the per-sample ``definition`` (shared with the oracles), handgrad's
numpy ``value`` and its hand-written ``grad``. Losses on probabilities also carry *fused* rules for
the activation that usually precedes them (sigmoid + BCE, softmax + cross-entropy): the loss is
then computed from the logits z and the output delta is written directly, which is exact and
stays finite when the output saturates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .activations import Ops, _softmax_forward
from .registry import Registry
from .validation import check_array

__all__ = [
    "Loss",
    "FusedRule",
    "register_loss",
    "unregister_loss",
    "get_loss",
    "loss_names",
    "iter_losses",
]


@dataclass(frozen=True)
class FusedRule:
    r"""The loss taken straight from the logits z of the last layer.

    Args:
      definition: per-sample loss ``definition(z, y, ops) -> (1, m)`` in terms of the logits.
      value: numpy per-sample loss from logits, shape ``(m,)``.
      delta: hand-written :math:`\partial\ell/\partial z` per sample, ``delta(z, a, y) -> (n, m)``.
    """

    definition: Callable[[Any, Any, Ops], Any]
    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    delta: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Loss:
    r"""A loss function.

    Args:
      name: registry key.
      definition: per-sample loss ``definition(yhat, y, ops) -> (1, m)`` shared with the oracles.
      value: numpy per-sample losses ``value(yhat, y) -> (m,)``.
      grad: hand-written :math:`\partial\ell/\partial\hat y` per sample, ``grad(yhat, y) -> (n, m)``.
      fused: activation name -> :class:`FusedRule`.
      target_range: closed interval the labels must lie in.
      prediction_range: interval the predictions must lie in (probabilities: (0, 1)).
      target_kind: ``"real"``, ``"unit"`` (each entry in [0, 1]) or ``"distribution"`` (each
        column non-negative, summing to 1): what the hypothesis strategies draw.
    """

    name: str
    definition: Callable[[Any, Any, Ops], Any]
    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    grad: Callable[[np.ndarray, np.ndarray], np.ndarray]
    fused: Mapping[str, FusedRule] = field(default_factory=dict)
    target_range: tuple[float, float] = (-math.inf, math.inf)
    prediction_range: tuple[float, float] = (-math.inf, math.inf)
    target_kind: str = "real"

    def __post_init__(self) -> None:
        object.__setattr__(self, "fused", MappingProxyType(dict(self.fused)))
        if self.target_kind not in ("real", "unit", "distribution"):
            raise ValueError(f"target_kind must be 'real', 'unit' or 'distribution', got {self.target_kind!r}")

    def __call__(self, yhat: np.ndarray, y: np.ndarray) -> np.floating:
        r"""Validated batch loss :math:`L = \frac1m\sum_i \ell(\hat y_i, y_i)`; both ``(n, m)``."""
        self._check(yhat, y)
        return np.sum(self.value(yhat, y)) / yhat.shape[1]

    def gradient(self, yhat: np.ndarray, y: np.ndarray) -> np.ndarray:
        r"""Validated :math:`\partial L/\partial \hat y` of the batch loss, shape ``(n, m)``."""
        self._check(yhat, y)
        return self.grad(yhat, y) / yhat.shape[1]

    def _check(self, yhat: np.ndarray, y: np.ndarray) -> None:
        check_array("yhat", yhat, ndim=2)
        if yhat.shape[1] == 0:
            raise ValueError(f"yhat has shape {yhat.shape}: the batch is empty")
        check_array("y", y, yhat.shape, dtype=yhat.dtype)
        self.check_target(y, "y")
        lo, hi = self.prediction_range
        if yhat.size and (np.min(yhat) < lo or np.max(yhat) > hi):
            raise ValueError(f"yhat must lie in [{lo}, {hi}] for loss {self.name!r}; got values in "
                             f"[{np.min(yhat)}, {np.max(yhat)}]")

    def check_target(self, y: np.ndarray, name: str = "Y") -> None:
        """Raise ``ValueError`` if labels lie outside ``target_range``."""
        lo, hi = self.target_range
        if lo == -math.inf and hi == math.inf:
            return  # no value lies outside (a NaN fails neither comparison below either)
        if y.size and (np.min(y) < lo or np.max(y) > hi):
            raise ValueError(
                f"{name} must lie in [{lo}, {hi}] for loss {self.name!r}; got values in "
                f"[{np.min(y)}, {np.max(y)}]"
            )


# ---------------------------------------------------------------------------------------------
# Squared error (the article's).
# ---------------------------------------------------------------------------------------------

def _se_def(yhat: Any, y: Any, ops: Ops) -> Any:
    r""":math:`\ell = \sum_k (\hat y_k - y_k)^2`."""
    d = yhat - y
    return ops.colsum(d * d)


def _se_value(yhat: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sum((yhat - y) ** 2, axis=0)


def _se_grad(yhat: np.ndarray, y: np.ndarray) -> np.ndarray:
    r""":math:`\partial\ell/\partial\hat y = 2(\hat y - y)`."""
    return 2 * (yhat - y)


# ---------------------------------------------------------------------------------------------
# Binary cross-entropy on probabilities.
# ---------------------------------------------------------------------------------------------

def _bce_def(p: Any, y: Any, ops: Ops) -> Any:
    r""":math:`\ell = -\sum_k [y_k \log p_k + (1-y_k)\log(1-p_k)]`."""
    return -ops.colsum(y * ops.log(p) + (1 - y) * ops.log(1 - p))


def _check_open_unit(p: np.ndarray, y: np.ndarray) -> None:
    bad = ((p <= 0) & (y != 0)) | ((p >= 1) & (y != 1))
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"prediction {float(p[idx])} at index {idx} makes the binary cross-entropy infinite "
            f"(label {float(y[idx])}); a saturated sigmoid output needs the fused sigmoid+bce rule "
            f"(Network(..., fuse=True), the default)"
        )


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x * log(y), with 0 * log(0) = 0 and no warning."""
    safe = np.where(x == 0, 1, y)
    return np.where(x == 0, 0, x * np.log(safe))


def _bce_value(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    _check_open_unit(p, y)
    return -np.sum(_xlogy(y, p) + _xlogy(1 - y, 1 - p), axis=0)


def _bce_grad(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    r""":math:`\partial\ell/\partial p = (p - y) / (p(1-p))`.

    At the ends the label allows (p = 0 with y = 0, p = 1 with y = 1, where :func:`bce` is 0) the
    quotient is 0/0; the limit is finite, :math:`1/(1-p) = 1` and :math:`-1/p = -1`, and is returned.
    """
    _check_open_unit(p, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (p - y) / (p * (1 - p))
    ends = (p * (1 - p)) == 0  # only where the label matches: _check_open_unit refused the rest
    return np.where(ends, np.where(p == 0, 1.0, -1.0).astype(g.dtype), g) if np.any(ends) else g


def _bce_sigmoid_def(z: Any, y: Any, ops: Ops) -> Any:
    r"""With :math:`p = \sigma(z)`: :math:`\ell = \sum_k \log(1+e^{z_k}) - y_k z_k`."""
    return ops.colsum(ops.log1p(ops.exp(z)) - y * z)


def _bce_sigmoid_value(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    softplus = np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
    return np.sum(softplus - y * z, axis=0)


def _bce_sigmoid_delta(z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
    r""":math:`\partial\ell/\partial z = \sigma(z) - y` (exact: the :math:`p(1-p)` cancels)."""
    return a - y


# ---------------------------------------------------------------------------------------------
# Cross-entropy on a probability vector; softmax cross-entropy on logits.
# ---------------------------------------------------------------------------------------------

def _ce_def(p: Any, y: Any, ops: Ops) -> Any:
    r""":math:`\ell = -\sum_k y_k \log p_k`."""
    return -ops.colsum(y * ops.log(p))


def _ce_value(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    bad = (p <= 0) & (y != 0)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"prediction {float(p[idx])} at index {idx} makes the cross-entropy infinite; use the fused "
            f"softmax+cross_entropy rule (Network(..., fuse=True), the default)"
        )
    return -np.sum(_xlogy(y, p), axis=0)


def _ce_grad(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    r""":math:`\partial\ell/\partial p_k = -y_k / p_k` (0 where :math:`y_k = 0`)."""
    _ce_value(p, y)  # same domain check
    safe = np.where(y == 0, 1, p)
    return np.where(y == 0, 0, -y / safe)


def _logits_ce_def(z: Any, y: Any, ops: Ops) -> Any:
    r""":math:`\ell = (\sum_k y_k)\log\sum_k e^{z_k} - \sum_k y_k z_k`
    (= :math:`-\sum_k y_k\log\operatorname{softmax}(z)_k`)."""
    return ops.colsum(y) * ops.log(ops.colsum(ops.exp(z))) - ops.colsum(y * z)


def _logits_ce_value(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    zmax = np.max(z, axis=0, keepdims=True)
    lse = zmax + np.log(np.sum(np.exp(z - zmax), axis=0, keepdims=True))
    return (np.sum(y, axis=0, keepdims=True) * lse - np.sum(y * z, axis=0, keepdims=True))[0]


def _logits_ce_delta(z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
    r""":math:`\partial\ell/\partial z_j = \operatorname{softmax}(z)_j \sum_k y_k - y_j`
    (:math:`= a_j - y_j` when the labels sum to 1)."""
    return a * np.sum(y, axis=0, keepdims=True) - y


def _logits_ce_grad(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _logits_ce_delta(z, _softmax_forward(z), y)


_REGISTRY: Registry[Loss] = Registry("loss", Loss)


def register_loss(loss: Loss, *, replace: bool = False) -> Loss:
    """Add ``loss`` to the registry (from anywhere; certified everywhere automatically)."""
    return _REGISTRY.register(loss, replace=replace, argument="loss")


def unregister_loss(name: str) -> None:
    """Remove a registered loss (raises ``KeyError`` naming the known ones)."""
    _REGISTRY.unregister(name)


def get_loss(name: str | Loss) -> Loss:
    """Look a loss up by name (a :class:`Loss` is returned as is)."""
    return _REGISTRY.get(name)


def loss_names() -> list[str]:
    """Names of all registered losses, in registration order."""
    return _REGISTRY.names()


def iter_losses() -> Iterator[Loss]:
    """The registered losses themselves, in registration order."""
    return _REGISTRY.values()


squared_error = register_loss(Loss("squared_error", _se_def, _se_value, _se_grad))
bce = register_loss(Loss(
    "bce", _bce_def, _bce_value, _bce_grad,
    fused={"sigmoid": FusedRule(_bce_sigmoid_def, _bce_sigmoid_value, _bce_sigmoid_delta)},
    target_range=(0.0, 1.0), prediction_range=(0.0, 1.0), target_kind="unit",
))
_softmax_ce_rule = FusedRule(_logits_ce_def, _logits_ce_value, _logits_ce_delta)
cross_entropy = register_loss(Loss(
    "cross_entropy", _ce_def, _ce_value, _ce_grad,
    fused={"softmax": _softmax_ce_rule},
    target_range=(0.0, math.inf), prediction_range=(0.0, 1.0), target_kind="distribution",
))
softmax_cross_entropy = register_loss(Loss(
    "softmax_cross_entropy", _logits_ce_def, _logits_ce_value, _logits_ce_grad,
    target_range=(0.0, math.inf), target_kind="distribution",
))

