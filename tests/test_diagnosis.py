"""Diagnosis: every hypothesis gets a matching bug (diagnosed) and a non-matching one (not), and
failures that match none get no invented cause. One case, its references computed once."""

from __future__ import annotations

import numpy as np
import pytest
from handgrad.reference.judge.conventions import Conventions
from handgrad.reference.judge.diagnosis import Diagnosis, diagnose, diagnose_case
from handgrad.reference.judge.tolerance import error_budget
from handgrad.reference.oracles.jax_oracle import get_jax_oracle
from handgrad.reference.oracles.sympy_oracle import get_sympy_oracle

import handgrad as hg

M = 5  # batch size; distinct from every width and from 2, so the factors do not coincide


@pytest.fixture(scope="module")
def case():
    net = hg.Network((3, 3, 3, 2), ["tanh", "sigmoid", "identity"], "squared_error")
    rng = np.random.default_rng(7)
    params = net.init(rng, bias_scale=0.5)
    X = rng.standard_normal((3, M))
    Y = rng.standard_normal((2, M))
    refs = {"sympy": get_sympy_oracle(net).grads(params, X, Y), "jax": get_jax_oracle(net).grads(params, X, Y)}
    budgets = error_budget(net, params, X, Y).against(np.float64)
    return net, params, X, Y, net.backward(params, X, Y), refs, budgets


def run(case, hand, conv=None, refs=None, budgets=None):
    _, params, X, Y, _, refs0, budgets0 = case
    return diagnose(hand, refs if refs is not None else refs0, budgets if budgets is not None else budgets0,
                    params=params, X=X, Y=Y, conventions=conv, loss="squared_error")


def causes(found: list[Diagnosis]) -> list[str]:
    return [d.cause for d in found]


def with_(g, **changes):
    return {**g, **changes}


def test_a_correct_gradient_gets_no_diagnosis(case):
    assert run(case, case[4]) == []


# -- factors -----------------------------------------------------------------------------------

def test_every_tensor_times_m_is_a_sum_where_the_mean_is_expected(case):
    g = case[4]
    found = run(case, {k: M * v for k, v in g.items()})
    assert causes(found) == ["factor"]
    d = found[0]
    assert set(d.tensors) == set(g) and d.evidence["factor"] == M
    assert "every tensor" in d.sentence and f"m = {M}" in d.sentence and "sum over the batch" in d.sentence
    assert d.text().startswith("Likely cause:") and d.evidence["worst"] <= 1


def test_one_tensor_times_m(case):
    g = case[4]
    found = run(case, with_(g, B2=M * g["B2"]))
    assert causes(found) == ["factor"] and found[0].tensors == ("B2",)
    assert found[0].sentence.startswith(f"dB2 is exactly m = {M} times")


@pytest.mark.parametrize(("factor", "words"), [
    (-1.0, "sign is flipped"), (0.5, "half=True"), (2.0, "factor 2 counted twice"),
    (1 / M, "mean taken twice"), (1 / (2 * M), "reduction='mean_all'"),
    (M / 2, "reduction='sum' and half=True"), (2 * M, "a sum over the batch and a factor 2"),
])
def test_the_other_factors(case, factor, words):
    g = case[4]
    found = run(case, {k: factor * v for k, v in g.items()})
    assert causes(found) == ["factor"] and words in found[0].sentence


def test_half_is_named_with_the_output_width_when_they_coincide(case):
    # n_L = 2 here: 1/2 is both the 1/2 convention and a mean over the outputs; both are said.
    found = run(case, {k: 0.5 * v for k, v in case[4].items()})
    assert "1/n_L = 1/2" in found[0].sentence and "MSELoss" in found[0].sentence


def test_one_output_does_not_name_the_output_width():
    # n_L = 1: m n_L is m and n_L is 1; naming them ("m = m n_L = 5") would only confuse.
    net = hg.Network((2, 3, 1), ["sigmoid", "sigmoid"], "squared_error")
    rng = np.random.default_rng(3)
    params = net.init(rng, bias_scale=0.5)
    X, Y = rng.standard_normal((2, M)), rng.standard_normal((1, M))
    refs = get_jax_oracle(net).grads(params, X, Y)
    budgets = error_budget(net, params, X, Y).against(np.float64)
    hand = {k: M * v for k, v in net.backward(params, X, Y).items()}
    found = diagnose(hand, refs, budgets, params=params, X=X, Y=Y, loss="squared_error")
    assert causes(found) == ["factor"] and f"exactly m = {M} times" in found[0].sentence
    assert "n_L" not in found[0].sentence


def test_one_sample_does_not_name_the_batch_size():
    # m = 1: m n_L is n_L and 2 m is 2; the factor is named by what it can mean.
    net = hg.Network((2, 3, 2), ["tanh", "identity"], "squared_error")
    rng = np.random.default_rng(5)
    params = net.init(rng, bias_scale=0.5)
    X, Y = rng.standard_normal((2, 1)), rng.standard_normal((2, 1))
    refs = get_jax_oracle(net).grads(params, X, Y)
    budgets = error_budget(net, params, X, Y).against(np.float64)
    hand = {k: 2 * v for k, v in net.backward(params, X, Y).items()}
    found = diagnose(hand, refs, budgets, params=params, X=X, Y=Y, loss="squared_error")
    assert causes(found) == ["factor"] and "exactly n_L (the output width) = 2 times" in found[0].sentence
    assert "m n_L" not in found[0].sentence and "2 m" not in found[0].sentence


