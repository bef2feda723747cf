r"""The article's three ways to feed samples to gradient descent, for any optimizer.

For a data set of n samples (the columns of X, shape ``(n0, n)``, and Y, shape ``(nL, n)``), the
loss of a batch :math:`S` of samples is the mean of the per-sample losses,
:math:`L_S = \frac{1}{|S|}\sum_{i \in S} \ell(\hat y_i, y_i)`, so its gradient is the mean of the
per-sample gradients (for the article's squared error, :math:`\frac{2}{|S|}\sum_{i\in S}(\hat y_i -
y_i)\,\partial\hat y_i/\partial w`; the article prints the residual with the opposite sign, see
``docs/errata.md``). The three variants differ only in which :math:`S` each step uses:

* :func:`batch_gd` -- batch gradient descent: every step uses all n samples, one step per epoch.
* :func:`sgd` -- stochastic gradient descent: every step uses one sample; each epoch visits all n
  samples once, in an order shuffled by ``numpy.random.default_rng(seed)``; n steps per epoch.
* :func:`minibatch_gd` -- mini-batch gradient descent: each epoch shuffles the samples the same
  way and cuts the order into consecutive batches of ``batch_size`` samples. When ``batch_size``
  does not divide n, the **last batch of the epoch is smaller** (n mod b samples) and its loss is
  the mean over *its own* samples, so every sample weighs the same within an epoch;
  ``drop_last=True`` skips it instead. ``ceil(n / b)`` steps per epoch (``floor`` with drop_last).

Shuffling. For ``sgd`` and ``minibatch_gd`` the sample order of epoch e is the e-th call of
``rng.permutation(n)`` with ``rng = numpy.random.default_rng(seed)``, so the two functions visit
the samples in the same order for the same seed: ``minibatch_gd(batch_size=1)`` *is* ``sgd`` step
for step, and ``minibatch_gd(batch_size=n, shuffle=False)`` *is* ``batch_gd``
(tests/test_training.py checks both bit for bit). ``shuffle=False`` keeps the column order.

Every step: loss and gradients of the batch at the current params (the loss is recorded *before*
the update, as in the article's loop), then ``updates, state = optimizer.update(grads, state,
params)`` and ``params = apply_updates(params, updates)``. The inputs are never modified.

Example:
  >>> import numpy as np, handgrad as hg
  >>> X, Y = hg.training.xor_data()
  >>> net = hg.Network((2, 4, 1), ("tanh", "sigmoid"), "bce")
  >>> params = net.init(np.random.default_rng(0), weight_scale=1.0)
  >>> res = hg.training.minibatch_gd(net, params, X, Y, hg.optim.adam(0.05), batch_size=2, epochs=300, seed=0)
  >>> res.losses.shape, bool(res.epoch_losses[-1] < 0.1 * res.epoch_losses[0])
  ((600,), True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from .network import Network, Params
from .optim import Optimizer, State
from .validation import check_positive_int

__all__ = [
    "Progress",
    "TrainResult",
    "batch_gd",
    "epoch_orders",
    "minibatch_gd",
    "sgd",
    "two_class_data",
    "xor_data",
]


class Progress(NamedTuple):
    """What the progress callback receives after every step.

    ``epoch`` and ``step`` count from 0 (``step`` over the whole run), ``loss`` is the loss of the
    step's batch before its update, ``batch_size`` the number of samples in that batch.
    """

    epoch: int
    step: int
    loss: float
    batch_size: int


class TrainResult(NamedTuple):
    """The outcome of a training run.

    Attributes:
      params: the final parameters (new arrays).
      losses: float64 array, one entry per step: the loss of that step's batch before its update.
      epoch_losses: float64 array of length ``epochs + 1``: the loss on all n samples before
        training and after each epoch (the fair curve to compare variants on).
      state: the optimizer's final state.
    """

    params: Params
    losses: np.ndarray
    epoch_losses: np.ndarray
    state: State


Callback = Callable[[Progress], Any]


def epoch_orders(n: int, seed: int, *, shuffle: bool = True) -> Iterator[np.ndarray]:
    """The sample order of each epoch: successive ``rng.permutation(n)`` of ``default_rng(seed)``.

    With ``shuffle=False``, ``arange(n)`` every epoch. An endless iterator.

    Example:
      >>> it = epoch_orders(4, seed=0)
      >>> sorted(next(it).tolist())
      [0, 1, 2, 3]
    """
    n = check_positive_int("n", n)
    rng = np.random.default_rng(_check_seed(seed))
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle must be a bool, got {type(shuffle).__name__}")
    while True:
        yield rng.permutation(n) if shuffle else np.arange(n)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int (the seed of numpy.random.default_rng), got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


def _setup(net: object, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
           optimizer: object, epochs: object, callback: object) -> tuple[Network, int, float]:
    if not isinstance(net, Network):
        raise TypeError(f"net must be a handgrad.Network, got {type(net).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a handgrad.optim.Optimizer (e.g. handgrad.optim.gd(0.1)), "
                        f"got {type(optimizer).__name__}")
    epochs = check_positive_int("epochs", epochs)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    initial = float(net.loss_value(params, X, Y))  # validates params, X and Y
    return net, epochs, initial


class _Loop:
    """The step shared by the three variants (the variants differ only in the batches)."""

    def __init__(self, net: Network, params: Mapping[str, np.ndarray], optimizer: Optimizer,
                 callback: Callback | None) -> None:
        self.net, self.opt, self.callback = net, optimizer, callback
        self.params: Params = {k: params[k] for k in net.param_names}  # a new dict; arrays are never written
        self.state = optimizer.init(self.params)  # validates params once
        self.losses: list[float] = []

    def step(self, epoch: int, Xb: np.ndarray, Yb: np.ndarray) -> None:
        # Inputs were validated once by _setup; the unchecked paths below compute exactly what
        # net.loss_and_grads, optimizer.update and apply_updates compute, without re-validating
        # the same arrays at every step (validation was ~3/4 of a step's time on XOR).
        net = self.net
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run ends in the clear error below
            cache = net.forward_unchecked(self.params, Xb)
            loss = float(net._loss_from_cache(cache, Yb))
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"the loss became {loss} at epoch {epoch}, step {len(self.losses)}: the run diverged "
                f"(try a smaller learning rate than {self.opt!r})"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            grads = net.backward_unchecked(self.params, cache, Yb)
            updates, self.state = self.opt.update_fn(grads, self.state, self.params)
            self.params = {k: self.params[k] + updates[k] for k in self.params}
        if self.callback is not None:
            self.callback(Progress(epoch, len(self.losses), loss, Xb.shape[1]))
        self.losses.append(loss)

    def full_loss(self, X: np.ndarray, Y: np.ndarray) -> float:
        """The loss on all samples at the current params (what ``net.loss_value`` computes)."""
        with np.errstate(over="ignore", invalid="ignore"):
            loss = float(self.net._loss_from_cache(self.net.forward_unchecked(self.params, X), Y))
        if not np.isfinite(loss):
            raise FloatingPointError(f"the loss on all samples became {loss} after {len(self.losses)} steps: "
                                     f"the run diverged (try a smaller learning rate than {self.opt!r})")
        return loss

    def result(self, epoch_losses: list[float]) -> TrainResult:
        return TrainResult(self.params, np.asarray(self.losses, dtype=np.float64),
                           np.asarray(epoch_losses, dtype=np.float64), self.state)


def batch_gd(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
             optimizer: Optimizer, *, epochs: int, callback: Callback | None = None) -> TrainResult:
    r"""Batch gradient descent: each step uses all n samples (one step per epoch).

    .. math:: g_t = \frac{1}{n}\sum_{i=1}^{n} \frac{\partial \ell(\hat y_i, y_i)}{\partial w}
       \Big|_{w_{t-1}}, \qquad w_t = w_{t-1} + u_t(g_t)

    where :math:`u_t` is the optimizer's update (``gd(lr)``: :math:`-\alpha g_t`, the article's rule).

    Args:
      net: the network; params, X (n0, n) and Y (nL, n) as for :meth:`handgrad.Network.backward`.
      optimizer: a :class:`handgrad.optim.Optimizer`.
      epochs: number of steps (>= 1).
      callback: called with a :class:`Progress` after every step.

    No randomness is involved, so there is no seed.
    """
    net, epochs, initial = _setup(net, params, X, Y, optimizer, epochs, callback)
    loop = _Loop(net, params, optimizer, callback)
    epoch_losses = [initial]
    for epoch in range(epochs):
        loop.step(epoch, X, Y)
        epoch_losses.append(loop.full_loss(X, Y))
    return loop.result(epoch_losses)


def sgd(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
        optimizer: Optimizer, *, epochs: int, seed: int = 0, shuffle: bool = True,
        callback: Callback | None = None) -> TrainResult:
    r"""Stochastic gradient descent: each step uses one sample.

    .. math:: g_t = \frac{\partial \ell(\hat y_{i_t}, y_{i_t})}{\partial w}\Big|_{w_{t-1}},
       \qquad w_t = w_{t-1} + u_t(g_t)

    Epoch e visits the samples in the order of :func:`epoch_orders` (``seed``, ``shuffle``);
    n steps per epoch. Other arguments as in :func:`batch_gd`.
    """
    net, epochs, initial = _setup(net, params, X, Y, optimizer, epochs, callback)
    loop = _Loop(net, params, optimizer, callback)
    n = X.shape[1]
    epoch_losses = [initial]
    orders = epoch_orders(n, seed, shuffle=shuffle)
    for epoch in range(epochs):
        for i in next(orders):
            loop.step(epoch, X[:, i:i + 1], Y[:, i:i + 1])
        epoch_losses.append(loop.full_loss(X, Y))
    return loop.result(epoch_losses)


def minibatch_gd(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
                 optimizer: Optimizer, *, batch_size: int, epochs: int, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False,
                 callback: Callback | None = None) -> TrainResult:
    r"""Mini-batch gradient descent: each step uses ``batch_size`` = b samples.

    .. math:: g_t = \frac{1}{|S_t|}\sum_{i \in S_t} \frac{\partial \ell(\hat y_i, y_i)}{\partial w}
       \Big|_{w_{t-1}}, \qquad w_t = w_{t-1} + u_t(g_t)

    Epoch e cuts the order of :func:`epoch_orders` into consecutive batches :math:`S_t` of b
    samples. If b does not divide n, the last batch of each epoch has n mod b samples and its
    gradient is the mean over those (``drop_last=True`` skips it). ``batch_size`` may exceed n
    (then each epoch is one batch of n). Other arguments as in :func:`sgd`.
    """
    net, epochs, initial = _setup(net, params, X, Y, optimizer, epochs, callback)
    b = check_positive_int("batch_size", batch_size)
    if not isinstance(drop_last, bool):
        raise TypeError(f"drop_last must be a bool, got {type(drop_last).__name__}")
    n = X.shape[1]
    if drop_last and b > n:
        raise ValueError(f"batch_size is {b} but X has only n = {n} samples: with drop_last=True "
                         f"no step would ever be taken")
    loop = _Loop(net, params, optimizer, callback)
    epoch_losses = [initial]
    orders = epoch_orders(n, seed, shuffle=shuffle)
    for epoch in range(epochs):
        order = next(orders)
        for start in range(0, n, b):
            idx = order[start:start + b]
            if drop_last and len(idx) < b:
                break
            loop.step(epoch, X[:, idx], Y[:, idx])
        epoch_losses.append(loop.full_loss(X, Y))
    return loop.result(epoch_losses)


# -- small learning problems generated in code -------------------------------------------------


def xor_data(dtype: type | np.dtype = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The XOR problem: X of shape (2, 4) (the corners of the unit square), Y of shape (1, 4).

    Example:
      >>> X, Y = xor_data()
      >>> X.astype(int).tolist(), Y.astype(int).tolist()
      ([[0, 0, 1, 1], [0, 1, 0, 1]], [[0, 1, 1, 0]])
    """
    X = np.array([[0, 0, 1, 1], [0, 1, 0, 1]], dtype=dtype)
    Y = np.array([[0, 1, 1, 0]], dtype=dtype)
    return X, Y


