"""certify_backward takes the scale path above SCALE_MIN_PARAMS: every element checked, a planted bug named."""

from __future__ import annotations

import numpy as np
import pytest
from handgrad.reference import CertificationError, certify_backward

import handgrad as hg

SIZES = (64, 32, 10)  # 2,410 parameters: above SCALE_MIN_PARAMS


def test_a_mid_sized_net_is_certified_through_the_scale_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from handgrad.reference.judge import scale

    calls = []
    real = scale.scale_referee
    monkeypatch.setattr(scale, "scale_referee", lambda *a, **k: calls.append(1) or real(*a, **k))
    net = hg.Network(SIZES, ["tanh", "sigmoid"], "squared_error")
    cert = certify_backward(net.backward, SIZES, ["tanh", "sigmoid"], examples=3, oracles=("jax", "fd"),
                            raise_on_failure=False)
    assert cert.ok, cert.text()
    assert len(calls) >= 3


def test_a_planted_element_bug_is_named_through_the_scale_path() -> None:
    net = hg.Network(SIZES, ["tanh", "sigmoid"], "squared_error")

    def planted(params, X, Y):
        g = net.backward(params, X, Y)
        g["W1"] = g["W1"].copy()
        g["W1"][5, 40] *= 1.001
        return g

    with pytest.raises(CertificationError) as info:
        certify_backward(planted, SIZES, ["tanh", "sigmoid"], examples=3, oracles=("jax", "fd"))
    assert "w_6,41^(1)" in str(info.value)


# -- the scale path calls the backward as the referee does (issue 12 note) -------------------------

SMALL = (2, 3, 1)  # the elementwise referee


def _nondeterministic(net: hg.Network):
    """Right on odd calls, off by one part in 1e12 at W1[0, 0] on even calls (each case calls twice)."""
    calls = [0]

    def backward(params, X, Y):
        calls[0] += 1
        g = net.backward(params, X, Y)
        if calls[0] % 2 == 0:
            g["W1"] = g["W1"].copy()
            g["W1"][0, 0] *= 1 + 1e-12
        return g

    return backward


def _in_place(net: hg.Network):
    """Correct gradients, but it scribbles over its arguments afterwards."""
    def backward(params, X, Y):
        g = net.backward(params, X, Y)
        params["W1"][...] = 0.0
        X *= 2.0
        return g

    return backward


def _recording(net: hg.Network, drawn: list[float]):
    """Correct, and records one number from the global np.random per call."""
    def backward(params, X, Y):
        drawn.append(float(np.random.random_sample()))
        return net.backward(params, X, Y)

    return backward


def _certify(make, sizes, **kwargs):
    net = hg.Network(sizes, ["tanh", "sigmoid"], "squared_error")
    return certify_backward(make(net), sizes, ["tanh", "sigmoid"], oracles=("jax", "fd"),
                            raise_on_failure=False, **kwargs)


def test_a_nondeterministic_backward_gets_the_same_verdict_and_note_on_both_paths() -> None:
    small, big = (_certify(_nondeterministic, s, examples=2) for s in (SMALL, SIZES))
    for cert in (small, big):
        assert not cert.ok and cert.failure is not None and cert.failure.verdict == "error", cert.text()
        assert any(n.startswith("nondeterministic backward: two calls on the same input differ at dL/dw_11^(1)")
                   for n in cert.failure.notes), cert.failure.notes
        assert cert.failure.mismatches[0].pair == "hand vs hand (second call)"
    assert "scale path" not in " ".join(small.failure.notes)


def test_an_in_place_backward_gets_the_same_verdict_and_note_on_both_paths() -> None:
    from handgrad.reference.judge import referee as referee_module
    from handgrad.reference.judge import scale

    for sizes in (SMALL, SIZES):
        net = hg.Network(sizes, ["tanh", "sigmoid"], "squared_error")
        cert = _certify(_in_place, sizes, examples=1)
        assert cert.ok, cert.text()
        X = np.random.default_rng(0).standard_normal((sizes[0], 3))
        Y = np.random.default_rng(1).standard_normal((sizes[-1], 3))
        params = net.init(np.random.default_rng(2))
        path = scale.scale_referee if net.n_params > scale.SCALE_MIN_PARAMS else referee_module.referee
        report = path(net, params, X, Y, _in_place(net), seed=5)
        assert report.ok, report.text()
        assert "the backward modified params['W1'], X in place" in " ".join(report.notes)
        assert np.any(params["W1"] != 0)  # the caller's arrays are untouched


def test_the_scale_path_seeds_np_random_per_call_like_the_referee() -> None:
    from handgrad.reference.judge.referee import referee
    from handgrad.reference.judge.scale import scale_referee

    paths = []
    for sizes, path in ((SIZES, scale_referee), (SMALL, referee)):
        net = hg.Network(sizes, ["tanh", "sigmoid"], "squared_error")
        params = net.init(np.random.default_rng(3))
        X = np.random.default_rng(4).standard_normal((sizes[0], 4))
        Y = np.random.default_rng(5).standard_normal((sizes[-1], 4))
        np.random.seed(123)
        before = np.random.random_sample()
        np.random.seed(123)
        drawn: list[float] = []
        assert path(net, params, X, Y, _recording(net, drawn), seed=11).ok
        assert np.random.random_sample() == before  # the caller's stream is restored
        paths.append(drawn)
    assert paths[0] == paths[1] and len(paths[0]) == 2 and paths[0][0] != paths[0][1]
    assert paths[0][0] == np.random.RandomState(11).random_sample()


def test_the_scale_path_checks_nondeterminism_tolerance() -> None:
    from handgrad.reference.judge.scale import scale_referee

    net = hg.Network(SIZES, ["tanh", "sigmoid"], "squared_error")
    params = net.init(np.random.default_rng(3))
    X = np.random.default_rng(4).standard_normal((SIZES[0], 4))
    Y = np.random.default_rng(5).standard_normal((SIZES[-1], 4))
    assert scale_referee(net, params, X, Y, _nondeterministic(net)).verdict == "error"
    assert scale_referee(net, params, X, Y, _nondeterministic(net), nondeterminism_tolerance=1e-10).ok
    with pytest.raises(ValueError, match="nondeterminism_tolerance"):
        scale_referee(net, params, X, Y, net.backward, nondeterminism_tolerance=-1.0)