def test_a_factor_outside_the_set_or_slightly_off_is_not_diagnosed(case):
    g = case[4]
    assert "factor" not in causes(run(case, with_(g, B2=3.0 * g["B2"])))
    assert "factor" not in causes(run(case, {k: M * (1 + 1e-9) * v for k, v in g.items()}))


def test_the_tolerance_is_the_budget(case):
    # A factor c is accepted within |c| times the budget of each element, and not beyond: off by half
    # the scaled budget is explained, off by three times it is not.
    g, budgets = case[4], case[6]
    near = {k: M * v + 0.5 * M * budgets[k] for k, v in g.items()}
    far = {k: M * v + 3.0 * M * budgets[k] for k, v in g.items()}
    assert causes(run(case, near)) == ["factor"]
    assert causes(run(case, far)) == []


def test_the_batch_is_named_N_in_rows_layout(case):
    g = case[4]
    found = run(case, {k: M * v for k, v in g.items()}, conv=Conventions(layout="rows", names="W1/b1"))
    assert f"N = {M}" in found[0].sentence and "db2" in found[0].sentence


# -- transpose ---------------------------------------------------------------------------------

def test_the_transpose_of_a_square_layer(case):
    g = case[4]
    found = run(case, with_(g, W2=g["W2"].T.copy()))
    assert causes(found) == ["transpose"] and found[0].tensors == ("W2",)


def test_rows_swapped_are_not_a_transpose(case):
    g = case[4]
    assert "transpose" not in causes(run(case, with_(g, W2=g["W2"][[1, 0, 2]].copy())))


# -- L2 ----------------------------------------------------------------------------------------

def test_an_undeclared_l2_term_is_estimated_and_shown(case):
    g, params = case[4], case[1]
    found = run(case, {k: v + (0.2 * params[k] if k[0] == "W" else 0) for k, v in g.items()})
    assert causes(found) == ["l2"]
    d = found[0]
    assert d.evidence["coefficient"] == pytest.approx(0.2, rel=1e-12)
    assert "l2=0.1" in d.sentence and "l2_half=True" in d.sentence and "least squares" in d.sentence


def test_a_budget_at_the_float64_floor_does_not_overflow_the_l2_estimate(case):
    # A dead unit's budget can sit at ~1e-306; 1/b^2 alone overflows (a RuntimeWarning, an error here).
    g, params, budgets = case[4], case[1], case[6]
    floor = {k: v.copy() for k, v in budgets.items()}
    floor["W2"][0, 0] = 1e-306
    hand = {k: v + (0.2 * params[k] if k[0] == "W" else 0) for k, v in g.items()}
    hand["W2"][0, 0] = case[5]["jax"]["W2"][0, 0] + 0.2 * params["W2"][0, 0]
    found = run(case, hand, budgets=floor)
    assert causes(found) == ["l2"] and found[0].evidence["coefficient"] == pytest.approx(0.2, rel=1e-9)


def test_a_declared_l2_term_missing_or_doubled(case):
    g, params = case[4], case[1]
    conv = Conventions(l2=0.1)  # penalty 0.1 sum W^2: gradient 0.2 W
    refs = {src: {k: v + (0.2 * params[k] if k[0] == "W" else 0) for k, v in r.items()} for src, r in case[5].items()}
    missing = run(case, g, conv=conv, refs=refs)
    assert causes(missing) == ["l2"] and "missing" in missing[0].sentence
    doubled = run(case, {k: v + (0.4 * params[k] if k[0] == "W" else 0) for k, v in g.items()}, conv=conv, refs=refs)
    assert causes(doubled) == ["l2"] and "twice" in doubled[0].sentence


def test_biases_regularized_too_are_said(case):
    g, params = case[4], case[1]
    found = run(case, {k: v + 0.2 * params[k] for k, v in g.items()})
    assert causes(found) == ["l2"] and "biases get the same term" in found[0].sentence


def test_a_term_on_one_layer_only_is_not_an_l2_penalty(case):
    g, params = case[4], case[1]
    assert "l2" not in causes(run(case, with_(g, W1=g["W1"] + 0.2 * params["W1"])))


# -- zeros and copies --------------------------------------------------------------------------

def test_a_zero_tensor(case):
    g = case[4]
    found = run(case, with_(g, B1=np.zeros_like(g["B1"])))
    assert causes(found) == ["zero"] and found[0].tensors == ("B1",) and "dB1 is exactly zero" in found[0].sentence


def test_a_zero_row_in_the_users_layout(case):
    g = case[4]
    W1 = g["W1"].copy()
    W1[1] = 0
    article = run(case, with_(g, W1=W1))
    assert causes(article) == ["zero"] and "row 1 of dW1 (unit 2 of layer 1)" in article[0].sentence
    rows = run(case, with_(g, W1=W1), conv=Conventions(layout="rows"))
    assert "column 1 of dW1 (unit 2 of layer 1)" in rows[0].sentence


