"""The budget follows the declared loss (issue 11, item 4; docs/tolerances.md section 11): the
output delta weighted by the declared sample weight (1 for ``reduction="sum"``, 1/m for the mean)
and a declared L2 penalty's gradient :math:`cW` added to the penalized tensors' magnitudes.

Correct backwards for the sum and for the penalty (with and without the 1/2, biases in or out) are
certified in float64 and float32 over many seeded cases with no false alarm; the wrong ones (the
mean where the sum is declared, the penalty missing or doubled, the biases penalized when they are
excluded) are refused."""

from __future__ import annotations

import numpy as np
import pytest
from _oracle_cases import backprop_from
from handgrad.reference import CaseSpec, build_case, certify_backward, referee
from handgrad.reference.judge.conventions import (
    Conventions,
    check_oracles_support,
    declared_loss,
    registered_loss,
)
from handgrad.reference.judge.tolerance import FOLLOWS_DECLARED_LOSS, error_budget

import handgrad as hg

ARCH = ((3, 4, 2), ("tanh", "sigmoid"), "squared_error")

CORRECT = {
    "sum": Conventions(reduction="sum"),
    "l2": Conventions(l2=0.01),
    "l2 half": Conventions(l2=0.03, l2_half=True),
    "l2 with biases": Conventions(l2=0.02, l2_biases=True),
    "sum, l2/2 with biases": Conventions(reduction="sum", l2=0.05, l2_half=True, l2_biases=True),
}


def declared_backward(sizes, activations, loss, conv, *, mean=False, coefficient=None, biases=None):
    """A correct backward of the loss ``conv`` declares, written directly (not handgrad's, which
    knows only the mean without a penalty): the output delta of each sample weighted by 1 (sum) or
    1/m (mean), then the penalty's gradient c W added. The keywords make it wrong on purpose:
    ``mean`` divides by m whatever is declared, ``coefficient`` replaces c, ``biases`` overrides
    which tensors get the penalty."""
    def backward(params, X, Y):
        net = hg.Network(sizes, list(activations), declared_loss(loss, conv, sizes[-1]))
        m = X.shape[1]
        cache = net.forward_unchecked(params, X)
        z, a = cache.z, cache.a
        rule = net.fused_rule
        if rule is not None:
            delta = rule.delta(z[-1], a[-1], Y)
        else:
            delta = net.activations[-1].backward_unchecked(z[-1], a[-1], net.loss.grad(a[-1], Y))
        if mean or conv.reduction != "sum":
            delta = delta / m
        grads = backprop_from(net, params, cache, delta)
        c = (conv.l2 if conv.l2_half else 2 * conv.l2) if coefficient is None else coefficient
        with_biases = conv.l2_biases if biases is None else biases
        for k in grads:
            if k[0] == "W" or with_biases:
                grads[k] = grads[k] + np.asarray(c, dtype=grads[k].dtype) * params[k]
        return grads

    return backward


def test_the_budget_says_it_follows_the_declared_loss():
    assert FOLLOWS_DECLARED_LOSS is True
    for conv in CORRECT.values():
        check_oracles_support(declared_loss("squared_error", conv, 2))  # no NotImplementedError


def _budget_case(conv, m=5, seed=3):
    decl = declared_loss("squared_error", conv, 2)
    net = hg.Network((3, 4, 2), ["tanh", "sigmoid"], decl)
    base = hg.Network((3, 4, 2), ["tanh", "sigmoid"], "squared_error")
    rng = np.random.default_rng(seed)
    params = base.init(rng, bias_scale=0.5)
    X, Y = rng.standard_normal((3, m)), rng.uniform(size=(2, m))
    return net, base, params, X, Y


def test_the_sum_weighs_each_sample_by_one_instead_of_one_over_m():
    """The sum's magnitudes are m times the mean's (the delta's weight is the only difference)."""
    net, base, params, X, Y = _budget_case(Conventions(reduction="sum"), m=5)
    summed = error_budget(net, params, X, Y).magnitude
    mean = error_budget(base, params, X, Y).magnitude
    for k in base.param_names:
        np.testing.assert_allclose(summed[k], 5 * mean[k], rtol=1e-12)


@pytest.mark.parametrize("name", ["l2", "l2 half", "l2 with biases"])
def test_the_penalty_adds_c_times_w_to_the_penalized_magnitudes_only(name):
    conv = CORRECT[name]
    net, base, params, X, Y = _budget_case(conv)
    with_penalty = error_budget(net, params, X, Y).magnitude
    without = error_budget(base, params, X, Y).magnitude
    c = conv.l2 if conv.l2_half else 2 * conv.l2
    for k in base.param_names:
        added = with_penalty[k] - without[k]
        expected = c * np.abs(params[k]) if (k[0] == "W" or conv.l2_biases) else np.zeros_like(added)
        np.testing.assert_allclose(added, expected, rtol=1e-12, atol=1e-300)


