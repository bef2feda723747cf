"""Users' conventions: exact translation both ways, messages in the user's names and shapes, the
declared loss, and the worked examples behind docs/certify-your-backward.md (each certified, and a
wrong variant refused with its diagnosis)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from handgrad.reference import referee
from handgrad.reference.judge.conventions import (
    Conventions,
    DeclaredLoss,
    UserGradsError,
    as_exact_array,
    check_oracles_support,
    declared_loss,
    from_user_data,
    from_user_grads,
    from_user_params,
    registered_loss,
    resolve_names,
    to_user,
    user_element_label,
    wrap_backward,
)
from handgrad.reference.judge.diagnosis import diagnose_case

import handgrad as hg
from handgrad import NUMPY_OPS


def _case(sizes=(4, 6, 3), m=5, seed=0, onehot=True):
    rng = np.random.default_rng(seed)
    net = hg.Network(sizes, ["tanh", "softmax"] if sizes[-1] > 1 else "sigmoid",
                     "cross_entropy" if sizes[-1] > 1 else "bce")
    params = net.init(rng, bias_scale=0.5)
    X = rng.standard_normal((sizes[0], m))
    Y = np.eye(sizes[-1])[:, rng.integers(0, sizes[-1], m)] if onehot else rng.dirichlet(np.ones(sizes[-1]), m).T
    return net, params, X, Y


# -- Conventions -------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(layout="row"), ValueError, "layout must be one of"),
    (dict(labels="int"), ValueError, "labels must be one of"),
    (dict(reduction="avg"), ValueError, "reduction must be one of"),
    (dict(bias_shape="flat"), ValueError, "bias_shape must be one of"),
    (dict(half=1), TypeError, "half must be a bool"),
    (dict(l2=-0.1), ValueError, "l2 must be a finite real >= 0"),
    (dict(l2=float("nan")), ValueError, "l2 must be"),
    (dict(no_bias=2), ValueError, "no_bias must be a tuple"),
    (dict(no_bias=(0,)), ValueError, "1-based"),
    (dict(names="W/b"), ValueError, "not a known scheme"),
    (dict(names=("W", "b")), ValueError, "templates need"),
    (dict(names={"w1": "W"}), ValueError, "article's names"),
    (dict(grad_names=3), TypeError, "grad_names must be"),
])
def test_conventions_reject_bad_fields_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        Conventions(**kwargs)


def test_name_schemes_resolve_to_paths():
    assert resolve_names("W1/b1", 2) == {"W1": ("W1",), "B1": ("b1",), "W2": ("W2",), "B2": ("b2",)}
    assert resolve_names("weights[0]/biases[0]", 2)["B2"] == ("biases", 1)
    assert resolve_names(("layers[{i}][W]", "layers[{i}]['b']"), 1) == {"W1": ("layers", 0, "W"),
                                                                       "B1": ("layers", 0, "b")}
    assert resolve_names("fc1.weight/fc1.bias", 1)["W1"] == ("fc1.weight",)
    assert resolve_names("W1/b1", 2, no_bias=(2,)) == {"W1": ("W1",), "B1": ("b1",), "W2": ("W2",)}
    with pytest.raises(ValueError, match="same key"):
        resolve_names({"W1": "w", "B1": "w"}, 1)
    with pytest.raises(ValueError, match="no_bias"):
        resolve_names({"B1": None}, 1)


# -- translation -------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["columns", "rows", "torch"])
@pytest.mark.parametrize("names", [None, "W1/b1", "weights[0]/biases[0]", "fc1.weight/fc1.bias"])
def test_to_user_and_back_is_exact(layout, names):
    net, params, X, Y = _case()
    conv = Conventions(layout=layout, names=names)
    pu, Xu, Yu = to_user(params, X, Y, conv)
    back = from_user_params(pu, conv, net)
    assert all(np.array_equal(back[k], params[k]) for k in params)
    Xa, Ya = from_user_data(Xu, Yu, conv, net)
    assert np.array_equal(Xa, X) and np.array_equal(Ya, Y)
    grads = from_user_grads(pu, conv, net)  # the params themselves, as a structure of the right shapes
    assert all(np.array_equal(grads[k], params[k]) for k in params)


def test_the_layouts_shapes():
    _net, params, X, Y = _case()
    pu, Xu, Yu = to_user(params, X, Y, Conventions(layout="rows", names="W1/b1"))
    assert (pu["W1"].shape, pu["b1"].shape, Xu.shape, Yu.shape) == ((4, 6), (6,), (5, 4), (5, 3))
    assert np.array_equal(Xu @ pu["W1"] + pu["b1"], (params["W1"] @ X + params["B1"]).T)
    pt, Xt, _ = to_user(params, X, Y, Conventions(layout="torch", names="W1/b1"))
    assert pt["W1"].shape == (6, 4) and np.array_equal(Xt @ pt["W1"].T + pt["b1"], (params["W1"] @ X + params["B1"]).T)
    pc, Xc, _ = to_user(params, X, Y, Conventions(bias_shape="vector"))
    assert pc["B1"].shape == (6,) and Xc.shape == (4, 5)
    pr, _, _ = to_user(params, X, Y, Conventions(layout="rows", bias_shape="row"))
    assert pr["B1"].shape == (1, 6)
    assert pu["W1"].flags.c_contiguous and Xu.flags.c_contiguous and not np.shares_memory(pu["W1"], params["W1"])


def test_nested_names_build_lists():
    _net, params, X, Y = _case()
    pu, _, _ = to_user(params, X, Y, Conventions(names="weights[0]/biases[0]"))
    assert isinstance(pu["weights"], list) and [w.shape for w in pu["weights"]] == [(6, 4), (3, 6)]
    nested, _, _ = to_user(params, X, Y, Conventions(names=("layers[{i}][W]", "layers[{i}][b]")))
    assert isinstance(nested["layers"], list) and set(nested["layers"][1]) == {"W", "b"}


def test_labels_the_way_users_pass_them():
    net, params, X, Y = _case()
    _, _, y = to_user(params, X, Y, Conventions(labels="integer"))
    assert y.dtype == np.int64 and y.shape == (5,) and np.array_equal(np.eye(3)[:, y], Y)
    _, _, yo = to_user(params, X, Y, Conventions(layout="rows", labels="onehot"))
    assert yo.shape == (5, 3)
    soft = _case(onehot=False)
    with pytest.raises(ValueError, match="one-hot targets"):
        to_user(soft[1], soft[2], soft[3], Conventions(labels="integer"))
    _net1, p1, X1, _ = _case(sizes=(3, 2, 1), m=4)
    Y1 = np.array([[0.0, 1.0, 1.0, 0.0]])
    _, _, yb = to_user(p1, X1, Y1, Conventions(layout="rows", labels="binary", flat_targets=True))
    assert yb.shape == (4,) and np.array_equal(yb, Y1[0])
    with pytest.raises(ValueError, match="exactly 0 or 1"):
        to_user(p1, X1, Y1 * 0.5, Conventions(labels="binary"))
    with pytest.raises(ValueError, match="one-output net"):
        to_user(params, X, Y, Conventions(flat_targets=True))
    _Xa, Ya = from_user_data(X.T, y, Conventions(layout="rows", labels="integer"), net)
    assert np.array_equal(Ya, Y)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        from_user_data(X.T, y + 3, Conventions(layout="rows", labels="integer"), net)


def test_no_bias_layers():
    net, params, X, Y = _case()
    conv = Conventions(layout="rows", names="W1/b1", no_bias=(2,))
    with pytest.raises(ValueError, match="non-zero B2"):
        to_user(params, X, Y, conv)
    params = {**params, "B2": np.zeros_like(params["B2"])}
    pu, _, _ = to_user(params, X, Y, conv)
    assert set(pu) == {"W1", "b1", "W2"}
    grads = from_user_grads(pu, conv, net)
    assert set(grads) == {"W1", "B1", "W2"}
    assert np.array_equal(from_user_params(pu, conv, net)["B2"], np.zeros((3, 1)))


# -- messages in the user's terms --------------------------------------------------------------

def _user_grads(conv):
    net, params, X, Y = _case()
    pu, _, _ = to_user(params, X, Y, conv)
    return net, pu


def test_a_wrong_shape_is_stated_in_the_users_shapes():
    conv = Conventions(layout="rows", names="W1/b1")
    net, g = _user_grads(conv)
    with pytest.raises(UserGradsError, match=r"^dW1 has shape \(6, 4\) but your W1 is \(4, 6\) \(transposed\?\)$"):
        from_user_grads({**g, "W1": g["W1"].T}, conv, net)
    with pytest.raises(UserGradsError, match=r"db1 has shape \(1, 6\) but your b1 is \(6,\) \(same number"):
        from_user_grads({**g, "b1": g["b1"].reshape(1, 6)}, conv, net)


def test_missing_and_extra_keys_are_named_the_users_way():
    conv = Conventions(layout="rows", names="W1/b1")
    net, g = _user_grads(conv)
    with pytest.raises(UserGradsError, match=r"lack b2 .*declare no_bias"):
        from_user_grads({k: v for k, v in g.items() if k != "b2"}, conv, net)
    with pytest.raises(UserGradsError, match="have unexpected loss"):
        from_user_grads({**g, "loss": np.float64(1.0)}, conv, net)
    with pytest.raises(UserGradsError, match="backward returned ndarray"):
        from_user_grads(g["W1"], conv, net)
    with pytest.raises(UserGradsError, match="dW1 is a list"):
        from_user_grads({**g, "W1": g["W1"].tolist()}, conv, net)


def test_grad_names_differ_from_param_names():
    conv = Conventions(names="W1/b1", grad_names="dW1/db1")
    net, g = _user_grads(conv)
    renamed = {"d" + k: v for k, v in g.items()}
    out = from_user_grads(renamed, conv, net)
    assert set(out) == {"W1", "B1", "W2", "B2"}
    with pytest.raises(UserGradsError, match=r"dW2 has shape \(6, 3\) but your W2 is \(3, 6\)"):
        from_user_grads({**renamed, "dW2": renamed["dW2"].T}, conv, net)


def test_element_labels_speak_the_users_layout_with_the_articles_beside():
    assert user_element_label("W1", (4, 3), Conventions(layout="rows")) == "dW1[3, 4] (the article's w_54^(1))"
    assert user_element_label("W1", (4, 3), Conventions(layout="torch")) == "dW1[4, 3] (the article's w_54^(1))"
    assert user_element_label("B1", (2, 0), Conventions(layout="rows", names="W1/b1")) == \
        "db1[2] (the article's b_3^(1))"
    assert user_element_label("W1", (10, 2)) == "dW1[10, 2] (the article's w_11,3^(1))"
    assert user_element_label("W2", (0, 1), Conventions(names="weights[0]/biases[0]")) == \
        "grads['weights'][1][0, 1] (the article's w_12^(2))"


class _JaxLike:
    """An array-like (as JAX or torch-on-CPU arrays are): only ``__array__``."""

    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


def test_array_likes_are_accepted_only_when_exact():
    a = np.ones((2, 3))
    assert np.array_equal(as_exact_array(_JaxLike(a), "dW1", (2, 3)), a)
    with pytest.raises(UserGradsError, match=r"has shape \(1, 3\)"):
        as_exact_array(_JaxLike(np.ones((1, 3))), "dW1", (2, 3))  # never broadcast
    with pytest.raises(UserGradsError, match="dtype float32 but expected float64"):
        as_exact_array(_JaxLike(a.astype(np.float32)), "dW1", (2, 3), np.dtype(np.float64))
    with pytest.raises(UserGradsError, match="floating dtype"):
        as_exact_array(np.ones((2, 3), dtype=int), "dW1", (2, 3))
    with pytest.raises(UserGradsError, match="is a float"):
        as_exact_array(1.0, "dB1", (1, 1))


# -- wrapping ----------------------------------------------------------------------------------

def test_wrap_backward_around_a_function_and_a_model():
    net, params, X, Y = _case()
    conv = Conventions(layout="rows", names="W1/b1", labels="integer")
    seen = {}

    def backward(p, Xu, y):
        seen["shapes"] = (p["W1"].shape, Xu.shape, y.shape)
        return 1.5, {k: v.copy() for k, v in p.items()}  # (loss, grads)

    out = wrap_backward(backward, conv, net)(params, X, Y)
    assert seen["shapes"] == ((4, 6), (5, 4), (5,)) and np.array_equal(out["W1"], params["W1"])

    class Model:  # CS231n's shape: params attribute, loss(X, y=None) -> (loss, grads)
        def __init__(self):
            self.params = {"original": True}

        def loss(self, Xu, y=None):
            return 0.0, {k: np.zeros_like(v) for k, v in self.params.items()}

    model = Model()
    grads = wrap_backward(model, conv, net)(params, X, Y)
    assert set(grads) == set(params) and model.params == {"original": True}
    with pytest.raises(TypeError, match="no params dict"):
        wrap_backward(object(), conv, net)


# -- the declared loss -------------------------------------------------------------------------

def test_declared_loss_is_the_article_loss_by_default_and_one_object_per_convention():
    assert declared_loss("squared_error", Conventions(), 3) is hg.get_loss("squared_error")
    half = declared_loss("squared_error", Conventions(half=True), 3)
    assert isinstance(half, DeclaredLoss) and half.name == "squared_error[1/2]"
    assert half is declared_loss("squared_error", Conventions(half=True), 3)
    both = declared_loss("squared_error", Conventions(half=True, reduction="mean_all"), 3)
    assert both.name == "squared_error[1/2, mean over 3 outputs]" and both.scale == Fraction(1, 6)
    yhat, y = np.array([[1.0], [2.0], [4.0]]), np.zeros((3, 1))
    assert both.value(yhat, y)[0] == 21 / 6 and np.array_equal(both.grad(yhat, y), 2 * yhat / 6)
    with pytest.raises(ValueError, match="half=True declares the 1/2 of a squared error"):
        declared_loss("cross_entropy", Conventions(half=True), 3)


def test_the_oracles_differentiate_the_declared_per_sample_loss():
    from handgrad.reference.oracles.jax_oracle import get_jax_oracle

    rng = np.random.default_rng(3)
    base = hg.Network((3, 4, 2), ["tanh", "identity"], "squared_error")
    declared = hg.Network((3, 4, 2), ["tanh", "identity"],
                          declared_loss("squared_error", Conventions(reduction="mean_all"), 2))
    params = base.init(rng)
    X, Y = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    g0, g1 = get_jax_oracle(base).grads(params, X, Y), get_jax_oracle(declared).grads(params, X, Y)
    assert all(np.allclose(g1[k], g0[k] / 2, rtol=1e-14, atol=0) for k in g0)
    assert referee(declared, params, X, Y, declared.backward).ok
    assert not referee(declared, params, X, Y, base.backward).ok


def _followers():
    from importlib import import_module

    return [import_module(f"handgrad.reference.{m}") for m in
            ("oracles.sympy_oracle", "oracles.jax_oracle", "oracles.finite_diff", "judge.tolerance")]


def test_sum_and_l2_are_refused_until_the_oracles_follow_them(monkeypatch):
    check_oracles_support(declared_loss("squared_error", Conventions(half=True), 1))  # per-sample: always
    loss = declared_loss("squared_error", Conventions(reduction="sum", l2=0.1), 1)
    modules = _followers()
    monkeypatch.setattr(modules[1], "FOLLOWS_DECLARED_LOSS", False, raising=False)
    with pytest.raises(NotImplementedError, match=r"reduction='sum' and l2=0\.1: .*jax"):
        check_oracles_support(loss)
    for module in modules:
        monkeypatch.setattr(module, "FOLLOWS_DECLARED_LOSS", True, raising=False)
    check_oracles_support(loss)
    monkeypatch.setattr(modules[0], "FOLLOWS_DECLARED_LOSS", False)
    check_oracles_support(loss, oracles=("jax", "fd"))  # SymPy not used: not asked


def test_the_penalty_is_a_shared_definition():
    loss = declared_loss("squared_error", Conventions(l2=0.5, l2_half=True), 1)
    params = {"W1": np.array([[1.0, 2.0]]), "B1": np.array([[3.0]]), "W2": np.array([[2.0]]), "B2": np.zeros((1, 1))}
    assert loss.penalty(params, NUMPY_OPS).shape == (1, 1)
    assert loss.penalty(params, NUMPY_OPS)[0, 0] == 0.5 * (1 + 4 + 4) / 2 and loss.penalty_coefficient() == 0.5
    with_b = declared_loss("squared_error", Conventions(l2=0.5, l2_biases=True), 1)
    assert with_b.penalty(params, NUMPY_OPS)[0, 0] == 0.5 * (1 + 4 + 9 + 4) and with_b.penalty_coefficient() == 1.0
    assert with_b.sample_weight(4) == 0.25
    assert declared_loss("squared_error", Conventions(reduction="sum"), 1).sample_weight(4) == 1.0


def test_registered_loss_leaves_the_registry_as_it_was():
    loss = declared_loss("squared_error", Conventions(half=True), 2)
    assert loss.name not in hg.loss_names()
    with registered_loss(loss):
        assert hg.get_loss(loss.name) is loss
    assert loss.name not in hg.loss_names()


# =============================================================================================
# Worked examples (docs/certify-your-backward.md, docs/examples/): the user's code as written,
# certified on drawn cases in the article's conventions through wrap_backward and the public
# referee; a wrong variant refused and diagnosed.
# =============================================================================================

def _cases(net, seeds, *, ms=(1, 2, 5), onehot=False, binary=False):
    """Seeded article-layout cases at several batch sizes (the case design of the case-design issue
    will draw the declared label kind; here one-hot labels are drawn by hand)."""
    out = []
    for seed, m in zip(seeds, ms, strict=True):
        rng = np.random.default_rng(seed)
        params = net.init(rng, bias_scale=0.5)
        X = rng.standard_normal((net.sizes[0], m))
        n = net.sizes[-1]
        if onehot:
            Y = np.eye(n)[:, rng.integers(0, n, m)]
        elif binary:
            Y = rng.integers(0, 2, (n, m)).astype(np.float64)
        else:
            Y = rng.standard_normal((n, m))
        out.append((params, X, Y))
    return out


def _certify(backward, net, conv, cases):
    wrapped = wrap_backward(backward, conv, net)
    return [referee(net, p, X, Y, wrapped) for p, X, Y in cases]


# -- 1. CS231n's two-layer net: rows, W1 (D, H), b1 (H,), ReLU, softmax on integer labels -------

def cs231n_loss(params, X, y, reg=0.0, bug=None):
    """The two-layer net as CS231n's assignment writes it (our own code, samples as rows)."""
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    N = X.shape[0]
    h = np.maximum(0, X @ W1 + b1)
    scores = h @ W2 + b2
    shifted = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(N), y]).mean() + reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    dscores = probs.copy()
    dscores[np.arange(N), y] -= 1
    if bug != "sum over the batch":
        dscores /= N
    grads = {"W2": h.T @ dscores + 2 * reg * W2, "b2": dscores.sum(axis=0)}
    dh = dscores @ W2.T
    dh[h <= 0] = 0
    grads["W1"] = X.T @ dh + 2 * reg * W1
    grads["b1"] = dh.sum(axis=0)
    return loss, grads


