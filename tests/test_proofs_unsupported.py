"""Exact proofs on code that calls numpy functions: the common ones are supported, the rest are named.

A hand-written rule is numpy code. ``prove_activation`` runs it on SymPy expressions and
``prove_network`` on SymEngine symbols or residues mod p; a function those values have no meaning
for must raise :class:`UnsupportedOperation` (a ``TypeError``) with a sentence naming it.
"""

from __future__ import annotations

import numpy as np
import pytest
from handgrad.reference.proofs import UnsupportedOperation, prove_activation, prove_loss, prove_network

import handgrad as hg


def _softplus_definition(z: object, ops: hg.Ops) -> object:
    return ops.log1p(ops.exp(z))


SUPPORTED = {
    # softplus with its rule written through logaddexp: sigma(z) = exp(z - log(1 + e^z))
    "logaddexp_rule": hg.Activation("softplus_lae", _softplus_definition, lambda z: np.logaddexp(0, z),
                                    lambda z, a: np.exp(z - np.logaddexp(0, z))),
    # the definition itself calls numpy (instead of ops): run on exact wrappers too
    "logaddexp_definition": hg.Activation("softplus_def_lae", lambda z, ops: np.logaddexp(0, z), None,
                                          lambda z, a: 1 / (1 + np.exp(-z))),
    "cosh_rule": hg.Activation("tanh_cosh", lambda z, ops: ops.tanh(z), np.tanh, lambda z, a: 1 / np.cosh(z) ** 2),
    "sinh_cosh_rule": hg.Activation("sinh_act", lambda z, ops: (ops.exp(z) - ops.exp(-z)) / 2,
                                    np.sinh, lambda z, a: np.cosh(z) + 0 * np.sinh(z)),
    "abs_maximum_rule": hg.Activation("relu_abs", lambda z, ops: ops.where(z > 0, z, 0 * z),
                                      lambda z: np.maximum(z, 0),
                                      lambda z, a: np.maximum(np.sign(z), 0) * np.abs(np.sign(z)),
                                      kinks=(0.0,)),
}


@pytest.mark.parametrize("name", SUPPORTED)
def test_supported_numpy_functions_are_proved(name: str) -> None:
    act = SUPPORTED[name]
    proof = prove_activation(act)
    assert proof.ok, str(proof)
    assert prove_network(hg.Network((2, 3, 1), act, "squared_error")).ok


def test_a_wrong_rule_through_logaddexp_is_still_refuted() -> None:
    wrong = hg.Activation("softplus_lae_wrong", _softplus_definition, None,
                          lambda z, a: np.exp(-np.logaddexp(0, z)))  # 1 - sigma(z)
    proof = prove_activation(wrong)
    assert not proof.ok and any(c.status == "refuted" for c in proof.cases)


def test_unsupported_function_in_a_rule_is_named() -> None:
    act = hg.Activation("tanh_floor", lambda z, ops: ops.tanh(z), np.tanh, lambda z, a: 1 - a * a + 0 * np.floor(z))
    with pytest.raises(UnsupportedOperation, match=r"np\.floor is not supported") as info:
        prove_activation(act)
    assert isinstance(info.value, TypeError)


def test_unsupported_function_in_a_definition_is_named() -> None:
    act = hg.Activation("tanh_def_floor", lambda z, ops: np.floor(z) * 0 + ops.tanh(z), np.tanh, lambda z, a: 1 - a * a)
    with pytest.raises(UnsupportedOperation, match=r"definition.*np\.floor"):
        prove_activation(act)


def test_unsupported_function_in_a_loss_gradient_is_named() -> None:
    se = hg.get_loss("squared_error")
    odd = hg.Loss("se_rint", se.definition, se.value, lambda yhat, y: 2 * (yhat - y) + 0 * np.rint(yhat))
    with pytest.raises(UnsupportedOperation, match=r"np\.rint"):
        prove_loss(odd)


class CoshInBackward(hg.Network):
    """A backward that calls a transcendental numpy function itself (not through an activation)."""

    def backward_unchecked(self, params, cache, Y):  # type: ignore[no-untyped-def]
        grads = super().backward_unchecked(params, cache, Y)
        grads["W1"] = grads["W1"] * np.cosh(0 * grads["W1"])
        return grads


@pytest.mark.parametrize("method", ["symbolic", "modular"])
def test_unsupported_function_in_the_backward_is_named(method: str) -> None:
    with pytest.raises(UnsupportedOperation, match=r"np\.cosh") as info:
        prove_network(CoshInBackward((2, 3, 1), "sigmoid", "squared_error"), method=method)
    assert isinstance(info.value, TypeError)
