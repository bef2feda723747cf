"""The training variants and the identities between optimizers that must hold exactly.

Three kinds of "exactly":

* bit for bit in float64, where the two sides perform the same floating-point operations
  (mini-batch with b = n vs batch GD, b = 1 vs SGD, Momentum/Nesterov with beta = 0 vs GD,
  AdamW with weight_decay = 0 vs Adam, Adam with b1 = b2 = 0 vs RMSProp with decay = 0, scaling
  by a power of two);
* exactly in rational arithmetic (``fractions.Fraction`` object arrays, or dyadic data on which
  every float64 operation is exact, checked against Fractions): the batch gradient is the mean of
  the per-sample gradients; Nesterov's look-ahead form and Polyak's heavy-ball form;
* within a bound derived from the rounding model (u = 2^-53, gamma_k = k u / (1 - k u), Higham,
  *Accuracy and Stability of Numerical Algorithms*, ch. 3), written next to each assertion.
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
from handgrad.reference.cases.optim_strategies import betas, epsilons, gradient_problems, hyperparams
from handgrad.reference.cases.strategies import examples
from hypothesis import given, settings
from hypothesis import strategies as st

import handgrad as hg
from handgrad import optim, training

U = 2.0**-53


def gamma(k: int) -> float:
    return k * U / (1 - k * U)


def run(opt: optim.Optimizer, params0: dict, grads: list[dict]) -> tuple[list[dict], list[dict], list]:
    """Open-loop trajectory through the public API: (params after each step, updates, states)."""
    p, state, P, Us, S = params0, opt.init(params0), [], [], []
    for g in grads:
        u, state = opt.update(g, state, p)
        p = optim.apply_updates(p, u)
        P.append(p)
        Us.append(u)
        S.append(state)
    return P, Us, S


def assert_same(a: list[dict], b: list[dict], what: str) -> None:
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        for k in x:
            assert np.array_equal(x[k], y[k]), f"{what}: step {t + 1}, {k} differs by {np.max(np.abs(x[k] - y[k]))}"


def xor_net() -> tuple[hg.Network, dict, np.ndarray, np.ndarray]:
    X, Y = training.xor_data()
    net = hg.Network((2, 4, 1), ("tanh", "sigmoid"), "bce")
    return net, net.init(np.random.default_rng(0), weight_scale=1.0), X, Y


def moons(n: int = 7) -> tuple[hg.Network, dict, np.ndarray, np.ndarray]:
    X, Y = training.two_class_data(n, seed=3)
    net = hg.Network((2, 3, 1), "sigmoid", "squared_error")
    return net, net.init(np.random.default_rng(1)), X, Y


# -- the batch gradient is the mean of the per-sample gradients ---------------------------------


@st.composite
def rational_problems(draw: st.DrawFn):
    """A relu or identity net with quarter-integer params and half-integer data, as Fractions."""
    depth = draw(st.integers(1, 3))
    sizes = tuple(draw(st.integers(1, 4)) for _ in range(depth + 1))
    act = draw(st.sampled_from(["relu", "identity"]))
    net = hg.Network(sizes, act, "squared_error")
    m = draw(st.integers(1, 5))

    def arr(shape: tuple[int, int], den: int) -> np.ndarray:
        vals = draw(st.lists(st.integers(-6, 6), min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]))
        return np.array([Fraction(v, den) for v in vals], dtype=object).reshape(shape)

    params = {k: arr(s, 4) for k, s in net.param_shapes.items()}
    return net, params, arr((sizes[0], m), 2), arr((sizes[-1], m), 2)


@settings(max_examples=examples(30))
@given(problem=rational_problems())
def test_batch_gradient_is_the_mean_of_per_sample_gradients_exactly(problem):
    """In exact rational arithmetic (relu and identity nets, kinks at 0 included), the gradient of
    the batch loss equals the mean of the m per-sample gradients, element for element."""
    net, params, X, Y = problem
    m = X.shape[1]
    G = net.backward_unchecked(params, net.forward_unchecked(params, X), Y)
    per = [net.backward_unchecked(params, net.forward_unchecked(params, X[:, i:i + 1]), Y[:, i:i + 1])
           for i in range(m)]
    for k in G:
        mean = sum(p[k] for p in per) / m
        assert all(isinstance(v, Fraction) for v in G[k].ravel())
        assert np.array_equal(G[k], mean), k


@settings(max_examples=examples(30))
@given(sizes=st.lists(st.integers(1, 5), min_size=2, max_size=4), m=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_batch_gradient_is_the_mean_of_per_sample_gradients_in_float64(sizes, m, seed):
    r"""``net.backward`` on the batch vs the mean of ``net.backward`` on each sample, float64.

    Bound. For a linear net (identity activations) with squared error every gradient entry is a
    polynomial in the params and data, evaluated with +, -, * and one division by m. Each
    computed value is the exact polynomial with every monomial perturbed by at most K factors
    (1 + d), |d| <= u, where K bounds the roundings on any path: the forward dot products and
    biases sum_l (n_{l-1} + 1), the residual 2(yhat - y)/m: 2, the backward dot products
    sum_l n_l, the sum over m samples and the mean: m + 2. So each side is within gamma_K * G_abs
    of the exact value, with G_abs = the same computation on |params|, |X| and -|Y| (all terms
    positive); computed in float it is at least (1 - gamma_K) times the exact G_abs.
    """
    net = hg.Network(tuple(sizes), "identity", "squared_error")
    rng = np.random.default_rng(seed)
    params = net.init(rng, bias_scale=1.0)
    X, Y = rng.standard_normal((sizes[0], m)), rng.standard_normal((sizes[-1], m))
    G = net.backward(params, X, Y)
    per = [net.backward(params, X[:, i:i + 1], Y[:, i:i + 1]) for i in range(m)]
    perm = rng.permutation(m)
    G_perm = net.backward(params, X[:, perm], Y[:, perm])
    G_abs = net.backward({k: np.abs(v) for k, v in params.items()}, np.abs(X), -np.abs(Y))
    K = sum(n + 1 for n in sizes[:-1]) + sum(sizes[1:]) + m + 4
    bound = {k: 2 * gamma(K) * v / (1 - gamma(K)) for k, v in G_abs.items()}
    for k in G:
        mean = sum(p[k] for p in per) / m
        assert np.all(np.abs(G[k] - mean) <= bound[k]), (k, np.max(np.abs(G[k] - mean) / G_abs[k]))
        assert np.all(np.abs(G[k] - G_perm[k]) <= bound[k]), k  # shuffling a batch permutes the sum only


# -- the variants against each other ------------------------------------------------------------

OPTS = {"gd": lambda: optim.gd(0.5), "momentum": lambda: optim.momentum(0.3, 0.9), "adam": lambda: optim.adam(0.05)}


@pytest.mark.parametrize("opt", list(OPTS))
@pytest.mark.parametrize("problem", [xor_net, moons], ids=["xor", "moons7"])
def test_minibatch_with_b_equal_n_is_batch_gd_step_for_step(opt, problem):
    net, p, X, Y = problem()
    n = X.shape[1]
    ref = training.batch_gd(net, p, X, Y, OPTS[opt](), epochs=30)
    for b in (n, n + 5):  # a batch larger than n is one batch of n
        mb = training.minibatch_gd(net, p, X, Y, OPTS[opt](), batch_size=b, epochs=30, shuffle=False)
        assert np.array_equal(mb.losses, ref.losses) and np.array_equal(mb.epoch_losses, ref.epoch_losses)
        assert all(np.array_equal(mb.params[k], ref.params[k]) for k in p)


@pytest.mark.parametrize("opt", list(OPTS))
@pytest.mark.parametrize("problem", [xor_net, moons], ids=["xor", "moons7"])
def test_minibatch_with_b_1_is_sgd_step_for_step(opt, problem):
    net, p, X, Y = problem()
    ref = training.sgd(net, p, X, Y, OPTS[opt](), epochs=8, seed=11)
    mb = training.minibatch_gd(net, p, X, Y, OPTS[opt](), batch_size=1, epochs=8, seed=11)
    assert np.array_equal(mb.losses, ref.losses) and np.array_equal(mb.epoch_losses, ref.epoch_losses)
    assert all(np.array_equal(mb.params[k], ref.params[k]) for k in p)
    other = training.sgd(net, p, X, Y, OPTS[opt](), epochs=8, seed=12)
    assert not np.array_equal(other.losses, ref.losses)  # the seed does matter


def plain_loop(net, params, X, Y, opt, batches):
    """The textbook loop, written with the public API only, for the given batches (index arrays)."""
    state, losses = opt.init(params), []
    for idx in batches:
        loss, grads = net.loss_and_grads(params, X[:, idx], Y[:, idx])
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        losses.append(float(loss))
    return params, losses


@pytest.mark.parametrize("variant", ["batch", "sgd", "minibatch3", "minibatch3_drop_last"])
def test_each_variant_is_the_plain_loop_over_its_batches(variant):
    """Which samples each step uses, including the smaller last batch (7 = 3 + 3 + 1)."""
    net, p, X, Y = moons(7)
    epochs, seed = 4, 5
    orders = training.epoch_orders(7, seed)
    sizes: list[int] = []
    cb = lambda prog: sizes.append(prog.batch_size)  # noqa: E731
    if variant == "batch":
        batches = [np.arange(7)] * epochs
        res = training.batch_gd(net, p, X, Y, optim.adam(0.1), epochs=epochs, callback=cb)
    elif variant == "sgd":
        batches = [o[i:i + 1] for o in (next(orders) for _ in range(epochs)) for i in range(7)]
        res = training.sgd(net, p, X, Y, optim.adam(0.1), epochs=epochs, seed=seed, callback=cb)
    else:
        drop = variant.endswith("drop_last")
        batches = [o[s:s + 3] for o in (next(orders) for _ in range(epochs)) for s in range(0, 7 if not drop else 6, 3)]
        res = training.minibatch_gd(net, p, X, Y, optim.adam(0.1), batch_size=3, epochs=epochs, seed=seed,
                                    drop_last=drop, callback=cb)
    params, losses = plain_loop(net, p, X, Y, optim.adam(0.1), batches)
    assert sizes == [len(b) for b in batches]
    assert res.losses.tolist() == losses
    assert all(np.array_equal(res.params[k], params[k]) for k in p)
    assert len(res.epoch_losses) == epochs + 1 and res.epoch_losses[0] == float(net.loss_value(p, X, Y))
    assert res.epoch_losses[-1] == float(net.loss_value(params, X, Y))


def test_training_never_modifies_its_inputs():
    net, p, X, Y = moons(7)
    copies = ({k: v.copy() for k, v in p.items()}, X.copy(), Y.copy())
    training.minibatch_gd(net, p, X, Y, optim.adamw(0.1), batch_size=2, epochs=3)
    training.sgd(net, p, X, Y, optim.momentum(0.1), epochs=2)
    training.batch_gd(net, p, X, Y, optim.rmsprop(0.1), epochs=2)
    assert all(np.array_equal(p[k], copies[0][k]) for k in p)
    assert np.array_equal(X, copies[1]) and np.array_equal(Y, copies[2])


def test_progress_callback_and_result_shapes():
    net, p, X, Y = moons(7)
    seen: list[training.Progress] = []
    res = training.minibatch_gd(net, p, X, Y, optim.gd(0.1), batch_size=2, epochs=3, callback=seen.append)
    assert [(s.epoch, s.step, s.batch_size) for s in seen] == [(e, 4 * e + i, 2 if i < 3 else 1)
                                                                for e in range(3) for i in range(4)]
    assert [s.loss for s in seen] == res.losses.tolist() and res.losses.dtype == np.float64
    assert res.epoch_losses.shape == (4,)


BAD_CALLS = [
    ({"epochs": 0}, ValueError, r"epochs must be >= 1, got 0"),
    ({"batch_size": 0}, ValueError, r"batch_size must be >= 1, got 0"),
    ({"seed": -1}, ValueError, r"seed must be >= 0, got -1"),
    ({"seed": 1.5}, TypeError, r"seed must be an int"),
    ({"shuffle": 1}, TypeError, r"shuffle must be a bool"),
    ({"optimizer": "adam"}, TypeError, r"optimizer must be a handgrad.optim.Optimizer"),
    ({"net": "net"}, TypeError, r"net must be a handgrad.Network"),
    ({"callback": 3}, TypeError, r"callback must be callable"),
    ({"X": np.zeros((3, 7))}, ValueError, r"X has shape \(3, 7\) but expected shape \(2, \?\)"),
    ({"Y": np.zeros(7)}, ValueError, r"Y has shape \(7,\) but expected shape \(1, 7\)"),
    ({"batch_size": 8, "drop_last": True}, ValueError, r"batch_size is 8 but X has only n = 7 samples"),
]


@pytest.mark.parametrize("change, error, match", BAD_CALLS,
                         ids=[next(iter(c)) + "-" + e.__name__ for c, e, _ in BAD_CALLS])
def test_bad_arguments_are_rejected(change, error, match):
    net, p, X, Y = moons(7)
    kw = {"net": net, "params": p, "X": X, "Y": Y, "optimizer": optim.gd(0.1), "batch_size": 2, "epochs": 1, **change}
    with pytest.raises(error, match=match):
        training.minibatch_gd(**kw)


def test_divergence_is_reported_clearly():
    X = np.array([[1.0, 2.0, 3.0]])
    Y = np.array([[1.0, -1.0, 2.0]])
    net = hg.Network((1, 1), "identity", "squared_error")
    p = {"W1": np.array([[1.0]]), "B1": np.array([[0.0]])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning escapes before the error
        with pytest.raises(FloatingPointError, match=r"diverged \(try a smaller learning rate than gd\("):
            training.batch_gd(net, p, X, Y, optim.gd(10.0), epochs=2000)


# -- identities between optimizers (open loop, hypothesis-drawn gradient sequences) -------------

SHORT = 20  # steps: these identities are bit-for-bit, so more steps add nothing but time


@settings(max_examples=examples(25))
@given(problem=gradient_problems(steps=SHORT), lr=hyperparams("gd"))
def test_momentum_and_nesterov_with_beta_0_are_gd(problem, lr):
    """v_t = 0 * v_{t-1} - a g_t = -a g_t exactly, and so is Nesterov's 0 * v_t - a g_t."""
    ref = run(optim.gd(**lr), problem.params0, problem.grads)
    for opt in (optim.momentum(**lr, beta=0.0), optim.nesterov(**lr, beta=0.0)):
        P, Us, _ = run(opt, problem.params0, problem.grads)
        assert_same(P, ref[0], opt.name)
        assert_same(Us, ref[1], opt.name)


def test_momentum_with_beta_0_trains_like_gd():
    net, p, X, Y = xor_net()
    a = training.sgd(net, p, X, Y, optim.gd(0.5), epochs=20, seed=1)
    b = training.sgd(net, p, X, Y, optim.momentum(0.5, beta=0.0), epochs=20, seed=1)
    assert np.array_equal(a.losses, b.losses) and all(np.array_equal(a.params[k], b.params[k]) for k in p)


@settings(max_examples=examples(25))
@given(problem=gradient_problems(steps=SHORT), kw=hyperparams("adam"))
def test_adamw_with_weight_decay_0_is_adam(problem, kw):
    ref = run(optim.adam(**kw), problem.params0, problem.grads)
    P, Us, _ = run(optim.adamw(**kw, weight_decay=0.0), problem.params0, problem.grads)
    assert_same(P, ref[0], "adamw(weight_decay=0)")
    assert_same(Us, ref[1], "adamw(weight_decay=0)")


@settings(max_examples=examples(25))
@given(problem=gradient_problems(steps=SHORT), lr=hyperparams("gd"), eps=epsilons())
def test_adam_without_memory_is_rmsprop_without_memory_is_a_normalized_step(problem, lr, eps):
    """b1 = b2 = 0: m = g, v = g^2, bias corrections 1, so Adam's step is -a g / (sqrt(g^2) + eps),
    RMSProp's with decay 0 too, and sqrt(fl(g^2)) = |g| exactly in binary floating point."""
    a = run(optim.adam(**lr, b1=0.0, b2=0.0, eps=eps), problem.params0, problem.grads)[1]
    r = run(optim.rmsprop(**lr, decay=0.0, eps=eps), problem.params0, problem.grads)[1]
    assert_same(a, r, "adam(b1=b2=0) vs rmsprop(decay=0)")
    for u, g in zip(r, problem.grads, strict=True):
        for k in g:
            assert np.array_equal(u[k], -lr["learning_rate"] * (g[k] / (np.abs(g[k]) + eps))), k


