"""The batched pass of certify_backward (issue 12) gives the certificate the case-by-case runner
gives: the same cases drawn, the same numbers, the same notes, the same failure report."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from handgrad.reference import certify_backward
from handgrad.reference.judge import certify as certify_module

import handgrad as hg


def _comparable(cert: Any) -> dict[str, Any]:
    d = cert.to_dict()
    for key in ("seconds", "sha256"):
        d.pop(key, None)
    if d.get("failure"):
        d["failure"].pop("sha256", None)
    return d


@contextlib.contextmanager
def settle_spy() -> Iterator[list[str]]:
    """How each batched pass ended while the block runs: "settled" or "abandoned", in order."""
    ends: list[str] = []
    real = certify_module._BatchedRunner.settle

    def settle(self: Any) -> None:
        try:
            real(self)
        except certify_module._Abandon:
            ends.append("abandoned")
            raise
        ends.append("settled")

    certify_module._BatchedRunner.settle = settle  # type: ignore[method-assign]
    try:
        yield ends
    finally:
        certify_module._BatchedRunner.settle = real  # type: ignore[method-assign]


def _both(monkeypatch: pytest.MonkeyPatch, backward: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any, list[str]]:
    """(the certificate as certify_backward gives it, the one of the case-by-case runner, how the
    batched pass ended: "settled" or "abandoned" per attempt)."""
    with settle_spy() as ends:
        batched = certify_backward(backward, *args, raise_on_failure=False, **kwargs)
    monkeypatch.setattr(certify_module, "BATCH_MAX_SECONDS", -1.0)
    alone = certify_backward(backward, *args, raise_on_failure=False, **kwargs)
    return batched, alone, ends


CERTIFIED = [
    ("article", (2, 3, 3, 1), "sigmoid", "squared_error", {}),
    ("softmax", (3, 5, 3), ["tanh", "softmax"], "cross_entropy", {"examples": 12}),
    ("bce unfused float32", (3, 4, 1), ["tanh", "sigmoid"], "bce", {"fuse": False, "dtype": "float32", "examples": 15}),
    ("relu, central differences and kink traps", (3, 4, 2), ["relu", "sigmoid"], "squared_error", {"examples": 12}),
    ("vary shapes", (2, 3, 2), ["tanh", "sigmoid"], "squared_error", {"examples": 10, "vary_shapes": True}),
    ("saturating only", (2, 4, 1), ["sigmoid", "sigmoid"], "bce", {"examples": 8, "scales": ("saturating",),
                                                                    "fuse": False}),
]


@pytest.mark.parametrize(("label", "sizes", "acts", "loss", "kwargs"), CERTIFIED, ids=[c[0] for c in CERTIFIED])
def test_a_certified_run_is_the_same_certificate(monkeypatch: pytest.MonkeyPatch, label: str, sizes: tuple,
                                                 acts: Any, loss: str, kwargs: dict) -> None:
    def backward(params: Any, X: Any, Y: Any) -> Any:  # any widths (vary_shapes draws them)
        widths = (X.shape[0], *(params[f"W{l}"].shape[0] for l in range(1, len(sizes))))
        return hg.Network(widths, acts, loss, fuse=kwargs.get("fuse", True)).backward(params, X, Y)

    batched, alone, ends = _both(monkeypatch, backward, sizes, acts, loss, seed=3, **kwargs)
    # the first trap alone, the other traps together, then the draws
    assert ends == ["settled"] * 3
    assert alone.ok and alone.certified >= 8
    assert _comparable(batched) == _comparable(alone)


def test_a_bug_found_by_a_draw_is_found_and_shrunk_as_case_by_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batched pass meets the mismatch, abandons, and the case-by-case run finds, shrinks and
    reports it: the report is the one the case-by-case runner gives."""
    net = hg.Network((3, 4, 2), ["tanh", "sigmoid"], "squared_error")

    def planted(params: Any, X: Any, Y: Any) -> Any:
        g = net.backward(params, X, Y)
        if X.shape[1] in (6, 7, 8):  # no trap has these batch sizes
            g["B2"] = g["B2"] * 1.01
        return g

    batched, alone, ends = _both(monkeypatch, planted, (3, 4, 2), ["tanh", "sigmoid"], "squared_error", seed=1)
    assert ends == ["settled"] * 2 + ["abandoned"]  # the traps pass; a random draw finds it: redone case by case
    assert not alone.ok and alone.failure is not None and alone.failure.verdict == "mismatch"
    assert _comparable(batched) == _comparable(alone)