def two_class_data(n: int = 200, *, seed: int = 0, noise: float = 0.15,
                   dtype: type | np.dtype = np.float64) -> tuple[np.ndarray, np.ndarray]:
    r"""Two interleaved half-moons in the plane: X of shape (2, n), labels Y in {0, 1} of shape (1, n).

    Class 0 lies on the upper half circle :math:`(\cos\theta, \sin\theta)`, class 1 on the lower one
    shifted to :math:`(1 - \cos\theta, 1/2 - \sin\theta)`, :math:`\theta \sim U[0, \pi]`, plus
    Gaussian noise of standard deviation ``noise``; samples alternate between the classes.
    Not linearly separable, so it needs the hidden layer. Seeded by ``seed``.

    Example:
      >>> X, Y = two_class_data(6, seed=1)
      >>> X.shape, Y.ravel().tolist()
      ((2, 6), [0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    """
    n = check_positive_int("n", n)
    rng = np.random.default_rng(_check_seed(seed))
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not noise >= 0:
        raise ValueError(f"noise must be a real number >= 0, got {noise!r}")
    labels = np.arange(n) % 2
    theta = rng.uniform(0.0, np.pi, n)
    x = np.where(labels == 0, np.cos(theta), 1.0 - np.cos(theta))
    y = np.where(labels == 0, np.sin(theta), 0.5 - np.sin(theta))
    X = np.stack([x, y]) + noise * rng.standard_normal((2, n))
    return X.astype(dtype), labels[None, :].astype(dtype)
