"""certify_backward takes the scale path above SCALE_MIN_PARAMS: every element checked, a planted bug named."""

from __future__ import annotations

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
