r"""Hypothesis strategies for the optimizer certificates: hyperparameters and gradient sequences.

A 60-step trajectory of a few dozen parameters needs thousands of floats, more than hypothesis
should draw one by one (its buffer is ~8 KB, and shrinking 3000 floats teaches nothing). So
hypothesis draws the *structure* -- parameter shapes, magnitudes, a pattern, exact zeros, the
hyperparameters -- and a seed; numpy's ``default_rng(seed)`` fills in the values. Shrinking then
goes to small shapes, seed 0, the simplest pattern and round hyperparameters.

Patterns of the gradient sequence :math:`g_1, \dots, g_T` (each times :math:`10^k`):

``gaussian``     independent standard normal entries
``constant``     the same draw every step (AdaGrad's and RMSProp's closed forms)
``alternating``  one draw with alternating sign (momentum's cancellations)
``sparse``       gaussian with each entry zero with probability 1/2 (exact zeros, zero steps)
``decaying``     gaussian times :math:`0.9^t` (a converging run)
``spiky``        gaussian with ~5% of the entries multiplied by :math:`10^4`
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st

from handgrad.validation import check_positive_int

__all__ = [
    "PATTERNS",
    "OptimProblem",
    "betas",
    "epsilons",
    "gradient_problems",
    "hyperparams",
    "learning_rates",
]

PATTERNS = ("gaussian", "constant", "alternating", "sparse", "decaying", "spiky")


class OptimProblem(NamedTuple):
    """Start params and a gradient sequence (float64 dicts keyed ``W1, B1, W2``), and their recipe."""

    params0: dict[str, np.ndarray]
    grads: list[dict[str, np.ndarray]]
    recipe: str

    def __repr__(self) -> str:  # hypothesis prints this on failure: the recipe reproduces it
        return f"OptimProblem({self.recipe})"


def _check_range(name_lo: str, lo: float, name_hi: str, hi: float) -> None:
    if not lo <= hi:
        raise ValueError(f"{name_lo} must be <= {name_hi}, got {lo} > {hi}")


def learning_rates(*, min_value: float = 1e-4, max_value: float = 1.0) -> st.SearchStrategy[float]:
    """0.0, or a float in [``min_value``, ``max_value``] (default [1e-4, 1])."""
    _check_range("min_value", min_value, "max_value", max_value)
    if min_value <= 0:
        raise ValueError(f"min_value must be > 0 (0.0 is always included), got {min_value}")
    return st.one_of(st.just(0.0), st.floats(min_value, max_value))


def betas(*, max_value: float = 0.999) -> st.SearchStrategy[float]:
    """A decay rate in [0, ``max_value``], with 0, 0.9 and ``max_value`` explicitly (default 0.999).

    Bias-corrected rules lose :math:`\\log_{10} 1/(1-\\beta)` digits in optax's ``1 - beta**t``;
    0.999 keeps the certificate's bound below 1e-12 (see ``trajectory_tolerance``).
    """
    if not 0.0 <= max_value < 1.0:
        raise ValueError(f"max_value must be in [0, 1), got {max_value}")
    return st.one_of(st.just(0.0), st.just(min(0.9, max_value)), st.just(max_value), st.floats(0.0, max_value))


def epsilons(*, min_exponent: float = -12.0, max_exponent: float = -2.0) -> st.SearchStrategy[float]:
    """:math:`10^k` for k in [``min_exponent``, ``max_exponent``] (log-uniform)."""
    _check_range("min_exponent", min_exponent, "max_exponent", max_exponent)
    return st.floats(min_exponent, max_exponent).map(lambda k: float(10.0**k))


def hyperparams(name: str) -> st.SearchStrategy[dict[str, float]]:
    """Keyword arguments for ``handgrad.optim.<name>``: every hyperparameter the alias takes."""
    lr = learning_rates()
    table: Mapping[str, dict[str, st.SearchStrategy[Any]]] = {
        "gd": {"learning_rate": lr},
        "momentum": {"learning_rate": lr, "beta": betas()},
        "nesterov": {"learning_rate": lr, "beta": betas()},
        "adagrad": {"learning_rate": lr, "eps": epsilons(),
                    "initial_accumulator": st.one_of(st.just(0.0), st.just(0.1), st.floats(0.0, 1.0))},
        "rmsprop": {"learning_rate": lr, "decay": betas(), "eps": epsilons()},
        "adam": {"learning_rate": lr, "b1": betas(), "b2": betas(), "eps": epsilons()},
        "adamw": {"learning_rate": lr, "b1": betas(), "b2": betas(), "eps": epsilons(),
                  "weight_decay": st.one_of(st.just(0.0), st.floats(0.0, 1.0))},
    }
    if name not in table:
        raise ValueError(f"name must be one of {sorted(table)}, got {name!r}")
    return st.fixed_dictionaries(table[name])


@st.composite
def gradient_problems(draw: st.DrawFn, *, steps: int = 60, max_tensors: int = 3,
                      max_dim: int = 4) -> OptimProblem:
    """Start params and ``steps`` gradients for 1..``max_tensors`` tensors of shape (r, c), r, c <= ``max_dim``.

    Magnitudes: params :math:`10^{k_p}`, :math:`k_p \\in [-3, 3]` (or all zero), gradients
    :math:`10^{k_g}`, :math:`k_g \\in [-6, 4]`; see the module docstring for the patterns.
    """
    check_positive_int("steps", steps)
    if not 1 <= max_tensors <= 3:
        raise ValueError(f"max_tensors must be in [1, 3], got {max_tensors}")
    if max_dim < 1:
        raise ValueError(f"max_dim must be >= 1, got {max_dim}")
    keys = ["W1", "B1", "W2"][: draw(st.integers(1, max_tensors))]
    shapes = {k: (draw(st.integers(1, max_dim)), draw(st.integers(1, max_dim))) for k in keys}
    kp = draw(st.one_of(st.none(), st.integers(-3, 3)))
    kg = draw(st.integers(-6, 4))
    pattern = draw(st.sampled_from(PATTERNS))
    seed = draw(st.integers(0, 2**32 - 1))
    recipe = f"shapes={shapes}, params 10^{kp}, grads 10^{kg}, pattern={pattern!r}, seed={seed}, steps={steps}"
    rng = np.random.default_rng(seed)
    params0 = {k: (np.zeros(s) if kp is None else rng.standard_normal(s) * 10.0**kp) for k, s in shapes.items()}
    base = {k: rng.standard_normal(s) for k, s in shapes.items()}
    grads = []
    for t in range(steps):
        g = {}
        for k, s in shapes.items():
            if pattern == "constant":
                x = base[k].copy()
            elif pattern == "alternating":
                x = base[k] * (-1.0) ** t
            else:
                x = rng.standard_normal(s)
                if pattern == "sparse":
                    x = np.where(rng.random(s) < 0.5, 0.0, x)
                elif pattern == "decaying":
                    x = x * 0.9**t
                elif pattern == "spiky":
                    x = np.where(rng.random(s) < 0.05, x * 1e4, x)
            g[k] = x * 10.0**kg
        grads.append(g)
    return OptimProblem(params0, grads, recipe)
