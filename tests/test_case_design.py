"""The case design of issue 10: traps that always run, rescaled saturation, label families, a
quorum, per-scale counts, determinism and purity checks, and the small things (dtype named,
traceback kept, no hypothesis warning outside a test, shrink replays not counted)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _oracle_cases import without_batched_references
from handgrad.reference import CertificationError, build_case, certify_backward, referee
from handgrad.reference.cases.bug_catalog import Textbook
from handgrad.reference.cases.spec import LABEL_KINDS, NEAR_SATURATING_BAND, Z_SAFE, CaseSpec, in_domain
from handgrad.reference.cases.traps import trap_specs
from handgrad.reference.judge import certify as certify_module

from handgrad import NUMPY_OPS

SIG3 = ["sigmoid"] * 3
ARCH = ((2, 3, 3, 1), ("sigmoid",) * 3, "squared_error", True)


def _zs(net, params, X):
    a, out = X, []
    for l, act in enumerate(net.activations, start=1):
        z = params[f"W{l}"] @ a + params[f"B{l}"]
        out.append(z)
        a = np.asarray(act.definition(z, NUMPY_OPS))
    return out


# -- traps ----------------------------------------------------------------------------------------

def test_traps_cover_small_batches_every_width_and_past_a_block_of_eight() -> None:
    specs = trap_specs(ARCH, scales=("small", "unit", "large"), labels=("real",))
    ms = {s.m for s in specs}
    assert {1, 2, 3, 9, 11, 17, 33} <= ms
    assert any(s.duplicate for s in specs) and any(s.x_zeros for s in specs)
    assert {0.1, 10.0} <= {s.x_scale for s in specs}
    assert {"small", "unit", "large"} <= {s.scale for s in specs}
    assert all(s.trap for s in specs)


def test_traps_respect_the_batch_range_and_deal_every_label_family() -> None:
    specs = trap_specs(((3, 4, 3), ("tanh", "softmax"), "cross_entropy", True), scales=("unit",),
                       labels=LABEL_KINDS["distribution"], max_batch=8)
    assert max(s.m for s in specs) <= 8
    assert set(LABEL_KINDS["distribution"]) <= {s.labels for s in specs}


def test_a_kinked_first_layer_gets_a_dyadic_trap_exactly_on_the_kink() -> None:
    specs = trap_specs(((2, 3, 3, 1), ("relu", "relu", "sigmoid"), "squared_error", True))
    dyadic = [s for s in specs if s.dyadic]
    assert len(dyadic) == 1
    _net, params, X, _ = build_case(dyadic[0], filter_domain=False)
    z1 = params["W1"] @ X + params["B1"]
    assert all((z1[i] == 0.0).any() for i in range(3))  # every unit exactly on the kink for a sample
    assert np.all(params["W1"] * 4 == np.round(params["W1"] * 4))


def test_certify_runs_the_traps_and_decides_the_batch_sizes_it_names() -> None:
    cert = certify_backward(Textbook(SIG3), (2, 3, 3, 1), SIG3, examples=6)
    assert cert.ok, cert.text()
    assert {1, 2, 3, 9, 11, 17, 33} <= set(cert.decided["batch sizes"])
    assert all(v == "certified" for v in cert.traps.values()) and len(cert.traps) >= 10
    text = cert.text()
    assert "traps: " in text and "decided: shapes 2-3-3-1; batch sizes 1, 2, 3" in text


def test_old_specs_keep_building_the_same_arrays() -> None:
    old = CaseSpec((3, 3, 1), ("tanh", "sigmoid"), "bce", True, 2, "unit", 7)
    assert old.labels == "mixed" and not old.rescale and old.trap == ""
    assert eval("handgrad.reference." + old.reproduce()[len("handgrad.reference."):],
                {"handgrad": __import__("handgrad"), "CaseSpec": CaseSpec})[1]["W1"].shape == (3, 3)
    a = build_case(old)
    b = build_case(old._replace())
    assert all(np.array_equal(a[1][k], b[1][k]) for k in a[1])


def test_design_fields_do_what_they_say() -> None:
    base = CaseSpec((2, 4, 1), ("tanh", "sigmoid"), "squared_error", True, 6, "unit", 3)
    _, _, X, Y = build_case(base._replace(duplicate=True))
    assert np.array_equal(X[:, -1], X[:, 0]) and np.array_equal(Y[:, -1], Y[:, 0])
    _, _, X, _ = build_case(base._replace(x_zeros=True))
    assert (X == 0.0).any()
    _, _, X1, _ = build_case(base)
    _, _, X10, _ = build_case(base._replace(x_scale=10.0))
    assert np.allclose(X10, 10 * X1)


# -- saturation by construction ------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_saturating_draws_are_rescaled_into_the_domain_not_rejected(seed: int) -> None:
    spec = CaseSpec((3, 5, 5, 5, 5, 3), ("relu",) * 4 + ("softmax",), "cross_entropy", False, 4, "saturating",
                    seed, rescale=True)
    net, params, X, _ = build_case(spec, filter_domain=False)
    assert in_domain(net, params, X)
    assert all(np.max(np.abs(z)) <= Z_SAFE * (1 + 1e-12) for z in _zs(net, params, X))


@pytest.mark.parametrize("seed", range(5))
def test_near_saturating_puts_every_layer_in_the_band(seed: int) -> None:
    spec = CaseSpec((2, 4, 4, 1), ("tanh", "tanh", "sigmoid"), "squared_error", True, 5, "near_saturating", seed)
    net, params, X, _ = build_case(spec)
    lo, hi = NEAR_SATURATING_BAND
    for z in _zs(net, params, X):
        assert lo - 1e-9 <= np.max(np.abs(z)) <= hi + 1e-9


def test_per_scale_table_is_in_text_markdown_and_json() -> None:
    cert = certify_backward(Textbook(SIG3), (2, 3, 3, 1), SIG3, examples=6, scales=("unit", "near_saturating"))
    d = json.loads(cert.to_json())
    assert set(d["per_scale"]) == {"unit", "near_saturating"}
    assert all(r["decided"] >= 1 and r["requested"] >= r["decided"] for r in d["per_scale"].values())
    assert "near_saturating" in cert.text() and "| near_saturating |" in cert.markdown()


def test_a_requested_scale_with_no_decided_case_refuses_the_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    real = certify_module.in_domain

    def never_saturating(net, params, X):
        return real(net, params, X) and float(np.max(np.abs(params["W1"]))) < 5

    monkeypatch.setattr(certify_module, "in_domain", never_saturating)
    cert = certify_backward(Textbook(SIG3), (2, 3, 3, 1), SIG3, examples=6, scales=("unit", "saturating"),
                            raise_on_failure=False)
    assert not cert.ok and cert.failure is None
    assert any("scale 'saturating' was requested but no case at it was decided" in r for r in cert.refusals)
    assert "NOT CERTIFIED" in cert.text() and "refused: " in cert.text()
    assert cert.per_scale["saturating"]["outside"] >= 1


# -- quorum -------------------------------------------------------------------------------------

def test_a_certificate_needs_a_quorum_of_decided_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    real = certify_module.referee
    calls = [0]

    def mostly_inconclusive(*args, **kwargs):
        report = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] % 10 != 0:
            report.verdict = "inconclusive"
        return report

    monkeypatch.setattr(certify_module, "referee", mostly_inconclusive)
    with pytest.raises(CertificationError) as info:
        certify_backward(Textbook(SIG3), (2, 3, 3, 1), SIG3, examples=10)
    cert = info.value.certificate
    assert cert.failure is None and cert.certified >= 1  # the old rule (one certified case) would pass
    assert any("random examples asked for were decided" in r for r in cert.refusals), cert.refusals
    assert "a certificate needs 8 (80%)" in str(info.value)


def test_inconclusive_draws_are_redrawn(monkeypatch: pytest.MonkeyPatch) -> None:
    real = certify_module.referee
    calls = [0]

    def every_third_inconclusive(*args, **kwargs):
        report = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] % 3 == 0:
            report.verdict = "inconclusive"
        return report

    monkeypatch.setattr(certify_module, "referee", every_third_inconclusive)
    cert = certify_backward(Textbook(SIG3), (2, 3, 3, 1), SIG3, examples=10, max_batch=8)
    assert cert.ok and cert.random_decided >= 10, cert.text()


# -- labels ---------------------------------------------------------------------------------------

def test_label_families_per_loss() -> None:
    def labels(loss: str, kind: str, acts: tuple[str, ...], sizes: tuple[int, ...]) -> np.ndarray:
        return build_case(CaseSpec(sizes, acts, loss, True, 40, "unit", 1, labels=kind))[3]

    ce = ("tanh", "softmax")
    assert np.allclose(labels("cross_entropy", "onehot", ce, (2, 3, 3)).sum(axis=0), 1)
    assert set(np.unique(labels("cross_entropy", "onehot", ce, (2, 3, 3)))) == {0.0, 1.0}
    soft = labels("cross_entropy", "soft", ce, (2, 3, 3))
    assert np.allclose(soft.sum(axis=0), 1) and (soft > 0).all()
    un = labels("cross_entropy", "unnormalized", ce, (2, 3, 3))
    assert (un >= 0).all() and not np.allclose(un.sum(axis=0), 1)
    assert set(np.unique(labels("bce", "hard", ("tanh", "sigmoid"), (2, 3, 1)))) == {0.0, 1.0}
    s = labels("bce", "soft", ("tanh", "sigmoid"), (2, 3, 1))
    assert ((s > 0) & (s < 1)).all()


def test_declared_labels_are_the_only_ones_drawn() -> None:
    cert = certify_backward(Textbook(["tanh", "softmax"], "cross_entropy"), (3, 4, 3), ["tanh", "softmax"],
                            "cross_entropy", fuse=False, examples=6, labels="onehot")
    assert cert.ok and cert.decided["labels"] == ["onehot"], cert.decided


def test_labels_that_do_not_fit_the_loss_are_refused_before_drawing() -> None:
    with pytest.raises(ValueError, match="labels 'onehot' do not fit loss 'bce'"):
        certify_backward(Textbook(["tanh", "sigmoid"], "bce"), (2, 3, 1), ["tanh", "sigmoid"], "bce", labels="onehot")


# -- determinism and purity ------------------------------------------------------------------------

class _Noisy(Textbook):
    def __call__(self, params, X, Y):
        g = super().__call__(params, X, Y)
        return {k: v * (1 + 1e-15 * np.random.standard_normal()) for k, v in g.items()}


def test_two_calls_must_agree_bitwise_unless_a_tolerance_is_given() -> None:
    cert = certify_backward(_Noisy(SIG3), (2, 3, 3, 1), SIG3, examples=4, raise_on_failure=False)
    assert cert.failure is not None and cert.failure.verdict == "error"
    assert "nondeterministic backward: two calls on the same input differ at dL/d" in cert.text()
    assert certify_backward(_Noisy(SIG3), (2, 3, 3, 1), SIG3, examples=4, nondeterminism_tolerance=1e-12).ok


class _OsEntropy(Textbook):
    def __call__(self, params, X, Y):
        import os

        g = super().__call__(params, X, Y)
        if os.urandom(1)[0] < 128:
            g["B1"] = np.zeros_like(g["B1"])
        return g


def test_os_entropy_is_an_ordinary_report_never_a_raw_exception() -> None:
    cert = certify_backward(_OsEntropy(SIG3), (2, 3, 3, 1), SIG3, examples=6, raise_on_failure=False)
    assert not cert.ok and cert.failure is not None
    with pytest.raises(CertificationError):
        certify_backward(_OsEntropy(SIG3), (2, 3, 3, 1), SIG3, examples=6)


_SEEDED_SPEC = CaseSpec((2, 3, 3, 1), tuple(SIG3), "squared_error", True, 3, "unit", 5)


def _recording_draws(seen: list[float]):  # type: ignore[no-untyped-def]
    """A correct backward that first draws one number from np.random and records it in ``seen``."""
    def draws(params, X, Y):
        seen.append(float(np.random.random()))
        return Textbook(SIG3)(params, X, Y)

    return draws


def test_np_random_is_seeded_per_case_and_restored() -> None:
    seen: list[float] = []
    draws = _recording_draws(seen)
    spec = _SEEDED_SPEC
    net, params, X, Y = build_case(spec)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    referee(net, params, X, Y, draws, seed=spec.numpy_seed)
    referee(net, params, X, Y, draws, seed=spec.numpy_seed)
    assert seen[0] == seen[2] and seen[1] == seen[3] and seen[0] != seen[1]
    assert np.array_equal(np.random.get_state()[1], before)


def test_the_first_referee_in_a_process_leaves_np_random_as_it_found_it() -> None:
    # Importing JAX draws from np.random's global state; the referee's first case in a process
    # imports it (the oracle table loads lazily). In a fresh interpreter, so that JAX is not
    # imported yet, as in a user's first call.
    import subprocess
    import sys

    code = ("import numpy as np\n"
            "from handgrad.reference import build_case, referee\n"
            "from handgrad.reference.cases.bug_catalog import Textbook\n"
            "from handgrad.reference.cases.spec import CaseSpec\n"
            "spec = CaseSpec((2, 3, 3, 1), ('sigmoid',) * 3, 'squared_error', True, 3, 'unit', 5)\n"
            "case = build_case(spec)\n"
            "import sys; assert 'jax' not in sys.modules\n"
            "np.random.seed(123); before = np.random.get_state()[1].copy()\n"
            "assert referee(*case, Textbook(['sigmoid'] * 3), seed=spec.numpy_seed).ok\n"
            "assert 'jax' in sys.modules\n"
            "assert np.array_equal(np.random.get_state()[1], before), 'np.random changed'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_held_random_state_gives_each_call_the_same_draws_and_is_restored_once() -> None:
    # Inside random_state_held a seeded backward skips its own save and restore: its draws must be
    # those of an unheld referee, the state must be back as it was after the block, also when the
    # block raises, and a referee inside must not restore it early.
    from handgrad.reference.judge.referee import random_state_held

    seen: list[float] = []
    draws = _recording_draws(seen)
    spec = _SEEDED_SPEC
    case = build_case(spec)
    referee(*case, draws, seed=spec.numpy_seed)
    np.random.seed(321)
    before = np.random.get_state()[1].copy()
    with random_state_held():
        referee(*case, draws, seed=spec.numpy_seed)
        assert not np.array_equal(np.random.get_state()[1], before)  # the holder restores, not the referee
    assert seen[2:] == seen[:2]
    assert np.array_equal(np.random.get_state()[1], before)
    with pytest.raises(RuntimeError), random_state_held():
        np.random.random(700)
        raise RuntimeError
    assert np.array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("batched", [True, False])
def test_certify_backward_leaves_np_random_as_it_found_it(batched: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    def draws(params, X, Y):
        np.random.random(3)
        return Textbook(SIG3)(params, X, Y)

    if not batched:
        monkeypatch.setattr(certify_module, "BATCH_MAX_SECONDS", -1.0)
    np.random.seed(99)
    before = np.random.get_state()[1].copy()
    assert certify_backward(draws, (2, 3, 3, 1), SIG3, examples=6).ok
    assert np.array_equal(np.random.get_state()[1], before)


def test_in_place_modification_is_noted_not_failed() -> None:
    def mutates(params, X, Y):
        g = Textbook(SIG3)(params, X, Y)
        params["W1"] += 1.0
        X[...] = 0.0
        return g

    spec = CaseSpec((2, 3, 3, 1), tuple(SIG3), "squared_error", True, 3, "unit", 5)
    report = referee(*build_case(spec), mutates)
    assert report.ok, report.text()
    assert any("modified params['W1'], X in place" in n for n in report.notes), report.notes


# -- small things --------------------------------------------------------------------------------

def test_float32_gradients_in_a_float64_run_are_named() -> None:
    def f32(params, X, Y):
        return {k: v.astype(np.float32) for k, v in Textbook(SIG3)(params, X, Y).items()}

    spec = CaseSpec((2, 3, 3, 1), tuple(SIG3), "squared_error", True, 3, "unit", 5)
    report = referee(*build_case(spec), f32)
    assert any("W1 is float32" in n and "float64" in n for n in report.notes), report.notes


def test_a_backward_that_raises_keeps_its_traceback() -> None:
    def broken(params, X, Y):
        raise KeyError("W9")

    with pytest.raises(CertificationError) as info:
        certify_backward(broken, (2, 3, 1), ["sigmoid", "sigmoid"], examples=2)
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.__cause__.__traceback__ is not None


def test_referee_and_build_case_outside_a_property_test_do_not_warn() -> None:
    # pytest turns warnings into errors (pyproject): a HypothesisDeprecationWarning would fail here.
    spec = CaseSpec((2, 3, 1), ("tanh", "sigmoid"), "bce", True, 2, "unit", 7)
    net, params, X, Y = build_case(spec)
    assert referee(net, params, X, Y, net.backward).ok
    with pytest.raises(ValueError, match="outside the oracles' domain"):
        build_case(CaseSpec((2, 3, 1), ("tanh", "sigmoid"), "bce", False, 2, "saturating", 7))


def test_cases_drawn_does_not_count_shrink_replays() -> None:
    calls = [0]

    def wrong_at_seven(params, X, Y):
        calls[0] += 1
        g = Textbook(["sigmoid", "sigmoid"])(params, X, Y)
        if X.shape[1] >= 6:
            g["B2"] = g["B2"] * 2
        return g

    cert = certify_backward(wrong_at_seven, (2, 3, 1), ["sigmoid", "sigmoid"], examples=30, max_batch=8,
                            raise_on_failure=False)
    assert cert.failure is not None and cert.failure.m >= 6
    n_traps = len(cert.traps)
    assert cert.cases <= n_traps + 60
    assert calls[0] > 2 * cert.cases  # hypothesis shrank (replays) and those were not counted


# -- kinks met on purpose --------------------------------------------------------------------------

def test_another_kink_convention_is_named_in_a_sentence() -> None:
    from handgrad.reference.cases.bug_catalog import get_bug

    bug = get_bug("ReluPrimeOneAtZero")
    cert = certify_backward(bug.make(), **bug.certify_kwargs(), raise_on_failure=False)
    assert cert.failure is not None
    assert "your backward uses relu'(0) = 1; this suite's convention is relu'(0) = 0" in cert.text()


def test_the_dyadic_kink_trap_is_decided_for_a_correct_relu_backward() -> None:
    acts = ["relu", "relu", "sigmoid"]
    cert = certify_backward(Textbook(acts), (2, 3, 3, 1), acts, examples=6)
    assert cert.ok and cert.traps["relu exactly at its kink (dyadic)"] == "certified", cert.text()


# -- near a kink: mask the elements, not the case ----------------------------------------------------

KINK_SPEC = CaseSpec((3, 64, 1), ("relu", "sigmoid"), "squared_error", True, 4, "unit", 50)


def test_a_unit_near_its_kink_masks_its_elements_and_decides_the_rest() -> None:
    net, params, X, Y = build_case(KINK_SPEC, "float32")
    report = referee(net, params, X, Y, net.backward)
    assert report.ok and report.masked == 4, report.text()  # row 36 of W1 (3) and B1 (1)
    assert "4 of 321 gradient elements masked" in report.text()


def test_an_error_outside_the_masked_elements_is_still_caught() -> None:
    net, params, X, Y = build_case(KINK_SPEC, "float32")

    def wrong_w2(p, X, Y):
        g = net.backward(p, X, Y)
        g["W2"] = g["W2"] * np.float32(1.01)
        return g

    report = referee(net, params, X, Y, wrong_w2)
    assert report.verdict == "mismatch" and {m.tensor for m in report.mismatches} == {"W2"}, report.text()


def test_vary_shapes_draws_hidden_widths_past_eight_and_a_square_trap(monkeypatch: pytest.MonkeyPatch) -> None:
    from handgrad.reference.judge.reports import Report

    widths: list[tuple[int, ...]] = []

    def recorder(net, params, X, Y, backward, **_):
        widths.append(tuple(net.sizes))
        return Report(net.describe(), str(X.dtype), X.shape[1], "certified")

    monkeypatch.setattr(certify_module, "referee", recorder)
    without_batched_references(monkeypatch)
    cert = certify_backward(lambda p, X, Y: p, (2, 3, 3, 1), SIG3, oracles=("jax", "fd"), examples=60,
                            vary_shapes=True)
    assert cert.traps["square layers"] == "certified" and (2, 2, 2, 1) in widths
    assert any(max(s[1:-1]) > 8 for s in widths), widths
    assert all(s[0] == 2 and s[-1] == 1 for s in widths)


@pytest.mark.parametrize("seed", range(4))
def test_unfused_bce_in_float32_is_no_false_alarm(seed: int) -> None:
    # issue 10: this failed 3 of 4 seeds ("prediction 1.0 makes the binary cross-entropy infinite");
    # rescaled draws keep a float32 unfused output within |z| <= 7.
    from handgrad.reference import certify_network

    import handgrad as hg

    cert = certify_network(hg.Network((3, 4, 1), ["tanh", "sigmoid"], "bce", fuse=False), dtype="float32",
                           examples=100, seed=seed)
    assert cert.ok and cert.certified >= 100, cert.text()


def test_a_failure_hypothesis_cannot_replay_in_the_random_phase_is_an_ordinary_report() -> None:
    # wrong on two calls made after the traps (during hypothesis's draws, then during its shrinking),
    # right on every other: hypothesis sees two distinct failures, one of which it cannot replay, and
    # raises an exception group holding a FlakyFailure; certify reports the first failure instead
    from handgrad.reference import certify_backward

    import handgrad as hg

    net = hg.Network((2, 3, 1), ["tanh", "sigmoid"], "squared_error")
    calls = [0]

    def once_wrong(params, X, Y):
        calls[0] += 1
        g = net.backward(params, X, Y)
        if calls[0] in (61, 71):
            g["B1"] = np.zeros_like(g["B1"])
        return g

    cert = certify_backward(once_wrong, (2, 3, 1), ["tanh", "sigmoid"], raise_on_failure=False)
    assert not cert.ok and cert.failure is not None
    assert calls[0] > 71
    assert "dL/db_" in cert.text()


def test_a_softmax_over_one_output_is_refused_with_its_cause_first() -> None:
    """Every prediction of a softmax over one unit is exactly 1: with an unfused cross-entropy no
    case is in the oracles' domain, and the certificate is refused with that cause before anything
    is drawn (the run used to draw, redraw and try the mpmath oracle on every case first)."""
    import handgrad as hg

    net = hg.Network((8, 1, 1), ["identity", "softmax"], "cross_entropy", fuse=False)
    cert = certify_backward(net.backward, (8, 1, 1), ["identity", "softmax"], "cross_entropy", fuse=False,
                            examples=6, raise_on_failure=False)
    assert not cert.ok and cert.failure is None and cert.certified == 0 and cert.cases == 0
    assert cert.refusals == [cert.refusals[0]]
    assert cert.refusals[0].startswith("the output is a softmax over one unit: every prediction is exactly 1")
    assert "the output is a softmax over one unit" in cert.text()
    # Fused, the same net is decided (log-softmax of one logit is 0): no such refusal.
    fused = hg.Network((8, 1, 1), ["identity", "softmax"], "softmax_cross_entropy")
    ok = certify_backward(fused.backward, (8, 1, 1), ["identity", "softmax"], "softmax_cross_entropy", examples=6)
    assert ok.ok and not any("over one unit" in r for r in ok.refusals)


def test_a_float32_softmax_output_of_an_unfused_probability_loss_is_rescaled_into_the_domain() -> None:
    """With |z| <= 7 at a float32 softmax output, every draw of a trap could put a prediction below
    the float32 margin, and the certificate was refused for that trap (found by
    scripts/check_batched.py --seed 20261210 on 6-7, 4-1-2-4-1-6 and 8-8; 6-7 costs 15 s of SymPy
    derivation, so the reproduction here is 2-3, whose 'duplicated samples' trap was refused with
    seed 10). The cap now keeps every prediction at least SOFTMAX_FLOOR_32."""
    import math

    from handgrad.reference import certify_network
    from handgrad.reference.cases.spec import SOFTMAX_FLOOR_32, _cap

    import handgrad as hg

    for n in range(2, 18):
        net = hg.Network((3, n), ["softmax"], "bce", fuse=False)
        cap = _cap(net, 1, np.dtype(np.float32))
        assert math.exp(-2 * cap) / n >= SOFTMAX_FLOOR_32 * (1 - 1e-12)
        assert _cap(net, 1, np.dtype(np.float64)) == 9.0  # float64 keeps its cap
    cert = certify_network(hg.Network((2, 3), ["softmax"], "bce", fuse=False), dtype="float32", examples=6,
                           seed=10, raise_on_failure=False)
    assert cert.ok and not cert.refusals, cert.text()


@pytest.mark.parametrize("sizes", [(2, 3, 3, 1), (5, 17, 4), (1, 1), (8, 6, 2, 2, 5, 2)])
def test_build_case_draws_what_the_historical_net_init_draw_left(sizes: tuple[int, ...]) -> None:
    # build_case drops the normals a net.init(rng) once consumed in one call; the generator must be
    # left where the per-tensor draws left it, or every case of every seed changes.
    import handgrad as hg

    for seed in range(40):
        spec = CaseSpec(sizes, ("tanh",) * (len(sizes) - 1), "squared_error", True, 1 + seed % 9, "unit", seed)
        net, params, *_ = build_case(spec, filter_domain=False)
        rng = np.random.default_rng(seed)
        hg.Network(sizes, "tanh", "squared_error").init(rng, weight_scale=None, bias_scale=0.0)
        W1 = rng.standard_normal((sizes[1], sizes[0])) * (1.0 / np.sqrt(sizes[0]))
        assert np.array_equal(params["W1"], W1)
        assert list(params) == net.param_names
