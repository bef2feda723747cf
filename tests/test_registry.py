"""A new activation or loss added from outside the package is picked up everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import handgrad as hg


def _softsign_def(z: Any, ops: hg.Ops) -> Any:
    r""":math:`f(z) = z / (1 + |z|)`, written branchwise so SymPy and JAX read it too."""
    return ops.where(z > 0, z / (1 + z), z / (1 - z))


def _softsign_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.abs(z)) ** 2


@pytest.fixture
def softsign() -> Iterator[hg.Activation]:
    act = hg.register_activation(hg.Activation("softsign_test", _softsign_def, None, _softsign_derivative))
    yield act
    hg.unregister_activation("softsign_test")


def test_registered_activation_is_enumerated_and_usable(softsign: hg.Activation) -> None:
    assert "softsign_test" in hg.activation_names()
    net = hg.Network((2, 3, 1), ["softsign_test", "identity"])
    params = net.init(np.random.default_rng(0), bias_scale=0.5)
    X, Y = np.random.default_rng(1).standard_normal((2, 3)), np.zeros((1, 3))
    grads = net.backward(params, X, Y)
    h = 1e-6
    w = params["W1"].copy()
    up, dn = dict(params, W1=w.copy()), dict(params, W1=w.copy())
    up["W1"][0, 0] += h
    dn["W1"][0, 0] -= h
    fd = (net.loss_value(up, X, Y) - net.loss_value(dn, X, Y)) / (2 * h)
    assert grads["W1"][0, 0] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_unregister_removes_it(softsign: hg.Activation) -> None:
    hg.unregister_activation("softsign_test")
    assert "softsign_test" not in hg.activation_names()
    with pytest.raises(ValueError, match="unknown activation"):
        hg.Network((1, 1), "softsign_test")
    hg.register_activation(softsign)  # for the fixture's teardown


def test_parameterized_activations_register_under_their_own_name() -> None:
    act = hg.register_activation(hg.leaky_relu(0.2))
    try:
        assert hg.get_activation("leaky_relu(0.2)") is act
    finally:
        hg.unregister_activation("leaky_relu(0.2)")


def test_importing_handgrad_pulls_in_numpy_only() -> None:
    import subprocess
    import sys

    code = ("import sys, handgrad; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('sympy', 'jax', 'jaxlib', 'hypothesis', 'optax', 'symengine', 'mpmath', 'matplotlib', 'reference')]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
