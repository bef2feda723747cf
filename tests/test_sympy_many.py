"""sympy_grads_many: the closed forms evaluated for many cases side by side give, bit for bit, what
sympy_grads_unchecked gives case by case (issue 12: the certify runner's batched pass relies on it)."""

from __future__ import annotations

import numpy as np
import pytest
from _oracle_cases import arch_id, design_cases
from handgrad.reference.oracles.sympy_oracle import sympy_grads_many, sympy_grads_unchecked

ARCHS = [
    ((2, 3, 3, 1), ("sigmoid", "sigmoid", "sigmoid"), "squared_error", True),
    ((3, 4, 2), ("tanh", "sigmoid"), "bce", False),
    ((3, 5, 3), ("tanh", "softmax"), "cross_entropy", True),
    ((2, 3, 2), ("relu", "elu"), "squared_error", True),
    ((3, 3, 2), ("gelu", "softplus"), "squared_error", True),
]


def _one(net, params, X, Y):  # type: ignore[no-untyped-def]
    try:
        return sympy_grads_unchecked(net, params, X, Y)
    except (ValueError, ArithmeticError) as exc:
        return exc


@pytest.mark.parametrize("arch", ARCHS, ids=arch_id)
def test_many_cases_side_by_side_equal_each_alone_bitwise(arch: tuple) -> None:
    net, cases = design_cases(arch, 7 + sum(arch[0]), (1, 2, 3, 5, 9, 17, 33, 40, 70))  # 70: two chunks
    assert len(cases) >= 12
    for got, case in zip(sympy_grads_many(net, cases), cases, strict=True):
        want = _one(net, *case)
        if isinstance(want, Exception):
            assert type(got) is type(want) and str(got) == str(want)
            continue
        assert list(got) == list(want)
        for k in want:
            assert got[k].dtype == want[k].dtype and got[k].tobytes() == want[k].tobytes(), k


def test_a_network_the_oracle_declines_gives_its_reason_for_every_case() -> None:
    import handgrad as hg

    net = hg.Network((60, 60, 60, 2), "sigmoid", "squared_error")  # above SymPy's size limit
    params = net.init(np.random.default_rng(0))
    X, Y = np.ones((60, 2)), np.zeros((2, 2))
    many = sympy_grads_many(net, [(params, X, Y)] * 2)
    want = _one(net, params, X, Y)
    assert isinstance(want, ValueError)
    assert all(type(g) is type(want) and str(g) == str(want) for g in many)
