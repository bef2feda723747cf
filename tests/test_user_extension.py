"""A user's activation, registered from outside the package, is certified everywhere with no
change to handgrad or reference -- and a wrong derivative for it is caught and localized.
This is the example of docs/adding-an-activation.md, run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from handgrad.reference import CertificationError, certify_network
from handgrad.reference.cases.pools import activation_pool

import handgrad as hg


def softsign_definition(z: Any, ops: hg.Ops) -> Any:
    r""":math:`f(z) = z / (1 + |z|)`, branchwise so every oracle reads it."""
    return ops.where(z > 0, z / (1 + z), z / (1 - z))


def softsign_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    r""":math:`f'(z) = 1 / (1 + |z|)^2`."""
    return 1 / (1 + np.abs(z)) ** 2


def wrong_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Forgets the absolute value: right for z > 0, wrong for z < 0."""
    return 1 / (1 + z) ** 2


@pytest.fixture
def softsign() -> Iterator[str]:
    hg.register_activation(hg.Activation("softsign", softsign_definition, derivative=softsign_derivative,
                                         kinks=(0.0,)))
    yield "softsign"
    hg.unregister_activation("softsign")


def test_registered_activation_gets_pools_and_is_certified(softsign: str) -> None:
    pool = activation_pool(softsign)
    assert pool and all(softsign in acts for _, acts, _, _ in pool)
    for sizes, acts, loss, fuse in pool[:2]:
        cert = certify_network(hg.Network(sizes, list(acts), loss, fuse=fuse), examples=8)
        assert cert.ok and "sympy" in cert.oracles


def test_wrong_derivative_of_a_user_activation_is_caught() -> None:
    hg.register_activation(hg.Activation("softsign_bad", softsign_definition, derivative=wrong_derivative,
                                         kinks=(0.0,)))
    try:
        net = hg.Network((2, 3, 1), ["softsign_bad", "identity"], "squared_error")
        with pytest.raises(CertificationError) as info:
            certify_network(net, examples=15)
        named = {m.tensor for m in info.value.report.mismatches}
        assert named and named <= {"W1", "B1"}, info.value
    finally:
        hg.unregister_activation("softsign_bad")