def test_a_bug_at_a_trap_and_an_error_are_reported_as_case_by_case(monkeypatch: pytest.MonkeyPatch) -> None:
    net = hg.Network((2, 3, 1), "sigmoid", "squared_error")

    def transposed(params: Any, X: Any, Y: Any) -> Any:
        g = net.backward(params, X, Y)
        return {**g, "W1": g["W1"].T} if X.shape[1] == 1 else g

    def noisy(params: Any, X: Any, Y: Any) -> Any:
        g = net.backward(params, X, Y)
        g["W2"] = g["W2"] + np.random.random() * 1e-9  # differs between the two calls
        return g

    real_random = certify_module._Runner.random
    drew: list[str] = []

    def random(self: Any, *args: Any, **kwargs: Any) -> None:
        drew.append(type(self).__name__)
        real_random(self, *args, **kwargs)

    for backward in (transposed, noisy):
        monkeypatch.undo()
        drew.clear()
        monkeypatch.setattr(certify_module._Runner, "random", random)
        batched, alone, ends = _both(monkeypatch, backward, (2, 3, 1), "sigmoid", "squared_error", seed=2,
                                     examples=8)
        # found when the traps are settled: the batched pass draws nothing, and the case-by-case
        # runner stops at the trap before any draw too
        assert ends[-1] == "abandoned" and set(ends[:-1]) <= {"settled"} and drew == []
        assert not alone.ok
        assert _comparable(batched) == _comparable(alone)


def test_an_unexpected_error_in_the_batched_pass_falls_back_to_case_by_case(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(net: Any, cases: Any) -> Any:
        raise RuntimeError("a batched oracle broke")

    monkeypatch.setattr(certify_module, "_fd_many", broken)
    net = hg.Network((2, 3, 1), "sigmoid", "squared_error")
    batched, alone, ends = _both(monkeypatch, net.backward, (2, 3, 1), "sigmoid", "squared_error", seed=4,
                                 examples=8)
    assert ends == ["abandoned"]
    assert batched.ok and _comparable(batched) == _comparable(alone)


def test_progress_is_reported_once_per_case_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int]] = []
    net = hg.Network((2, 3, 1), "sigmoid", "squared_error")
    cert = certify_backward(net.backward, (2, 3, 1), "sigmoid", "squared_error", examples=8, seed=5,
                            progress=lambda done, total: seen.append((done, total)))
    assert cert.ok
    assert [d for d, _ in seen] == list(range(1, len(seen) + 1))
    assert len(seen) == cert.certified and len({t for _, t in seen}) == 1


def test_cases_outside_the_float64_domain_keep_their_place_among_the_batched_ones() -> None:
    """Saturating draws that are not rescaled fall outside the float64 domain: the batched runner
    decides them at once against mpmath (or counts them outside), the others in its pass, and the
    certificate records every case in the order drawn, as the case-by-case runner does."""
    from handgrad.reference.cases.bug_catalog import Textbook
    from handgrad.reference.cases.spec import CaseSpec
    from handgrad.reference.judge.reports import Certificate
    from handgrad.reference.judge.tolerance import DEFAULT_POLICY

    acts = ("tanh", "sigmoid")
    specs = [CaseSpec((2, 3, 1), acts, "bce", False, 4, "saturating", seed, labels="soft", rescale=rescale)
             for seed in (1, 2, 4, 5, 6, 7) for rescale in (False, True)]
    certs, outcomes = [], []
    for runner_class in (certify_module._BatchedRunner, certify_module._Runner):
        cert = Certificate("subject", "2-3-1 tanh/sigmoid, bce", "float64", ("sympy", "jax", "fd"), requested=1)
        runner = runner_class(Textbook(list(acts), "bce"), cert, "float64", ("sympy", "jax", "fd"), DEFAULT_POLICY,
                              0.0, None)
        outcomes.append([runner.run(spec) for spec in specs])
        if isinstance(runner, certify_module._BatchedRunner):
            runner.settle()
        certs.append(cert)
    assert outcomes[0] == outcomes[1]
    assert "outside" in outcomes[1] and outcomes[1].count("certified") > len(specs) // 2
    assert _comparable(certs[0]) == _comparable(certs[1])
