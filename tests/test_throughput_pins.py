"""Pins of what the default certification computes and draws, so that a speed-up shows if it changes
a number (issue 12: budgets, references and verdicts must stay the same; the full comparison
is ``scripts/bench_same_numerics.py``). Values were recorded before this session's changes and
after them, equal; gradients are compared to 1e-13 relative (rounding of another BLAS may move the
last bits), the case design's draws exactly (hypothesis is derandomized: a hypothesis upgrade
may change them, and then these pins are to be renewed, with the reason in the commit). Hypothesis
also draws integers from the literal constants of the project's own modules (its "local constants"):
a new numeric literal in any module of the checkout can change a draw, seen so far only in shrinking
(``functools.lru_cache(maxsize=8192)`` in the referee moved one seed a shrinker tried from 55000 to
50000); that too is a reason to renew, not a change of numerics."""

from __future__ import annotations

import pytest
from handgrad.reference import referee
from handgrad.reference.cases.spec import CaseSpec, build_case
from handgrad.reference.judge import certify as certify_module
from handgrad.reference.judge.reports import Report

import handgrad as hg

SPEC = CaseSpec((2, 3, 3, 1), ("sigmoid",) * 3, "squared_error", True, 5, "large", 7, rescale=True)

# tensor, index: finite differences, their error estimate, JAX, SymPy
ORACLE_VALUES = [
    ("W1", (0, 1), -4.50259747140707e-05, 2.6403144445959836e-18, -4.502597471407071e-05, -4.502597471407074e-05),
    ("B2", (2, 0), -0.0006406930131014636, 2.0264492948471677e-17, -0.0006406930131014638, -0.0006406930131014638),
    ("W3", (0, 2), 0.00045086810781874205, 8.123159405516625e-18, 0.0004508681078187421, 0.0004508681078187422),
]

# tensor, index: the float64 budget of the element (judge/tolerance.py; a deliberate change of the
# budget renews these three numbers, with the reason in the commit)
BUDGETS = [("W1", (0, 1), 6.482794819468381e-13), ("B2", (2, 0), 2.1105832313520929e-13),
           ("W3", (0, 2), 5.134821392974948e-15)]

# pair, tensor: the worst err/budget (a few ulps over the budget: it moves with the last bit of an
# oracle, so it is pinned in order of magnitude only) and where it is
CROSS_CHECKS = [
    ("SymPy vs JAX", "W1", 1.139209197645991e-06, "w_11^(1)"),
    ("SymPy vs JAX", "B1", 3.546755328134728e-07, "b_2^(1)"),
    ("SymPy vs JAX", "W2", 4.6008793037008624e-06, "w_12^(2)"),
    ("SymPy vs JAX", "B2", 3.067516842955049e-06, "b_1^(2)"),
    ("SymPy vs JAX", "W3", 2.111470077554836e-05, "w_13^(3)"),
    ("SymPy vs JAX", "B3", 1.2181569133347276e-05, "b_1^(3)"),
    ("finite differences vs JAX", "W1", 6.162157991857951e-07, "w_21^(1)"),
    ("finite differences vs JAX", "B1", 7.0930209866603e-07, "b_2^(1)"),
    ("finite differences vs JAX", "W2", 2.8381337825805453e-06, "w_13^(2)"),
    ("finite differences vs JAX", "B2", 1.0272971642158862e-06, "b_3^(2)"),
    ("finite differences vs JAX", "W3", 1.2769298024886192e-05, "w_12^(3)"),
    ("finite differences vs JAX", "B3", 0.0, "b_1^(3)"),
]

SEED0_DRAWS = [
    (1, 'small', 0, 1.0, True, False),
    (1, 'large', 86017, 1.0, False, False),
    (16, 'large', 18902797, 1.0, False, False),
    (9, 'unit', 39189, 1.0, False, False),
    (13, 'large', 53020, 1.0, False, False),
    (2, 'saturating', 133095764, 1.0, False, False),
    (3, 'saturating', 78618, 10.0, False, False),
    (1, 'near_saturating', 43069, 1.0, False, False),
    (1, 'near_saturating', 1048575, 0.1, False, False),
    (2, 'saturating', 226, 10.0, False, False),
    (6, 'near_saturating', 441, 10.0, False, True),
    (2, 'unit', 300, 1.0, False, True),
    (11, 'saturating', 16777215, 10.0, False, False),
    (6, 'small', 76758969, 10.0, False, False),
    (3, 'near_saturating', 382901419, 1.0, False, False),
    (7, 'saturating', 49, 0.1, False, False),
    (2, 'unit', 635373265, 1.0, False, False),
    (2, 'unit', 4294967294, 10.0, False, False),
    (3, 'saturating', 35526, 1.0, False, False),
    (7, 'small', 3848472, 1.0, True, False),
    (1, 'unit', 409, 1.0, False, False),
    (7, 'near_saturating', 8928, 1.0, False, False),
    (17, 'near_saturating', 182531528, 1.0, False, False),
    (1, 'unit', 19032, 1.0, False, False),
    (3, 'unit', 2745472, 1.0, False, False),
    (1, 'near_saturating', 45, 1.0, False, False),
    (2, 'small', 278178106, 1.0, False, False),
    (5, 'small', 1909, 0.1, False, False),
    (2, 'near_saturating', 3842, 1.0, False, False),
    (2, 'unit', 4294967295, 10.0, True, False),
]
"""(m, scale, seed, x_scale, x_zeros, duplicate) of the 30 random cases of the default certification
of 2-3-3-1, seed 0, when every case is decided: all distinct since repeats are redrawn. Renewed when
the random draws went from one case to five per hypothesis example (issue 12): the first case is
still hypothesis's simplest, the others follow a new choice sequence (no longer mutations of earlier
one-case examples, which made seeds such as 300, 5 and 0 recur with one field changed)."""


