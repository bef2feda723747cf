r"""A fully-connected network of any depth, with the article's backward pass by hand.

Shapes (the article's, column vectors): a sample is ``x`` of shape ``(n0, 1)``; a batch ``X`` has
shape ``(n0, m)``, samples as columns. Layer :math:`l = 1..L` has ``W{l}`` of shape
``(n_l, n_{l-1})`` and ``B{l}`` of shape ``(n_l, 1)``; element ``W2[i-1, j-1]`` is the article's
:math:`w_{ij}^{(2)}`.

Forward: :math:`z^{(l)} = W^{(l)} a^{(l-1)} + B^{(l)}`, :math:`a^{(l)} = f_l(z^{(l)})`,
:math:`a^{(0)} = x` (the article's :math:`x^{(l+1)}` is our :math:`a^{(l)}`, :math:`\hat y = a^{(L)}`).

Backward, the article's matrix forms, for :math:`l = L, \dots, 1`:

.. math::
   \delta^{(l)} = \frac{\partial L}{\partial a^{(l)}} \odot f_l'(z^{(l)}), \quad
   \frac{\partial L}{\partial W^{(l)}} = \delta^{(l)} a^{(l-1)T}, \quad
   \frac{\partial L}{\partial B^{(l)}} = \delta^{(l)} \mathbf 1_m, \quad
   \frac{\partial L}{\partial a^{(l-1)}} = W^{(l)T} \delta^{(l)}.

For a vector-valued activation (softmax) the product with :math:`f'` is a Jacobian-vector product.
The loss is the mean over the batch of the per-sample loss (see :mod:`handgrad.losses`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from .activations import Activation, get_activation
from .losses import FusedRule, Loss, get_loss
from .validation import FLOAT_DTYPES, check_array, check_keys, check_real

__all__ = ["Network", "Cache", "Params", "param_names"]

Params = dict[str, np.ndarray]
"""Parameters or gradients: ``{"W1": ..., "B1": ..., "W2": ..., ...}``."""


class Cache(NamedTuple):
    """What the forward pass keeps for the backward pass.

    ``a[0]`` is the input X, ``a[l]`` the activation of layer l; ``z[l-1]`` the pre-activation of
    layer l (so ``len(z) == L`` and ``len(a) == L + 1``).
    """

    z: list[np.ndarray]
    a: list[np.ndarray]


def param_names(depth: int) -> list[str]:
    """``["W1", "B1", ..., "W{depth}", "B{depth}"]``: the article's names, in its order."""
    return [f"{p}{l}" for l in range(1, depth + 1) for p in ("W", "B")]


