"""The referee itself: localized reports, structure errors in words, no false alarms at
saturation, kinks and float32, oracle disagreements explained, renderings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from handgrad.reference import CaseSpec, build_case, certify_backward, referee
from handgrad.reference.cases.bug_catalog import SigmoidViaTanh, Textbook

import handgrad as hg

ORACLES = ("jax", "fd")  # SymPy is exercised by the property suite; these tests stay fast


def _case(spec: CaseSpec, dtype: str = "float64") -> tuple:
    return build_case(spec, dtype, filter_domain=False)


ARTICLE = CaseSpec((2, 3, 3, 1), ("sigmoid",) * 3, "squared_error", True, 3, "unit", 4)


def test_correct_backward_is_certified_with_per_tensor_numbers() -> None:
    net, p, X, Y = _case(ARTICLE)
    r = referee(net, p, X, Y, net.backward, oracles=ORACLES)
    assert r.ok and r.verdict == "certified"
    per = r.per_tensor()
    assert list(per) == net.param_names
    assert all(0 <= d["ratio"] <= 1 and d["max_abs"] < 1e-12 for d in per.values())


def test_mismatch_names_pair_tensor_element_and_values() -> None:
    net, p, X, Y = _case(ARTICLE)
    grads = net.backward(p, X, Y)
    grads["W2"] = grads["W2"].copy()
    grads["W2"][0, 1] += 1e-6
    r = referee(net, p, X, Y, grads, oracles=ORACLES, reproduce=ARTICLE.reproduce())
    assert r.verdict == "mismatch"
    assert [m.tensor for m in r.mismatches] == ["W2"]
    mm = r.mismatches[0]
    assert mm.element == "w_12^(2)" and mm.index == (0, 1) and mm.n_bad == 1
    assert set(mm.values) == {"hand", "JAX", "finite differences"}
    text = r.text()
    assert "dL/dw_12^(2)" in text and "handgrad.reference.build_case(CaseSpec(" in text


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda g: {k: v for k, v in g.items() if k != "B1"}, r"missing \['B1'\]"),
    (lambda g: {**g, "W9": g["W1"]}, r"unexpected \['W9'\]"),
    (lambda g: {**g, "W1": g["W1"].T}, r"grads\['W1'\] has shape \(2, 3\); expected \(3, 2\).*transposed"),
    (lambda g: {**g, "B2": g["B2"].ravel()}, r"grads\['B2'\] has shape \(3,\); expected \(3, 1\)"),
    (lambda g: {**g, "W3": g["W3"].tolist()}, r"grads\['W3'\] is a list"),
    (lambda g: list(g.values()), "backward returned list"),
    (lambda g: {**g, "W1": g["W1"].astype(int)}, r"grads\['W1'\] has dtype int"),
])
def test_malformed_grads_are_reported_in_words(mutate, message: str) -> None:
    net, p, X, Y = _case(ARTICLE)
    r = referee(net, p, X, Y, lambda pp, xx, yy: mutate(net.backward(pp, xx, yy)), oracles=ORACLES)
    assert r.verdict == "error" and not r.ok
    assert any(__import__("re").search(message, n) for n in r.notes), r.notes
    assert "Traceback" not in r.text()


def test_backward_that_raises_is_an_error_not_a_crash() -> None:
    net, p, X, Y = _case(ARTICLE)

    def broken(params, X, Y):
        return params["W1"] @ params["W2"]  # shape error inside the user's code

    r = referee(net, p, X, Y, broken, oracles=ORACLES)
    assert r.verdict == "error" and "backward raised ValueError" in r.notes[0]


def test_an_infinity_returned_by_both_calls_is_a_mismatch_not_nondeterminism() -> None:
    """inf - inf is NaN, so the determinism check once took the same inf from both calls for two
    different values: "nondeterministic backward ... first call inf, second call inf". Equal values
    are now the same, and the infinite gradient is the mismatch it is; two calls that really differ
    (inf, then a finite value) are still nondeterministic."""
    net, p, X, Y = _case(ARTICLE)
    calls = [0]

    def infinite(params, X, Y, flip=False):
        calls[0] += 1
        g = net.backward(params, X, Y)
        g["W1"] = g["W1"].copy()
        g["W1"][0, 0] = np.inf if not (flip and calls[0] % 2 == 0) else 1.0
        return g

    r = referee(net, p, X, Y, infinite, oracles=ORACLES)
    assert r.verdict == "mismatch", r.text()
    assert not any("nondeterministic" in n for n in r.notes)
    assert [(mm.tensor, mm.index) for mm in r.mismatches] == [("W1", (0, 0))]
    r = referee(net, p, X, Y, lambda params, X, Y: infinite(params, X, Y, flip=True), oracles=ORACLES)
    assert r.verdict == "error" and r.notes[0].startswith("nondeterministic backward"), r.text()


def test_backward_gets_copies_and_cannot_corrupt_the_case() -> None:
    net, p, X, Y = _case(ARTICLE)
    before = {k: v.copy() for k, v in p.items()}

    def vandal(params, X_, Y_):
        g = net.backward(params, X_, Y_)
        for v in params.values():
            v[...] = 0
        X_[...] = 0
        return g

    assert referee(net, p, X, Y, vandal, oracles=ORACLES).ok
    assert all(np.array_equal(before[k], p[k]) for k in p)


@pytest.mark.parametrize("scale", ["saturating", "large"])
def test_no_false_alarm_for_the_articles_textbook_derivative_at_saturation(scale: str) -> None:
    # a(1-a) loses all relative accuracy once sigma'(z) < u: rounding, not a bug.
    for seed in range(6):
        spec = CaseSpec((2, 3, 3, 1), ("sigmoid",) * 3, "squared_error", True, 4, scale, seed)
        net, p, X, Y = _case(spec)
        r = referee(net, p, X, Y, Textbook(["sigmoid"] * 3), oracles=ORACLES)
        assert r.verdict in ("certified", "inconclusive"), r.text()


def test_relu_exactly_at_the_kink_is_certified() -> None:
    net = hg.Network((2, 3, 1), ["relu", "identity"], "squared_error")
    p = {"W1": np.array([[1.0, -1.0], [0.5, 0.5], [0.0, 1.0]]), "B1": np.array([[0.0], [-1.0], [0.0]]),
         "W2": np.array([[1.0, 2.0, -1.0]]), "B2": np.zeros((1, 1))}
    X = np.array([[1.0, 2.0], [1.0, 0.0]])  # unit 1: z = 0 for sample 1; unit 2: z = 0 for sample 2
    Y = np.array([[0.5, -0.5]])
    r = referee(net, p, X, Y, net.backward, oracles=ORACLES)
    assert r.verdict == "certified", r.text()


def test_a_wrong_subgradient_at_the_kink_is_caught() -> None:
    net = hg.Network((2, 3, 1), ["relu", "identity"], "squared_error")
    p = {"W1": np.array([[1.0, -1.0], [0.5, 0.5], [0.0, 1.0]]), "B1": np.array([[0.0], [-1.0], [0.3]]),
         "W2": np.array([[1.0, 2.0, -1.0]]), "B2": np.zeros((1, 1))}
    X, Y = np.array([[1.0, 2.0], [1.0, 0.5]]), np.array([[0.5, -0.5]])

    def relu_prime_one_at_zero(params, X_, Y_):
        cache = net.forward(params, X_)
        d2 = 2 * (cache.a[2] - Y_) / X_.shape[1]
        g = params["W2"].T @ d2
        d1 = g * (cache.z[0] >= 0)  # relu'(0) = 1: not the convention, and not a subgradient choice JAX makes
        return {"W1": d1 @ X_.T, "B1": d1.sum(1, keepdims=True), "W2": d2 @ cache.a[1].T,
                "B2": d2.sum(1, keepdims=True)}

    r = referee(net, p, X, Y, relu_prime_one_at_zero, oracles=ORACLES)
    assert r.verdict == "mismatch" and r.mismatches[0].tensor in ("W1", "B1"), r.text()


def test_float32_hand_code_is_certified_against_its_own_budget() -> None:
    for seed in range(4):
        spec = CaseSpec((3, 3, 3, 1), ("tanh", "sigmoid", "sigmoid"), "squared_error", True, 3, "large", seed)
        net, p, X, Y = _case(spec, "float32")
        assert referee(net, p, X, Y, net.backward, oracles=ORACLES).verdict in ("certified", "inconclusive")


def test_float32_leaking_into_a_float64_backward_is_caught() -> None:
    net, p, X, Y = _case(ARTICLE)

    def leaky(params, X_, Y_):
        g = net.backward(params, X_, Y_)
        return {**g, "W1": g["W1"].astype(np.float32).astype(np.float64)}

    r = referee(net, p, X, Y, leaky, oracles=ORACLES)
    assert r.verdict == "mismatch" and r.mismatches[0].tensor == "W1" and r.mismatches[0].ratio > 1e3


def test_oracle_disagreement_is_inconclusive_and_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    import handgrad.reference.oracles.jax_oracle as jo

    net, p, X, Y = _case(ARTICLE)
    cls = type(jo.get_jax_oracle(net))

    def broken(real):
        def grads(self, params, X_, Y_):
            g = real(self, params, X_, Y_)
            g["B3"] = g["B3"] * 2
            return g
        return grads

    for method in ("grads", "grads_unchecked"):  # the public entry and the oracle table's
        if hasattr(cls, method):
            monkeypatch.setattr(cls, method, broken(getattr(cls, method)))
    r = referee(net, p, X, Y, net.backward, oracles=ORACLES)
    assert r.verdict == "inconclusive" and not r.ok
    assert any("oracles disagree" in n and "b_1^(3)" in n for n in r.notes), r.notes


def test_too_few_usable_references_is_inconclusive() -> None:
    net, p, X, Y = _case(ARTICLE)
    r = referee(net, p, X, Y, net.backward, oracles=ORACLES, min_oracles=3)
    assert r.verdict == "inconclusive" and "at least 3" in r.notes[-1]


_BAD_ORACLES = [
    ("jax", TypeError, r"oracles must be a sequence of oracle names .* got str 'jax'"),
    (("fd",), ValueError, r"oracles names 1 distinct oracle\(s\) \(fd\): a case needs at least 2"),
    (("jax", "jax"), ValueError, r"oracles names 1 distinct oracle\(s\)"),
    ((), ValueError, r"oracles names 0 distinct oracle\(s\) \(none\)"),
    (("jax", "torch"), ValueError, r"oracles has unknown oracle 'torch'; choose from sympy, jax, fd"),
]


@pytest.mark.parametrize(("oracles", "error", "match"), _BAD_ORACLES, ids=["str", "one", "twice", "none", "unknown"])
def test_referee_refuses_a_bad_choice_of_oracles_before_calling_the_backward(oracles, error, match) -> None:
    net, p, X, Y = _case(ARTICLE)
    calls = []
    with pytest.raises(error, match=match):
        referee(net, p, X, Y, lambda *a: calls.append(a), oracles=oracles)
    assert calls == []


@pytest.mark.parametrize(("oracles", "error", "match"), _BAD_ORACLES, ids=["str", "one", "twice", "none", "unknown"])
def test_certify_refuses_a_bad_choice_of_oracles_before_drawing(oracles, error, match) -> None:
    calls = []
    with pytest.raises(error, match=match):
        certify_backward(lambda *a: calls.append(a), (2, 3, 1), "sigmoid", oracles=oracles, examples=3)
    assert calls == []


def test_labels_come_from_the_oracle_table() -> None:
    from handgrad.reference.judge import referee as referee_module
    from handgrad.reference.oracles.table import ORACLES as TABLE_ORACLES
    from handgrad.reference.oracles.table import oracle_label

    assert referee_module.ORACLES is TABLE_ORACLES
    net, p, X, Y = _case(ARTICLE)
    r = referee(net, p, X, Y, net.backward, oracles=ORACLES)
    pairs = {c.pair for c in r.checks}
    assert pairs == {"finite differences vs JAX", "hand vs JAX", "hand vs finite differences"}
    assert oracle_label("fd") == "finite differences"


def test_renderings_text_markdown_json() -> None:
    net, p, X, Y = _case(ARTICLE)
    r = referee(net, p, X, Y, net.backward, oracles=ORACLES, reproduce=ARTICLE.reproduce())
    d = json.loads(r.to_json())
    assert d["ok"] is True and d["verdict"] == "certified" and len(d["checks"]) == 18
    md = r.markdown()
    assert md.startswith("### certified") and "| W1 | hand vs JAX |" in md
    assert "CERTIFIED" in r.text()


def test_certify_backward_reproduce_recipe_rebuilds_the_failing_case() -> None:
    from handgrad.reference import CertificationError

    def sign_flip(params, X, Y):
        net = hg.Network((2, 2, 1), ["tanh", "sigmoid"])
        return {k: -v for k, v in net.backward(params, X, Y).items()}

    with pytest.raises(CertificationError) as info:
        certify_backward(sign_flip, (2, 2, 1), ["tanh", "sigmoid"], examples=5, oracles=ORACLES)
    recipe = info.value.report.reproduce
    namespace: dict = {}
    exec("import handgrad.reference\nfrom handgrad.reference import CaseSpec\ncase = " + recipe, namespace)
    net, p, X, Y = namespace["case"]
    assert referee(net, p, X, Y, sign_flip, oracles=ORACLES).verdict == "mismatch"


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"backward": 3}, TypeError, "backward must be callable"),
    ({"examples": 0}, ValueError, "examples must be >= 1, got 0"),
    ({"examples": 2.5}, TypeError, "examples must be an int, got float"),
    ({"dtype": "float16"}, ValueError, "dtype must be 'float32' or 'float64'"),
    ({"scales": ["huge"]}, ValueError, "unknown scale 'huge'"),
    ({"min_batch": 0}, ValueError, "min_batch must be >= 1, got 0"),
    ({"min_batch": 4, "max_batch": 2}, ValueError, "max_batch must be >= 4, got 2"),
    ({"max_width": 0}, ValueError, "max_width must be >= 1, got 0"),
    ({"max_width": True}, TypeError, "max_width must be an int, got bool"),
    ({"sizes": (2, 0, 1)}, ValueError, r"sizes\[1\] is 0"),
    ({"activations": ["tanh"]}, ValueError, "has 1 entries"),
])
def test_certify_argument_validation(kwargs: dict, error: type, match: str) -> None:
    args = {"backward": lambda p, X, Y: p, "sizes": (2, 3, 1), "activations": "sigmoid"}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        certify_backward(args.pop("backward"), args.pop("sizes"), args.pop("activations"), **args)


def test_no_false_alarm_for_a_sigmoid_computed_through_tanh() -> None:
    # sigma(z) = (1 + tanh(z/2)) / 2 has only absolute accuracy u for z << 0 (it returns 0 where the
    # true value is 1e-18): float rounding of a textbook formula, not a bug.
    for seed in range(6):
        spec = CaseSpec((2, 3, 3, 1), ("sigmoid",) * 3, "squared_error", True, 4, "saturating", seed)
        net, p, X, Y = _case(spec)
        r = referee(net, p, X, Y, SigmoidViaTanh(["sigmoid"] * 3), oracles=ORACLES)
        assert r.verdict in ("certified", "inconclusive"), r.text()


def test_vary_shapes_draws_hidden_widths_and_keeps_input_and_output() -> None:
    seen: set[tuple[int, ...]] = set()
    textbook = Textbook(["tanh", "sigmoid"])

    def recording(params, X, Y):
        seen.add((X.shape[0], params["W1"].shape[0], Y.shape[0]))
        return textbook(params, X, Y)

    cert = certify_backward(recording, (3, 2, 1), ["tanh", "sigmoid"], examples=12, vary_shapes=True,
                            max_width=6, oracles=ORACLES)
    assert cert.ok
    assert {s[0] for s in seen} == {3} and {s[2] for s in seen} == {1}
    assert len({s[1] for s in seen}) >= 3 and all(1 <= s[1] <= 6 for s in seen)


WIDE = CaseSpec((13, 11, 1), ("tanh", "identity"), "squared_error", True, 2, "unit", 3)


@pytest.mark.parametrize(("index", "article"), [((0, 12), "w_1,13^(1)"), ((10, 2), "w_11,3^(1)")])
def test_mismatch_sentence_names_two_digit_elements_unambiguously(index: tuple[int, int], article: str) -> None:
    """W1[0, 12] and W1[10, 2] once both printed as w_113^(1); the comma rule tells them apart."""
    net, p, X, Y = _case(WIDE)
    grads = net.backward(p, X, Y)
    grads["W1"] = grads["W1"].copy()
    grads["W1"][index] += 1e-3
    r = referee(net, p, X, Y, grads, oracles=ORACLES)
    assert r.verdict == "mismatch"
    (mm,) = r.mismatches
    assert (mm.tensor, mm.index, mm.element) == ("W1", index, article)
    assert f"disagree on dL/d{article} (W1[{index[0]}, {index[1]}])" in mm.sentence()
    assert "(1 element of W1 over budget)" in mm.sentence()
    assert all(c.worst == article for c in r.checks if c.tensor == "W1" and not c.ok)


def test_the_case_is_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    net, p, X, Y = _case(ARTICLE)
    grads = net.backward(p, X, Y)
    calls = []
    real = hg.Network.check_params
    monkeypatch.setattr(hg.Network, "check_params", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    r = referee(net, p, X, Y, grads, oracles=ORACLES)
    assert r.ok and len(calls) == 1


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (2.0, TypeError), (True, TypeError)])
def test_min_oracles_is_a_positive_int(value: object, error: type) -> None:
    net, p, X, Y = _case(ARTICLE)
    with pytest.raises(error, match="min_oracles must be"):
        referee(net, p, X, Y, net.backward, oracles=ORACLES, min_oracles=value)
