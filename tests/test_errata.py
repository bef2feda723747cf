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
import re

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


# -- every index, superscript and ∂ of the printed formulas ----------------------------------------

ARTICLE_FORMULAS = [  # (section, the LaTeX as printed), in the article's order
    ("输出层",
     r"\hat{y} = f_3(\mathbf{W^{(3)}}\boldsymbol{x^{(3)}}+\mathbf{B^{(3)}})=\delta(w_{11}^{(3)}x_{31} "
     r"+ w_{12}^{(3)}x_{32} + w_{13}^{(3)}x_{33} + b_1^{(3)})"),
    ("输出层",
     r"\frac{\partial \delta(x)}{\partial x} = -\frac{1}{(1 + e^{-x})^2}(-e^{-x}) = \frac{1 + "
     r"e^{-x}}{(1 + e^{-x})^2} - \frac{1}{(1 + e^{-x})^2} = \delta(x)(1 - \delta(x))"),
    ("输出层",
     r"\begin{aligned} \frac{\partial{L}}{\partial{w_{1i}^{(3)}}} &= "
     r"\frac{\partial{L}}{\partial{\hat{y}}} \frac{\partial{\hat{y}}}{w_{1i}^{(3)}} \\ &= "
     r"\frac{\partial{L}}{\partial{\hat{y}}} \hat{y}(1 - \hat{y})x_{3i}, \forall i = 1, \dots, 3, "
     r"\end{aligned}"),
    ("输出层",
     r"\begin{aligned} \frac{\partial{L}}{\partial{\mathbf{W^{(3)}}}} &= "
     r"[\frac{\partial{L}}{\partial{w_{11}^{(3)}}}, \frac{\partial{L}}{\partial{w_{12}^{(3)}}}, "
     r"\frac{\partial{L}}{\partial{w_{13}^{(3)}}}] \\ &= \frac{\partial{L}}{\partial{\hat{y}}} "
     r"\hat{y}(1 - \hat{y})\times[x_{31}, x_{32}, x_{33}] \\ &= \frac{\partial{L}}{\partial{\hat{y}}} "
     r"\hat{y}(1 - \hat{y})\boldsymbol{x^{(3)}}^T。 \end{aligned}"),
    ("输出层",
     r"\begin{aligned} \frac{\partial{L}}{\partial{x_{3i}}} &= \frac{\partial{L}}{\partial{\hat{y}}} "
     r"\frac{\partial{\hat{y}}}{\partial{x_{3i}}} \\ &= \frac{\partial{L}}{\partial{\hat{y}}}\hat{y}(1 "
     r"- \hat{y})w_{1i}^{(3)}, \forall i = 1, \dots, 3, \end{aligned}"),
    ("输出层",
     r"\begin{aligned} \frac{\partial{L}}{\partial{\boldsymbol{x^{(3)}}}} &= "
     r"[\frac{\partial{L}}{\partial{x_{31}}}, \frac{\partial{L}}{\partial{x_{32}}}, "
     r"\frac{\partial{L}}{\partial{x_{33}}}]^T \\ &= \frac{\partial{L}}{\partial{\hat{y}}} \hat{y}(1 - "
     r"\hat{y})\times[w_{11}^{(3)}, w_{12}^{(3)}, w_{13}^{(3)}]^T \\ &= "
     r"\frac{\partial{L}}{\partial{\hat{y}}} \hat{y}(1 - \hat{y})\mathbf{W^{(3)}}^T。 \end{aligned}"),
    ("输出层",
     r"\frac{\partial{L}}{\partial{\mathbf{B^{(3)}}}} = \frac{\partial{L}}{\partial{\hat{y}}} "
     r"\frac{\partial{\hat{y}}}{\partial{\mathbf{B^{(3)}}}} = "
     r"\frac{\partial{L}}{\partial{\hat{y}}}\hat{y}(1 - \hat{y})"),
    ("第二个隐藏层", r"\boldsymbol{x^{(3)}} = f_2(\mathbf{W^{(2)}}\boldsymbol{x^{(2)}}+\mathbf{B^{(2)}})"),
    ("第二个隐藏层",
     r"x_{31} = \delta(w_{11}^{(2)}x_{21} + w_{12}^{(2)}x_{22} + w_{13}^{(2)}x_{23} + b_1^{(2)}), \\ "
     r"x_{32} = \delta(w_{21}^{(2)}x_{21} + w_{22}^{(2)}x_{22} + w_{23}^{(2)}x_{23} + b_2^{(2)}), \\ "
     r"x_{33} = \delta(w_{31}^{(2)}x_{21} + w_{32}^{(2)}x_{22} + w_{33}^{(2)}x_{23} + b_3^{(2)})"),
    ("第二个隐藏层",
     r"\frac{\partial{L}}{\partial{w_{11}^{(2)}}} = \frac{\partial{L}}{\partial{x_{31}}} "
     r"\frac{\partial{x_{31}}}{\partial{w_{11}^{(2)}}} = \frac{\partial{L}}{\partial{x_{31}}}x_{31}(1 "
     r"- x_{31})x_{21}"),
    ("第二个隐藏层",
     r"\frac{\partial{L}}{\partial{w_{ij}^{(2)}}} = \frac{\partial{L}}{\partial{x_{3i}}} "
     r"\frac{\partial{x_{3i}}}{\partial{w_{ij}^{(2)}}} = \frac{\partial{L}}{\partial{x_{3i}}}x_{3i}(1 "
     r"- x_{3i})x_{2j}"),
    ("第二个隐藏层",
     r"\begin{aligned} \frac{\partial{L}}{\partial{\mathbf{W^{(2)}}}} &= "
     r"[\frac{\partial{L}}{\partial{x_{3i}}}x_{3i}(1 - x_{3i})x_{2j}]_{3\times3} \\ "
     r"&=(\frac{\partial{L}}{\partial{\boldsymbol{x^{(3)}}}} \odot \boldsymbol{x^{(3)}} \odot (1 - "
     r"\boldsymbol{x^{(3)}}))\boldsymbol{x^{(2)}}^T。 \end{aligned}"),
    ("第二个隐藏层",
     r"\begin{aligned} \frac{\partial{L}}{\partial{x_{21}}} &= "
     r"\frac{\partial{L}}{\partial{x_{31}}}\frac{\partial{x_{31}}}{\partial{x_{21}}} + "
     r"\frac{\partial{L}}{\partial{x_{32}}}\frac{\partial{x_{32}}}{\partial{x_{21}}} + "
     r"\frac{\partial{L}}{\partial{x_{33}}}\frac{\partial{x_{33}}}{\partial{x_{21}}} \\ &= "
     r"\frac{\partial{L}}{\partial{x_{31}}}x_{31}(1 - x_{31})w_{11}^{(2)} + "
     r"\frac{\partial{L}}{\partial{x_{32}}}x_{32}(1 - x_{32})w_{21}^{(2)} + "
     r"\frac{\partial{L}}{\partial{x_{33}}}x_{33}(1 - x_{33})w_{31}^{(2)} \\ &= "
     r"(\frac{\partial{L}}{\partial{\boldsymbol{x^{(3)}}}} \odot \boldsymbol{x^{(3)}} \odot (1 - "
     r"\boldsymbol{x^{(3)}}))^T[w_{11}^{(2)}, w_{21}^{(2)}, w_{31}^{(2)}]^T, \end{aligned}"),
    ("第二个隐藏层",
     r"\begin{aligned} \frac{\partial{L}}{\partial{x_{2i}}} &= "
     r"\frac{\partial{L}}{\partial{x_{31}}}x_{31}(1 - x_{31})w_{1i}^{(2)} + "
     r"\frac{\partial{L}}{\partial{x_{32}}}x_{32}(1 - x_{32})w_{2i}^{(2)} + "
     r"\frac{\partial{L}}{\partial{x_{33}}}x_{33}(1 - x_{33})w_{3i}^{(2)} \\ &= "
     r"(\frac{\partial{L}}{\partial{\boldsymbol{x^{(3)}}}} \odot \boldsymbol{x^{(3)}} \odot (1 - "
     r"\boldsymbol{x^{(3)}}))^T[w_{1i}^{(2)}, w_{2i}^{(2)}, w_{3i}^{(2)}]^T, \end{aligned}"),
    ("第二个隐藏层",
     r"\begin{aligned} \frac{\partial{L}}{\partial{\boldsymbol{x^{(2)}}}} &= "
     r"[(\frac{\partial{L}}{\partial{\boldsymbol{x^{(3)}}}} \odot \boldsymbol{x^{(3)}} \odot (1 - "
     r"\boldsymbol{x^{(3)}}))^T[w_{1i}^{(2)}, w_{2i}^{(2)}, w_{3i}^{(2)}]^T]_{3\times1} \\ &= "
     r"((\frac{\partial{L}}{\partial{\boldsymbol{x^{(3)}}}} \odot \boldsymbol{x^{(3)}} \odot (1 - "
     r"\boldsymbol{x^{(3)}}))^T\mathbf{W^{(2)}})^T \\ &= "
     r"\mathbf{W^{(2)}}^T((\frac{\partial{L}}{\partial{\boldsymbol{x^{(3)}}}} \odot "
     r"\boldsymbol{x^{(3)}} \odot (1 - \boldsymbol{x^{(3)}}))。 \end{aligned}"),
    ("第二个隐藏层",
     r"\frac{\partial{L}}{\partial{\mathbf{B^{(2)}}}} = "
     r"\frac{\partial{L}}{\partial{\boldsymbol{x^{(3)}}}} \odot \boldsymbol{x^{(3)}} \odot (1 - "
     r"\boldsymbol{x^{(3)}})"),
    ("第一个隐藏层", r"\boldsymbol{x^{(2)}} = f_1(\mathbf{W^{(1)}}\boldsymbol x+\mathbf{B^{(1)}})"),
    ("第一个隐藏层",
     r"x_{21} = \delta(w_{11}^{(1)}x_{11} + w_{12}^{(1)}x_{12} + b_1^{(1)}), \\ x_{22} = "
     r"\delta(w_{21}^{(1)}x_{11} + w_{22}^{(1)}x_{12} + b_2^{(1)}), \\ x_{23} = "
     r"\delta(w_{31}^{(1)}x_{11} + w_{32}^{(1)}x_{12} + b_3^{(1)})"),
    ("第一个隐藏层",
     r"\begin{aligned} \frac{\partial{L}}{\partial{w_{ij}}} &= \frac{\partial{L}}{\partial{x_{2i}}} "
     r"\frac{\partial{x_{2i}}}{\partial{w_{ij}}} \\ &= \frac{\partial{L}}{\partial{x_{2i}}} x_{2i}(1 - "
     r"x_{2i})x_{1j}, \end{aligned}"),
    ("第一个隐藏层",
     r"\begin{aligned} \frac{\partial{L}}{\partial{\mathbf{W^{(1)}}}} &= "
     r"[\frac{\partial{L}}{\partial{x_{2i}}} x_{2i}(1 - x_{2i})x_{1j}]_{3\times2} \\ &= "
     r"(\frac{\partial{L}}{\partial{\boldsymbol{x^{(2)}}}} \odot \boldsymbol{x^{(2)}} \odot (1 - "
     r"\boldsymbol{x^{(2)}})) \boldsymbol{x}^T。 \end{aligned}"),
    ("第一个隐藏层",
     r"\begin{aligned} \frac{\partial{L}}{\partial{x_{1i}}} &= \frac{\partial{L}}{\partial{x_{21}}} "
     r"\frac{\partial{x_{21}}}{\partial{x_{1i}}} + \frac{\partial{L}}{\partial{x_{22}}} "
     r"\frac{\partial{x_{22}}}{\partial{x_{1i}}} + \frac{\partial{L}}{\partial{x_{23}}} "
     r"\frac{\partial{x_{23}}}{\partial{x_{1i}}} \\ &=\frac{\partial{L}}{\partial{x_{21}}}x_{21}(1 - "
     r"x_{21})w_{1i}^{(1)} + \frac{\partial{L}}{\partial{x_{22}}}x_{22}(1 - x_{22})w_{2i}^{(1)} + "
     r"\frac{\partial{L}}{\partial{x_{23}}}x_{23}(1 - x_{23})w_{3i}^{(1)} \\ &= "
     r"(\frac{\partial{L}}{\partial{\boldsymbol{x^{(2)}}}} \odot \boldsymbol{x^{(2)}} \odot (1 - "
     r"\boldsymbol{x^{(2)}}))^T[w_{1i}^{(1)}, w_{2i}^{(1)}, w_{3i}^{(1)}]^T \end{aligned}"),
    ("第一个隐藏层",
     r"\begin{aligned} \frac{\partial{L}}{\partial{\boldsymbol{x}}} &= "
     r"[(\frac{\partial{L}}{\partial{\boldsymbol{x^{(2)}}}} \odot \boldsymbol{x^{(2)}} \odot (1 - "
     r"\boldsymbol{x^{(2)}}))^T[w_{1i}^{(1)}, w_{2i}^{(1)}, w_{3i}^{(1)}]^T]_{2\times1} \\ &= "
     r"((\frac{\partial{L}}{\partial{\boldsymbol{x^{(2)}}}} \odot \boldsymbol{x^{(2)}} \odot (1 - "
     r"\boldsymbol{x^{(2)}}))^T \mathbf{W^{(1)}})^T \\ &= \mathbf{W^{(1)}}^T "
     r"(\frac{\partial{L}}{\partial{\boldsymbol{x^{(2)}}}} \odot \boldsymbol{x^{(2)}} \odot (1 - "
     r"\boldsymbol{x^{(2)}}))。 \end{aligned}"),
    ("第一个隐藏层",
     r"\begin{aligned} \frac{\partial{L}}{\partial{\mathbf{B^{(1)}}}} = "
     r"\frac{\partial{L}}{\partial{\boldsymbol{x^{(2)}}}} \odot \boldsymbol{x^{(2)}} \odot (1 - "
     r"\boldsymbol{x^{(2)}})。 \end{aligned}"),
    ("梯度下降",
     r"\frac{\partial L}{\partial w} = \frac{2}{n}\sum_{i = 1}^{n}(y_i - \hat{y_i})\frac{\partial "
     r"\hat{y_i}}{\partial w}"),
    ("梯度下降", r"\frac{\partial L}{\partial w} = 2(y_i - \hat{y_i})\frac{\partial \hat{y_i}}{\partial w}"),
    ("梯度下降", r"w = w - \alpha\frac{\partial L}{\partial w}"),
]

