r"""The SymPy oracle against handgrad: forward, loss and gradients, every activation and loss; the
high-precision evaluation; kinks; the size limit; LaTeX in the article's notation.

Tolerances are derived, never guessed:

* gradients, hand vs SymPy: :math:`|g_{SymPy} - g_{hand}| \le 2u\,K M` per element, the referee's
  budget (:func:`handgrad.reference.judge.tolerance.error_budget`, ``against(float64)``): K is the path constant
  and M the running-error magnitude of the gradient element (``docs/tolerances.md``);
* forward: the same budget's ``forward_budget(float64)``;
* loss: the oracle and the finite-difference module evaluate the same definitions, each within the
  running error bound :math:`\epsilon` of :func:`handgrad.reference.oracles.finite_diff.loss_rounding_bound` of the
  exact loss (the oracle in longdouble, tighter still), so they differ by at most :math:`2\epsilon`;
* ``grads`` vs ``grads_mp``: ``grads_mp`` is the exact value correctly rounded (error
  :math:`\le u|g|`, 40 digits carried); ``grads`` evaluates the same closed forms in the oracle's
  evaluation dtype (unit roundoff :math:`u_e`: :math:`2^{-64}` for x86 longdouble) and rounds to
  float64, so by the same running-error model it is within :math:`u_e K M + u|g|` of exact. Their
  difference is at most :math:`u_e K M + 2u|g|` (plus the subnormal floor ``K * tiny``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sympy as sp
from _oracle_cases import BAD_INPUTS, activation_cases, draw, loss_cases, within
from handgrad.reference import CaseSpec, build_case, numerics, referee
from handgrad.reference.judge.tolerance import error_budget
from handgrad.reference.oracles.finite_diff import definition_loss, loss_rounding_bound
from handgrad.reference.oracles.sympy_oracle import (
    _EVAL_DTYPE,
    SYMPY_MAX_NODES,
    SYMPY_MAX_PARAMS,
    NonFiniteError,
    SympyOracle,
    SympyTooLarge,
    estimated_nodes,
    get_sympy_oracle,
    sympy_grads,
)

import handgrad as hg

U64 = numerics.U64
U_EVAL = float(np.finfo(_EVAL_DTYPE).eps) / 2


def _assert_matches_hand(net: hg.Network, params: dict, X: np.ndarray, Y: np.ndarray) -> None:
    oracle = get_sympy_oracle(net)
    budget = error_budget(net, params, X, Y)
    yhat = oracle.forward(params, X)
    assert yhat.dtype == np.float64 and yhat.shape == (net.sizes[-1], X.shape[1])
    fwd = np.abs(yhat - net.predict(params, X)) / budget.forward_budget(np.float64)
    assert fwd.max() <= 1, f"forward off by {fwd.max():.3g} budgets"

    loss = oracle.loss(params, X, Y)
    assert isinstance(loss, float)
    assert abs(loss - definition_loss(net, params, X, Y)) <= 2 * loss_rounding_bound(net, params, X, Y)

    grads = oracle.grads(params, X, Y)
    hand = net.backward(params, X, Y)
    assert list(grads) == net.param_names
    for k, g in grads.items():
        assert g.dtype == np.float64 and g.shape == net.param_shapes[k]
    ratios = within({k: grads[k] - hand[k] for k in grads}, budget.against(np.float64))
    assert max(ratios.values()) <= 1, f"SymPy vs hand, |diff|/budget per tensor: {ratios}"


def _assert_mp_agrees(net: hg.Network, params: dict, X: np.ndarray, Y: np.ndarray) -> None:
    oracle = get_sympy_oracle(net)
    budget = error_budget(net, params, X, Y)
    f64, mp = oracle.grads(params, X, Y), oracle.grads_mp(params, X, Y, dps=40)
    floor = budget.K * np.finfo(np.float64).tiny
    for k in f64:
        allowed = U_EVAL * budget.K * budget.magnitude[k] + 2 * U64 * np.abs(mp[k]) + floor
        assert np.all(np.abs(f64[k] - mp[k]) <= allowed), (k, np.max(np.abs(f64[k] - mp[k]) / allowed))


# -- every registered activation and loss (the registries drive the tables) --------------------

@pytest.mark.parametrize("net", activation_cases())
def test_matches_handgrad_for_every_activation(net: hg.Network) -> None:
    for m in (1, 5):
        _assert_matches_hand(net, *draw(net, seed=m, m=m))


@pytest.mark.parametrize("net", loss_cases())
def test_matches_handgrad_for_every_loss(net: hg.Network) -> None:
    for m in (1, 5):
        _assert_matches_hand(net, *draw(net, seed=10 + m, m=m))


ARCHS = [  # (sizes, activations, loss, fuse)
    ((2, 3, 3, 1), ("sigmoid",) * 3, "squared_error", True),           # the article's net
    ((3, 3, 3), ("tanh", "sigmoid"), "squared_error", True),            # square: a transpose shows
    ((3, 4, 3), ("relu", "softmax"), "cross_entropy", True),
    ((3, 4, 3), ("relu", "softmax"), "cross_entropy", False),
    ((2, 3, 1), ("elu", "sigmoid"), "bce", True),
    ((2, 3, 1), ("gelu", "sigmoid"), "bce", False),
]


def _arch_id(a: tuple) -> str:
    return f"{'-'.join(map(str, a[0]))}-{'/'.join(a[1])}-{a[2]}{'' if a[3] else '-unfused'}"


@pytest.mark.parametrize("arch", ARCHS, ids=_arch_id)
@pytest.mark.parametrize("scale", ["unit", "large"])
def test_fixed_architectures_match_handgrad_and_mp(arch: tuple, scale: str) -> None:
    net, p, X, Y = build_case(CaseSpec(*arch, 4, scale, 7), filter_domain=False)
    _assert_matches_hand(net, p, X, Y)
    _assert_mp_agrees(net, p, X, Y)


def test_mp_agrees_at_saturation() -> None:
    net, p, X, Y = build_case(CaseSpec((3, 3, 3, 1), ("tanh", "sigmoid", "sigmoid"), "bce", True, 3,
                                       "saturating", 2), filter_domain=False)
    _assert_matches_hand(net, p, X, Y)
    _assert_mp_agrees(net, p, X, Y)


def test_article_example_point() -> None:
    net = hg.article_network()
    params = net.article_init(np.random.RandomState(0))
    _assert_matches_hand(net, params, hg.ARTICLE_X, hg.ARTICLE_LABEL)
    _assert_mp_agrees(net, params, hg.ARTICLE_X, hg.ARTICLE_LABEL)


def test_batch_gradient_is_the_mean_of_per_sample_gradients() -> None:
    net = hg.article_network()
    p, X, Y = draw(net, seed=3, m=4)
    o = get_sympy_oracle(net)
    whole = o.grads_mp(p, X, Y)
    singles = [o.grads_mp(p, X[:, [s]], Y[:, [s]]) for s in range(4)]
    for k in whole:
        mean = np.mean([g[k] for g in singles], axis=0)  # four correctly rounded terms, rounded sum
        np.testing.assert_allclose(whole[k], mean, rtol=8 * U64, atol=4 * U64 * np.max(np.abs(whole[k])))


def test_float32_params_are_computed_in_float64() -> None:
    net = hg.article_network()
    p32, X32, Y32 = draw(net, seed=5, m=3, dtype=np.float32)
    o = get_sympy_oracle(net)
    g32 = o.grads(p32, X32, Y32)
    g64 = o.grads({k: v.astype(np.float64) for k, v in p32.items()}, X32.astype(np.float64), Y32.astype(np.float64))
    for k in g32:
        assert g32[k].dtype == np.float64
        np.testing.assert_array_equal(g32[k], g64[k])


# -- independence: definitions only ------------------------------------------------------------

def _raise(*args: Any) -> Any:
    raise AssertionError("the SymPy oracle called handgrad's numpy forward or derivative")


def test_never_calls_handgrad_forward_or_derivative() -> None:
    sig = hg.get_activation("sigmoid")
    probe = hg.register_activation(hg.Activation("sigmoid_probe", sig.definition, forward=_raise, derivative=_raise))
    try:
        net = hg.Network((2, 3, 1), ["sigmoid_probe", "sigmoid"], "squared_error")
        ref = hg.Network((2, 3, 1), ["sigmoid", "sigmoid"], "squared_error")
        p, X, Y = draw(net, seed=1, m=3)
        o = SympyOracle(net)
        np.testing.assert_array_equal(o.forward(p, X), get_sympy_oracle(ref).forward(p, X))
        g, h = o.grads(p, X, Y), ref.backward(p, X, Y)
        b = error_budget(ref, p, X, Y).against(np.float64)
        assert max(within({k: g[k] - h[k] for k in g}, b).values()) <= 1
    finally:
        hg.unregister_activation(probe.name)


def test_closed_form_is_the_derivative_of_the_composite() -> None:
    # SymPy's own diff of the composite loss expression equals the oracle's closed form (checked
    # at a random exact point): the oracle differentiates the composite, nothing else.
    net = hg.Network((2, 2, 1), ["tanh", "sigmoid"], "squared_error")
    o = SympyOracle(net)
    rng = np.random.default_rng(0)
    point = {s: sp.Rational(int(v), 7) for s, v in zip(
        o._param_syms + list(o.symbols["X"].ravel()) + list(o.symbols["Y"].ravel()),
        rng.integers(-7, 8, size=len(o._param_syms) + 3), strict=True)}
    for name in net.param_names:
        w = o.symbols[name][0, 0]
        mine = o.grad_expr(name, 1, 1).evalf(40, subs=point)
        theirs = sp.diff(o.loss_expr, w).evalf(40, subs=point)
        assert abs(mine - theirs) <= 1e-30 * (1 + abs(theirs))
    assert o.grad_exprs["W2"].shape == (1, 2) and o.yhat_exprs.shape == (1, 1)


# -- kinks -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [("relu", 0.0), ("leaky_relu", 0.01), ("elu", 1.0)])
def test_kink_at_exactly_zero_takes_the_left_branch(name: str, expected: float) -> None:
    net = hg.Network((1, 1, 1), [name, "identity"], "squared_error")
    p = {"W1": np.array([[1.0]]), "B1": np.array([[-1.0]]), "W2": np.array([[2.0]]), "B2": np.array([[0.5]])}
    X, Y = np.array([[1.0]]), np.array([[0.0]])  # z1 = 1*1 - 1 = 0 exactly, a1 = 0, yhat = 0.5
    o = get_sympy_oracle(net)
    for g in (o.grads(p, X, Y), o.grads_mp(p, X, Y)):
        # dL/db1 = 2 (yhat - y) w2 f'(0) = 2 f'(0); dL/dw1 = dL/db1 * x
        assert g["B1"][0, 0] == 2.0 * expected and g["W1"][0, 0] == 2.0 * expected
    hand = net.backward(p, X, Y)
    assert hand["B1"][0, 0] == 2.0 * expected


def test_branch_conditions_stay_on_placeholders() -> None:
    # A deep ReLU net: SymPy would fold nested Piecewise conditions into 2^n branches.
    t0 = time.perf_counter()
    net = hg.Network((3, 3, 3, 3, 3, 1), "relu", "squared_error")
    o = SympyOracle(net)
    g = o.grad_expr("W1", 1, 1)
    assert time.perf_counter() - t0 < 5
    conds = [c for pw in g.atoms(sp.Piecewise) for _, c in pw.args if c is not sp.true]
    assert conds and all(not c.has(sp.Piecewise) for c in conds)
    assert {s.name for c in conds for s in c.free_symbols} <= {
        s.name for l in range(1, 6) for s in o.symbols[f"Z{l}"].ravel()}


# -- the size limit ----------------------------------------------------------------------------

def test_declines_beyond_the_size_limit() -> None:
    big = hg.Network((8, 8, 8, 8, 8, 8), "sigmoid")
    assert estimated_nodes(big) > SYMPY_MAX_NODES and not SympyOracle.applicable(big)
    assert "size limit" in SympyOracle.decline_reason(big)
    with pytest.raises(SympyTooLarge, match="size limit"):
        SympyOracle(big)
    with pytest.raises(ValueError, match="SYMPY_MAX_NODES"):  # SympyTooLarge is a ValueError
        get_sympy_oracle(big)
    wide = hg.Network((SYMPY_MAX_PARAMS, 1), "identity")
    with pytest.raises(SympyTooLarge, match="SYMPY_MAX_PARAMS"):
        get_sympy_oracle(wide)
    small = hg.article_network()
    assert SympyOracle.applicable(small) and SympyOracle.decline_reason(small) is None


def test_build_time_limit_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    import handgrad.reference.oracles.sympy_oracle as so

    monkeypatch.setattr(so, "SYMPY_HARD_NODES", 50)
    net = hg.Network((2, 3, 3, 2), ["gelu", "gelu", "softmax"], "cross_entropy", fuse=False)
    for _ in range(2):
        with pytest.raises(SympyTooLarge, match="SYMPY_HARD_NODES"):
            get_sympy_oracle(net)
    assert isinstance(so._CACHE.peek(net), SympyTooLarge)
    so._CACHE.forget(net)
    assert so._CACHE.peek(net) is None


def test_referee_notes_the_decline() -> None:
    net = hg.Network((8, 8, 8, 8, 8, 8), "sigmoid")
    p, X, Y = draw(net, seed=0, m=2)
    report = referee(net, p, X, Y, net.backward, oracles=("sympy", "jax"), min_oracles=1)
    assert report.ok
    assert any("SymPy oracle not used" in n and "size limit" in n for n in report.notes)


# -- numerics ----------------------------------------------------------------------------------

def test_overflow_in_the_definition_falls_back_to_mpmath() -> None:
    # softplus(z) = log(1 + e^z) at z = 20000: e^z overflows even in longdouble, the closed forms
    # are recomputed with mpmath and come out right (softplus' = sigmoid = 1 in float64).
    net = hg.Network((1, 1), "softplus", "squared_error")
    p = {"W1": np.array([[1.0]]), "B1": np.array([[0.0]])}
    X, Y = np.array([[20000.0], ]), np.array([[19999.0]])
    g = get_sympy_oracle(net).grads(p, X, Y)
    hand = net.backward(p, X, Y)
    assert g["B1"][0, 0] == hand["B1"][0, 0] == 2.0
    assert g["W1"][0, 0] == hand["W1"][0, 0] == 40000.0


def test_a_loss_that_is_singular_even_at_80_digits_raises() -> None:
    # Unfused BCE with p = sigmoid(300) = 1 - 5e-131: log(1 - p) needs more than 80 digits.
    net = hg.Network((1, 1), "sigmoid", "bce", fuse=False)
    p = {"W1": np.array([[1.0]]), "B1": np.array([[0.0]])}
    with pytest.raises(NonFiniteError, match="digits"):
        get_sympy_oracle(net).grads(p, np.array([[300.0]]), np.array([[0.5]]))


# -- LaTeX in the article's notation -----------------------------------------------------------

def test_latex_reads_like_the_article() -> None:
    o = get_sympy_oracle(hg.article_network())
    tex = o.latex("W3", 1, 1)
    lhs, rhs = tex.split(" = ")
    assert lhs == r"\frac{\partial L}{\partial w_{11}^{(3)}}"
    # 2 (yhat - y) yhat (1 - yhat) x_31, in whatever order SymPy prints the factors
    for piece in [r"\left(\hat y - y\right)", r"\left(1 - \hat y\right)", "x_{31}", "2 "]:
        assert piece in rhs
    assert "e^" not in rhs and "z_" not in rhs and r"\frac" not in rhs
    factors = rhs.replace(r"\left(\hat y - y\right)", "").replace(r"\left(1 - \hat y\right)", "")
    assert factors.split() == ["2", r"\hat", "y", "x_{31}"]
    inner = o.latex("W2", 1, 2)  # the chain through x_31: w_11^(3) x_31 (1 - x_31) x_22
    for piece in ["w_{11}^{(3)}", r"\left(1 - x_{31}\right)", "x_{22}", r"\left(1 - \hat y\right)"]:
        assert piece in inner
    assert r"\partial b_{2}^{(1)}" in o.latex("B1", 2)
    assert "e^" not in o.latex("W1", 2, 1)


def test_latex_of_kinked_and_multi_output_nets() -> None:
    relu = get_sympy_oracle(hg.Network((2, 2, 1), ["relu", "identity"], "squared_error"))
    tex = relu.latex("W1", 1, 2)
    assert r"\begin{cases}" in tex and "z_{1}^{(1)} > 0" in tex and r"\left(\hat y - y\right)" in tex
    soft = get_sympy_oracle(hg.Network((2, 2, 2), ["tanh", "softmax"], "cross_entropy"))
    assert r"\hat y_{1}" in soft.latex("B2", 1) and r"\left(1 - x_{21}^{2}\right)" in soft.latex("W1", 1, 1)


@pytest.mark.parametrize(("args", "error", "message"), [
    (("W4", 1, 1), ValueError, r"name must be one of \['W1'"),
    (("W3", 2, 1), ValueError, r"i must be in 1..1 and j in 1..3"),
    (("W3", 1, 0), ValueError, r"j must be >= 1, got 0"),
    (("W3", 1, 4), ValueError, r"got i=1, j=4"),
    (("B3", 1.0), TypeError, "i must be an int"),
    (("B3", True), TypeError, "i must be an int, got bool"),
])
def test_latex_rejects_bad_arguments(args: tuple, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        get_sympy_oracle(hg.article_network()).latex(*args)


# -- symbols, registry, cache, validation ------------------------------------------------------

def test_symbols_are_in_article_notation() -> None:
    o = get_sympy_oracle(hg.article_network())
    names = {k: [str(s) for s in v.ravel()] for k, v in o.symbols.items()}
    assert names["W2"][1] == "w_{12}^{(2)}" and names["B3"] == ["b_{1}^{(3)}"]
    assert names["X"] == ["x_{11}", "x_{12}"] and names["Y"] == ["y"]
    assert names["A1"] == ["x_{21}", "x_{22}", "x_{23}"] and names["A3"] == [r"\hat y"]
    assert names["Z2"] == ["z_{1}^{(2)}", "z_{2}^{(2)}", "z_{3}^{(2)}"]
    wide = SympyOracle(hg.Network((10, 2), "identity"))
    assert str(wide.symbols["W1"][1, 9]) == "w_{2,10}^{(1)}" and str(wide.symbols["X"][9, 0]) == "x_{1,10}"
    assert [str(s) for s in wide.symbols["Y"].ravel()] == ["y_{1}", "y_{2}"]


@pytest.fixture
def softsign() -> Iterator[str]:
    def definition(z: Any, ops: hg.Ops) -> Any:
        return ops.where(z > 0, z / (1 + z), z / (1 - z))

    def derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.abs(z)) ** 2

    hg.register_activation(hg.Activation("softsign_sympy_test", definition, derivative=derivative, kinks=(0.0,)))
    yield "softsign_sympy_test"
    hg.unregister_activation("softsign_sympy_test")


def test_user_activation_needs_no_change_to_reference(softsign: str) -> None:
    net = hg.Network((3, 3, 2), [softsign, "identity"], "squared_error")
    for seed in range(3):
        _assert_matches_hand(net, *draw(net, seed=seed, m=4))
    assert SympyOracle.applicable(net)
    # z = 1 exactly: the untaken branch z / (1 - z) divides by zero, which must not matter.
    one = hg.Network((1, 1, 1), [softsign, "identity"], "squared_error")
    p = {"W1": np.array([[1.0]]), "B1": np.array([[0.0]]), "W2": np.array([[1.0]]), "B2": np.array([[0.0]])}
    X, Y = np.array([[1.0]]), np.array([[0.0]])
    with np.errstate(divide="ignore"):  # handgrad evaluates this definition with numpy, both branches
        hand = one.backward(p, X, Y)  # yhat = 1/2: dL/db1 = 2 (1/2) (1/4), dL/dw2 = 2 (1/2) (1/2)
    o = get_sympy_oracle(one)
    for g in (o.grads(p, X, Y), o.grads_mp(p, X, Y)):
        assert g["B1"][0, 0] == hand["B1"][0, 0] == 0.25 and g["W2"][0, 0] == hand["W2"][0, 0] == 0.5


def test_cache_per_architecture_and_fresh_definitions() -> None:
    a = get_sympy_oracle(hg.Network((2, 3, 1), "sigmoid", "bce"))
    assert get_sympy_oracle(hg.Network((2, 3, 1), "sigmoid", "bce")) is a
    assert get_sympy_oracle(hg.Network((2, 3, 1), "sigmoid", "bce", fuse=False)) is not a

    def double(z: Any, ops: hg.Ops) -> Any:
        return 2 * z

    def triple(z: Any, ops: hg.Ops) -> Any:
        return 3 * z

    hg.register_activation(hg.Activation("scale_sympy_test", double, derivative=lambda z, a: 2 + 0 * z))
    try:
        net = hg.Network((1, 1), "scale_sympy_test")
        p, X = {"W1": np.array([[1.0]]), "B1": np.array([[0.0]])}, np.array([[1.0]])
        assert get_sympy_oracle(net).forward(p, X)[0, 0] == 2.0
        hg.register_activation(hg.Activation("scale_sympy_test", triple, derivative=lambda z, a: 3 + 0 * z),
                               replace=True)
        assert get_sympy_oracle(hg.Network((1, 1), "scale_sympy_test")).forward(p, X)[0, 0] == 3.0
    finally:
        hg.unregister_activation("scale_sympy_test")


def test_convenience_function() -> None:
    net = hg.article_network()
    p, X, Y = draw(net, seed=2, m=2)
    g = sympy_grads(net, p, X, Y)
    for k, v in get_sympy_oracle(net).grads(p, X, Y).items():
        np.testing.assert_array_equal(g[k], v)


@pytest.mark.parametrize(("make", "error", "message"), BAD_INPUTS)
def test_bad_input_is_rejected_like_handgrad(make: Any, error: type, message: str) -> None:
    net = hg.article_network()
    p, X, Y = draw(net, seed=0, m=3)
    p, X, Y = make(p, X, Y)
    o = get_sympy_oracle(net)
    for call in (lambda: o.grads(p, X, Y), lambda: o.grads_mp(p, X, Y), lambda: o.loss(p, X, Y)):
        with pytest.raises(error, match=message):
            call()


def test_bad_arguments() -> None:
    net = hg.article_network()
    p, X, Y = draw(net, seed=0, m=1)
    o = get_sympy_oracle(net)
    with pytest.raises(TypeError, match=r"net must be a handgrad\.Network"):
        SympyOracle("2-3-3-1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dps must be >= 16, got 10"):
        o.grads_mp(p, X, Y, dps=10)
    with pytest.raises(TypeError, match=r"dps must be an int, got float"):
        o.grads_mp(p, X, Y, dps=40.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Y must be a numpy\.ndarray"):
        o.grads(p, X, None)  # type: ignore[arg-type]


def test_docstring_examples_run() -> None:
    import doctest

    import handgrad.reference.oracles.sympy_oracle as so

    result = doctest.testmod(so, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 4