def test_one_zero_element_is_not_a_zero_row(case):
    g = case[4]
    W1 = g["W1"].copy()
    W1[1, 2] = 0
    assert causes(run(case, with_(g, W1=W1))) == []


def test_a_tensor_left_untouched(case):
    g, params = case[4], case[1]
    found = run(case, with_(g, W3=params["W3"].copy()))
    assert causes(found) == ["untouched"] and "exactly your W3" in found[0].sentence
    assert causes(run(case, with_(g, W3=params["W3"] * (1 + 1e-7)))) == []


# -- layers ------------------------------------------------------------------------------------

def _backward_with(net, scale_step3=1.0, derivative_at_z=False):
    def backward(params, X, Y):
        c = net.forward_unchecked(params, X)
        grads, delta = {}, net.output_delta(c, Y)
        for l in range(net.depth, 0, -1):
            grads[f"W{l}"] = delta @ c.a[l - 1].T
            grads[f"B{l}"] = delta.sum(axis=1, keepdims=True)
            if l > 1:
                ga = params[f"W{l}"].T @ delta * (scale_step3 if l == 3 else 1.0)
                a = c.z[l - 2] if derivative_at_z else c.a[l - 1]
                delta = net.activations[l - 2].backward_unchecked(c.z[l - 2], a, ga)
        return grads
    return backward


def test_the_first_wrong_layer_from_the_output(case):
    net, params, X, Y = case[:4]
    found = run(case, _backward_with(net, scale_step3=1.1)(params, X, Y))
    assert causes(found) == ["layer"]
    d = found[0]
    assert d.evidence["first wrong layer"] == 2 and set(d.tensors) == {"W1", "B1", "W2", "B2"}
    assert d.sentence.startswith("dW3 and dB3 are right; every tensor of layers 1-2 is wrong")
    assert "between layer 3 and layer 2" in d.sentence


def test_one_wrong_tensor_in_a_lower_layer_is_not_a_layer_diagnosis(case):
    g = case[4]
    assert "layer" not in causes(run(case, with_(g, W1=g["W1"] * 1.01)))


# -- dtype -------------------------------------------------------------------------------------

def test_returned_in_float32(case):
    found = run(case, {k: v.astype(np.float32) for k, v in case[4].items()})
    assert causes(found) == ["dtype"]
    assert "float32 while your inputs are float64" in found[0].sentence
    assert "arithmetic is likely right" in found[0].sentence


def test_float32_and_wrong_values_says_both(case):
    g = {k: v.astype(np.float32) for k, v in case[4].items()}
    g["W1"] = g["W1"] * np.float32(1.01)
    found = run(case, g)
    assert causes(found)[0] == "dtype" and "also differ" in found[0].sentence


# -- nothing invented --------------------------------------------------------------------------

def test_noise_on_one_element_gets_no_diagnosis(case):
    g = {k: v.copy() for k, v in case[4].items()}
    g["W2"][1, 2] += 1e-3
    assert run(case, g) == []


def test_a_derivative_at_z_instead_of_a_gets_no_diagnosis(case):
    net, params, X, Y = case[:4]
    assert run(case, _backward_with(net, derivative_at_z=True)(params, X, Y)) == []


# -- the API -----------------------------------------------------------------------------------

def test_one_reference_and_one_budget_dict_are_accepted(case):
    g = case[4]
    found = run(case, {k: M * v for k, v in g.items()}, refs=case[5]["jax"])
    assert causes(found) == ["factor"]


def test_infinite_budgets_constrain_nothing(case):
    g = case[4]
    hand = with_(g, B2=M * g["B2"])
    inf = {k: (np.full_like(v, np.inf) if k == "B2" else v) for k, v in case[6].items()}
    # B2 is undecidable: it is not wrong, so nothing is diagnosed on it.
    assert run(case, hand, budgets=inf) == []


def test_bad_arguments_are_named(case):
    _, params, X, Y, g, refs, budgets = case
    with pytest.raises(TypeError, match="refs"):
        diagnose(g, {}, budgets, params=params, X=X, Y=Y)
    with pytest.raises(ValueError, match="budgets has no entry"):
        diagnose(g, refs, {"sympy": budgets}, params=params, X=X, Y=Y)
    with pytest.raises(TypeError, match="conventions"):
        diagnose(g, refs, budgets, params=params, X=X, Y=Y, conventions="rows")


def test_diagnose_case_computes_its_references(case):
    net, params, X, Y = case[:4]
    found = diagnose_case(net, params, X, Y, lambda p, x, y: {k: -v for k, v in net.backward(p, x, y).items()})
    assert causes(found) == ["factor"] and found[0].evidence["factor"] == -1
    assert found[0].to_dict()["cause"] == "factor"


def test_a_diagnosis_renders_in_jupyter(case):
    found = run(case, {k: -v for k, v in case[4].items()})
    assert found[0]._repr_markdown_().startswith("**Likely cause** (factor): every tensor")
