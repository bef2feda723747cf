"""certify_backward certifies Activation and Loss objects that are not registered (registered for the
call only, also on failure) and accepts a handgrad.Network as the architecture (issue 11 item 5)."""

from __future__ import annotations

import dataclasses

import pytest
from handgrad.reference import CertificationError, certify_backward, certify_network

import handgrad as hg

ORACLES = ("jax", "fd")


def _my_tanh() -> hg.Activation:
    return dataclasses.replace(hg.get_activation("tanh"), name="my_tanh")


def _my_loss() -> hg.Loss:
    return dataclasses.replace(hg.get_loss("squared_error"), name="my_squared_error")


def _registries() -> tuple[list[str], list[str]]:
    return hg.activation_names(), hg.loss_names()


def test_an_unregistered_activation_object_is_certified_and_unregistered_after() -> None:
    before = _registries()
    act = _my_tanh()
    net = hg.Network((2, 3, 1), [act, "sigmoid"], "squared_error")
    cert = certify_backward(net.backward, (2, 3, 1), [act, "sigmoid"], examples=3, oracles=ORACLES)
    assert cert.ok and "my_tanh" in cert.architecture, cert.text()
    assert _registries() == before


def test_an_unregistered_loss_object_is_certified_and_unregistered_after() -> None:
    before = _registries()
    loss = _my_loss()
    act = _my_tanh()
    net = hg.Network((2, 3, 2), [act, "sigmoid"], loss)
    cert = certify_backward(net.backward, (2, 3, 2), [act, "sigmoid"], loss, examples=3, oracles=ORACLES)
    assert cert.ok and "my_squared_error" in cert.architecture, cert.text()
    assert _registries() == before


def test_the_registries_are_restored_when_certification_fails_or_raises() -> None:
    before = _registries()
    act, loss = _my_tanh(), _my_loss()
    net = hg.Network((2, 3, 1), [act, "sigmoid"], loss)

    def wrong(params, X, Y):
        g = net.backward(params, X, Y)
        g["B2"] = g["B2"] * 2
        return g

    with pytest.raises(CertificationError):
        certify_backward(wrong, (2, 3, 1), [act, "sigmoid"], loss, examples=3, oracles=ORACLES)
    assert _registries() == before

    def interrupted(params, X, Y):
        raise KeyboardInterrupt  # not a finding: it propagates, through the registration too

    with pytest.raises(KeyboardInterrupt):
        certify_backward(interrupted, (2, 3, 1), [act, "sigmoid"], loss, examples=3, oracles=ORACLES)
    assert _registries() == before


def test_a_network_is_accepted_as_the_architecture() -> None:
    before = _registries()
    net = hg.Network((2, 3, 3, 1), [_my_tanh(), "tanh", "sigmoid"], "squared_error", fuse=False)
    cert = certify_backward(net.backward, net, examples=3, oracles=ORACLES)
    assert cert.ok, cert.text()
    assert cert.architecture == net.describe()
    assert "('my_tanh', 'tanh', 'sigmoid')" in cert.call and "fuse=False" in cert.call
    assert certify_network(net, examples=3, oracles=ORACLES).ok
    assert _registries() == before


def test_a_network_with_its_parts_given_again_is_refused() -> None:
    net = hg.Network((2, 3, 1))
    for kwargs, named in ((dict(activations="tanh"), "activations"), (dict(loss="squared_error"), "loss"),
                          (dict(fuse=True), "fuse")):
        with pytest.raises(ValueError, match=f"already fixes its activations, loss and fuse; do not give {named}"):
            certify_backward(net.backward, net, **kwargs)


def test_another_object_under_a_registered_name_is_refused_and_nothing_is_registered() -> None:
    before = _registries()
    fake = dataclasses.replace(hg.get_activation("tanh"), name="sigmoid")
    with pytest.raises(ValueError, match="another activation named 'sigmoid' is registered"):
        certify_backward(lambda p, X, Y: p, (2, 3, 1), [_my_tanh(), fake])
    fake_loss = dataclasses.replace(hg.get_loss("squared_error"), name="bce")
    with pytest.raises(ValueError, match="another loss named 'bce' is registered"):
        certify_backward(lambda p, X, Y: p, (2, 3, 1), "sigmoid", fake_loss)
    assert _registries() == before


def test_registered_objects_and_names_are_used_as_before() -> None:
    before = _registries()
    tanh = hg.get_activation("tanh")
    net = hg.Network((2, 3, 1), [tanh, "sigmoid"])
    assert certify_backward(net.backward, (2, 3, 1), [tanh, "sigmoid"], examples=2, oracles=ORACLES).ok
    assert _registries() == before
