"""The JAX oracle's stacked executable (``grads_many_unchecked``, issue 12): a case's bits do not
depend on the cases stacked with it, so the certify runners' batched pass and their case-by-case
runner get the same certificate; and the stacked gradients are JAX's gradients (within the
budget of the one-case executable's, and refereed like them)."""

from __future__ import annotations

import numpy as np
import pytest
from _oracle_cases import BATCHED_ARCHS, arch_id, design_cases, within
from handgrad.reference.cases.spec import CaseSpec, build_case
from handgrad.reference.judge.tolerance import error_budget
from handgrad.reference.oracles.inputs import NonFiniteError, OracleRangeError
from handgrad.reference.oracles.jax_oracle import STACK, get_jax_oracle, jax_grads_many, jax_grads_unchecked

import handgrad as hg

ARCHS = BATCHED_ARCHS


def _bits(result: object) -> object:
    if isinstance(result, Exception):
        return (type(result), str(result))
    assert isinstance(result, dict)
    return {k: (v.dtype, v.shape, v.tobytes()) for k, v in result.items()}


@pytest.mark.parametrize("arch", ARCHS, ids=arch_id)
def test_a_cases_bits_do_not_depend_on_its_companions(arch: tuple) -> None:
    net, cases = design_cases(arch, sum(arch[0]) + 1, (1, 2, 3, 5, 8, 9, 17, 33, 64))
    assert len(cases) > STACK + 2  # at least one full stack and one partly filled
    together = [_bits(r) for r in jax_grads_many(net, cases)]
    alone = [_bits(jax_grads_many(net, [case])[0]) for case in cases]
    assert together == alone
    reversed_order = [_bits(r) for r in jax_grads_many(net, cases[::-1])][::-1]
    assert reversed_order == alone
    # The stacks are a different XLA program from the one-case executable (a batched dot): their
    # bits may differ from its (measured: all 20 cases of a 4-5-3 tanh net), within the budget.
    for (params, X, Y), got in zip(cases, jax_grads_many(net, cases), strict=True):
        one = jax_grads_unchecked(net, params, X, Y)
        assert isinstance(got, dict) and list(got) == list(one) == net.param_names
        budget = error_budget(net, params, X, Y).against(np.float64)
        assert max(within({k: got[k] - one[k] for k in got}, budget).values()) <= 1


def test_a_case_the_oracle_declines_is_returned_as_its_error_and_spares_the_stack() -> None:
    spec = CaseSpec((2, 3, 1), ("sigmoid", "sigmoid"), "bce", False, 3, "unit", 5)
    net, params, X, Y = build_case(spec, "float64", filter_domain=False)
    hot = {k: v.copy() for k, v in params.items()}
    hot["W2"] = hot["W2"] * 0 + 800.0  # exp(-z) at |z| > 709.78 overflows: JAX declines the case
    hot["B2"] = hot["B2"] * 0 - 2400.0
    cases = [(params, X, Y), (hot, X, Y), (params, X[:, :1], Y[:, :1])]
    got = jax_grads_many(net, cases)
    with pytest.raises((NonFiniteError, OracleRangeError)) as alone:
        jax_grads_unchecked(net, hot, X, Y)
    assert isinstance(got[1], type(alone.value))
    assert _bits(got[0]) == _bits(jax_grads_many(net, [cases[0]])[0])
    assert _bits(got[2]) == _bits(jax_grads_many(net, [cases[2]])[0])


def test_batches_wider_than_the_small_bucket_get_their_own_stacks() -> None:
    net = hg.Network((2, 3, 1), "sigmoid", "squared_error")
    rng = np.random.default_rng(3)
    params = net.init(rng)
    cases = [(params, X, rng.random((1, X.shape[1]))) for X in (rng.standard_normal((2, m)) for m in (5, 70, 64, 130))]
    got = jax_grads_many(net, cases)
    for case, g in zip(cases, got, strict=True):
        assert _bits(g) == _bits(jax_grads_many(net, [case])[0])
        one = jax_grads_unchecked(net, *case)
        budget = error_budget(net, *case).against(np.float64)
        assert max(within({k: g[k] - one[k] for k in g}, budget).values()) <= 1  # type: ignore[index]


def test_the_stacked_executable_is_for_small_nets_only() -> None:
    net = hg.Network((40, 30, 2), "sigmoid", "squared_error")  # 1,292 parameters
    params = net.init(np.random.default_rng(0))
    X, Y = np.zeros((40, 2)), np.zeros((2, 2))
    with pytest.raises(ValueError, match="at most 1000"):
        get_jax_oracle(net).grads_many_unchecked([(params, X, Y)])