SECTION_LAYER = {"输出层": 3, "第二个隐藏层": 2, "第一个隐藏层": 1}
LINT_RULES = ("missing-partial", "missing-superscript", "unbalanced", "wrong-layer", "index")


def _group(tex: str, k: int) -> tuple[str, int]:
    """The brace group opening at ``tex[k]``: (its content, the index after it)."""
    depth = 0
    for e in range(k, len(tex)):
        depth += {"{": 1, "}": -1}.get(tex[e], 0)
        if depth == 0:
            return tex[k + 1:e], e + 1
    raise ValueError(f"unbalanced braces in {tex!r}")


def _fractions(tex: str) -> list[tuple[str, str]]:
    out = []
    for m in re.finditer(r"\\frac", tex):
        num, end = _group(tex, m.end())
        out.append((num, _group(tex, end)[0]))
    return out


def _bare(s: str) -> str:
    return s.replace("{", "").replace("}", "").replace(" ", "")


_DX_DW = re.compile(r"\\frac\{\\partial\{x_\{(\d)(\w)\}\}\}\{\\partial\{w_\{(\w)(\w)\}(?:\^\{\((\d)\)\})?\}\}")
_DX_DX = re.compile(r"\\frac\{\\partial\{x_\{(\d)\w\}\}\}\{\\partial\{x_\{(\d)\w\}\}\}")
_FACTOR = re.compile(r"x_\{(\w+)\}\(1 - x_\{(\w+)\}\)")
_DL_DX_FACTOR = re.compile(r"\\frac\{\\partial\{L\}\}\{\\partial\{x_\{(\w+)\}\}\}\s*x_\{(\w+)\}\(1")
_LAYER_SUP = re.compile(r"(?:[wb]_\{?\w+\}?|\\mathbf\{[WB])\^\{\((\d)\)\}")


def lint_formulas(formulas: list[tuple[str, str]]) -> tuple[list[tuple[int, str, str]], dict[str, int]]:
    r"""Read every formula for the mistakes a careful reader looks for; return the findings
    (formula number, rule, what) and how many things each rule checked.

    Rules: a ``\frac{\partial ..}{..}`` has a ∂ in its denominator; a weight ``w_{..}`` has its
    layer superscript; ( ) and [ ] balance; a w, b, W, B superscript is the layer of its section;
    in ∂x_{ab}/∂w_{cd}^{(l)}: a = l + 1 and b = c; in ∂x_{ab}/∂x_{cd}: c = a - 1; a sigmoid factor
    x_{ab}(1 - x_{ab}), and the ∂L/∂x_{ab} it follows, name one unit."""
    found: list[tuple[int, str, str]] = []
    checked = dict.fromkeys(LINT_RULES, 0)
    for n, (section, tex) in enumerate(formulas):
        for num, den in _fractions(tex):
            if _bare(num).startswith("\\partial"):
                checked["missing-partial"] += 1
                if not _bare(den).startswith("\\partial"):
                    found.append((n, "missing-partial", _bare(den)))
        for m in re.finditer(r"w_\{(\w+)\}(\^)?", tex):
            checked["missing-superscript"] += 1
            if m[2] is None:
                found.append((n, "missing-superscript", f"w_{m[1]}"))
        checked["unbalanced"] += 1
        for o, c in ("()", "[]"):
            if tex.count(o) != tex.count(c):
                found.append((n, "unbalanced", f"{tex.count(o)} '{o}' against {tex.count(c)} '{c}'"))
        layer = SECTION_LAYER.get(section)
        if layer is not None:
            for m in _LAYER_SUP.finditer(tex):
                checked["wrong-layer"] += 1
                if int(m[1]) != layer:
                    found.append((n, "wrong-layer", m[0]))
        for m in _DX_DW.finditer(tex):
            checked["index"] += 1
            a, b, c, _, sup = m.groups()
            if (sup is not None and int(a) != int(sup) + 1) or b != c:
                found.append((n, "index", m[0]))
        for m in _DX_DX.finditer(tex):
            checked["index"] += 1
            if int(m[2]) != int(m[1]) - 1:
                found.append((n, "index", m[0]))
        for pattern in (_FACTOR, _DL_DX_FACTOR):
            for m in pattern.finditer(tex):
                checked["index"] += 1
                if m[1] != m[2]:
                    found.append((n, "index", m[0]))
    return found, checked


