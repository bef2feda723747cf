r"""Opaque stand-ins for a network's activations and loss, and the per-element verdict.

Both methods of :func:`handgrad.reference.proofs.prove_network` run handgrad's own forward and
backward code on a shallow copy of the network whose activations (and, where needed, loss head)
are opaque: their values are atoms of the proof, not formulas.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from handgrad import Activation, FusedRule, Loss, Network
from handgrad.notation import element_name

__all__: list[str] = []

# ---------------------------------------------------------------------------------------------
# Opaque stand-ins for the network's activations and loss
# ---------------------------------------------------------------------------------------------

def _no_definition(z: Any, ops: Any) -> Any:
    raise TypeError("an opaque activation has no formula; it only exists inside an exact proof")


def _opaque_activation(act: Activation, layer: int, forward: Callable[[Any], Any],
                       derivative: Callable[[Any, Any], Any] | None,
                       vjp: Callable[[Any, Any, Any], Any] | None) -> Activation:
    return Activation(f"opaque_f{layer}[{act.name}]", _no_definition, forward, derivative, vjp,
                      output_range=act.output_range)


def _opaque_loss(loss: Loss, grad: Callable[[Any, Any], Any] | None,
                 fused: dict[str, FusedRule]) -> Loss:
    def no_value(*_: Any) -> Any:
        raise TypeError("an opaque loss has no value; it only exists inside an exact proof")

    def no_grad(*_: Any) -> Any:
        raise TypeError("the opaque head has no non-fused gradient")

    return Loss(f"opaque[{loss.name}]", _no_definition, no_value, grad or no_grad, fused=fused,
                target_range=loss.target_range, prediction_range=loss.prediction_range,
                target_kind=loss.target_kind)


def _swap(net: Network, activations: Sequence[Activation], loss: Loss | None) -> Network:
    """A shallow copy of ``net`` (same class, same methods) with other activations and loss."""
    onet = copy.copy(net)
    onet.activations = tuple(activations)
    if loss is not None:
        onet.loss = loss
    return onet


def _failures(net: Network, hand: dict[str, Any], ref: dict[str, Any], equal: Callable[[Any, Any], np.ndarray]
              ) -> list[str]:
    out: list[str] = []
    for name in net.param_names:
        h, r = hand.get(name), ref[name]
        if h is None or np.shape(h) != np.shape(r):
            out += [element_name(name, idx) for idx in np.ndindex(*np.shape(r))]
            continue
        same = equal(h, r)
        out += [element_name(name, idx) for idx in zip(*np.nonzero(~same), strict=True)]
    return out