@pytest.fixture(scope="module")
def case():
    return build_case(SPEC)


@pytest.mark.parametrize(("tensor", "index", "fd", "fd_error", "jax", "sympy"), ORACLE_VALUES)
def test_the_oracles_values_are_pinned(case, tensor, index, fd, fd_error, jax, sympy) -> None:
    from handgrad.reference.oracles.finite_diff import fd_grads
    from handgrad.reference.oracles.jax_oracle import jax_grads
    from handgrad.reference.oracles.sympy_oracle import sympy_grads

    net, params, X, Y = case
    res = fd_grads(net, params, X, Y)
    assert float(res.grads[tensor][index]) == pytest.approx(fd, rel=1e-13, abs=0)
    assert float(res.error[tensor][index]) == pytest.approx(fd_error, rel=1e-6, abs=0)
    assert float(jax_grads(net, params, X, Y)[tensor][index]) == pytest.approx(jax, rel=1e-13, abs=0)
    assert float(sympy_grads(net, params, X, Y)[tensor][index]) == pytest.approx(sympy, rel=1e-13, abs=0)


def test_the_budget_and_the_oracles_cross_check_are_pinned(case) -> None:
    import numpy as np
    from handgrad.reference.judge.tolerance import error_budget

    net, params, X, Y = case
    budget = error_budget(net, params, X, Y).against(np.float64)
    for tensor, index, value in BUDGETS:
        assert float(budget[tensor][index]) == pytest.approx(value, rel=1e-12, abs=0)
    report = referee(net, params, X, Y, net.backward)
    assert report.ok, report.text()
    got = [(c.pair, c.tensor, c.ratio) for c in report.checks[:len(CROSS_CHECKS)]]
    for (pair, tensor, ratio), want in zip(got, CROSS_CHECKS, strict=True):
        assert (pair, tensor) == want[:2]
        assert ratio <= max(100 * want[2], 1e-9)


def test_the_default_certification_draws_the_pinned_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    for runner in (certify_module._Runner, certify_module._BatchedRunner):  # the batched pass draws alike
        def run(self, spec, real=runner.run):
            if not spec.trap:
                seen.append((spec.m, spec.scale, spec.seed, spec.x_scale, spec.x_zeros, spec.duplicate))
            return real(self, spec)

        monkeypatch.setattr(runner, "run", run)
    monkeypatch.setattr(certify_module._Runner, "_referee", lambda self, net, params, X, Y, spec: Report(
        net.describe(), "float64", X.shape[1], "certified"))
    net = hg.Network((2, 3, 3, 1), "sigmoid", "squared_error")
    certify_module.certify_backward(net.backward, (2, 3, 3, 1), "sigmoid")
    assert seen == SEED0_DRAWS


def test_no_run_hashes_the_test_functions_source(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hypothesis computes a database key from the test function's source (inspect.getsource) on
    # every run unless the wrapped test carries one; certify_backward gives it None (there is no
    # database, and the draws come from the seed). A hypothesis upgrade that moves the hook fails
    # this, a reason to look again, not a change of numerics.
    import hypothesis.core

    def digest(function):
        raise AssertionError(f"function_digest({function.__qualname__}) was called")

    monkeypatch.setattr(hypothesis.core, "function_digest", digest)
    net = hg.Network((2, 3, 3, 1), "sigmoid", "squared_error")
    assert certify_module.certify_backward(net.backward, (2, 3, 3, 1), "sigmoid", examples=6).ok
    # and still from the seed: a failure found by a draw is the same with or without the key
    def planted(params, X, Y):
        g = net.backward(params, X, Y)
        return {**g, "B2": g["B2"] * 1.01} if X.shape[1] in (6, 7, 8) else g

    cert = certify_module.certify_backward(planted, (2, 3, 3, 1), "sigmoid", raise_on_failure=False)
    assert cert.failure is not None and cert.failure.verdict == "mismatch"