@settings(max_examples=examples(25))
@given(problem=gradient_problems(steps=SHORT), k=st.integers(-20, 20),
       name=st.sampled_from(["gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]), data=st.data())
def test_scaling_the_gradients_by_a_power_of_two(problem, k, name, data):
    """Gradients times c = 2^k (exact in float64): GD, Momentum and Nesterov steps are c times
    as long; AdaGrad, RMSProp, Adam and AdamW steps are unchanged when eps is rescaled with the
    gradients (eps c^2 and G0 c^2 for AdaGrad, whose eps is inside the root; eps c otherwise).
    Bit for bit: multiplying by a power of two commutes with rounding (no over/underflow here)."""
    kw = data.draw(hyperparams(name))
    c = 2.0**k
    scaled = dict(kw)
    if name == "adagrad":
        scaled["eps"], scaled["initial_accumulator"] = kw["eps"] * c * c, kw["initial_accumulator"] * c * c
    elif "eps" in kw:
        scaled["eps"] = kw["eps"] * c
    ref = run(getattr(optim, name)(**kw), problem.params0, problem.grads)[1]
    grads_c = [{key: c * v for key, v in g.items()} for g in problem.grads]
    if name in ("gd", "momentum", "nesterov"):
        Us = run(getattr(optim, name)(**kw), problem.params0, grads_c)[1]
        assert_same(Us, [{key: c * v for key, v in u.items()} for u in ref], f"{name}, c = 2^{k}")
    else:
        Us = run(getattr(optim, name)(**scaled), problem.params0, grads_c)[1]
        assert_same(Us, ref, f"{name}, c = 2^{k}")


@settings(max_examples=examples(25))
@given(problem=gradient_problems(steps=SHORT), rho=betas(), eps=epsilons())
def test_rmsprop_second_moment_never_exceeds_adagrad_accumulator(problem, rho, eps):
    r"""nu_t = (1 - rho) sum_s rho^(t-s) g_s^2 <= (1 - rho) sum_s g_s^2 = (1 - rho) G_t, with
    equality at t = 1 (bit for bit: both are fl(fl(1 - rho) fl(g^2))).

    Bound for t > 1: nu_t is a sum of positive terms, each with at most 2t + 1 roundings, so
    fl(nu_t) <= nu_t (1 + gamma_{2t+1}); fl((1 - rho) G_t) >= (1 - rho) G_t (1 - gamma_{t+3})
    (t - 1 additions, the square, 1 - rho and the product)."""
    nus = [s[0].nu for s in run(optim.rmsprop(0.1, decay=rho, eps=eps), problem.params0, problem.grads)[2]]
    Gs = [s[0].sum_of_squares for s in run(optim.adagrad(0.1, eps=eps), problem.params0, problem.grads)[2]]
    for t, (nu, G) in enumerate(zip(nus, Gs, strict=True), start=1):
        for key in nu:
            rhs = (1.0 - rho) * G[key]
            if t == 1:
                assert np.array_equal(nu[key], rhs), key
            else:
                assert np.all(nu[key] <= rhs * (1 + gamma(2 * t + 1)) / (1 - gamma(t + 3))), (t, key)


@settings(max_examples=examples(40))
@given(g=st.lists(st.floats(1e-30, 1e30) | st.floats(-1e30, -1e-30) | st.just(0.0), min_size=1, max_size=6),
       lr=st.floats(1e-4, 1.0), b1=betas(), b2=betas(), eps=epsilons())
def test_adam_first_step_moves_each_weight_by_about_lr_times_sign(g, lr, b1, b2, eps):
    r"""u_1 = -a g / (|g| + eps) exactly in real arithmetic (m_1 / (1 - b1) = g, v_1 / (1 - b2) = g^2),
    so |u_1 + a sign(g)| = a eps / (|g| + eps) (zero where g = 0, where u_1 = 0).

    Rounding: m_hat carries 1 - b1 (1), the product (1), the bias correction -expm1(log b1)
    (<= 3) and the quotient (1), 6 + 1 in all; v_hat 7 plus the square; the root halves that
    and adds 1 (4.5); + eps, the quotient and the factor -a add 3: 15.5 u relative to a. The
    test's own sum and bound add at most 5 u a, hence 24 u."""
    grads = {"w": np.array(g)}
    u, _ = optim.adam(lr, b1=b1, b2=b2, eps=eps).update(grads, optim.adam(lr, b1=b1, b2=b2, eps=eps).init(grads))
    w = grads["w"]
    bound = lr * (eps / (np.abs(w) + eps) + 24 * U)
    assert np.all(np.abs(u["w"] + lr * np.sign(w)) <= bound)
    assert np.all(u["w"][w == 0] == 0)


# -- Nesterov's and Polyak's textbook forms, exactly ---------------------------------------------

A = [[Fraction(2), Fraction(1)], [Fraction(1), Fraction(3)]]
B = [Fraction(1), Fraction(-2)]
ALPHA, BETA = Fraction(1, 8), Fraction(1, 2)
STEPS_EXACT = 8  # dyadic data: ~5 more bits per step, still exact in float64 after 8 steps


def grad_f(w: list[Fraction]) -> list[Fraction]:
    """Gradient of f(w) = w^T A w / 2 - b^T w."""
    return [sum(A[i][j] * w[j] for j in range(2)) - B[i] for i in range(2)]


def float_run(opt: optim.Optimizer, w0: list[Fraction]) -> list[list[Fraction]]:
    Af, bf = np.array(A, dtype=float), np.array(B, dtype=float)[:, None]
    p = {"w": np.array(w0, dtype=float)[:, None]}
    state, out = opt.init(p), []
    for _ in range(STEPS_EXACT):
        u, state = opt.update({"w": Af @ p["w"] - bf}, state, p)
        p = optim.apply_updates(p, u)
        out.append([Fraction(float(x)) for x in p["w"].ravel()])
    return out


W0 = [Fraction(3, 4), Fraction(-1, 2)]


def test_nesterov_is_sutskevers_look_ahead_form():
    """theta_t = theta_{t-1} + v_t, v_t = beta v_{t-1} - alpha grad f(theta_{t-1} + beta v_{t-1}):
    handgrad's w_t (gradient at w_{t-1} only) is theta_t + beta v_t, exactly."""
    ours = float_run(optim.nesterov(float(ALPHA), float(BETA)), W0)
    theta, v = list(W0), [Fraction(0), Fraction(0)]
    for t in range(STEPS_EXACT):
        g = grad_f([theta[i] + BETA * v[i] for i in range(2)])
        v = [BETA * v[i] - ALPHA * g[i] for i in range(2)]
        theta = [theta[i] + v[i] for i in range(2)]
        assert ours[t] == [theta[i] + BETA * v[i] for i in range(2)], t


def test_momentum_is_polyaks_heavy_ball():
    """w_t = w_{t-1} - alpha grad f(w_{t-1}) + beta (w_{t-1} - w_{t-2}), w_{-1} = w_0, exactly."""
    ours = float_run(optim.momentum(float(ALPHA), float(BETA)), W0)
    prev, w = list(W0), list(W0)
    for t in range(STEPS_EXACT):
        g = grad_f(w)
        prev, w = w, [w[i] - ALPHA * g[i] + BETA * (w[i] - prev[i]) for i in range(2)]
        assert ours[t] == w, t
    gd = float_run(optim.gd(float(ALPHA)), W0)
    w = list(W0)
    for t in range(STEPS_EXACT):
        g = grad_f(w)
        w = [w[i] - ALPHA * g[i] for i in range(2)]
        assert gd[t] == w, t


# -- a small real learning problem --------------------------------------------------------------

XOR_OPTS = {
    "gd": optim.gd(0.5), "momentum": optim.momentum(0.5, 0.9), "nesterov": optim.nesterov(0.5, 0.9),
    "adagrad": optim.adagrad(0.3), "rmsprop": optim.rmsprop(0.02), "adam": optim.adam(0.05),
    "adamw": optim.adamw(0.05, weight_decay=1e-3),
}


@pytest.mark.parametrize("name", list(XOR_OPTS))
def test_every_optimizer_learns_xor(name):
    """Batch GD on XOR (2-4-1 tanh/sigmoid, BCE, seeded): the loss falls below 5% of its start
    and all four points are classified right; a flipped update sign would raise it instead."""
    net, p, X, Y = xor_net()
    res = training.batch_gd(net, p, X, Y, XOR_OPTS[name], epochs=400)
    assert res.epoch_losses[-1] < 0.05 * res.epoch_losses[0], res.epoch_losses[[0, -1]]
    assert np.array_equal(net.predict(res.params, X) > 0.5, Y > 0.5)


@pytest.mark.parametrize("variant", ["batch", "sgd", "minibatch"])
@pytest.mark.parametrize("name", ["gd", "adam"])
def test_every_variant_learns_xor(variant, name):
    net, p, X, Y = xor_net()
    if variant == "batch":
        res = training.batch_gd(net, p, X, Y, XOR_OPTS[name], epochs=400)
    elif variant == "sgd":
        res = training.sgd(net, p, X, Y, XOR_OPTS[name], epochs=150, seed=0)
    else:
        res = training.minibatch_gd(net, p, X, Y, XOR_OPTS[name], batch_size=2, epochs=200, seed=0)
    assert res.epoch_losses[-1] < 0.1 * res.epoch_losses[0], res.epoch_losses[[0, -1]]


def test_minibatch_adam_separates_the_two_class_set():
    X, Y = training.two_class_data(200, seed=0)
    net = hg.Network((2, 8, 1), ("tanh", "sigmoid"), "bce")
    p = net.init(np.random.default_rng(0), weight_scale=1.0)
    res = training.minibatch_gd(net, p, X, Y, optim.adam(0.02), batch_size=20, epochs=60, seed=0)
    accuracy = np.mean((net.predict(res.params, X) > 0.5) == (Y > 0.5))
    assert accuracy >= 0.95 and res.epoch_losses[-1] < 0.3 * res.epoch_losses[0], (accuracy, res.epoch_losses[-1])


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(training, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
