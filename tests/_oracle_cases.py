"""Case tables shared by tests/test_jax_oracle.py and tests/test_finite_diff.py.

Driven by the registries: every registered activation and every registered loss gets its own
case with a readable id. Architectures are fixed (a property suite that drew shapes would pay a
JAX compile per shape), and include a square layer (4 x 4) so a missing transpose cannot hide.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import handgrad as hg

__all__ = ["BAD_INPUTS", "activation_cases", "arch_id", "backprop_from", "design_cases", "draw", "labels", "loss_cases",
           "within"]

ACTIVATION_SIZES = (3, 4, 4, 2)
LOSS_SIZES = (3, 4, 4, 3)


def labels(loss: hg.Loss, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Labels of the kind the loss expects (real, in [0, 1], or columns summing to 1)."""
    if loss.target_kind == "unit":
        return rng.random(shape)
    if loss.target_kind == "distribution":
        y = rng.random(shape) + 0.05
        return y / y.sum(axis=0, keepdims=True)
    return rng.standard_normal(shape)


def draw(net: hg.Network, seed: int, m: int, *, weight_scale: float | None = None,
         dtype: Any = np.float64) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Seeded params (``net.init``: weights N(0, 1/n_in) or N(0, weight_scale^2), biases
    N(0, 0.25)), X ~ N(0, 1) and labels of the loss's kind."""
    rng = np.random.default_rng(seed)
    params = net.init(rng, weight_scale=weight_scale, bias_scale=0.5, dtype=dtype)
    X = rng.standard_normal((net.sizes[0], m)).astype(dtype)
    Y = labels(net.loss, rng, (net.sizes[-1], m)).astype(dtype)
    return params, X, Y


def activation_cases() -> list[Any]:
    """One network per registered activation, used in a hidden layer and at the output."""
    return [
        pytest.param(hg.Network(ACTIVATION_SIZES, [name, "tanh", name], "squared_error"), id=name)
        for name in hg.activation_names()
    ]


def _last_activation(loss: hg.Loss) -> str:
    lo, hi = loss.prediction_range
    for act in hg.iter_activations():
        a_lo, a_hi = act.output_range
        if lo <= a_lo and a_hi <= hi:
            return act.name
    raise LookupError(f"no registered activation fits loss {loss.name!r}")


def loss_cases() -> list[Any]:
    """One network per registered loss; losses with fused rules also without fusion."""
    out = []
    for loss in hg.iter_losses():
        finals = list(loss.fused) or [_last_activation(loss)]
        for final in finals:
            fusions = [True, False] if final in loss.fused else [True]
            for fuse in fusions:
                net = hg.Network(LOSS_SIZES, ["tanh", "sigmoid", final], loss.name, fuse=fuse)
                tag = "" if final not in loss.fused else ("-fused" if fuse else "-unfused")
                out.append(pytest.param(net, id=f"{loss.name}-{final}{tag}"))
    return out


