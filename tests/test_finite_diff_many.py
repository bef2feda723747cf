"""fd_grads_many: many cases of one architecture evaluated side by side give, bit for bit, what
fd_grads_unchecked gives case by case (issue 12: the certify runner's batched pass relies on it)."""

from __future__ import annotations

import numpy as np
import pytest
from _oracle_cases import BATCHED_ARCHS, arch_id, design_cases
from handgrad.reference.cases.spec import CaseSpec, build_case
from handgrad.reference.oracles.finite_diff import FDResult, fd_grads_many, fd_grads_unchecked

import handgrad as hg

ARCHS = BATCHED_ARCHS


def _same(a: FDResult | Exception, b: FDResult | Exception) -> None:
    if isinstance(b, Exception):
        assert type(a) is type(b) and str(a) == str(b)
        return
    assert isinstance(a, FDResult), a
    assert a.method == b.method
    for field in ("grads", "error", "kink", "left", "right", "left_error", "right_error"):
        fa, fb = getattr(a, field), getattr(b, field)
        assert list(fa) == list(fb)
        for k in fb:
            assert fa[k].dtype == fb[k].dtype and fa[k].shape == fb[k].shape
            assert fa[k].tobytes() == fb[k].tobytes(), (field, k)  # bitwise, NaN payloads and -0.0 included


def _one(net, params, X, Y) -> FDResult | Exception:  # type: ignore[no-untyped-def]
    try:
        return fd_grads_unchecked(net, params, X, Y)
    except (ValueError, ArithmeticError) as exc:
        return exc


@pytest.mark.parametrize("arch", ARCHS, ids=arch_id)
def test_many_cases_side_by_side_equal_each_alone_bitwise(arch: tuple) -> None:
    net, cases = design_cases(arch, sum(arch[0]), (1, 2, 3, 5, 8, 9, 17, 33))
    assert len(cases) >= 12
    many = fd_grads_many(net, cases)
    assert len(many) == len(cases)
    for got, case in zip(many, cases, strict=True):
        _same(got, _one(net, *case))


def test_cases_of_one_sample_are_not_summed_beside_others() -> None:
    """numpy sums a single column (m = 1) pairwise from 8 entries on, but the columns of a wider
    array one row after another: a column sum over 12 softmax units of a case of one sample laid
    beside other cases would round differently than the case alone (measured: 1 in 4 sums)."""
    net = hg.Network((3, 12, 3), ["softmax", "tanh"], "squared_error")
    rng = np.random.default_rng(12)
    cases = [(net.init(rng), rng.standard_normal((3, m)), rng.standard_normal((3, m))) for m in [1] * 24 + [2, 3]]
    for got, case in zip(fd_grads_many(net, cases), cases, strict=True):
        _same(got, _one(net, *case))


def test_a_case_whose_complex_evaluation_overflows_is_computed_alone() -> None:
    """exp of a complex argument beyond ~709.78 overflows where the real evaluation saturates: the
    single-case path then takes central differences, and so does the batch, for that case only."""
    spec = CaseSpec((2, 3, 1), ("sigmoid", "sigmoid"), "squared_error", True, 3, "unit", 5)
    net, params, X, Y = build_case(spec, "float64", filter_domain=False)
    hot = {k: v.copy() for k, v in params.items()}
    hot["W1"] = hot["W1"] * 0 - 400.0  # z = -400 (x1 + x2) + b < -709.78: exp(-z) overflows
    X2 = np.abs(X) + 1.0
    cases = [(params, X, Y), (hot, X2, Y), (params, X, Y)]
    many = fd_grads_many(net, cases)
    alone = [_one(net, *c) for c in cases]
    assert [getattr(r, "method", None) for r in alone] == ["complex", "central", "complex"]
    for got, want in zip(many, alone, strict=True):
        _same(got, want)


def test_cases_too_wide_for_one_array_are_split_into_groups() -> None:
    """A 10-30-10-3 net at m = 33 fills most of one chunk of perturbed columns per case: the batch
    splits into groups (here one case each) and still equals the single-case results."""
    rng = np.random.default_rng(3)
    cases, net = [], None
    for m in (33, 20, 33):
        spec = CaseSpec((10, 30, 10, 3), ("tanh", "sigmoid", "sigmoid"), "squared_error", True, m, "unit",
                        int(rng.integers(2**32)), rescale=True)
        net, params, X, Y = build_case(spec, "float64", filter_domain=False)
        cases.append((params, X, Y))
    for got, case in zip(fd_grads_many(net, cases), cases, strict=True):
        _same(got, _one(net, *case))


@pytest.mark.parametrize("acts", [["softmax", "tanh"], ["sigmoid", "relu"], ["tanh", "softmax"]])
def test_cases_of_one_sample_of_a_narrow_net_are_summed_beside_others_bitwise(acts: list[str]) -> None:
    """Below 8 units numpy adds a single column's rows in order, as it adds a wider array's: a net
    whose layers are all narrower than that takes its cases of one sample side by side, bitwise
    (with zeros of both signs and large values in the sums)."""
    net = hg.Network((9, 7, 7), acts, "squared_error")
    rng = np.random.default_rng(7)
    cases = []
    for m in [1] * 20 + [2, 3, 1]:
        params = net.init(rng, weight_scale=3.0)
        X = rng.standard_normal((9, m))
        X[rng.random(X.shape) < 0.3] = -0.0
        cases.append((params, X, rng.standard_normal((7, m))))
    for got, case in zip(fd_grads_many(net, cases), cases, strict=True):
        _same(got, _one(net, *case))