class Network:
    r"""A fully-connected network: layer sizes, one activation per layer, a loss.

    Args:
      sizes: layer widths ``(n0, n1, ..., nL)``, e.g. ``(2, 3, 3, 1)`` for the article's net.
      activations: one activation (name or :class:`~handgrad.Activation`) for every layer, or a
        single one used for all layers.
      loss: loss name or :class:`~handgrad.Loss`.
      fuse: when the loss has a fused rule for the last activation (sigmoid + bce,
        softmax + cross_entropy), compute the loss from the logits and write the output delta
        directly. ``fuse=False`` takes the generic path through the activation's derivative.

    Example:
      >>> import numpy as np, handgrad as hg
      >>> net = hg.Network((2, 3, 3, 1), "sigmoid", "squared_error")
      >>> params = net.init(np.random.default_rng(0))
      >>> X, Y = np.array([[5.0], [7.0]]), np.array([[0.6]])
      >>> loss, grads = net.loss_and_grads(params, X, Y)
      >>> grads["W2"].shape
      (3, 3)
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activations: str | Activation | Sequence[str | Activation] = "sigmoid",
        loss: str | Loss = "squared_error",
        *,
        fuse: bool = True,
    ) -> None:
        if isinstance(sizes, str | bytes) or not isinstance(sizes, Sequence):
            raise TypeError(f"sizes must be a sequence of ints such as (2, 3, 3, 1), got {sizes!r}")
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least an input and an output width, got {tuple(sizes)}")
        for i, n in enumerate(sizes):
            if isinstance(n, bool) or not isinstance(n, int | np.integer):
                raise TypeError(f"sizes[{i}] must be an int, got {type(n).__name__}")
            if n < 1:
                raise ValueError(f"sizes[{i}] is {n}: every layer needs at least one unit (sizes={tuple(sizes)})")
        self.sizes: tuple[int, ...] = tuple(int(n) for n in sizes)
        depth = len(self.sizes) - 1
        if isinstance(activations, str | Activation):
            acts = [activations] * depth
        else:
            acts = list(activations)
            if len(acts) != depth:
                raise ValueError(
                    f"activations has {len(acts)} entries but sizes {self.sizes} has {depth} layers"
                )
        self.activations: tuple[Activation, ...] = tuple(get_activation(a) for a in acts)
        self.loss: Loss = get_loss(loss)
        if not isinstance(fuse, bool):
            raise TypeError(f"fuse must be a bool, got {type(fuse).__name__}")
        self.fuse = fuse
        lo, hi = self.loss.prediction_range
        out_lo, out_hi = self.activations[-1].output_range
        if self.fused_rule is None and (out_lo < lo or out_hi > hi):
            raise ValueError(
                f"loss {self.loss.name!r} expects predictions in [{lo}, {hi}] but the last activation "
                f"{self.activations[-1].name!r} ranges over [{out_lo}, {out_hi}]"
            )

    # -- description --------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Number of layers L (the article's net has L = 3)."""
        return len(self.sizes) - 1

    @property
    def param_names(self) -> list[str]:
        return param_names(self.depth)

    @property
    def param_shapes(self) -> dict[str, tuple[int, int]]:
        shapes: dict[str, tuple[int, int]] = {}
        for l in range(1, self.depth + 1):
            shapes[f"W{l}"] = (self.sizes[l], self.sizes[l - 1])
            shapes[f"B{l}"] = (self.sizes[l], 1)
        return shapes

    @property
    def n_params(self) -> int:
        return sum(r * c for r, c in self.param_shapes.values())

    @property
    def fused_rule(self) -> FusedRule | None:
        """The fused loss rule in use, if any."""
        if not self.fuse:
            return None
        return self.loss.fused.get(self.activations[-1].name)

    def describe(self) -> str:
        """e.g. ``2-3-3-1 sigmoid/sigmoid/sigmoid, squared_error``."""
        acts = "/".join(a.name for a in self.activations)
        fused = " (fused)" if self.fused_rule is not None else ""
        return f"{'-'.join(map(str, self.sizes))} {acts}, {self.loss.name}{fused}"

    def __repr__(self) -> str:
        return (f"Network(sizes={self.sizes}, activations={[a.name for a in self.activations]}, "
                f"loss={self.loss.name!r}, fuse={self.fuse})")

    # -- parameters ---------------------------------------------------------------------------

    def init(
        self,
        rng: np.random.Generator,
        *,
        weight_scale: float | None = None,
        bias_scale: float = 0.0,
        dtype: type | np.dtype = np.float64,
    ) -> Params:
        r"""Seeded random parameters.

        :math:`w_{ij}^{(l)} \sim \mathcal N(0, s^2)` with :math:`s = ` ``weight_scale`` (default
        :math:`1/\sqrt{n_{l-1}}`), :math:`b_i^{(l)} \sim \mathcal N(0, \text{bias\_scale}^2)`.
        Draws happen in the order W1, B1, W2, B2, ...
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
        dt = _check_dtype(dtype)
        if weight_scale is not None:
            check_real("weight_scale", weight_scale, low=0.0, low_open=True)
        check_real("bias_scale", bias_scale, low=0.0)
        params: Params = {}
        for name, shape in self.param_shapes.items():
            if name[0] == "W":
                s = weight_scale if weight_scale is not None else 1.0 / np.sqrt(shape[1])
            else:
                s = bias_scale
            params[name] = (rng.standard_normal(shape) * s).astype(dt)
        return params

    def article_init(self, rng: np.random.Generator | np.random.RandomState,
                     dtype: type | np.dtype = np.float64) -> Params:
        """The article's initialization: uniform [0, 1) draws in the order W1, B1, W2, B2, ...

        Pass ``np.random.RandomState(seed)`` to reproduce the article's ``np.random.random`` calls
        after ``np.random.seed(seed)``, or a ``Generator`` for the modern API.
        """
        if not isinstance(rng, np.random.Generator | np.random.RandomState):
            raise TypeError(f"rng must be a numpy Generator or RandomState, got {type(rng).__name__}")
        dt = _check_dtype(dtype)
        return {name: rng.random(shape).astype(dt) for name, shape in self.param_shapes.items()}

    def check_params(self, params: Mapping[str, np.ndarray], name: str = "params") -> np.dtype:
        """Validate keys, shapes, dtype (one float dtype throughout) and finiteness; return the dtype."""
        check_keys(name, params, self.param_names)
        dtype = None
        for key, shape in self.param_shapes.items():
            arr = check_array(f"{name}[{key!r}]", params[key], shape, dtype=dtype)
            dtype = arr.dtype
        assert dtype is not None
        return dtype

    def check_batch(self, params: Mapping[str, np.ndarray], X: np.ndarray,
                    Y: np.ndarray | None) -> None:
        """Validate params, X ``(n0, m)``, m >= 1, and Y ``(nL, m)`` (unless None), one dtype throughout."""
        dtype = self.check_params(params)
        check_array("X", X, (self.sizes[0], None), dtype=dtype)
        if X.shape[1] == 0:
            raise ValueError(f"X has shape {X.shape}: the batch is empty (expected ({self.sizes[0]}, m) with m >= 1)")
        if Y is not None:
            check_array("Y", Y, (self.sizes[-1], X.shape[1]), dtype=dtype)
            self.loss.check_target(Y)

    # -- forward and backward -----------------------------------------------------------------

    def forward(self, params: Mapping[str, np.ndarray], X: np.ndarray) -> Cache:
        """Validated forward pass; returns the :class:`Cache` the backward pass needs."""
        self.check_batch(params, X, None)
        return self.forward_unchecked(params, X)

    def forward_unchecked(self, params: Mapping[str, np.ndarray], X: np.ndarray) -> Cache:
        """The forward pass without validation (also runs on object arrays of exact numbers)."""
        z: list[np.ndarray] = []
        a: list[np.ndarray] = [X]
        for l, act in enumerate(self.activations, start=1):
            z.append(params[f"W{l}"] @ a[-1] + params[f"B{l}"])
            a.append(act.apply(z[-1]))
        return Cache(z, a)

    def predict(self, params: Mapping[str, np.ndarray], X: np.ndarray) -> np.ndarray:
        r""":math:`\hat y` for every column of X, shape ``(nL, m)``."""
        return self.forward(params, X).a[-1]

    def loss_value(self, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> np.floating:
        r""":math:`L = \frac1m\sum_i \ell(\hat y_i, y_i)`."""
        self.check_batch(params, X, Y)
        return self._loss_from_cache(self.forward_unchecked(params, X), Y)

    def _loss_from_cache(self, cache: Cache, Y: np.ndarray) -> np.floating:
        rule = self.fused_rule
        per_sample = rule.value(cache.z[-1], Y) if rule is not None else self.loss.value(cache.a[-1], Y)
        return np.sum(per_sample) / Y.shape[1]

    def backward(self, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> Params:
        """Gradients of the mean batch loss for every parameter: ``backward(params, X, Y) -> grads``.

        This is the signature :func:`handgrad.reference.certify_backward` certifies.
        """
        return self.loss_and_grads(params, X, Y)[1]

    def loss_and_grads(self, params: Mapping[str, np.ndarray], X: np.ndarray,
                       Y: np.ndarray) -> tuple[np.floating, Params]:
        """Forward, loss and backward in one call."""
        self.check_batch(params, X, Y)
        cache = self.forward_unchecked(params, X)
        return self._loss_from_cache(cache, Y), self.backward_unchecked(params, cache, Y)

    def output_delta(self, cache: Cache, Y: np.ndarray) -> np.ndarray:
        r""":math:`\delta^{(L)} = \partial L/\partial z^{(L)}` for the mean batch loss."""
        m = Y.shape[1]
        rule = self.fused_rule
        if rule is not None:
            return rule.delta(cache.z[-1], cache.a[-1], Y) / m
        grad_out = self.loss.grad(cache.a[-1], Y) / m
        return self.activations[-1].backward_unchecked(cache.z[-1], cache.a[-1], grad_out)

    def backward_unchecked(self, params: Mapping[str, np.ndarray], cache: Cache,
                           Y: np.ndarray) -> Params:
        """The backward pass without validation (also runs on object arrays of exact numbers)."""
        grads: Params = {}
        delta = self.output_delta(cache, Y)
        for l in range(self.depth, 0, -1):
            grads[f"W{l}"] = delta @ cache.a[l - 1].T
            grads[f"B{l}"] = np.sum(delta, axis=1, keepdims=True)
            if l > 1:
                grad_a = params[f"W{l}"].T @ delta
                delta = self.activations[l - 2].backward_unchecked(cache.z[l - 2], cache.a[l - 1], grad_a)
        return {k: grads[k] for k in self.param_names}


def _check_dtype(dtype: type | np.dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt
