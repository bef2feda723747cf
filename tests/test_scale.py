"""The scale path: directional finite differences, bisection, scale_referee, estimate_seconds."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from handgrad.reference.judge import scale
from handgrad.reference.judge.scale import calibrate, estimate_seconds, scale_referee
from handgrad.reference.judge.tolerance import error_budget
from handgrad.reference.oracles import directional as D
from handgrad.reference.oracles.jax_oracle import get_jax_oracle

import handgrad as hg


def _case(sizes, act="sigmoid", loss="squared_error", seed=0, m=4, scale_w=None):
    net = hg.Network(sizes, act, loss)
    rng = np.random.default_rng(seed)
    params = net.init(rng, weight_scale=scale_w) if scale_w is not None else net.init(rng)
    X = rng.standard_normal((sizes[0], m))
    if loss == "softmax_cross_entropy" or loss == "cross_entropy":
        Y = np.eye(sizes[-1])[:, rng.integers(sizes[-1], size=m)]
    else:
        Y = rng.uniform(0.05, 0.95, (sizes[-1], m))
    return net, params, X, Y


def _planted(grads, tensor, index, factor=1.001):
    out = {k: v.copy() for k, v in grads.items()}
    out[tensor][index] *= factor
    return out


# ---------------------------------------------------------------------------------------------
# Directions and the elementwise sample
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (5, 3), (4, 6), (256, 784), (10, 1)])
def test_sample_covers_every_row_and_column_once_per_element(shape):
    rows, cols = D.sample_elements(shape, np.random.default_rng(3))
    assert set(rows.tolist()) == set(range(shape[0]))
    assert set(cols.tolist()) == set(range(shape[1]))
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == rows.size  # distinct elements


def test_every_weight_element_is_in_one_row_and_one_column_direction_with_weight_at_least_one():
    net = hg.Network((5, 4, 3), "tanh", "squared_error")
    rng = np.random.default_rng(0)
    for family in (D.row_directions(net, rng), D.column_directions(net, rng)):
        seen = {}
        for d in family:
            for tensor, i, j, w in d.elements():
                assert (tensor, i, j) not in seen
                seen[(tensor, i, j)] = w
        assert len(seen) == net.n_params
        assert min(abs(w) for w in seen.values()) >= 1.0


def test_halves_split_by_tensor_then_row_then_column():
    net = hg.Network((6, 4, 2), "sigmoid", "squared_error")
    d = D.random_direction(net, np.random.default_rng(0))
    first = d.halves()
    assert [p.tensor for p in first[0].parts] == ["W1", "B1"]
    assert [p.tensor for p in first[1].parts] == ["W2", "B2"]
    (w1,) = D.tensor_directions(net, np.random.default_rng(1))[:1]
    by_rows = w1.halves()
    assert set(by_rows[0].parts[0].rows.tolist()) == {0, 1} and set(by_rows[1].parts[0].rows.tolist()) == {2, 3}
    row = D.row_directions(net, np.random.default_rng(2), ["W1"])[0]
    by_cols = row.halves()
    assert set(by_cols[0].parts[0].cols.tolist()) == {0, 1, 2} and set(by_cols[1].parts[0].cols.tolist()) == {3, 4, 5}


# ---------------------------------------------------------------------------------------------
# The error estimate is honest: |R(d) - d.g_JAX| <= E(d) + d.budget on random cases
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sizes", "act", "loss", "seed", "w"), [
    ((2, 3, 3, 1), "sigmoid", "squared_error", 0, None),
    ((5, 8, 3), "tanh", "squared_error", 1, None),
    ((6, 7, 4), "softplus", "softmax_cross_entropy", 2, None),
    ((4, 9, 2), "sigmoid", "bce", 3, 3.0),
    ((7, 6, 5, 3), "gelu", "squared_error", 4, None),
    ((30, 20, 10), "sigmoid", "softmax_cross_entropy", 5, None),
    ((3, 4, 1), "sigmoid", "squared_error", 6, 8.0),
])
def test_directional_error_estimate_bounds_the_true_error(sizes, act, loss, seed, w):
    net, params, X, Y = _case(sizes, act, loss, seed, scale_w=w)
    jax_g = get_jax_oracle(net).grads(params, X, Y)
    b64 = error_budget(net, params, X, Y).against(np.float64)
    rng = np.random.default_rng(seed)
    fwd = D.StackedForward(net, params, X, Y)
    dirs = scale.plan_directions(net, rng, n_random=3)
    res = fwd.derivatives(dirs)
    assert not res.kink.any()
    ratios = []
    for d, v, e in zip(dirs, res.value, res.error, strict=True):
        true_err = abs(v - d.dot(jax_g))
        allowance = e + d.abs_dot(b64) + scale._gamma(d.size) * d.abs_dot(jax_g)
        ratios.append(true_err / allowance)
    assert max(ratios) <= 1.0
    # The estimate is an estimate, not a blanket: the Richardson value is far closer than the scale.
    scales = np.array([d.abs_dot(jax_g) for d in dirs])
    assert np.median(res.error / np.maximum(scales, 1e-300)) < 1e-3


def test_rechecked_error_uses_the_bound_at_each_point():
    net, params, X, Y = _case((3, 5, 2), "sigmoid", "squared_error", 7)
    fwd = D.StackedForward(net, params, X, Y)
    d = D.random_direction(net, np.random.default_rng(0))
    res = fwd.derivatives([d])
    value, error = fwd.recheck(d, float(res.step[0]))
    assert value == pytest.approx(float(res.value[0]), rel=1e-12)
    assert np.isfinite(error) and error > 0


def test_kink_crossings_are_flagged_not_used():
    net = hg.Network((2, 3, 1), "relu", "squared_error")
    params = {"W1": np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), "B1": np.zeros((3, 1)),
              "W2": np.ones((1, 3)), "B2": np.zeros((1, 1))}
    X = np.array([[0.0], [1.0]])  # unit 1 sits exactly at its kink
    Y = np.array([[0.5]])
    fwd = D.StackedForward(net, params, X, Y)
    dirs = D.row_directions(net, np.random.default_rng(0), ["B1"])
    res = fwd.derivatives(dirs)
    assert res.kink.tolist() == [True, False, False]


# ---------------------------------------------------------------------------------------------
# Bisection pins a tensor, a row and a column (finite differences alone, no JAX)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tensor", "index"), [("W1", (3, 11)), ("W2", (0, 2)), ("B1", (7, 0)), ("W3", (1, 4))])
def test_bisection_pins_the_wrong_element_in_logarithmic_evaluations(tensor, index):
    net, params, X, Y = _case((16, 9, 5, 2), "tanh", "squared_error", 11)
    wrong = _planted(net.backward(params, X, Y), tensor, index, factor=1.01)
    budget = error_budget(net, params, X, Y).against(np.float64)
    pair = scale._Pair("hand", wrong, budget)
    fwd = D.StackedForward(net, params, X, Y)
    d = D.random_direction(net, np.random.default_rng(5))
    res = fwd.derivatives([d])
    assert pair.fails(d, float(res.value[0]), float(res.error[0]))
    pinned, path, evaluations = D.bisect(fwd, d, pair.fails)
    assert [(p.tensor, p.index) for p in pinned] == [(tensor, index)]
    true = net.backward(params, X, Y)[tensor][index]
    assert abs(pinned[0].fd - true) <= pinned[0].fd_error + budget[tensor][index]
    assert path[0] == d.label and len(path) >= 3
    assert evaluations <= 2 * (int(np.ceil(np.log2(net.n_params))) + 2)


# ---------------------------------------------------------------------------------------------
# scale_referee
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sizes", "act", "loss"), [
    ((2, 3, 3, 1), "sigmoid", "squared_error"),
    ((12, 10, 4), "tanh", "softmax_cross_entropy"),
    ((64, 32, 10), "sigmoid", "squared_error"),
    ((20, 16, 8, 1), "relu", "squared_error"),
])
def test_correct_backwards_are_certified(sizes, act, loss):
    net, params, X, Y = _case(sizes, act, loss, seed=2)
    report = scale_referee(net, params, X, Y, net.backward, seed=1)
    assert report.verdict == "certified", (report.notes, [c for c in report.checks if not c.ok])
    assert any("scale path: all" in n for n in report.notes)
    pairs = {c.pair for c in report.checks}
    assert pairs == {"hand vs JAX", "hand vs finite differences", "JAX vs finite differences"}


def test_a_bug_common_to_hand_and_jax_is_not_blamed_on_the_hand_code():
    net, params, X, Y = _case((5, 4, 2), "sigmoid", "squared_error", 3)
    report = scale_referee(net, params, X, Y, _planted(net.backward(params, X, Y), "W2", (1, 1)))
    assert report.verdict == "mismatch"
    # With JAX's own gradient wrong the same way, the oracles disagree: inconclusive.
    oracle = get_jax_oracle(net)
    real = oracle.grads

    def wrong_jax(p, x, y):
        return _planted(real(p, x, y), "W2", (1, 1))

    oracle.grads = wrong_jax  # type: ignore[method-assign]
    try:
        report = scale_referee(net, params, X, Y, _planted(net.backward(params, X, Y), "W2", (1, 1)))
    finally:
        del oracle.grads
    assert report.verdict == "inconclusive"
    assert any("the oracles disagree" in n and "w_22^(2)" in n for n in report.notes)


def test_bad_arguments_and_bad_providers():
    net, params, X, Y = _case((3, 2, 1), "sigmoid", "squared_error", 0)
    with pytest.raises(ValueError, match="n_random"):
        scale_referee(net, params, X, Y, net.backward, n_random=-1)

    def boom(p, x, y):
        raise RuntimeError("no")

    assert scale_referee(net, params, X, Y, boom).verdict == "error"
    bad = {k: v.T.copy() for k, v in net.backward(params, X, Y).items()}
    report = scale_referee(net, params, X, Y, bad)
    assert report.verdict == "error" and "transposed?" in report.notes[0]


def test_planted_bug_in_one_element_of_a_235k_parameter_net_is_caught_and_named():
    net, params, X, Y = _case((784, 256, 128, 10), "sigmoid", "squared_error", 0)
    wrong = _planted(net.backward(params, X, Y), "W1", (100, 300), factor=1.01)
    report = scale_referee(net, params, X, Y, wrong)
    assert report.verdict == "mismatch"
    (mm,) = report.mismatches
    assert (mm.pair, mm.tensor, mm.index, mm.element) == ("hand vs JAX", "W1", (100, 300), "w_101,301^(1)")
    assert mm.n_bad == 1
    # Finite differences name it too, independently of JAX, by bisection.
    note = next(n for n in report.notes if n.startswith("finite differences, independently of JAX"))
    assert "pinned w_101,301^(1)" in note
    failing = [c for c in report.checks if c.pair == "hand vs finite differences" and not c.ok]
    assert [c.tensor for c in failing] == ["W1"]


# ---------------------------------------------------------------------------------------------
# estimate_seconds and calibrate (fake clock)
# ---------------------------------------------------------------------------------------------


class FakeClock:
    """Each workload (two calls) seems to take ``lap`` seconds."""

    def __init__(self, lap: float) -> None:
        self.t = 0.0
        self.lap = lap
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        if self.calls % 2 == 0:
            self.t += self.lap
        return self.t


def test_calibrate_scales_the_costs_by_the_measured_speed():
    reference = calibrate(FakeClock(scale._REFERENCE_SECONDS))
    slow = calibrate(FakeClock(3 * scale._REFERENCE_SECONDS))
    assert asdict(reference) == pytest.approx(asdict(scale.COSTS), rel=1e-12)
    assert slow.mac == pytest.approx(3 * scale.COSTS.mac)
    sizes = (784, 256, 128, 10)
    assert estimate_seconds(sizes, 10, 4, costs=slow) == pytest.approx(3 * estimate_seconds(sizes, 10, 4))


def test_estimate_grows_with_examples_size_and_batch_and_counts_compile_once():
    one = estimate_seconds((64, 256, 128, 10), 1, 4)
    ten = estimate_seconds((64, 256, 128, 10), 10, 4)
    once = scale.COSTS.jax_compile + scale.COSTS.jax_compile_per_param * 50_826
    assert ten - once == pytest.approx(10 * (one - once))
    assert estimate_seconds((784, 256, 128, 10), 1, 4) > one
    assert estimate_seconds((64, 256, 128, 10), 1, 8) > one
    assert estimate_seconds((2, 3, 3, 1), 30, 4, ("sympy", "jax")) > estimate_seconds((2, 3, 3, 1), 30, 4, ("jax",))
    # The classic elementwise path costs far more than the scale path at 50k parameters.
    assert (estimate_seconds((64, 256, 128, 10), 1, 4, path="classic")
            > 5 * estimate_seconds((64, 256, 128, 10), 1, 4, path="scale"))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(sizes=(3,), examples=1, m=1), ValueError, "sizes"),
    (dict(sizes=(3, 0), examples=1, m=1), ValueError, "sizes"),
    (dict(sizes=(3, 2), examples=0, m=1), ValueError, "examples"),
    (dict(sizes=(3, 2), examples=1, m=True), TypeError, "m must"),  # a bool is not a count
    (dict(sizes=(3, 2), examples=1, m=1, path="fast"), ValueError, "path"),
])
def test_estimate_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        estimate_seconds(**kwargs)


def test_long_run_warning_above_the_threshold_only():
    slow = calibrate(FakeClock(1000 * scale._REFERENCE_SECONDS))  # a machine 1000x slower
    assert scale.long_run_warning((2, 3, 3, 1), 5, 4) is None
    text = scale.long_run_warning((784, 256, 128, 10), 30, 4, costs=slow)
    assert text is not None and "784-256-128-10 over 30 cases" in text and "--yes" in text
    assert scale.long_run_warning((784, 256, 128, 10), 30, 4, costs=slow, threshold=1e9) is None


def test_direction_set_dots_match_each_direction():
    net, params, X, Y = _case((7, 5, 3), "tanh", "squared_error", 9)
    g = net.backward(params, X, Y)
    dirs = scale.plan_directions(net, np.random.default_rng(4))
    dirs += D.row_directions(net, np.random.default_rng(5), ["W1"])[0].halves()
    dset = D.DirectionSet(dirs)
    assert np.allclose(dset.dots(g), [d.dot(g) for d in dirs], rtol=1e-13, atol=1e-300)
    assert np.allclose(dset.dots(g, absolute=True), [d.abs_dot(g) for d in dirs], rtol=1e-13, atol=1e-300)


def test_an_oracle_that_declines_makes_the_case_inconclusive():
    net, params, X, Y = _case((3, 4, 2), "sigmoid", "squared_error", 8)
    oracle = get_jax_oracle(net)

    def overflow(p, x, y):
        raise ArithmeticError("JAX: the loss is inf")

    oracle.grads = overflow  # type: ignore[method-assign]
    try:
        report = scale_referee(net, params, X, Y, net.backward)
    finally:
        del oracle.grads
    assert report.verdict == "inconclusive"
    assert report.notes[-1] == "a reference could not be computed: ArithmeticError: JAX: the loss is inf"
