"""The referee in the user's conventions: diagnoses attached to its reports, mismatches named in the
user's layout and names, malformed gradients reported as what they are, layers without a bias.

Cases are drawn by hand (seeded) in the article's layout; the user's code is called through
``wrap_backward`` (which carries its conventions to the referee) or ``certify_backward(conventions=)``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from handgrad.reference import CertificationError, certify_backward, referee
from handgrad.reference.judge import diagnosis
from handgrad.reference.judge.conventions import Conventions, wrap_backward

import handgrad as hg

ORACLES = ("jax", "fd")  # fast; SymPy is exercised by the worked examples through certify_backward


def _case(net: hg.Network, seed: int, m: int, *, onehot: bool = False):
    rng = np.random.default_rng(seed)
    params = net.init(rng, bias_scale=0.5)
    X = rng.standard_normal((net.sizes[0], m))
    n = net.sizes[-1]
    Y = np.eye(n)[:, rng.integers(0, n, m)] if onehot else rng.standard_normal((n, m))
    return params, X, Y


# -- the user's code: CS231n's rows layout and nn.Linear's torch layout -------------------------

def rows_loss(params, X, y, bug=None):
    """A CS231n-style two-layer net: X (N, D), W1 (D, H), b1 (H,), ReLU, softmax on integer labels."""
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    N = X.shape[0]
    h = np.maximum(0, X @ W1 + b1)
    scores = h @ W2 + b2
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    dscores = probs.copy()
    dscores[np.arange(N), y] -= 1
    if bug != "sum":
        dscores /= N
    dh = dscores @ W2.T
    dh[h <= 0] = 0
    grads = {"W1": X.T @ dh, "b1": dh.sum(axis=0), "W2": h.T @ dscores, "b2": dscores.sum(axis=0)}
    if bug == "transposed dW1":
        grads["W1"] = grads["W1"].T
    if bug == "no b2":
        del grads["b2"]
    return -np.log(probs[np.arange(N), y]).mean(), grads


ROWS = Conventions(layout="rows", names="W1/b1", labels="integer")
ROWS_NET = hg.Network((4, 5, 3), ["relu", "softmax"], "cross_entropy")


def torch_backward(params, X, Y):
    """nn.Linear's layout: weight (out, in), bias (out,); the mean over the batch of the summed squares."""
    W1, b1, W2, b2 = (params[k] for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"))
    h = np.tanh(X @ W1.T + b1)
    dy = 2 * (h @ W2.T + b2 - Y) / X.shape[0]
    dh = dy @ W2 * (1 - h ** 2)
    return {"fc1.weight": dh.T @ X, "fc1.bias": dh.sum(axis=0), "fc2.weight": dy.T @ h, "fc2.bias": dy.sum(axis=0)}


TORCH = Conventions(layout="torch", names="fc1.weight/fc1.bias")
TORCH_NET = hg.Network((4, 5, 2), ["tanh", "identity"], "squared_error")


def _perturbed(backward, key, index, delta=1e-3):
    """The user's backward with one element of one of *their* gradients moved by delta."""
    def wrong(params, X, Y):
        out = backward(params, X, Y)
        grads = out[1] if isinstance(out, tuple) else out
        grads[key] = grads[key].copy()
        grads[key][index] += delta
        return out

    return wrong


# -- 1. diagnoses on the report ------------------------------------------------------------------

def test_a_sum_over_the_batch_is_diagnosed_on_the_referees_report():
    params, X, Y = _case(ROWS_NET, 3, 5, onehot=True)
    r = referee(ROWS_NET, params, X, Y, wrap_backward(lambda p, X, y: rows_loss(p, X, y, "sum"), ROWS, ROWS_NET),
                oracles=ORACLES)
    assert r.verdict == "mismatch"
    assert [d.cause for d in r.diagnoses] == ["factor"] and r.diagnoses[0].evidence["factor"] == 5
    sentence = "every tensor (dW1, db1, dW2 and db2) is exactly N = 5 times the gradient of the declared loss"
    assert sentence in r.diagnoses[0].sentence
    text, md, d = r.text(), r.markdown(), r.to_dict()
    assert "  likely cause: " + sentence in text and "[factor 5, observed ratio 5, worst " in text
    assert "- **likely cause** (factor): " + sentence in md
    assert d["diagnoses"][0]["cause"] == "factor" and d["diagnoses"][0]["evidence"]["factor"] == 5.0
    assert json.loads(r.to_json())["diagnoses"] == d["diagnoses"]
    # the case as the user's code received it: their shapes, their integer labels
    assert any(n.startswith("your call: W1 (4, 5), b1 (5,), W2 (5, 3), b2 (3,); X (5, 4); y = [") for n in r.notes)


def test_the_article_conventions_are_diagnosed_in_the_articles_names():
    net = hg.Network((2, 3, 1), ["sigmoid", "sigmoid"], "squared_error")
    params, X, Y = _case(net, 4, 3)
    grads = {k: 3 * v for k, v in net.backward(params, X, Y).items()}
    r = referee(net, params, X, Y, grads, oracles=ORACLES)
    assert [d.cause for d in r.diagnoses] == ["factor"]
    assert "every tensor (dW1, dB1, dW2 and dB2) is exactly m = 3 times" in r.diagnoses[0].sentence
    assert "your call" not in r.text()  # no conventions declared: nothing described in them


def test_a_random_perturbation_gets_no_invented_diagnosis():
    params, X, Y = _case(ROWS_NET, 3, 5, onehot=True)
    rng = np.random.default_rng(11)
    noise = {k: rng.standard_normal(shape) * 1e-4 for k, shape in
             {"W1": (4, 5), "b1": (5,), "W2": (5, 3), "b2": (3,)}.items()}

    def noisy(p, X, y):
        value, grads = rows_loss(p, X, y)
        return value, {k: g + noise[k] for k, g in grads.items()}

    r = referee(ROWS_NET, params, X, Y, wrap_backward(noisy, ROWS, ROWS_NET), oracles=ORACLES)
    assert r.verdict == "mismatch" and len(r.mismatches) == 4
    assert r.diagnoses == () and "likely cause" not in r.text() and r.to_dict()["diagnoses"] == []


def test_a_certified_case_is_never_diagnosed(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("diagnose called on a certified case")

    monkeypatch.setattr(diagnosis, "diagnose", refuse)
    params, X, Y = _case(ROWS_NET, 3, 5, onehot=True)
    r = referee(ROWS_NET, params, X, Y, wrap_backward(rows_loss, ROWS, ROWS_NET), oracles=ORACLES)
    assert r.ok and r.diagnoses == () and r.to_dict()["diagnoses"] == []


def test_a_sum_over_the_batch_through_certify_backward_shows_the_likely_cause_with_m():
    with pytest.raises(CertificationError) as info:
        certify_backward(lambda p, X, y: rows_loss(p, X, y, "sum"), (4, 5, 3), ["relu", "softmax"],
                         "cross_entropy", conventions=ROWS, examples=6, min_batch=4)
    report = info.value.report
    m = report.m  # at least 4: distinct from 2 and from the output width 3, so N is named alone
    assert m >= 4 and [d.cause for d in report.diagnoses] == ["factor"]
    assert report.diagnoses[0].evidence["factor"] == m
    message = str(info.value)
    assert f"likely cause: every tensor (dW1, db1, dW2 and db2) is exactly N = {m} times" in message
    assert "sum over the batch where the mean is expected" in message
    assert info.value.certificate.to_dict()["failure"]["diagnoses"][0]["cause"] == "factor"


def test_a_random_perturbation_through_certify_backward_gets_none():
    def noisy(p, X, y):
        value, grads = rows_loss(p, X, y)
        rng = np.random.default_rng(X.shape[0])  # the same noise for the same case: deterministic
        return value, {k: g + 1e-4 * rng.standard_normal(g.shape) for k, g in grads.items()}

    with pytest.raises(CertificationError) as info:
        certify_backward(noisy, (4, 5, 3), ["relu", "softmax"], "cross_entropy", conventions=ROWS, examples=6)
    assert info.value.report.verdict == "mismatch" and info.value.report.diagnoses == ()
    assert "likely cause" not in str(info.value)


# -- 2. mismatches in the user's layout and names -----------------------------------------------

def test_a_mismatch_in_rows_layout_names_the_users_element_with_the_articles_beside():
    params, X, Y = _case(ROWS_NET, 3, 5, onehot=True)
    r = referee(ROWS_NET, params, X, Y, wrap_backward(_perturbed(rows_loss, "W1", (3, 4)), ROWS, ROWS_NET),
                oracles=ORACLES)
    assert r.verdict == "mismatch" and [mm.tensor for mm in r.mismatches] == ["W1"]
    mm = r.mismatches[0]
    assert mm.index == (4, 3) and mm.element == "w_54^(1)"  # the article's (5, 4) W1, 0-based
    assert mm.label == "dW1[3, 4] (the article's w_54^(1))" and mm.user_tensor == "dW1"
    assert "disagree on dW1[3, 4] (the article's w_54^(1)): hand = " in r.text()
    assert "(1 element of dW1 over budget)" in mm.sentence()
    assert "<-- dW1[3, 4] (the article's w_54^(1))" in r.text()


def test_a_mismatch_in_torch_layout_names_the_users_element_with_the_articles_beside():
    params, X, Y = _case(TORCH_NET, 5, 4)
    wrong = _perturbed(torch_backward, "fc1.weight", (3, 1))
    r = referee(TORCH_NET, params, X, Y, wrap_backward(wrong, TORCH, TORCH_NET), oracles=ORACLES)
    mm = r.mismatches[0]
    assert mm.index == (3, 1)  # torch stores W as the article does: (out, in)
    assert mm.label == "grads['fc1.weight'][3, 1] (the article's w_42^(1))"
    assert "disagree on grads['fc1.weight'][3, 1] (the article's w_42^(1))" in r.text()
    bias = _perturbed(torch_backward, "fc2.bias", (1,))
    r = referee(TORCH_NET, params, X, Y, wrap_backward(bias, TORCH, TORCH_NET), oracles=ORACLES)
    assert r.mismatches[0].label == "grads['fc2.bias'][1] (the article's b_2^(2))"


def test_conventions_given_to_the_referee_directly_name_a_plain_dict():
    params, X, Y = _case(TORCH_NET, 5, 4)
    grads = TORCH_NET.backward(params, X, Y)
    grads["W2"] = grads["W2"].copy()
    grads["W2"][0, 3] += 1e-3
    r = referee(TORCH_NET, params, X, Y, grads, oracles=ORACLES, conventions=TORCH)
    assert r.mismatches[0].label == "grads['fc2.weight'][0, 3] (the article's w_14^(2))"
    with pytest.raises(TypeError, match="conventions must be a Conventions"):
        referee(TORCH_NET, params, X, Y, grads, oracles=ORACLES, conventions={"layout": "torch"})


def test_without_conventions_the_article_sentence_is_unchanged():
    params, X, Y = _case(TORCH_NET, 5, 4)
    grads = TORCH_NET.backward(params, X, Y)
    grads["W2"] = grads["W2"].copy()
    grads["W2"][0, 3] += 1e-3
    r = referee(TORCH_NET, params, X, Y, grads, oracles=ORACLES)
    assert r.mismatches[0].label == "" and "disagree on dL/dw_14^(2) (W2[0, 3])" in r.text()


# -- 3. UserGradsError is what it is, not "backward raised" -------------------------------------

@pytest.mark.parametrize(("bug", "message"), [
    ("transposed dW1", r"^dW1 has shape \(5, 4\) but your W1 is \(4, 5\) \(transposed\?\)$"),
    ("no b2", r"^your backward's gradients lack b2 \(expected exactly W1, b1, W2, b2\)"),
])
def test_a_wrong_structure_is_reported_in_the_users_terms_not_as_backward_raised(bug, message):
    import re

    params, X, Y = _case(ROWS_NET, 3, 5, onehot=True)
    r = referee(ROWS_NET, params, X, Y, wrap_backward(lambda p, X, y: rows_loss(p, X, y, bug), ROWS, ROWS_NET),
                oracles=ORACLES)
    assert r.verdict == "error"
    assert re.search(message, r.notes[0]), r.notes
    assert not any("backward raised" in n for n in r.notes)
    assert type(r.exception).__name__ == "UserGradsError"
    assert any(n.startswith("your call: W1 (4, 5)") for n in r.notes)  # the case, their way


def test_an_exception_inside_the_users_code_is_still_backward_raised():
    params, X, Y = _case(ROWS_NET, 3, 5, onehot=True)

    def broken(p, X, y):
        return p["W1"] @ p["W1"]

    r = referee(ROWS_NET, params, X, Y, wrap_backward(broken, ROWS, ROWS_NET), oracles=ORACLES)
    assert r.verdict == "error" and r.notes[0].startswith("backward raised ValueError")


# -- 4. layers without a bias -------------------------------------------------------------------

def nobias_backward(params, X, Y, bug=None):
    """rows: h = tanh(X W1 + b1), yhat = h W2 (no bias in layer 2); mean over the batch of the summed squares."""
    W1, b1, W2 = params["W1"], params["b1"], params["W2"]
    h = np.tanh(X @ W1 + b1)
    dy = 2 * (h @ W2 - Y) / X.shape[0]
    dh = dy @ W2.T * ((1 - h) if bug == "tanh'" else (1 - h ** 2))
    return {"W1": X.T @ dh, "b1": dh.sum(axis=0), "W2": h.T @ dy}


NOBIAS = Conventions(layout="rows", names="W1/b1", no_bias=(2,))
NOBIAS_NET = hg.Network((3, 4, 2), ["tanh", "identity"], "squared_error")


def test_a_layer_without_a_bias_is_refereed_on_the_declared_model():
    params, X, Y = _case(NOBIAS_NET, 9, 4)
    assert np.any(params["B2"] != 0)  # drawn with a bias; the referee restricts the case to B2 = 0
    r = referee(NOBIAS_NET, params, X, Y, wrap_backward(nobias_backward, NOBIAS, NOBIAS_NET), oracles=ORACLES)
    assert r.ok, r.text()
    assert {c.tensor for c in r.checks} == {"W1", "B1", "W2"}
    assert "layer 2 declared without a bias: B2 = 0 in this case and not checked" in r.notes


def test_a_wrong_backward_without_a_bias_is_refused_and_diagnosed():
    params, X, Y = _case(NOBIAS_NET, 9, 4)
    wrong = wrap_backward(lambda p, X, Y: nobias_backward(p, X, Y, "tanh'"), NOBIAS, NOBIAS_NET)
    r = referee(NOBIAS_NET, params, X, Y, wrong, oracles=ORACLES)
    assert r.verdict == "mismatch" and {mm.tensor for mm in r.mismatches} == {"W1", "B1"}
    assert [d.cause for d in r.diagnoses] == ["layer"]
    assert r.diagnoses[0].sentence.startswith("dW2 is right; every tensor of layer 1 is wrong")


def test_no_bias_beyond_the_network_is_an_error_naming_it():
    params, X, Y = _case(NOBIAS_NET, 9, 4)
    with pytest.raises(ValueError, match=r"no_bias names layer\(s\) \[3\] but the network has 2 layers"):
        referee(NOBIAS_NET, params, X, Y, NOBIAS_NET.backward, oracles=ORACLES,
                conventions=NOBIAS.with_(no_bias=(2, 3)))


def test_no_bias_end_to_end_through_certify_backward():
    cert = certify_backward(nobias_backward, (3, 4, 2), ["tanh", "identity"], "squared_error",
                            conventions=NOBIAS, examples=6)
    assert cert.ok, cert.text()
    assert set(cert.per_tensor) == {"W1", "B1", "W2"}
    with pytest.raises(CertificationError) as info:
        certify_backward(lambda p, X, Y: nobias_backward(p, X, Y, "tanh'"), (3, 4, 2), ["tanh", "identity"],
                         "squared_error", conventions=NOBIAS, examples=6)
    assert "likely cause: dW2 is right; every tensor of layer 1 is wrong" in str(info.value)


def test_a_nondeterministic_backward_is_named_in_the_users_terms():
    params, X, Y = _case(ROWS_NET, 3, 5, onehot=True)

    def jittery(p, X, y):  # np.random is seeded differently for the two calls
        value, grads = rows_loss(p, X, y)
        grads["W2"] = grads["W2"] + 1e-12 * np.random.standard_normal(grads["W2"].shape)
        return value, grads

    r = referee(ROWS_NET, params, X, Y, wrap_backward(jittery, ROWS, ROWS_NET), oracles=ORACLES, seed=1)
    assert r.verdict == "error"
    assert r.notes[0].startswith("nondeterministic backward: two calls on the same input differ at "
                                 "dW2[0, 0] (the article's w_11^(2)): first call ")
    assert r.mismatches[0].label == "dW2[0, 0] (the article's w_11^(2))"
