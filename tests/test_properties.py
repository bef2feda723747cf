"""The property suite: for every registered activation and loss, over drawn shapes and inputs,
handgrad's forward agrees with the JAX and SymPy forwards, and its gradients agree with SymPy, JAX
and finite differences within the derived budgets (reference/tolerance.py).

JAX compiles once per architecture (~0.3 s), so each activation and loss is exercised on a small
pool of architectures (shapes chosen to include square layers, depth 1 to 5, batch sizes equal to
a layer width), with parameters, inputs, batch sizes and scales drawn freely; one test draws whole
architectures at random on top. Everything registered -- including activations registered by
users -- is enumerated from the registry when the module is collected.
"""

from __future__ import annotations

import numpy as np
import pytest
from handgrad.reference import build_case, case_specs, referee
from handgrad.reference.cases.pools import activation_pool, loss_pool
from handgrad.reference.cases.strategies import CaseSpec, architectures, examples
from handgrad.reference.judge.referee import referee_forward
from hypothesis import given, settings
from hypothesis import strategies as st

import handgrad as hg

ACTIVATIONS = hg.activation_names()
LOSSES = hg.loss_names()


def _specs(pool: list, max_batch: int = 6) -> st.SearchStrategy[CaseSpec]:
    return case_specs(st.sampled_from(pool), max_batch=max_batch)


def _certify_case(spec: CaseSpec, dtype: str = "float64") -> None:
    net, params, X, Y = build_case(spec, dtype)
    for check in referee_forward(net, params, X):
        assert check.ok, f"forward {check.pair}: {check.worst} ratio {check.ratio:.3g}\n{spec.reproduce(dtype)}"
    report = referee(net, params, X, Y, net.backward, reproduce=spec.reproduce(dtype))
    assert report.verdict in ("certified", "inconclusive"), report.text()
    if report.verdict == "certified":
        assert any(c.pair == "hand vs JAX" for c in report.checks)


@pytest.mark.parametrize("name", ACTIVATIONS)
@settings(max_examples=examples(12))
@given(data=st.data())
def test_activation_certified_everywhere(name: str, data: st.DataObject) -> None:
    _certify_case(data.draw(_specs(activation_pool(name))))


@pytest.mark.parametrize("name", LOSSES)
@settings(max_examples=examples(12))
@given(data=st.data())
def test_loss_certified_everywhere(name: str, data: st.DataObject) -> None:
    pool = loss_pool(name)
    assert pool, f"no architecture fits loss {name!r}"
    _certify_case(data.draw(_specs(pool)))


@settings(max_examples=examples(8))
@given(spec=case_specs(architectures(max_depth=5, max_width=8)))
def test_random_architectures(spec: CaseSpec) -> None:
    _certify_case(spec)


FLOAT32_POOL = [((3, 3, 3, 1), ("sigmoid", "tanh", "sigmoid"), "squared_error", True),
                ((2, 4, 3), ("gelu", "softmax"), "cross_entropy", True),
                ((3, 3, 2), ("softplus", "sigmoid"), "bce", False)]


@settings(max_examples=examples(12))
@given(spec=_specs(FLOAT32_POOL))
def test_float32_certified_with_its_own_budget(spec: CaseSpec) -> None:
    _certify_case(spec, "float32")


def test_float32_budget_is_wider_than_float64() -> None:
    spec = CaseSpec((3, 3, 1), ("tanh", "sigmoid"), "squared_error", True, 2, "unit", 1)
    from handgrad.reference.judge.tolerance import error_budget

    net, params, X, Y = build_case(spec, filter_domain=False)
    b = error_budget(net, params, X, Y)
    for k in net.param_names:
        assert np.all(b.against(np.float32)[k] > 1e7 * b.against(np.float64)[k] * 0.9)
