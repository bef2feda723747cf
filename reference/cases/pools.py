r"""Small pools of architectures on which each registered activation and loss is certified.

The JAX oracle compiles once per architecture (~0.3 s), so a run that must cover every
activation and loss in seconds cannot draw whole architectures freely. Instead each activation
and each loss gets a handful of fixed architectures, chosen to exercise what a hand-written
backward gets wrong (parameters, inputs, batch sizes and weight scales are still drawn freely):

* square layers (3-3-3-2): a missing transpose of :math:`W^{(l)}` cannot be caught by a shape;
* the activation in a hidden layer followed by another activation (2-4-1 with a sigmoid output
  and ``bce``): the chain rule through :math:`x^{(l+1)} = f(z^{(l)})` into the next layer;
* depth 5 with mixed activations (4-2-3-3-2-1): the recurrence for
  :math:`\partial L/\partial x^{(l)}` over many layers, and a width-1 output;
* the activation as the output layer (3-3-3) when its range fits the squared error.

A loss is certified with a ``tanh`` hidden layer and, as output, up to three activations whose
range fits it, both fused (the loss's fused rule, when it has one) and unfused.

Everything is read from the registry when called, so activations and losses registered by a
user (``handgrad.register_activation``) get pools too. Pools are lists of
:class:`~handgrad.reference.cases.architecture.Architecture`, what
:func:`handgrad.reference.cases.strategies.case_specs` draws from.
"""

from __future__ import annotations

import numpy as np

import handgrad as hg
from handgrad.validation import check_positive_int

from .architecture import Architecture

__all__ = ["activation_pool", "loss_pool", "fits_output"]


def fits_output(loss: hg.Loss | str, activation: hg.Activation | str, fuse: bool) -> bool:
    """True when ``activation`` may be the output layer for ``loss``: the loss has a fused rule for
    it (and ``fuse`` is set), or the activation's range lies in the loss's prediction range."""
    loss, act = hg.get_loss(loss), hg.get_activation(activation)
    if fuse and act.name in loss.fused:
        return True
    lo, hi = loss.prediction_range
    return act.output_range[0] >= lo and act.output_range[1] <= hi


def activation_pool(name: str) -> list[Architecture]:
    """Architectures that use activation ``name`` in hidden layers and, where it fits, as output.

    >>> activation_pool("sigmoid")[0]
    Architecture(sizes=(3, 3, 3, 2), activations=('sigmoid', 'sigmoid', 'identity'), loss='squared_error', fuse=True)
    """
    act = hg.get_activation(name)
    name = act.name
    pool = [
        Architecture((3, 3, 3, 2), (name, name, "identity"), "squared_error", True),
        Architecture((2, 4, 1), (name, "sigmoid"), "bce", True),
        Architecture((4, 2, 3, 3, 2, 1), (name, "tanh", name, name, "identity"), "squared_error", True),
    ]
    if act.output_range == (-np.inf, np.inf) or act.elementwise:
        pool.append(Architecture((3, 3, 3), (name, name), "squared_error", True))
    return pool


def loss_pool(name: str, *, per_fuse: int = 3) -> list[Architecture]:
    """Architectures 3-4-3 (``tanh``, then an output activation) for loss ``name``: up to
    ``per_fuse`` compatible output activations with ``fuse=True`` and as many with ``fuse=False``,
    in registry order. ``fuse=True`` on an activation the loss has no fused rule for is the same
    network as ``fuse=False``, so it is listed once, as ``fuse=False``.

    >>> for arch in loss_pool("bce"): print(arch.label())
    3-4-3 tanh/sigmoid, bce
    3-4-3 tanh/softmax, bce (unfused)
    3-4-3 tanh/sigmoid, bce (unfused)
    """
    check_positive_int("per_fuse", per_fuse)
    loss = hg.get_loss(name)
    pool: list[Architecture] = []
    for fuse in (True, False):
        lasts = [a for a in hg.activation_names() if fits_output(loss, a, fuse)]
        for last in lasts[:per_fuse]:
            arch = Architecture((3, 4, 3), ("tanh", last), loss.name, fuse and last in loss.fused)
            if arch not in pool:
                pool.append(arch)
    return pool
