"""The scale path (nets above SCALE_MIN_PARAMS) in the user's conventions, as the referee: a layer
declared without a bias is refereed on the declared model, a failure describes the case as the
user's code received it, and a mismatch is diagnosed in the user's names."""

from __future__ import annotations

import numpy as np
from handgrad.reference import CertificationError, certify_backward
from handgrad.reference.judge.conventions import Conventions, wrap_backward
from handgrad.reference.judge.scale import SCALE_MIN_PARAMS, scale_referee

import handgrad as hg

NOBIAS = Conventions(layout="rows", names="W1/b1", no_bias=(2,))
NET = hg.Network((3, 300, 2), ["tanh", "identity"], "squared_error")


def nobias_backward(params, X, Y, bug=None):
    """rows: h = tanh(X W1 + b1), yhat = h W2 (no bias in layer 2); mean over the batch of the summed squares."""
    W1, b1, W2 = params["W1"], params["b1"], params["W2"]
    h = np.tanh(X @ W1 + b1)
    dy = 2 * (h @ W2 - Y) / (1 if bug == "sum" else X.shape[0])
    dh = dy @ W2.T * ((1 - h) if bug == "tanh'" else (1 - h ** 2))
    return {"W1": X.T @ dh, "b1": dh.sum(axis=0), "W2": h.T @ dy}


def _case(seed: int = 4, m: int = 5):
    rng = np.random.default_rng(seed)
    params = NET.init(rng, bias_scale=0.5)
    return params, rng.standard_normal((3, m)), rng.standard_normal((2, m))


def test_the_net_takes_the_scale_path() -> None:
    assert NET.n_params > SCALE_MIN_PARAMS


def test_a_layer_without_a_bias_is_refereed_on_the_declared_model() -> None:
    params, X, Y = _case()
    r = scale_referee(NET, params, X, Y, wrap_backward(nobias_backward, NOBIAS, NET))
    assert r.ok, r.text()
    assert "layer 2 declared without a bias: B2 = 0 in this case and not checked" in r.notes
    assert "B2" not in {c.tensor for c in r.checks if c.pair.startswith("hand")}


def test_a_mismatch_is_diagnosed_and_described_in_the_users_terms() -> None:
    params, X, Y = _case()
    wrong = wrap_backward(lambda p, X, Y: nobias_backward(p, X, Y, "tanh'"), NOBIAS, NET)
    r = scale_referee(NET, params, X, Y, wrong)
    assert r.verdict == "mismatch", r.text()
    assert [d.cause for d in r.diagnoses] == ["layer"], r.text()
    assert "dW1[" in r.text() and "(the article's" in r.text()
    assert any("W1 (3, 300)" in n for n in r.notes), r.notes  # the case as the user's code got it


def test_a_sum_over_the_batch_is_diagnosed_on_the_scale_path() -> None:
    params, X, Y = _case(m=5)
    r = scale_referee(NET, params, X, Y, wrap_backward(lambda p, X, Y: nobias_backward(p, X, Y, "sum"), NOBIAS, NET))
    assert r.verdict == "mismatch"
    assert any(d.cause == "factor" and "5" in d.sentence for d in r.diagnoses), r.text()


def test_end_to_end_through_certify_backward() -> None:
    cert = certify_backward(nobias_backward, (3, 300, 2), ["tanh", "identity"], "squared_error",
                            conventions=NOBIAS, examples=2, expect_long=True)
    assert cert.ok, cert.text()
    try:
        certify_backward(lambda p, X, Y: nobias_backward(p, X, Y, "tanh'"), (3, 300, 2), ["tanh", "identity"],
                         "squared_error", conventions=NOBIAS, examples=2, expect_long=True)
    except CertificationError as err:
        assert "likely cause: dW2 is right; every tensor of layer 1 is wrong" in str(err), str(err)
    else:
        raise AssertionError("the wrong tanh' was certified")