def _number(start: str) -> int:
    return next(k for k, (_, tex) in enumerate(ARTICLE_FORMULAS) if tex.startswith(start))


def test_lint_finds_exactly_the_recorded_errata():
    """Errata 3 (a missing ∂), 4 (w_ij without ^(1), twice), 5 (an unbalanced parenthesis), and
    nothing else in the 26 printed formulas, every rule having checked something."""
    found, checked = lint_formulas(ARTICLE_FORMULAS)
    out_w = _number(r"\begin{aligned} \frac{\partial{L}}{\partial{w_{1i}^{(3)}}}")
    first_w = _number(r"\begin{aligned} \frac{\partial{L}}{\partial{w_{ij}}}")
    dx2 = _number(r"\begin{aligned} \frac{\partial{L}}{\partial{\boldsymbol{x^{(2)}}}}")
    assert sorted(found) == sorted([
        (out_w, "missing-partial", "w_1i^(3)"),
        (first_w, "missing-superscript", "w_ij"), (first_w, "missing-superscript", "w_ij"),
        (dx2, "unbalanced", "23 '(' against 22 ')'"),
    ])
    assert len(ARTICLE_FORMULAS) == 26
    assert checked["missing-partial"] == 87 and checked["missing-superscript"] == 57, checked
    assert all(checked[r] > 0 for r in LINT_RULES), checked


