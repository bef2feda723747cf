r"""The article's formulas, encoded as printed, against the independent JAX oracle (docs/errata.md).

How a formula is checked without a guessed tolerance:

* The article's formulas are evaluated in **interval arithmetic** (``mpmath.iv``, 40 digits) on
  the article's 2-3-3-1 sigmoid network: each result is an interval that provably contains the
  exact value of the formula (its radius is ~1e-35, far below anything float64 resolves).
* The JAX oracle (``handgrad.reference.oracles.jax_oracle.jax_grads``) computes the true gradient in float64. Its
  rounding error is bounded by a **running error analysis** of the computation it performs
  (:func:`jax_rounding_bound`, derived in its docstring).
* A formula *agrees* with the oracle on an element when the distance from the oracle's value to
  the formula's interval is within that bound; it *disagrees* when the distance exceeds it.

The printed batch and stochastic formulas, with the residual :math:`(y_i - \hat y_i)`, disagree
on every element the oracle resolves (they are the negated gradient: gradient *ascent*); with
:math:`(\hat y_i - y_i)` they agree on every element. The layer-by-layer matrix forms, read with
the missing :math:`\partial` and superscript restored, agree too: those errata are typographical.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy as sp
from handgrad.reference.oracles.jax_oracle import jax_grads
from mpmath import iv

import handgrad as hg

U = 2.0**-53
SIGMA1 = 0.25  # max |sigma'|
SIGMA2 = 0.0963  # max |sigma''| = 1/(6 sqrt 3) = 0.09623 (at sigma = 1/2 -+ 1/(2 sqrt 3))
SAFETY = 2.0  # covers the second-order terms a first-order running analysis drops


def gamma(k: int) -> float:
    return k * U / (1 - k * U)


# -- the article's formulas, in interval arithmetic ---------------------------------------------

iv.dps = 40
_iv_sigmoid = np.frompyfunc(lambda t: 1 / (1 + iv.exp(-t)), 1, 1)


def _iv(a: np.ndarray) -> np.ndarray:
    return np.frompyfunc(lambda v: iv.mpf(float(v)), 1, 1)(np.asarray(a, dtype=np.float64)).astype(object)


def article_backward(params: dict, x: np.ndarray, dL_dyhat) -> dict:
    r"""The article's layer-by-layer results for one sample x (n0, 1), given :math:`\partial L/\partial\hat y`.

    As printed (the article's :math:`\delta` is the sigmoid, :math:`x^{(2)}, x^{(3)}` the hidden
    activations), with the typographical errata corrected (the :math:`\partial` in
    :math:`\partial\hat y/\partial w_{1i}^{(3)}`, the superscript (1) on the first layer's weights):

    * output: :math:`\partial L/\partial W^{(3)} = \frac{\partial L}{\partial\hat y}\hat y(1-\hat y)x^{(3)T}`,
      :math:`\partial L/\partial B^{(3)} = \frac{\partial L}{\partial\hat y}\hat y(1-\hat y)`,
      :math:`\partial L/\partial x^{(3)} = \frac{\partial L}{\partial\hat y}\hat y(1-\hat y)W^{(3)T}`;
    * second hidden: :math:`\partial L/\partial W^{(2)} = (\frac{\partial L}{\partial x^{(3)}} \odot x^{(3)}
      \odot (1 - x^{(3)}))x^{(2)T}`, :math:`\partial L/\partial B^{(2)}` the bracket,
      :math:`\partial L/\partial x^{(2)} = W^{(2)T}(\dots)`;
    * first hidden: :math:`\partial L/\partial W^{(1)} = (\frac{\partial L}{\partial x^{(2)}} \odot x^{(2)}
      \odot (1 - x^{(2)}))x^T`, :math:`\partial L/\partial B^{(1)}` the bracket.
    """
    W1, B1, W2, B2, W3, B3 = (_iv(params[k]) for k in ("W1", "B1", "W2", "B2", "W3", "B3"))
    x = _iv(x)
    x2 = _iv_sigmoid(W1 @ x + B1)
    x3 = _iv_sigmoid(W2 @ x2 + B2)
    yhat = _iv_sigmoid(W3 @ x3 + B3)
    top = dL_dyhat(yhat) * yhat * (1 - yhat)
    d3 = top * W3.T
    inner2 = d3 * x3 * (1 - x3)
    d2 = W2.T @ inner2
    inner1 = d2 * x2 * (1 - x2)
    return {"W1": inner1 @ x.T, "B1": inner1, "W2": inner2 @ x2.T, "B2": inner2, "W3": top * x3.T, "B3": top,
            "yhat": yhat}


def printed_batch_formula(params: dict, X: np.ndarray, Y: np.ndarray, *, sign: int) -> dict:
    r""":math:`\frac{2}{n}\sum_i s\,(y_i - \hat y_i)\,\partial\hat y_i/\partial w`: ``sign=+1`` as printed,
    ``sign=-1`` corrected. :math:`\partial\hat y_i/\partial w` is the article's chain above with
    :math:`\partial L/\partial\hat y = 1`. For n = 1 it is the printed stochastic formula
    :math:`2(y_i - \hat y_i)\,\partial\hat y_i/\partial w`."""
    n = X.shape[1]
    total = None
    for i in range(n):
        d = article_backward(params, X[:, i:i + 1], lambda yhat: np.ones_like(yhat))
        resid = sign * (_iv(Y[:, i:i + 1])[0, 0] - d["yhat"][0, 0])
        term = {k: d[k] * (2 * resid / n) for k in params}
        total = term if total is None else {k: total[k] + term[k] for k in params}
    assert total is not None
    return total


def mid_rad(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mid = np.array([[float(v.mid) for v in row] for row in a])
    rad = np.array([[float(v.delta) / 2 for v in row] for row in a])
    return mid, rad + np.abs(mid) * U  # the float conversion of the midpoint: half an ulp


# -- the oracle's rounding bound ----------------------------------------------------------------


def jax_rounding_bound(params: dict, X: np.ndarray, Y: np.ndarray) -> dict:
    r"""Elementwise bound on |JAX's float64 gradient - exact gradient| for a sigmoid MLP with squared error.

    First-order running error analysis of what the oracle computes (forward
    :math:`z = Wa + b`, :math:`a = 1/(1+e^{-z})`; loss :math:`\frac1m\sum_s\sum_k (\hat y - y)^2` with
    the batch padded to M = max(8, 2^k) columns; reverse-mode derivative). With :math:`e_v` the
    bound on the absolute error of a computed v, u = 2^-53, :math:`\gamma_k = ku/(1-ku)`:

    * :math:`z`: a dot product of length n plus the bias, in any summation order:
      :math:`e_z = \gamma_{n+1}(|W||a| + |b|) + |W|e_a`;
    * :math:`a = \sigma(z)`: exp, add, divide (each within 1 ulp; 4 allowed) and the error of z
      through :math:`|\sigma'| \le 1/4`: :math:`e_a = e_z/4 + 4u\,a`;
    * the residual :math:`r = \frac{2}{m}(\hat y - y)` (the difference, the mask quotient, the
      product rule of :math:`d\cdot d`; 5 allowed): :math:`e_r = \frac{2}{m}e_{\hat y} + 5u|r|`;
    * :math:`\sigma'(z)` by reverse mode from :math:`e^{-z}/(1+e^{-z})^2` (10 roundings allowed)
      and the error of z through :math:`|\sigma''| \le 0.0963`:
      :math:`e_{\sigma'} = 0.0963\,e_z + 10u\,\sigma'`;
    * :math:`\delta = g \odot \sigma'`: :math:`e_\delta = |g|e_{\sigma'} + \sigma' e_g + u|\delta|`;
      :math:`g = W^T\delta`: :math:`e_g = \gamma_n|W|^T|\delta| + |W|^T e_\delta`;
    * :math:`\partial L/\partial W = \delta a^T` summed over M columns:
      :math:`\gamma_M|\delta||a|^T + e_\delta|a|^T + |\delta|e_a^T`; the bias:
      :math:`\gamma_M|\delta|\mathbf 1 + e_\delta\mathbf 1`.

    The magnitudes are evaluated in float64 (first order), and the result is multiplied by
    ``SAFETY`` = 2 for the dropped second-order terms.
    """
    m = X.shape[1]
    M = max(8, 1 << (m - 1).bit_length())
    depth = len(params) // 2
    a, e_a = X, np.zeros_like(X)
    acts, errs, sps, e_sps = [a], [e_a], [], []
    for l in range(1, depth + 1):
        W, b = params[f"W{l}"], params[f"B{l}"]
        z = W @ a + b
        e_z = gamma(W.shape[1] + 1) * (np.abs(W) @ np.abs(a) + np.abs(b)) + np.abs(W) @ e_a
        a = 1 / (1 + np.exp(-z))
        e_a = e_z / 4 + 4 * U * a
        sp_ = a * (1 - a)
        sps.append(sp_)
        e_sps.append(SIGMA2 * e_z + 10 * U * sp_)
        acts.append(a)
        errs.append(e_a)
    r = 2 * (a - Y) / m
    e_r = 2 * errs[-1] / m + 5 * U * np.abs(r)
    g, e_g = r, e_r
    out = {}
    for l in range(depth, 0, -1):
        delta = g * sps[l - 1]
        e_delta = np.abs(g) * e_sps[l - 1] + sps[l - 1] * e_g + U * np.abs(delta)
        a_prev, e_prev = acts[l - 1], errs[l - 1]
        out[f"W{l}"] = (gamma(M) * np.abs(delta) @ np.abs(a_prev).T + e_delta @ np.abs(a_prev).T
                        + np.abs(delta) @ e_prev.T)
        out[f"B{l}"] = np.sum(gamma(M) * np.abs(delta) + e_delta, axis=1, keepdims=True)
        W = params[f"W{l}"]
        g, e_g = W.T @ delta, gamma(W.shape[0]) * np.abs(W).T @ np.abs(delta) + np.abs(W).T @ e_delta
    return {k: SAFETY * v for k, v in out.items()}


# -- the data: the article's network and sample, and a small batch ------------------------------


def article_problem(n: int) -> tuple[hg.Network, dict, np.ndarray, np.ndarray]:
    """The article's net with its uniform [0, 1) initialization (seeded); the article's sample
    x = [5, 7], y = 0.6 first, then n - 1 seeded samples in [0, 8)^2 with labels in (0.1, 0.9)."""
    net = hg.article_network()
    params = net.article_init(np.random.default_rng(2024))
    rng = np.random.default_rng(7)
    X = np.concatenate([hg.ARTICLE_X, rng.uniform(0, 8, (2, n - 1))], axis=1)
    Y = np.concatenate([hg.ARTICLE_LABEL, rng.uniform(0.1, 0.9, (1, n - 1))], axis=1)
    return net, params, X, Y


@pytest.mark.parametrize("n", [1, 5], ids=["stochastic-article-sample", "batch-of-5"])
def test_printed_residual_sign_disagrees_with_the_oracle_and_the_corrected_one_agrees(n):
    r"""Erratum 1 (batch, n = 5) and erratum 2 (stochastic, n = 1, the article's own sample).

    Per element, with tol = the oracle's rounding bound + the interval's radius: the corrected
    formula is within tol of the oracle everywhere; every element the oracle resolves
    (|oracle| > 2 tol, so that it cannot be confused with its negation) is farther than tol from
    the printed formula. All 25 elements are resolved."""
    net, params, X, Y = article_problem(n)
    oracle = jax_grads(net, params, X, Y)
    bound = jax_rounding_bound(params, X, Y)
    printed = printed_batch_formula(params, X, Y, sign=+1)
    corrected = printed_batch_formula(params, X, Y, sign=-1)
    resolved = 0
    for k in oracle:
        c_mid, c_rad = mid_rad(corrected[k])
        p_mid, p_rad = mid_rad(printed[k])
        tol = bound[k] + np.maximum(c_rad, p_rad)
        assert np.all(np.abs(c_mid - oracle[k]) <= tol), (
            f"corrected formula vs JAX on {k}: |diff| {np.abs(c_mid - oracle[k])} > bound {tol}")
        sure = np.abs(oracle[k]) > 2 * tol
        assert np.all(np.abs(p_mid - oracle[k])[sure] > tol[sure]), f"printed formula agrees with JAX on {k}"
        resolved += int(np.sum(sure))
    assert resolved == net.n_params, f"the oracle resolves only {resolved} of {net.n_params} elements"


def test_handgrad_and_the_articles_code_use_the_right_sign():
    """The article's code writes dL/dy = 2 (y - label) with y the prediction: the corrected sign.
    handgrad's backward (which follows the code) points the same way as the oracle on every
    element, the printed formula the opposite way."""
    net, params, X, Y = article_problem(5)
    oracle, bound = jax_grads(net, params, X, Y), jax_rounding_bound(params, X, Y)
    ours = net.backward(params, X, Y)
    printed = printed_batch_formula(params, X, Y, sign=+1)
    for k in oracle:
        sure = np.abs(oracle[k]) > 2 * bound[k]
        assert np.all(np.sign(ours[k][sure]) == np.sign(oracle[k][sure])), k
        assert np.all(np.sign(mid_rad(printed[k])[0][sure]) == -np.sign(oracle[k][sure])), k


def test_printed_formula_is_gradient_ascent():
    """One step w - a * (printed formula) raises the loss of the article's example; the corrected
    formula lowers it. (An exact consequence: the printed formula is minus the gradient.)"""
    net, params, X, Y = article_problem(1)
    rate = 0.1
    before = net.loss_value(params, X, Y)
    for sign, worse in ((+1, True), (-1, False)):
        g = {k: mid_rad(v)[0] for k, v in printed_batch_formula(params, X, Y, sign=sign).items()}
        after = net.loss_value({k: params[k] - rate * g[k] for k in params}, X, Y)
        assert (after > before) == worse, (sign, before, after)


# -- what was checked and found right -----------------------------------------------------------

ARTICLE_OUTPUT = [  # iteration, prediction, loss, as the article prints them (8 decimals)
    (0, 0.81946645, 0.04816552), (20, 0.75549392, 0.02417836), (40, 0.69519441, 0.00906198),
    (60, 0.65235451, 0.00274099), (80, 0.62715023, 0.00073713), (99, 0.61416866, 0.00020075),
]


def test_printed_output_table_is_consistent():
    """Each printed loss is (prediction - 0.6)^2 up to the printing: a prediction rounded to 8
    decimals moves (p - 0.6)^2 by at most 2|p - 0.6| 5e-9 + 2.5e-17, the printed loss itself is
    rounded by at most 5e-9. The loss falls monotonically, as plain gradient descent on one sample
    with a small rate must."""
    for _, pred, loss in ARTICLE_OUTPUT:
        assert abs(loss - (pred - 0.6) ** 2) <= 2 * abs(pred - 0.6) * 5e-9 + 5e-9 + 2.5e-17, (pred, loss)
    losses = [loss for _, _, loss in ARTICLE_OUTPUT]
    assert losses == sorted(losses, reverse=True)


def test_sigmoid_derivative_derivation_is_right():
    r"""The article's three-step derivation of :math:`\delta'(x) = \delta(x)(1-\delta(x))`."""
    x = sp.symbols("x", real=True)
    e = sp.exp(-x)
    s = 1 / (1 + e)
    steps = [sp.diff(s, x), -1 / (1 + e) ** 2 * (-e), (1 + e) / (1 + e) ** 2 - 1 / (1 + e) ** 2, s * (1 - s)]
    for a, b in itertools.pairwise(steps):
        assert sp.simplify(a - b) == 0