CS231N = Conventions(layout="rows", names="W1/b1", labels="integer")
CS231N_NET = hg.Network((4, 5, 3), ["relu", "softmax"], "cross_entropy")


def test_cs231n_two_layer_net_is_certified():
    reports = _certify(cs231n_loss, CS231N_NET, CS231N, _cases(CS231N_NET, (0, 1, 2), onehot=True))
    assert [r.verdict for r in reports] == ["certified"] * 3


def test_cs231n_sum_over_the_batch_is_refused_and_diagnosed(capsys):
    params, X, Y = _cases(CS231N_NET, (2,), ms=(5,), onehot=True)[0]

    def buggy(p, X, y):
        return cs231n_loss(p, X, y, bug="sum over the batch")

    report = _certify(buggy, CS231N_NET, CS231N, [(params, X, Y)])[0]
    assert report.verdict == "mismatch"
    found = diagnose_case(CS231N_NET, params, X, Y, wrap_backward(buggy, CS231N, CS231N_NET), conventions=CS231N)
    print(*found, sep="\n")
    assert [d.cause for d in found] == ["factor"]
    assert "every tensor (dW1, db1, dW2 and db2) is exactly N = 5 times" in found[0].sentence
    assert "sum over the batch where the mean is expected" in capsys.readouterr().out


