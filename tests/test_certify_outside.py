"""The certify runner decides cases outside the float64 oracles' domain against the mpmath oracle
(judge/outside.py, docs/tolerances.md section 13) instead of counting them "outside": a correct
unfused BCE backward is certified there and a gradient clip that only acts there is refused."""

from __future__ import annotations

import numpy as np
from handgrad.reference.cases.bug_catalog import BceClipInGradient, Textbook
from handgrad.reference.cases.spec import CaseSpec, build_case, in_domain
from handgrad.reference.judge import certify as certify_module
from handgrad.reference.judge.reports import Certificate
from handgrad.reference.judge.tolerance import DEFAULT_POLICY
from handgrad.reference.oracles.mp_oracle import float64_domain

ACTS = ("tanh", "sigmoid")
SEEDS = (1, 2, 4, 5, 6, 7)  # saturating draws, not rescaled: predictions within 1e-9 of 0 or 1


def _spec(seed: int) -> CaseSpec:
    return CaseSpec((2, 3, 1), ACTS, "bce", False, 4, "saturating", seed, labels="soft", rescale=False)


def _runner(backward) -> certify_module._Runner:
    cert = Certificate("subject", "2-3-1 tanh/sigmoid, bce", "float64", ("sympy", "jax", "fd"), requested=1)
    return certify_module._Runner(backward, cert, "float64", ("sympy", "jax", "fd"), DEFAULT_POLICY, 0.0, None)


def test_the_seeds_are_outside_the_float64_domain() -> None:
    for seed in SEEDS:
        net, params, X, _ = build_case(_spec(seed), "float64", filter_domain=False)
        assert not in_domain(net, params, X) and not float64_domain(net, params, X)


def test_a_correct_backward_is_decided_outside_the_domain() -> None:
    runner = _runner(Textbook(list(ACTS), "bce"))
    outcomes = [runner.run(_spec(seed)) for seed in SEEDS]
    # Decided against mpmath where a meaningful budget exists; the others (a prediction a correct
    # float64 forward may round onto 0 or 1) stay "outside", never a mismatch.
    assert outcomes.count("certified") >= 3 and set(outcomes) <= {"certified", "outside"}, outcomes
    assert runner.cert.per_scale["saturating"]["decided"] == outcomes.count("certified")


def test_a_clip_acting_only_outside_the_domain_is_refused_there() -> None:
    runner = _runner(BceClipInGradient(list(ACTS), "bce"))
    outcomes = [runner.run(_spec(seed)) for seed in SEEDS]
    assert "mismatch" in outcomes, outcomes
    report = runner.first_failure
    assert report is not None and any("mpmath" in c.pair for c in report.checks), report.text()
    assert np.isfinite(max(c.ratio for c in report.checks))


def test_a_layer_declared_without_a_bias_is_refereed_outside_the_domain_too() -> None:
    from handgrad.reference.judge.conventions import Conventions, wrap_backward
    from handgrad.reference.judge.outside import referee_outside

    import handgrad as hg

    conv = Conventions(no_bias=(2,))
    net = hg.Network((2, 3, 1), list(ACTS), "bce", fuse=False)
    textbook = Textbook(list(ACTS), "bce")

    def no_b2(params, X, Y):  # the user's code: layer 2 has no bias, so no dB2 either
        grads = textbook({**params, "B2": np.zeros((1, 1))}, X, Y)
        return {k: v for k, v in grads.items() if k != "B2"}

    decided = 0
    for seed in SEEDS:
        case = build_case(_spec(seed), "float64", filter_domain=False)
        report = referee_outside(net, *case[1:], wrap_backward(no_b2, conv, net))
        assert report.verdict in ("certified", "inconclusive"), report.text()
        decided += report.verdict == "certified"
        assert "B2" not in {c.tensor for c in report.checks}
    assert decided >= 3