def test_the_default_mean_budget_is_bitwise_unchanged():
    """The article's convention (no declaration) and an explicit ``reduction="mean"`` without a
    penalty are the same loss object, and ``mean_all``/``half`` change only the definition: their
    budget divides by m exactly as before (the running soak of the default budget stays valid)."""
    net, base, params, X, Y = _budget_case(Conventions(), m=4)
    assert net.loss is base.loss
    b = error_budget(base, params, X, Y)
    again = error_budget(hg.Network((3, 4, 2), ["tanh", "sigmoid"], "squared_error"), params, X, Y)
    for k in base.param_names:
        assert np.array_equal(b.magnitude[k], again.magnitude[k])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CORRECT))
def test_a_correct_backward_of_the_declared_loss_is_certified(name, dtype):
    conv = CORRECT[name]
    sizes, acts, loss = ARCH
    cert = certify_backward(declared_backward(sizes, acts, loss, conv), sizes, list(acts), loss,
                            conventions=conv, dtype=dtype, examples=12, raise_on_failure=False)
    assert cert.ok, cert.failure.summary() if cert.failure is not None else cert.refusals


WRONG = {
    "the mean where the sum is declared": (Conventions(reduction="sum", l2=0.01), dict(mean=True), "W"),
    "the penalty missing": (Conventions(l2=0.01), dict(coefficient=0.0), "W"),
    "the penalty doubled": (Conventions(l2=0.01), dict(coefficient=0.04), "W"),
    "the 1/2 of the penalty ignored": (Conventions(l2=0.01, l2_half=True), dict(coefficient=0.02), "W"),
    "the biases penalized though excluded": (Conventions(l2=0.01), dict(biases=True), "B"),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(WRONG))
def test_a_wrong_backward_of_the_declared_loss_is_refused(name, dtype):
    conv, bug, tensor = WRONG[name]
    sizes, acts, loss = ARCH
    cert = certify_backward(declared_backward(sizes, acts, loss, conv, **bug), sizes, list(acts), loss,
                            conventions=conv, dtype=dtype, examples=12, raise_on_failure=False)
    assert not cert.ok and cert.failure is not None and cert.failure.verdict == "mismatch"
    assert any(mm.tensor.startswith(tensor) and mm.ratio > 10 for mm in cert.failure.mismatches)


SOAK_ARCHS = [
    ((3, 4, 2), ("tanh", "sigmoid"), "squared_error", True),
    ((2, 3, 1), ("relu", "sigmoid"), "bce", True),
    ((2, 3, 1), ("softplus", "sigmoid"), "bce", False),
    ((3, 5, 3), ("sigmoid", "softmax"), "cross_entropy", True),
    ((4, 3, 3, 2), ("gelu", "tanh", "identity"), "squared_error", True),
]
SOAK_CONVS = [
    Conventions(reduction="sum"),
    Conventions(l2=0.02),
    Conventions(reduction="sum", l2=0.1, l2_half=True, l2_biases=True),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_no_false_alarm_over_many_seeded_cases(dtype):
    """Every architecture of a small pool (fused and unfused, kinked, softmax, three layers) crossed
    with sum, penalty and both, at every scale, 8 seeds each: every decided case is certified,
    and most cases are decided (the tally is asserted, not just the absence of a failure)."""
    tally = {"certified": 0, "other": []}
    for sizes, acts, loss, fuse in SOAK_ARCHS:
        for conv in SOAK_CONVS:
            if conv.half and loss != "squared_error":
                continue
            decl = declared_loss(loss, conv, sizes[-1])
            backward = declared_backward(sizes, acts, loss, conv)
            with registered_loss(decl):
                for seed in range(8):
                    scale = ("small", "unit", "large", "saturating")[seed % 4]
                    spec = CaseSpec(sizes, acts, decl.name, fuse, 1 + seed % 6, scale, 1000 + seed, rescale=True)
                    net, params, X, Y = build_case(spec, dtype, filter_domain=False)
                    report = referee(net, params, X, Y, backward, oracles=("jax", "fd"))
                    if report.verdict == "certified":
                        tally["certified"] += 1
                    else:
                        tally["other"].append((spec, report.verdict))
    assert not [v for v in tally["other"] if v[1] == "mismatch"], tally["other"]
    assert tally["certified"] >= 0.9 * (len(SOAK_ARCHS) * len(SOAK_CONVS) * 8)
