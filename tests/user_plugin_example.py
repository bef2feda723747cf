r"""A user's package that registers its own activation (used by test_cli via ``--import``).

``bad_sigmoid`` has the sigmoid's definition but a wrong hand derivative, :math:`a(1+a)` instead of
:math:`a(1-a)`: ``handgrad prove`` must refuse it. The test unregisters it afterwards.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import handgrad as hg

__all__ = ["BAD_SIGMOID"]


def _definition(z: Any, ops: hg.Ops) -> Any:
    return 1 / (1 + ops.exp(-z))


def _forward(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return a * (1 + a)  # the bug: should be a * (1 - a)


BAD_SIGMOID = hg.Activation("bad_sigmoid", _definition, _forward, derivative=_derivative, output_range=(0.0, 1.0))
hg.register_activation(BAD_SIGMOID)