def test_cs231n_l2_term_undeclared_is_refused_and_its_lambda_shown():
    params, X, Y = _cases(CS231N_NET, (2,), ms=(5,), onehot=True)[0]

    def with_reg(p, X, y):
        return cs231n_loss(p, X, y, reg=0.05)

    assert _certify(with_reg, CS231N_NET, CS231N, [(params, X, Y)])[0].verdict == "mismatch"
    found = diagnose_case(CS231N_NET, params, X, Y, wrap_backward(with_reg, CS231N, CS231N_NET), conventions=CS231N)
    assert [d.cause for d in found] == ["l2"]
    assert found[0].evidence["coefficient"] == pytest.approx(0.1) and "declare l2=0.05" in found[0].sentence


def _oracles_follow(loss) -> bool:
    try:
        check_oracles_support(loss)
    except NotImplementedError:
        return False
    return True


def test_cs231n_with_its_l2_declared():
    """Certified: the oracles differentiate the declared penalty (docs/users-code.md); the 2 of
    ``2 * reg * W`` forgotten is then refused and diagnosed as half the declared coefficient."""
    conv = CS231N.with_(l2=0.05)
    loss = declared_loss("cross_entropy", conv, 3)
    assert _oracles_follow(loss)  # every oracle and the budget follow the declared loss
    net = hg.Network((4, 5, 3), ["relu", "softmax"], loss)

    def good(p, X, y):
        return cs231n_loss(p, X, y, reg=0.05)

    def forgot_the_2(p, X, y):
        return cs231n_loss(p, X, y, reg=0.025)

    cases = _cases(net, (0, 1, 2), onehot=True)
    assert [r.verdict for r in _certify(good, net, conv, cases)] == ["certified"] * 3
    assert [r.verdict for r in _certify(forgot_the_2, net, conv, cases)] == ["mismatch"] * 3
    params, X, Y = cases[-1]
    found = diagnose_case(net, params, X, Y, wrap_backward(forgot_the_2, conv, net), conventions=conv)
    assert [d.cause for d in found] == ["l2"] and "half the declared coefficient" in found[0].sentence


