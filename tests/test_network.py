"""The network: shapes, forward/backward against central differences, dtypes, the batch convention."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import handgrad as hg

SMOOTH = ["identity", "sigmoid", "tanh", "softplus", "silu", "gelu"]


@st.composite
def smooth_problems(draw: st.DrawFn) -> tuple[hg.Network, hg.Params, np.ndarray, np.ndarray]:
    depth = draw(st.integers(1, 3))
    sizes = tuple(draw(st.lists(st.integers(1, 4), min_size=depth + 1, max_size=depth + 1)))
    acts = [draw(st.sampled_from(SMOOTH)) for _ in range(depth)]
    net = hg.Network(sizes, acts, "squared_error")
    m = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    params = net.init(rng, bias_scale=0.5)
    return net, params, rng.standard_normal((sizes[0], m)), rng.standard_normal((sizes[-1], m))


def test_shapes_of_everything() -> None:
    net = hg.Network((2, 3, 3, 1))
    assert net.param_shapes == {"W1": (3, 2), "B1": (3, 1), "W2": (3, 3), "B2": (3, 1), "W3": (1, 3), "B3": (1, 1)}
    params = net.init(np.random.default_rng(0))
    cache = net.forward(params, np.ones((2, 5)))
    assert [z.shape for z in cache.z] == [(3, 5), (3, 5), (1, 5)]
    assert [a.shape for a in cache.a] == [(2, 5), (3, 5), (3, 5), (1, 5)]
    grads = net.backward(params, np.ones((2, 5)), np.zeros((1, 5)))
    assert {k: v.shape for k, v in grads.items()} == net.param_shapes


# Central differences of the float64 loss, h = 1e-6 * max(1, |w|). Truncation h^2 |L'''|/6 and
# rounding ~ 4 eps |L| / h. With |w| <= ~4, |x| <= ~4 and these smooth activations (|f'''| <= 1)
# in at most 3 layers, |L'''| stays below ~1e3 and |L| below ~1e2, giving < 2e-9 + 9e-8. The
# check is relative to the gradient's scale: atol 1e-6 * max(1, max|g|).
@given(problem=smooth_problems())
def test_backward_matches_central_differences(problem: tuple) -> None:
    net, params, X, Y = problem
    grads = net.backward(params, X, Y)
    scale = max(1.0, max(float(np.max(np.abs(g))) for g in grads.values()))
    for name, w in params.items():
        for idx in np.ndindex(*w.shape):
            h = 1e-6 * max(1.0, abs(w[idx]))
            up = {k: v.copy() for k, v in params.items()}
            dn = {k: v.copy() for k, v in params.items()}
            up[name][idx] += h
            dn[name][idx] -= h
            fd = (net.loss_value(up, X, Y) - net.loss_value(dn, X, Y)) / (2 * h)
            assert abs(grads[name][idx] - fd) <= 1e-6 * scale, (net.describe(), name, idx)


def test_batch_gradient_is_mean_of_sample_gradients() -> None:
    net = hg.Network((3, 4, 2), ["tanh", "sigmoid"], "squared_error")
    rng = np.random.default_rng(1)
    params = net.init(rng, bias_scale=0.3)
    X, Y = rng.standard_normal((3, 5)), rng.standard_normal((2, 5))
    batch = net.backward(params, X, Y)
    per = [net.backward(params, X[:, i:i + 1], Y[:, i:i + 1]) for i in range(5)]
    for k in batch:
        np.testing.assert_allclose(batch[k], sum(p[k] for p in per) / 5, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(dtype: type) -> None:
    net = hg.Network((2, 3, 1), "tanh", "squared_error")
    params = net.init(np.random.default_rng(0), dtype=dtype)
    loss, grads = net.loss_and_grads(params, np.ones((2, 2), dtype), np.zeros((1, 2), dtype))
    assert np.asarray(loss).dtype == dtype
    assert all(g.dtype == dtype for g in grads.values())


def test_inputs_are_not_modified() -> None:
    net = hg.Network((2, 2, 1))
    params = net.init(np.random.default_rng(0))
    before = {k: v.copy() for k, v in params.items()}
    X, Y = np.ones((2, 3)), np.zeros((1, 3))
    net.loss_and_grads(params, X, Y)
    assert all(np.array_equal(before[k], params[k]) for k in params)
    assert np.array_equal(X, np.ones((2, 3))) and np.array_equal(Y, np.zeros((1, 3)))


def test_article_init_draw_order() -> None:
    net = hg.article_network()
    p = net.article_init(np.random.default_rng(7))
    rng = np.random.default_rng(7)
    for name in ["W1", "B1", "W2", "B2", "W3", "B3"]:
        np.testing.assert_array_equal(p[name], rng.random(net.param_shapes[name]))
    legacy = net.article_init(np.random.RandomState(7))
    np.random.seed(7)
    assert np.array_equal(legacy["W1"], np.random.random((3, 2)))


def test_init_is_reproducible() -> None:
    net = hg.Network((4, 3, 2))
    a = net.init(np.random.default_rng(5))
    b = net.init(np.random.default_rng(5))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_fuse_flag_changes_path_not_value() -> None:
    rng = np.random.default_rng(2)
    fused = hg.Network((3, 4, 3), ["relu", "softmax"], "cross_entropy")
    plain = hg.Network((3, 4, 3), ["relu", "softmax"], "cross_entropy", fuse=False)
    assert fused.fused_rule is not None and plain.fused_rule is None
    params = fused.init(rng, bias_scale=0.2)
    X, Y = rng.standard_normal((3, 4)), rng.dirichlet(np.ones(3), 4).T
    lf, gf = fused.loss_and_grads(params, X, Y)
    lp, gp = plain.loss_and_grads(params, X, Y)
    assert lf == pytest.approx(lp, rel=1e-13)
    for k in gf:
        np.testing.assert_allclose(gf[k], gp[k], rtol=1e-10, atol=1e-15)