@pytest.mark.parametrize(("old", "new", "rule"), [
    (r"\frac{\partial{x_{31}}}{\partial{w_{11}^{(2)}}}", r"\frac{\partial{x_{31}}}{w_{11}^{(2)}}", "missing-partial"),
    (r"w_{12}^{(2)}x_{22}", r"w_{12}x_{22}", "missing-superscript"),
    (r"w_{13}^{(2)}x_{23} + b_1^{(2)}", r"w_{13}^{(3)}x_{23} + b_1^{(2)}", "wrong-layer"),
    (r"\frac{\partial{x_{31}}}{\partial{w_{11}^{(2)}}}", r"\frac{\partial{x_{31}}}{\partial{w_{21}^{(2)}}}",
     "index"),
    (r"x_{31}(1 - x_{31})x_{21}", r"x_{31}(1 - x_{32})x_{21}", "index"),
    (r"\frac{\partial{x_{31}}}{\partial{x_{21}}}", r"\frac{\partial{x_{31}}}{\partial{x_{11}}}", "index"),
    (r"x_{31}(1 - x_{31})x_{21}", r"x_{31}(1 - x_{31}x_{21}", "unbalanced"),
], ids=["partial", "superscript", "layer", "dx-dw-index", "factor-unit", "dx-dx-layer", "paren"])
def test_lint_catches_a_planted_mistake(old, new, rule):
    """Each rule fires on a mistake planted in a formula that was right."""
    k = next(k for k, (_, tex) in enumerate(ARTICLE_FORMULAS) if old in tex and k != 2)
    planted = list(ARTICLE_FORMULAS)
    planted[k] = (planted[k][0], planted[k][1].replace(old, new, 1))
    before, _ = lint_formulas(ARTICLE_FORMULAS)
    after, _ = lint_formulas(planted)
    extra = [f for f in after if f not in before]
    assert extra and all(f[0] == k and f[1] == rule for f in extra), (extra, k)