def test_cs231n_with_the_sum_declared():
    conv = CS231N.with_(reduction="sum")
    loss = declared_loss("cross_entropy", conv, 3)
    assert _oracles_follow(loss)  # every oracle and the budget follow the declared loss
    net = hg.Network((4, 5, 3), ["relu", "softmax"], loss)

    def summed(p, X, y):
        value, g = cs231n_loss(p, X, y)
        return value, {k: v * X.shape[0] for k, v in g.items()}

    cases = _cases(net, (0, 1, 2), onehot=True)
    assert [r.verdict for r in _certify(summed, net, conv, cases)] == ["certified"] * 3
    params, X, Y = cases[-1]
    found = diagnose_case(net, params, X, Y, wrap_backward(cs231n_loss, conv, net), conventions=conv)
    assert [d.cause for d in found] == ["factor"]
    assert "mean over the batch where the sum is declared" in found[0].sentence


# -- 2. A numpy net in torch layout with MSELoss's mean (over batch and outputs) ---------------

TORCH = Conventions(layout="torch", names="fc1.weight/fc1.bias", reduction="mean_all")
TORCH_NET = hg.Network((3, 4, 2), ["tanh", "identity"], declared_loss("squared_error", TORCH, 2))


def torch_style_backward(params, X, Y, bug=None):
    """nn.Linear layout (weight (out, in), bias (out,)), loss = ((yhat - Y) ** 2).mean() as MSELoss."""
    W1, b1, W2, b2 = (params[k] for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"))
    h = np.tanh(X @ W1.T + b1)
    yhat = h @ W2.T + b2
    dy = 2 * (yhat - Y) / (Y.size if bug is None else Y.shape[0])
    dh = dy @ W2 * (1 - h ** 2)
    return {"fc1.weight": dh.T @ X, "fc1.bias": dh.sum(axis=0), "fc2.weight": dy.T @ h, "fc2.bias": dy.sum(axis=0)}


def test_torch_layout_mse_loss_is_certified():
    reports = _certify(torch_style_backward, TORCH_NET, TORCH, _cases(TORCH_NET, (3, 4, 5)))
    assert [r.verdict for r in reports] == ["certified"] * 3


def test_torch_layout_mean_over_the_batch_only_is_refused_and_diagnosed():
    params, X, Y = _cases(TORCH_NET, (5,), ms=(5,))[0]

    def buggy(p, X, Y):
        return torch_style_backward(p, X, Y, bug="mean over the batch only")

    assert _certify(buggy, TORCH_NET, TORCH, [(params, X, Y)])[0].verdict == "mismatch"
    found = diagnose_case(TORCH_NET, params, X, Y, wrap_backward(buggy, TORCH, TORCH_NET), conventions=TORCH)
    print(*found, sep="\n")
    assert [d.cause for d in found] == ["factor"] and found[0].evidence["factor"] == 2
    assert "reduction='mean_all' declares their mean" in found[0].sentence
    assert "dfc1.weight" not in found[0].sentence and "grads['fc1.weight']" in found[0].sentence


# -- 3. The article's net (columns, W1/B1, sigmoid, squared error) as a model object ------------

class ArticleNet:
    """The article's 2-3-3-1 sigmoid net written as a class with a params dict and backward(X, Y)."""

    def __init__(self, transpose_bug=False):
        self.params = {}
        self.transpose_bug = transpose_bug

    def backward(self, X, Y):
        p, m = self.params, X.shape[1]
        a = [X]
        for l in (1, 2, 3):
            a.append(1 / (1 + np.exp(-(p[f"W{l}"] @ a[-1] + p[f"B{l}"]))))
        grads = {}
        g = 2 * (a[3] - Y) / m
        for l in (3, 2, 1):
            delta = g * a[l] * (1 - a[l])
            grads[f"W{l}"] = delta @ a[l - 1].T
            if self.transpose_bug and l == 2:
                grads["W2"] = grads["W2"].T
            grads[f"B{l}"] = delta.sum(axis=1, keepdims=True)
            g = p[f"W{l}"].T @ delta
        return grads


ARTICLE = Conventions()
ARTICLE_NET = hg.article_network()


def test_the_articles_net_as_a_model_is_certified():
    cases = _cases(ARTICLE_NET, (6, 7, 8))
    cases = [(p, X, 1 / (1 + np.exp(-Y))) for p, X, Y in cases]  # labels in (0, 1) like the article's 0.6
    reports = _certify(ArticleNet(), ARTICLE_NET, ARTICLE, cases)
    assert [r.verdict for r in reports] == ["certified"] * 3


def test_the_articles_net_with_a_transposed_square_layer_is_refused_and_diagnosed():
    params, X, Y = _cases(ARTICLE_NET, (8,), ms=(4,))[0]
    model = ArticleNet(transpose_bug=True)
    report = _certify(model, ARTICLE_NET, ARTICLE, [(params, X, Y)])[0]
    assert report.verdict == "mismatch" and {mm.tensor for mm in report.mismatches} == {"W2"}
    found = diagnose_case(ARTICLE_NET, params, X, Y, wrap_backward(model, ARTICLE, ARTICLE_NET))
    print(*found, sep="\n")
    assert [d.cause for d in found] == ["transpose"] and found[0].tensors == ("W2",)


def test_the_penalty_differentiates_the_same_under_sympy_and_jax():
    import jax
    import sympy as sp
    from handgrad.reference.oracles.ops import SYMPY_OPS, jax_ops

    loss = declared_loss("squared_error", Conventions(l2=0.25), 1)
    w = np.array([[sp.Symbol("w11"), sp.Symbol("w12")]], dtype=object)
    expr = loss.penalty({"W1": w, "B1": np.array([[sp.Symbol("b1")]], dtype=object)}, SYMPY_OPS)[0, 0]
    assert sp.simplify(sp.diff(expr, w[0, 0]) - 0.5 * w[0, 0]) == 0 and sp.diff(expr, sp.Symbol("b1")) == 0
    ops = jax_ops()
    W = np.array([[1.0, -2.0]])
    g = jax.grad(lambda v: loss.penalty({"W1": v}, ops)[0, 0])(W)
    assert np.allclose(np.asarray(g), loss.penalty_coefficient() * W, rtol=1e-15, atol=0)


# -- the worked examples through the public certify_backward (cases drawn by the suite) ---------

def test_torch_layout_example_through_certify_backward():
    from handgrad.reference import CertificationError, certify_backward

    with registered_loss(TORCH_NET.loss):  # the case design names losses: registered for the call
        cert = certify_backward(wrap_backward(torch_style_backward, TORCH, TORCH_NET), TORCH_NET.sizes,
                                ["tanh", "identity"], TORCH_NET.loss, examples=6)
        assert cert.ok and "squared_error[mean over 2 outputs]" in cert.text()

        def buggy(p, X, Y):
            return torch_style_backward(p, X, Y, bug="mean over the batch only")

        with pytest.raises(CertificationError, match="NOT CERTIFIED"):
            certify_backward(wrap_backward(buggy, TORCH, TORCH_NET), TORCH_NET.sizes, ["tanh", "identity"],
                             TORCH_NET.loss, examples=6)
    assert TORCH_NET.loss.name not in hg.loss_names()


def test_article_model_example_through_certify_backward():
    from handgrad.reference import certify_backward

    cert = certify_backward(wrap_backward(ArticleNet(), ARTICLE, ARTICLE_NET), ARTICLE_NET.sizes, "sigmoid",
                            "squared_error", examples=6)
    assert cert.ok and cert.certified >= 1


def test_the_command_line_declares_the_same_conventions():
    import argparse

    from handgrad.reference.judge.conventions import add_convention_arguments, conventions_from_args

    parser = argparse.ArgumentParser()
    add_convention_arguments(parser)
    assert conventions_from_args(parser.parse_args([])) == Conventions()
    conv = conventions_from_args(parser.parse_args(
        ["--layout", "rows", "--names", "W1/b1", "--labels", "integer", "--reduction", "mean_all", "--half",
         "--l2", "0.05", "--l2-half", "--no-bias", "1,3"]))
    assert conv == Conventions(layout="rows", names="W1/b1", labels="integer", reduction="mean_all", half=True,
                               l2=0.05, l2_half=True, no_bias=(1, 3))
    templ = conventions_from_args(parser.parse_args(["--names", "layers[{i}][W],layers[{i}][b]"]))
    assert resolve_names(templ.names, 1) == {"W1": ("layers", 0, "W"), "B1": ("layers", 0, "b")}
    with pytest.raises(ValueError, match="--names 'W1' is neither"):
        conventions_from_args(parser.parse_args(["--names", "W1"]))
    with pytest.raises(ValueError, match="--no-bias takes layer numbers"):
        conventions_from_args(parser.parse_args(["--no-bias", "two"]))
    with pytest.raises(ValueError, match="l2 must be"):
        conventions_from_args(parser.parse_args(["--l2", "-1"]))


def test_a_case_is_described_the_way_the_user_receives_it():
    from handgrad.reference.judge.conventions import describe_user_case

    _, params, X, Y = _case()
    line = describe_user_case(params, X, Y, CS231N)
    assert line.startswith("your call: W1 (4, 6), b1 (6,), W2 (6, 3), b2 (3,); X (5, 4); y = [")
    assert line.endswith("(integer labels)") and str(np.argmax(Y, axis=0).tolist()) in line


def test_certify_backward_takes_the_conventions_itself():
    # no wrapper and no registration by hand: certify_backward(conventions=...) does both
    from handgrad.reference import CertificationError, certify_backward

    cert = certify_backward(torch_style_backward, (3, 4, 2), ["tanh", "identity"], "squared_error",
                            conventions=TORCH, examples=6)
    assert cert.ok and "squared_error[mean over 2 outputs]" in cert.text()
    assert TORCH_NET.loss.name not in hg.loss_names()  # the declared loss was registered for the call only

    def buggy(p, X, Y):
        return torch_style_backward(p, X, Y, bug="mean over the batch only")

    with pytest.raises(CertificationError, match="NOT CERTIFIED"):
        certify_backward(buggy, (3, 4, 2), ["tanh", "identity"], "squared_error", conventions=TORCH, examples=6)
    with pytest.raises(TypeError, match="conventions must be a Conventions"):
        certify_backward(buggy, (3, 4, 2), conventions={"layout": "torch"})


def test_certify_backward_cs231n_rows_with_integer_labels():
    # the course's two-layer net as written (rows, W (in, out), b (out,), integer labels): certified
    # on one-hot draws only (integer labels are one-hot in the article's layout); a sum where the
    # mean belongs is refused
    from handgrad.reference import CertificationError, certify_backward

    cert = certify_backward(cs231n_loss, (4, 5, 3), ["relu", "softmax"], "cross_entropy", conventions=CS231N,
                            examples=6)
    assert cert.ok, cert.text()
    with pytest.raises(CertificationError, match="NOT CERTIFIED"):
        certify_backward(lambda p, X, y: cs231n_loss(p, X, y, bug="sum over the batch"), (4, 5, 3),
                         ["relu", "softmax"], "cross_entropy", conventions=CS231N, examples=6)


def test_default_declared_labels_keep_bces_exact_zero_one_labels() -> None:
    r"""Conventions left at labels="distribution" narrow the cross entropies to normalized labels
    but must not drop BCE's exact 0/1 targets (a Bernoulli target is a distribution over {0, 1})."""
    from handgrad.reference import certify_backward

    net = hg.Network((3, 4, 1), ["tanh", "sigmoid"], "bce")
    cert = certify_backward(net.backward, (3, 4, 1), ["tanh", "sigmoid"], "bce",
                            conventions=Conventions(names="W1/B1"), examples=4)
    assert cert.ok and {"hard", "soft"} <= set(cert.to_dict()["decided"]["labels"]), cert.text()
