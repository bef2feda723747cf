"""certify_backward estimates its run before the first case and warns (LongRunWarning) above a minute.

Never a real long run: the cost model is faked (every cost times a large factor, or a machine that
calibrates as 1000x slower), and the backward under test raises on its first call, so each
certification stops after one case.
"""

from __future__ import annotations

import warnings

import pytest
from handgrad.reference import LongRunWarning, certify_backward
from handgrad.reference.cases.strategies import batch_size_distribution
from handgrad.reference.judge import scale
from handgrad.reference.judge.scale import estimate_run_seconds, estimate_seconds

SIZES = (2, 3, 3, 1)


class _Stop(Exception):
    """Raised by the backward under test: the certification ends at its first case."""


def _raising(calls: list[int]):
    def backward(params, X, Y):
        calls.append(1)
        raise _Stop("stop here")

    return backward


@pytest.fixture
def slow_machine(monkeypatch: pytest.MonkeyPatch) -> scale.CostModel:
    """The reference cost model on a machine 1000x slower (what calibrate would return there)."""
    slow = scale.COSTS.scaled(1000.0)
    monkeypatch.setattr(scale, "COSTS", slow)
    return slow


def test_a_run_estimated_above_a_minute_warns_before_the_first_case(slow_machine: scale.CostModel) -> None:
    calls: list[int] = []
    with pytest.warns(LongRunWarning) as record:
        cert = certify_backward(_raising(calls), SIZES, "sigmoid", examples=5, raise_on_failure=False)
    assert len(record) == 1
    text = str(record[0].message)
    assert "2-3-3-1" in text and "estimated at" in text and "expect_long=True" in text
    seconds = float(text.split("estimated at ")[1].split(" s")[0])
    assert seconds > scale.LONG_RUN_SECONDS
    assert record[0].filename == __file__  # points at the caller, not at certify.py
    assert not cert.ok and calls  # the run still went ahead (a warning, not a refusal)


def test_the_warning_points_at_the_caller_through_every_entry(slow_machine: scale.CostModel) -> None:
    import dataclasses

    from handgrad.reference import certify_network

    import handgrad as hg

    act = dataclasses.replace(hg.get_activation("tanh"), name="long_run_tanh")  # not registered
    net = hg.Network((2, 3, 1), [act, "sigmoid"])
    for call in (lambda: certify_backward(_raising([]), (2, 3, 1), [act, "sigmoid"], raise_on_failure=False),
                 lambda: certify_backward(_raising([]), net, raise_on_failure=False),
                 lambda: certify_network(net, raise_on_failure=False)):
        with pytest.warns(LongRunWarning) as record:
            call()
        assert [r.filename for r in record] == [__file__]


def test_expect_long_silences_the_warning(slow_machine: scale.CostModel) -> None:
    calls: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cert = certify_backward(_raising(calls), SIZES, "sigmoid", examples=5, raise_on_failure=False,
                                expect_long=True)
    assert not cert.ok and calls


def test_a_short_run_does_not_warn() -> None:
    calls: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        certify_backward(_raising(calls), SIZES, "sigmoid", examples=30, raise_on_failure=False)
    assert calls


def test_the_warning_follows_the_estimate_across_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Just below the threshold: silence; just above: a warning (the cost model scaled to each side)."""
    from handgrad.reference.cases.architecture import Architecture
    from handgrad.reference.cases.spec import SCALES
    from handgrad.reference.cases.traps import trap_specs
    from handgrad.reference.judge.certify import _run_estimate

    arch = Architecture(SIZES, ("sigmoid",) * 3, "squared_error", True)
    traps = trap_specs(arch, scales=tuple(SCALES), labels=("real",))
    base = _run_estimate(arch, traps, 30, 1, 33, ("sympy", "jax", "fd"))
    for factor, warns in ((0.99, False), (1.01, True)):
        monkeypatch.setattr(scale, "COSTS", scale.CostModel().scaled(factor * scale.LONG_RUN_SECONDS / base))
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            certify_backward(_raising([]), SIZES, "sigmoid", raise_on_failure=False)
        assert [type(w.message) for w in record] == ([LongRunWarning] if warns else [])


def test_the_estimate_counts_traps_at_their_batch_and_draws_at_the_design_distribution() -> None:
    from handgrad.reference.cases.architecture import Architecture
    from handgrad.reference.cases.traps import trap_specs
    from handgrad.reference.judge.certify import _run_estimate

    arch = Architecture(SIZES, ("sigmoid",) * 3, "squared_error", True)
    traps = trap_specs(arch)
    oracles = ("sympy", "jax", "fd")
    dist = batch_size_distribution(SIZES)
    once = estimate_seconds(SIZES, 1, 1, oracles) - estimate_seconds(SIZES, 1, 1, ())
    expected = once + sum(estimate_seconds(SIZES, 1, s.m, ()) for s in traps)
    expected += sum(p * 10 * estimate_seconds(SIZES, 1, m, ()) for m, p in dist.items())
    assert _run_estimate(arch, traps, 10, 1, 33, oracles) == pytest.approx(expected, rel=1e-12)


def test_batch_size_distribution_is_the_design_s() -> None:
    dist = batch_size_distribution(SIZES)
    assert sum(dist.values()) == pytest.approx(1.0)
    assert set(dist) == {*range(1, 18), 33}
    # 1 is in the small pool (4/10 over 8), a layer width (2/10 over 1, 2, 3) and the tiny pool (2/10 over 2)
    assert dist[1] == pytest.approx(0.4 / 8 + 0.2 / 3 + 0.2 / 2)
    assert dist[33] == pytest.approx(0.1 / 4)
    narrow = batch_size_distribution(SIZES, min_batch=4, max_batch=6)
    assert set(narrow) == {4, 5, 6} and sum(narrow.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="max_batch"):
        batch_size_distribution(SIZES, min_batch=5, max_batch=4)


def test_estimate_run_seconds_matches_estimate_seconds_and_rejects_bad_batches() -> None:
    assert estimate_run_seconds(SIZES, {4: 30}) == pytest.approx(estimate_seconds(SIZES, 30, 4), rel=1e-15)
    mixed = estimate_run_seconds(SIZES, {2: 10, 8: 5})
    assert mixed == pytest.approx(estimate_seconds(SIZES, 10, 2) + estimate_seconds(SIZES, 5, 8)
                                  - estimate_seconds(SIZES, 1, 1) + estimate_seconds(SIZES, 1, 1, ()), rel=1e-12)
    with pytest.raises(ValueError, match="batches"):
        estimate_run_seconds(SIZES, {})
    with pytest.raises(ValueError, match=r"batches\[3\]"):
        estimate_run_seconds(SIZES, {3: -1})
    with pytest.raises(TypeError, match="batch size"):
        estimate_run_seconds(SIZES, {2.5: 1})


def test_long_run_warning_names_the_hint() -> None:
    slow = scale.COSTS.scaled(1000.0)
    text = scale.long_run_warning((784, 256, 128, 10), 30, 4, costs=slow, hint="pass expect_long=True")
    assert text is not None and text.endswith("pass expect_long=True")