def within(diff: dict[str, np.ndarray], budget: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest |difference| / budget per tensor (<= 1 means every element is within budget)."""
    return {k: float(np.max(np.abs(diff[k]) / budget[k])) for k in diff}


def _bad(**changes: Any) -> Callable[[dict, np.ndarray, np.ndarray], tuple[dict, Any, Any]]:
    def make(params: dict, X: np.ndarray, Y: np.ndarray) -> tuple[dict, Any, Any]:
        p = dict(params)
        for key in ("W1", "B2"):
            if key in changes:
                p[key] = changes[key](p[key])
        if changes.get("drop"):
            del p["W2"]
        return p, changes.get("X", lambda x: x)(X), changes.get("Y", lambda y: y)(Y)

    return make


BAD_INPUTS = [  # for the article network (2-3-3-1) and a batch of 3
    pytest.param(_bad(drop=True), ValueError, r"missing \['W2'\]", id="missing-key"),
    pytest.param(_bad(W1=lambda w: w.T), ValueError, r"params\['W1'\] has shape \(2, 3\)", id="W1-transposed"),
    pytest.param(_bad(B2=lambda b: b.ravel()), ValueError, r"params\['B2'\] has shape \(3,\)", id="B2-1d"),
    pytest.param(_bad(X=lambda x: x[:, 0]), ValueError, r"X has shape \(2,\)", id="X-1d"),
    pytest.param(_bad(X=lambda x: x[:, :0]), ValueError, "batch is empty", id="X-empty"),
    pytest.param(_bad(Y=lambda y: y[:, :2]), ValueError, r"Y has shape \(1, 2\)", id="Y-wrong-m"),
    pytest.param(_bad(Y=lambda y: y.ravel()), ValueError, "never broadcast", id="Y-1d"),
    pytest.param(_bad(X=lambda x: x.astype(np.float32)), TypeError, "X has dtype float32", id="X-dtype"),
    pytest.param(_bad(X=lambda x: np.where(x > 0, np.nan, x)), ValueError, "non-finite", id="X-nan"),
    pytest.param(_bad(X=lambda x: x.tolist()), TypeError, "X must be a numpy.ndarray", id="X-list"),
]


def arch_id(arch: tuple) -> str:
    """A readable id for an ``(sizes, activations, loss, fuse)`` tuple."""
    sizes, acts, loss, fuse = arch
    return "-".join(map(str, sizes)) + "-" + "-".join(acts) + f"-{loss}" + ("" if fuse else "-unfused")


BATCHED_ARCHS = [
    ((2, 3, 3, 1), ("sigmoid", "sigmoid", "sigmoid"), "squared_error", True),
    ((3, 4, 2), ("tanh", "sigmoid"), "bce", True),
    ((3, 4, 2), ("tanh", "sigmoid"), "bce", False),
    ((3, 5, 3), ("tanh", "softmax"), "cross_entropy", True),
    ((3, 5, 3), ("sigmoid", "softmax"), "cross_entropy", False),
    ((3, 9, 4), ("softmax", "tanh"), "squared_error", True),
    ((4, 4, 4, 2), ("softplus", "gelu", "identity"), "squared_error", True),
    ((2, 3, 2), ("relu", "sigmoid"), "squared_error", True),  # a kink: central differences, case by case
    ((3, 6, 5, 4, 2), ("elu", "silu", "leaky_relu", "sigmoid"), "bce", True),
]
"""Architectures on which the batched oracles and budgets (``fd_grads_many``, ``jax_grads_many``,
``error_budgets``) are held to each case alone: fused and unfused, a softmax hidden and at the
output, a kink, a deep net."""


def design_cases(arch: tuple, seed: int, batch_sizes: tuple[int, ...], count: int = 24,
                 ) -> tuple[hg.Network, list[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]]:
    """``count`` seeded case-design draws of ``arch`` (every scale, label family, X scale, exact
    zeros and duplicated samples now and then; a third in float32), the ones inside the oracles'
    domain: what the certify runner's batched pass hands the oracles."""
    from handgrad.reference.cases.spec import SCALES, CaseSpec, build_case, in_domain, label_kinds

    sizes, acts, loss, fuse = arch
    rng = np.random.default_rng(seed)
    cases, net = [], None
    for i in range(count):
        spec = CaseSpec(sizes, acts, loss, fuse, int(rng.choice(batch_sizes)), str(rng.choice(list(SCALES))),
                        int(rng.integers(2**32)), labels=str(rng.choice(label_kinds(loss))),
                        x_scale=float(rng.choice([0.1, 1.0, 10.0])), x_zeros=bool(i % 5 == 0),
                        duplicate=bool(i % 7 == 0), rescale=True)
        net, params, X, Y = build_case(spec, "float64" if i % 3 else "float32", filter_domain=False)
        if in_domain(net, params, X):
            cases.append((params, X, Y))
    assert net is not None
    return net, cases


def backprop_from(net: hg.Network, params: dict[str, np.ndarray], cache: Any, delta: np.ndarray,
                  ) -> dict[str, np.ndarray]:
    """The layers of a hand-written backward below a given output delta (the article's loop:
    dW = delta a^T, dB = sum over samples, delta <- f'(z) * W^T delta): for test backwards that
    change only how the output delta is formed."""
    grads = {}
    for l in range(net.depth, 0, -1):
        grads[f"W{l}"] = delta @ cache.a[l - 1].T
        grads[f"B{l}"] = np.sum(delta, axis=1, keepdims=True)
        if l > 1:
            delta = net.activations[l - 2].backward_unchecked(cache.z[l - 2], cache.a[l - 1], params[f"W{l}"].T @ delta)
    return grads


def without_batched_references(monkeypatch: Any) -> None:
    """For a test that replaces certify's ``referee`` by a recorder: the references and budgets
    the batched pass computes for the referee before calling it are not computed either (with
    drawn widths, every architecture would compile JAX for nothing)."""
    from handgrad.reference.judge import certify as certify_module

    def nothing(net: Any, cases: Any, *_: Any) -> list[None]:
        return [None] * len(cases)

    for name in ("_fd_many", "_sympy_many", "_jax_many", "error_budgets"):
        monkeypatch.setattr(certify_module, name, nothing)