def test_stated_matrix_sizes_are_the_parameter_shapes():
    """The sizes the article writes under its matrix forms are the shapes handgrad uses."""
    sizes = {m for _, tex in ARTICLE_FORMULAS for m in re.findall(r"\]_\{(\d)\\times(\d)\}", tex)}
    net = hg.article_network()
    assert sizes == {(str(r), str(c)) for r, c in (net.param_shapes["W2"], net.param_shapes["W1"], (3, 1), (2, 1))}


def test_w11_2_reaches_the_loss_only_through_x31():
    """Erratum 7: perturbing w_11^(2) changes x_31 and no other unit of x^(2) and x^(3) (exact,
    in rationals, with a sigmoid evaluated by a monotone exact map so that a change is visible)."""
    from fractions import Fraction

    net = hg.article_network()
    rng = np.random.default_rng(3)
    params = {k: np.array([[Fraction(int(v)) / 7 for v in row] for row in rng.integers(-9, 9, shape)], dtype=object)
              for k, shape in net.param_shapes.items()}
    act = np.frompyfunc(lambda z: z / (1 + abs(z)), 1, 1)  # strictly increasing: a change in z shows
    x = np.array([[Fraction(5)], [Fraction(7)]], dtype=object)

    def units(p):
        x2 = act(p["W1"] @ x + p["B1"])
        return x2, act(p["W2"] @ x2 + p["B2"])

    bumped = {k: v.copy() for k, v in params.items()}
    bumped["W2"][0, 0] += Fraction(1, 3)
    (a2, a3), (b2, b3) = units(params), units(bumped)
    assert list(a2[:, 0]) == list(b2[:, 0])
    assert a3[0, 0] != b3[0, 0] and list(a3[1:, 0]) == list(b3[1:, 0])


def test_errata_page_states_every_finding_in_both_languages_with_its_test():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "errata.md").read_text(encoding="utf-8")
    entries = re.split(r"\n### ", page)[1:]
    assert len(entries) == 8
    names = set(re.findall(r"^def (test_\w+)", Path(__file__).read_text(encoding="utf-8"), re.M))
    for entry in entries:
        title = entry.splitlines()[0]
        assert "**中文：**" in entry, f"erratum {title!r} has no Chinese statement"
        cited = set(re.findall(r"`(?:tests/\w+\.py::)?(test_\w+)", entry))
        if "no test" not in title.lower() and "No test" not in entry:
            assert cited, f"erratum {title!r} names no test"
        assert cited <= names | {"test_chinese_handout_uses_the_articles_vocabulary"}, cited - names
