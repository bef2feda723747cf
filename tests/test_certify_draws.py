"""certify_backward's random phase: every decided case is a distinct spec, and a deterministic bug
found by a draw is shrunk and reported as what it is (not as a nondeterministic backward)."""

from __future__ import annotations

import pytest
from handgrad.reference import certify_backward
from handgrad.reference.judge import certify as certify_module

import handgrad as hg

SIZES = (3, 4, 2)  # traps at m = 1, 2, 3, 4, 5, 9, 11, 17, 33: none at 13-15
ACTS = ["relu", "sigmoid"]


def _wrong_at(ms: set[int]):
    net = hg.Network(SIZES, ACTS, "squared_error")

    def backward(params, X, Y):
        g = net.backward(params, X, Y)
        if X.shape[1] in ms:
            g["B2"] = g["B2"] * 1.01
        return g

    return backward


def test_a_deterministic_bug_found_by_a_draw_is_shrunk_and_not_called_nondeterministic() -> None:
    cert = certify_backward(_wrong_at({13, 14, 15}), SIZES, ACTS, oracles=("jax", "fd"), raise_on_failure=False)
    failure = cert.failure
    assert failure is not None and failure.verdict == "mismatch", cert.text()
    assert failure.m == 13  # shrunk to the smallest batch that shows the bug
    assert not any("could not replay" in n or "nondeterministic" in n for n in failure.notes), failure.notes
    assert {m.tensor for m in failure.mismatches} == {"B2"}


@pytest.mark.parametrize("sizes", [(2, 3, 3, 1), SIZES])
def test_no_two_random_cases_are_the_same_spec(monkeypatch: pytest.MonkeyPatch, sizes) -> None:
    seen: list = []
    for runner in (certify_module._Runner, certify_module._BatchedRunner):  # the batched pass draws alike
        def run(self, spec, real=runner.run):
            if not spec.trap:
                seen.append(spec)
            return real(self, spec)

        monkeypatch.setattr(runner, "run", run)
    acts = ["sigmoid"] * (len(sizes) - 1)
    net = hg.Network(sizes, acts, "squared_error")
    cert = certify_backward(net.backward, sizes, acts, oracles=("jax", "fd"))
    assert cert.ok and cert.random_decided == 30, cert.text()
    assert len(seen) == len(set(seen)) >= 30
