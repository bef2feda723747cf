"""error_budgets: the budgets of many cases computed together as stacks are, bit for bit, the
budget of each case alone (issue 12: the certify runner's batched pass relies on it)."""

from __future__ import annotations

import numpy as np
import pytest
from _oracle_cases import BATCHED_ARCHS, arch_id, design_cases
from handgrad.reference.judge.tolerance import STRICT_POLICY, Budget, error_budget, error_budgets

import handgrad as hg

ARCHS = BATCHED_ARCHS


def _bits(b: Budget) -> tuple:
    ref = None if b.reference_magnitude is None else {k: v.tobytes() for k, v in b.reference_magnitude.items()}
    return ({k: (v.shape, v.tobytes()) for k, v in b.magnitude.items()}, b.forward_magnitude.tobytes(), b.K,
            b.kink_units, b.kink_cells, b.policy, ref, [x.tobytes() for x in b.exact_bits_needed()])


@pytest.mark.parametrize("policy", ["textbook", "strict"])
@pytest.mark.parametrize("arch", ARCHS, ids=arch_id)
def test_many_budgets_together_equal_each_alone_bitwise(arch: tuple, policy: str) -> None:
    net, cases = design_cases(arch, sum(arch[0]) + 3, (1, 1, 2, 3, 5, 8, 9, 17))
    assert len(cases) >= 12
    assert len({X.shape[1] for _, X, _ in cases}) < len(cases)  # some cases share a batch size
    together = error_budgets(net, cases, policy)
    assert [_bits(b) for b in together] == [_bits(error_budget(net, *case, policy)) for case in cases]


def test_kinked_units_are_found_in_every_case_of_a_stack() -> None:
    """A sample whose terms cancel (w_i1 = -w_i2, x_1 = x_2, x_3 = 0, b = 0: z = 0 with a nonzero
    error bound) puts every relu unit on its kink: each case's kink units and the proof of which
    are computed exactly are its own, whatever it is stacked with."""
    net = hg.Network((3, 4, 2), ["relu", "sigmoid"], "squared_error")
    rng = np.random.default_rng(5)
    cases = []
    for i in range(6):
        params = net.init(rng)
        params["B1"] = np.zeros_like(params["B1"])
        params["W1"][:, 1] = -params["W1"][:, 0]
        X = rng.standard_normal((3, 4))
        X[:, i % 4] = (0.5 * (i + 1), 0.5 * (i + 1), 0.0)
        cases.append((params, X, rng.random((2, 4))))
    together = error_budgets(net, cases, STRICT_POLICY)
    assert all(b.kink_units for b in together)
    assert [_bits(b) for b in together] == [_bits(error_budget(net, *case, STRICT_POLICY)) for case in cases]


def test_a_softmax_of_cases_of_one_sample_is_summed_case_by_case() -> None:
    """numpy sums a single column (m = 1) pairwise from 8 entries on, but the columns of a wider
    array row after row (measured on 24 such cases of this net: 9 softmax outputs differ side by
    side): so error_budgets evaluates a softmax-like definition case by case. (Laying the cases
    side by side here did not change these budgets' bits, so this checks the stack, not that
    choice; tests/test_finite_diff_many.py's counterpart does fail side by side.)"""
    net = hg.Network((3, 12, 3), ["softmax", "tanh"], "squared_error")
    rng = np.random.default_rng(12)
    cases = [(net.init(rng), rng.standard_normal((3, 1)), rng.standard_normal((3, 1))) for _ in range(24)]
    together = error_budgets(net, cases)
    assert [_bits(b) for b in together] == [_bits(error_budget(net, *case)) for case in cases]


def test_a_stack_of_cases_of_one_sample_keeps_its_operands_contiguous() -> None:
    """The output deltas of cases of one sample were a strided view of their stack, and numpy's
    matrix product took its own loop there (one product after another) instead of BLAS: a last-bit
    difference from the case alone (scripts/check_batched.py --seed 20261213, #27: 6-6-6-6-6-6
    under softmax cross-entropy, float32)."""
    net = hg.Network((6, 6, 6, 6, 6, 6), ["sigmoid", "elu", "elu", "softplus", "tanh"], "softmax_cross_entropy")
    rng = np.random.default_rng(27)
    cases = [(net.init(rng), rng.standard_normal((6, 1)), np.eye(6)[:, [int(rng.integers(6))]]) for _ in range(12)]
    together = error_budgets(net, cases)
    assert [_bits(b) for b in together] == [_bits(error_budget(net, *case)) for case in cases]


def test_an_empty_list_has_no_budgets() -> None:
    assert error_budgets(hg.article_network(), []) == []


@pytest.mark.parametrize("order", ["C", "F"])
def test_a_column_major_case_alone_is_its_budget_beside_others(order: str) -> None:
    """A case's budget alone must be bitwise its budget in a stack, whatever the memory order of its
    arrays: a column-major Y (as build_case's soft labels) summed over 8 or more units ran along
    memory, pairwise, in a stack of one (scripts/check_batched.py --seed 20261219, #2: 7-2-8
    identity/sigmoid under unfused cross-entropy)."""
    from handgrad.reference.cases.spec import CaseSpec, build_case

    sizes, acts = (7, 2, 9), ("identity", "sigmoid")
    net = hg.Network(sizes, list(acts), "cross_entropy", fuse=False)
    cases = []
    for i, scale in enumerate(("small", "unit", "large", "near_saturating")):
        _, params, X, Y = build_case(CaseSpec(sizes, acts, "cross_entropy", False, 4, scale, 100 + i,
                                              labels="soft", rescale=True))
        cases.append(({k: np.asarray(v, order=order) for k, v in params.items()}, np.asarray(X, order=order),
                      np.asarray(Y, order=order)))
    assert any(not c[2].flags["C_CONTIGUOUS"] for c in cases) == (order == "F")
    for case, budget in zip(cases, error_budgets(net, cases), strict=True):
        alone = error_budget(net, *case)
        for k in net.param_names:
            assert alone.magnitude[k].tobytes() == budget.magnitude[k].tobytes(), k
