"""Behaviour that mutation testing (scripts/mutation.py, docs/mutation.md) found unchecked.

Each test states a behaviour of handgrad: a value, a gradient agreeing with an oracle within the
referee's derived budget, a convention, or an error message naming the argument. None pins an
implementation detail. Groups:

* the activation factories called at run time (mutmut only sees calls made after import, and the
  registry's built-ins are built during import), with non-default parameters;
* every shared definition agrees with handgrad's stable forward (the oracles differentiate the
  definitions, so a wrong definition is a wrong oracle);
* the Ops namespace (erf, erfc, colsum) on the inputs it documents: empty, one element, int,
  float32, object arrays;
* the kink convention followed by the oracles at exact zeros, not only by the hand derivative;
* label families the random cases never draw: exact 0/1 BCE labels, one-hot and unnormalized
  cross-entropy labels, predictions on the closed interval's ends;
* samples of very different scale in one batch (per-column stabilisation);
* user hooks whose documented contract the built-ins never exercise: a derivative that reads the
  activation ``a``, a fused rule that reads the logits ``z``;
* construction and validation errors, and the registries.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from handgrad.reference import referee
from handgrad.reference.oracles.jax_oracle import jax_grads

import handgrad as hg
from handgrad.activations import NUMPY_OPS

ORACLES = ("jax", "fd")
POINTS = (-3.0, -0.5, 0.0, 0.25, 0.5, 2.0)  # 0.25 and 0.5 sit between the kink and 1


def _col(values: tuple[float, ...] | list[float], dtype: type = np.float64) -> np.ndarray:
    return np.array(values, dtype=dtype).reshape(-1, 1)


# -- activation factories, called at run time ---------------------------------------------------

def _leaky(slope: float) -> tuple[Callable[[float], float], Callable[[float], float]]:
    return (lambda z: z if z > 0 else slope * z), (lambda z: 1.0 if z > 0 else slope)


def _elu(alpha: float) -> tuple[Callable[[float], float], Callable[[float], float]]:
    return (lambda z: z if z > 0 else alpha * math.expm1(z)), (lambda z: 1.0 if z > 0 else alpha * math.exp(z))


FACTORIES = [
    pytest.param(lambda: hg.leaky_relu(0.2), "leaky_relu(0.2)", _leaky(0.2), id="leaky_relu(0.2)"),
    pytest.param(lambda: hg.leaky_relu(), "leaky_relu", _leaky(0.01), id="leaky_relu()"),
    pytest.param(lambda: hg.elu(0.5), "elu(0.5)", _elu(0.5), id="elu(0.5)"),
    pytest.param(lambda: hg.elu(2.0), "elu(2)", _elu(2.0), id="elu(2)"),
    pytest.param(lambda: hg.elu(), "elu", _elu(1.0), id="elu()"),
]


@pytest.mark.parametrize(("make", "name", "formulas"), FACTORIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_factory_activation_values_derivatives_and_kink_convention(make, name, formulas, dtype) -> None:
    act = make()
    f, fprime = formulas
    assert act.name == name and act.kinks == (0.0,) and act.elementwise
    z = _col(POINTS, dtype)
    rtol = 1e-6 if dtype == np.float32 else 1e-15
    expected_a = _col([f(v) for v in POINTS])
    expected_d = _col([fprime(v) for v in POINTS])  # at z = 0: the left branch (slope, alpha)
    a, d = act(z), act.derivative(z, act(z))
    assert a.dtype == dtype and d.dtype == dtype
    np.testing.assert_allclose(a, expected_a, rtol=rtol, atol=0)
    np.testing.assert_allclose(d, expected_d, rtol=rtol, atol=0)
    np.testing.assert_allclose(act.definition(z.astype(np.float64), NUMPY_OPS), expected_a, rtol=1e-15, atol=0)


@pytest.mark.parametrize(("make", "name", "formulas"), FACTORIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_factory_activation_is_finite_and_silent_at_extremes(make, name, formulas, dtype) -> None:
    act = make()
    z = _col([-1e4, -1000.0, 1000.0, 1e4], dtype)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        a = act(z)
        d = act.backward(z, a, np.ones_like(z))
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(d))
    assert a[-1, 0] == dtype(1e4) and d[-1, 0] == 1


def test_leaky_relu_with_slope_one_is_smooth_and_named_by_its_slope() -> None:
    act = hg.leaky_relu(1.0)
    assert act.name == "leaky_relu(1)" and act.kinks == ()


@pytest.mark.parametrize(("call", "match"), [
    (lambda: hg.leaky_relu(math.inf), "slope must be finite, got inf"),
    (lambda: hg.elu(math.nan), "alpha must be finite, got nan"),
], ids=["leaky_relu(inf)", "elu(nan)"])
def test_factory_rejects_non_finite_parameters(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# -- shared definitions agree with the stable forwards --------------------------------------------

def _labels(loss: hg.Loss, rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    if loss.target_kind == "unit":
        return rng.uniform(0, 1, (n, m))
    if loss.target_kind == "distribution":
        return rng.dirichlet(np.ones(n), m).T
    return rng.standard_normal((n, m))


def test_every_activation_definition_equals_its_forward() -> None:
    z = np.linspace(-3, 3, 12).reshape(3, 4)
    acts = list(hg.iter_activations())
    assert [a.name for a in acts] == hg.activation_names() and all(isinstance(a, hg.Activation) for a in acts)
    for act in acts:
        np.testing.assert_allclose(act.definition(z, NUMPY_OPS), act(z), rtol=1e-13, atol=1e-15, err_msg=act.name)


def test_every_loss_definition_and_fused_definition_equals_its_value() -> None:
    rng = np.random.default_rng(7)
    losses = list(hg.iter_losses())
    assert [loss.name for loss in losses] == hg.loss_names()
    for loss in losses:
        n, m = 3, 4
        y = _labels(loss, rng, n, m)
        yhat = rng.uniform(0.05, 0.95, (n, m)) if loss.prediction_range == (0.0, 1.0) else rng.standard_normal((n, m))
        np.testing.assert_allclose(np.reshape(loss.definition(yhat, y, NUMPY_OPS), (m,)), loss.value(yhat, y),
                                   rtol=1e-13, err_msg=loss.name)
        for act_name, rule in loss.fused.items():
            z = rng.standard_normal((n, m))
            np.testing.assert_allclose(np.reshape(rule.definition(z, y, NUMPY_OPS), (m,)), rule.value(z, y),
                                       rtol=1e-13, err_msg=f"{loss.name} after {act_name}")


# -- the Ops namespace on the inputs it documents ------------------------------------------------

class _Symbolic:
    """An exact number stand-in: object arrays call the element's own erf()/erfc()."""

    def __init__(self, label: str) -> None:
        self.label = label

    def erf(self) -> str:
        return f"erf({self.label})"

    def erfc(self) -> str:
        return f"erfc({self.label})"


@pytest.mark.parametrize("values", [[0.3], [-2.0, 0.0, 0.5, 1.5]], ids=["one element", "four elements"])
def test_numpy_ops_erf_and_erfc_values(values: list[float]) -> None:
    x = _col(values)
    np.testing.assert_allclose(NUMPY_OPS.erf(x), _col([math.erf(v) for v in values]), rtol=1e-15)
    np.testing.assert_allclose(NUMPY_OPS.erfc(x), _col([math.erfc(v) for v in values]), rtol=1e-15)


def test_numpy_ops_erf_keeps_float32_and_promotes_integers() -> None:
    f32 = NUMPY_OPS.erf(np.array([[0.5, 1.0]], dtype=np.float32))
    assert f32.dtype == np.float32
    ints = NUMPY_OPS.erf(np.array([[1, 2]]))
    assert ints.dtype == np.float64
    np.testing.assert_allclose(ints, [[math.erf(1.0), math.erf(2.0)]], rtol=1e-15)


@pytest.mark.parametrize("fn", ["erf", "erfc"])
def test_numpy_ops_erf_on_empty_and_object_arrays(fn: str) -> None:
    empty = getattr(NUMPY_OPS, fn)(np.zeros((0, 3)))
    assert empty.shape == (0, 3)
    obj = np.array([[_Symbolic("a"), _Symbolic("b")]], dtype=object)
    assert getattr(NUMPY_OPS, fn)(obj).tolist() == [[f"{fn}(a)", f"{fn}(b)"]]


def test_numpy_ops_colsum_sums_each_column_into_one_row() -> None:
    x = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    out = NUMPY_OPS.colsum(x)
    assert out.shape == (1, 3)
    np.testing.assert_array_equal(out, [[11.0, 22.0, 33.0]])


# -- the kink convention in the oracles, at exact zeros ---------------------------------------

@pytest.mark.parametrize("make", [lambda: hg.get_activation("relu"), lambda: hg.leaky_relu(0.2),
                                  lambda: hg.elu(0.5)], ids=["relu", "leaky_relu(0.2)", "elu(0.5)"])
def test_jax_oracle_follows_the_left_branch_at_an_exact_kink(make) -> None:
    act = make()
    net = hg.Network((2, 2, 1), [act, "identity"], "squared_error")
    # Unit 1: z = x1 - x2 = 0 exactly for sample 1; unit 2: z = x1 = 1 > 0; every number is exact.
    p = {"W1": np.array([[1.0, -1.0], [1.0, 0.0]]), "B1": np.zeros((2, 1)),
         "W2": np.array([[1.0, 0.5]]), "B2": np.zeros((1, 1))}
    X, Y = np.array([[1.0], [1.0]]), np.array([[0.25]])
    assert net.forward(p, X).z[0][0, 0] == 0.0
    hand, ref = net.backward(p, X, Y), jax_grads(net, p, X, Y)
    slope = act.derivative(np.zeros((1, 1)), np.zeros((1, 1)))[0, 0]
    assert slope == {"relu": 0.0, "leaky_relu(0.2)": 0.2, "elu(0.5)": 0.5}[act.name]
    for k in net.param_names:
        np.testing.assert_allclose(hand[k], ref[k], rtol=1e-15, atol=1e-15, err_msg=k)


# -- user hooks whose contract the built-ins never exercise -----------------------------------

def _sigmoid_def(z: Any, ops: hg.Ops) -> Any:
    return 1 / (1 + ops.exp(-z))


def _sigmoid_from_activation(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    r"""The article's :math:`x(1-x)`: a derivative that reads the activation, not z."""
    return a * (1 - a)


SIGMOID_FROM_A = hg.Activation("sigmoid_from_a", _sigmoid_def, hg.get_activation("sigmoid").forward,
                               _sigmoid_from_activation)


def test_backward_hands_the_activation_to_a_derivative_that_reads_it() -> None:
    z = np.array([[-1.0, 0.5], [2.0, 0.0]])
    a = SIGMOID_FROM_A(z)
    g = np.array([[1.0, -2.0], [0.5, 3.0]])
    np.testing.assert_allclose(SIGMOID_FROM_A.backward(z, a, g), g * a * (1 - a), rtol=1e-15)


@pytest.mark.parametrize("sizes", [(2, 3, 4, 1), (3, 3, 3, 3)], ids=["widths differ", "square"])
def test_network_passes_each_layer_its_own_activation(sizes: tuple[int, ...]) -> None:
    # Every built-in derivative ignores a; this one reads it, so handing it another layer's
    # activation (or none) is a wrong gradient, or a crash when the shapes differ.
    net = hg.Network(sizes, SIGMOID_FROM_A, "squared_error")
    rng = np.random.default_rng(11)
    p = net.init(rng, bias_scale=0.5)
    X, Y = rng.standard_normal((sizes[0], 3)), rng.uniform(0, 1, (sizes[-1], 3))
    r = referee(net, p, X, Y, net.backward, oracles=ORACLES)
    assert r.verdict == "certified", r.text()


def _bce_logits_delta(z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
    r""":math:`\sigma(z) - y` computed from the logits, as the FusedRule contract allows."""
    return hg.get_activation("sigmoid")(z) - y


def test_network_hands_the_logits_to_a_fused_rule_that_reads_them() -> None:
    builtin = hg.get_loss("bce")
    rule = hg.FusedRule(builtin.fused["sigmoid"].definition, builtin.fused["sigmoid"].value, _bce_logits_delta)
    loss = hg.Loss("bce_logits_delta", builtin.definition, builtin.value, builtin.grad, fused={"sigmoid": rule},
                   target_range=(0.0, 1.0), prediction_range=(0.0, 1.0), target_kind="unit")
    net = hg.Network((2, 3, 1), "sigmoid", loss)
    rng = np.random.default_rng(12)
    p = net.init(rng)
    X, Y = rng.standard_normal((2, 4)), np.array([[0.0, 1.0, 0.25, 1.0]])
    ref = hg.Network((2, 3, 1), "sigmoid", "bce")
    for k, v in net.backward(p, X, Y).items():
        np.testing.assert_allclose(v, ref.backward(p, X, Y)[k], rtol=1e-15, atol=1e-17, err_msg=k)


# -- label families and prediction ends ---------------------------------------------------------

def _num(text: str) -> str:
    """A number as the messages print it today: ``0.0`` or numpy 2's ``np.float64(0.0)``."""
    return rf"(?:np\.float64\()?{re.escape(text)}\)?"


def test_bce_with_exact_zero_one_labels_is_the_log_of_the_right_probability() -> None:
    bce = hg.get_loss("bce")
    p, y = np.array([[0.2, 0.7, 0.9]]), np.array([[0.0, 1.0, 0.0]])
    expected = -(math.log(0.8) + math.log(0.7) + math.log(0.1)) / 3
    assert bce(p, y) == pytest.approx(expected, rel=1e-15)
    np.testing.assert_allclose(bce.gradient(p, y), (p - y) / (p * (1 - p)) / 3, rtol=1e-15)


def test_bce_prediction_at_the_ends_with_the_matching_label_costs_nothing() -> None:
    bce = hg.get_loss("bce")
    assert bce(np.array([[0.0, 1.0]]), np.array([[0.0, 1.0]])) == 0.0


@pytest.mark.parametrize(("p", "y", "match"), [
    ([[0.5, 0.5, 0.5], [0.5, 0.5, 0.0]], [[0.5, 0.5, 0.5], [0.5, 0.5, 1.0]],
     rf"prediction {_num('0.0')} at index \(1, 2\) makes the binary cross-entropy infinite \(label {_num('1.0')}\)"),
    ([[1.0, 0.5]], [[0.0, 0.5]], rf"prediction {_num('1.0')} at index \(0, 0\) makes the binary cross-entropy "
                                 rf"infinite \(label {_num('0.0')}\).*fused sigmoid\+bce rule"),
], ids=["p=0 label 1", "p=1 label 0"])
@pytest.mark.parametrize("method", ["__call__", "gradient"])
def test_bce_infinite_prediction_is_named_with_index_and_label(p, y, match: str, method: str) -> None:
    bce = hg.get_loss("bce")
    with pytest.raises(ValueError, match=match):
        getattr(bce, method)(np.array(p), np.array(y))


def test_cross_entropy_on_one_hot_labels() -> None:
    ce = hg.get_loss("cross_entropy")
    p = np.array([[0.2, 0.0], [0.8, 0.5], [0.0, 0.5]])  # zeros only where the label is 0
    y = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert ce(p, y) == pytest.approx(-(math.log(0.8) + math.log(0.5)) / 2, rel=1e-15)
    np.testing.assert_array_equal(ce.gradient(p, y), [[0.0, 0.0], [-1 / 0.8 / 2, 0.0], [0.0, -1 / 0.5 / 2]])


@pytest.mark.parametrize("method", ["__call__", "gradient"])
def test_cross_entropy_infinite_prediction_is_named_with_index(method: str) -> None:
    ce = hg.get_loss("cross_entropy")
    p = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.0]])
    y = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    match = rf"prediction {_num('0.0')} at index \(1, 2\) makes the cross-entropy infinite; use the fused softmax"
    with pytest.raises(ValueError, match=match):
        getattr(ce, method)(p, y)


@pytest.mark.parametrize(("act", "loss"), [("identity", "softmax_cross_entropy"), ("softmax", "cross_entropy")])
def test_unnormalized_cross_entropy_labels_are_certified(act: str, loss: str) -> None:
    # The definition admits any non-negative labels: dl/dz = softmax(z) * sum(y) - y.
    net = hg.Network((2, 3), act, loss)
    p = net.init(np.random.default_rng(3), bias_scale=0.5)
    X = np.random.default_rng(4).standard_normal((2, 3))
    Y = np.array([[1.0, 0.0, 0.25], [1.0, 0.0, 0.0], [0.0, 0.5, 0.0]])  # columns sum to 2, 0.5, 0.25
    r = referee(net, p, X, Y, net.backward, oracles=ORACLES)
    assert r.verdict == "certified", r.text()
    a = net.forward(p, X).a[-1] if act == "softmax" else hg.activations.softmax(net.forward(p, X).z[-1])
    np.testing.assert_allclose(net.output_delta(net.forward(p, X), Y), (a * Y.sum(0) - Y) / 3, rtol=1e-14)


# -- samples of very different scale in one batch --------------------------------------------

def test_softmax_and_softmax_cross_entropy_treat_each_sample_on_its_own_scale() -> None:
    z = np.array([[0.0, -1000.0], [1.0, -999.0], [2.0, -1001.0]])
    alone = [hg.get_activation("softmax")(z[:, [j]]) for j in range(2)]
    with np.errstate(all="raise"):
        a = hg.get_activation("softmax")(z)
        value = hg.get_loss("softmax_cross_entropy")(z, np.eye(3)[:, :2])
    np.testing.assert_allclose(a, np.hstack(alone), rtol=1e-15)
    # Column 1 is column 0 shifted by -1000 and reordered: softmax is shift-invariant per sample.
    np.testing.assert_allclose(a[:, 1], a[[1, 2, 0], 0], rtol=1e-15)
    lse0 = 2 + math.log(math.exp(-2) + math.exp(-1) + 1)  # label e_0 on column 0: lse - z_0
    lse1 = -999 + math.log(math.exp(-1) + 1 + math.exp(-2))  # label e_1 on column 1: lse - z_1
    assert value == pytest.approx(((lse0 - 0.0) + (lse1 + 999.0)) / 2, rel=1e-14)


# -- construction and validation --------------------------------------------------------------

def _ident(z: Any, ops: hg.Ops) -> Any:
    return z


def _one(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.ones_like(z)


TANH = hg.get_activation("tanh")
NET21, NET23 = hg.Network((2, 1)), hg.Network((2, 3, 1))
P21 = {"W1": np.ones((1, 2)), "B1": np.zeros((1, 1))}
Z = np.zeros((2, 1))
BCE = hg.get_loss("bce")

BAD: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("activation name empty", lambda: hg.Activation("", _ident, derivative=_one), ValueError,
     "Activation name must be a non-empty str, got ''"),
    ("activation name not a str", lambda: hg.Activation(3, _ident, derivative=_one), ValueError,
     "Activation name must be a non-empty str, got 3"),
    ("definition not callable", lambda: hg.Activation("x", "z", derivative=_one), TypeError,
     "Activation 'x': definition must be callable"),
    ("derivative and vjp", lambda: hg.Activation("x", _ident, derivative=_one, vjp=lambda z, a, g: g),
     ValueError, r"Activation 'x': give exactly one of derivative \(elementwise\) or vjp"),
    ("call z 1-D", lambda: TANH(np.zeros(3)), ValueError, r"z has shape \(3,\) but expected shape 2-D"),
    ("call z NaN", lambda: TANH(np.array([[np.nan]])), ValueError, "z contains a non-finite value"),
    ("backward z 1-D", lambda: TANH.backward(np.zeros(2), Z, Z), ValueError,
     r"z has shape \(2,\) but expected shape 2-D"),
    ("backward z int", lambda: TANH.backward(np.zeros((2, 1), int), Z, Z), TypeError, "z has dtype int64"),
    ("backward a shape", lambda: TANH.backward(Z, np.zeros((1, 2)), Z), ValueError,
     r"a has shape \(1, 2\) but expected shape \(2, 1\)"),
    ("backward a dtype", lambda: TANH.backward(Z, Z.astype(np.float32), Z), TypeError,
     "a has dtype float32 but expected dtype float64"),
    ("backward grad_a shape", lambda: TANH.backward(Z, Z, np.zeros((2, 2))), ValueError,
     r"grad_a has shape \(2, 2\) but expected shape \(2, 1\)"),
    ("backward grad_a dtype", lambda: TANH.backward(Z, Z, Z.astype(np.float32)), TypeError,
     "grad_a has dtype float32 but expected dtype float64"),
    ("loss yhat 1-D", lambda: BCE(np.full(2, 0.5), np.full(2, 0.5)), ValueError,
     r"yhat has shape \(2,\) but expected shape 2-D"),
    ("loss empty batch", lambda: BCE(np.zeros((1, 0)), np.zeros((1, 0))), ValueError,
     r"yhat has shape \(1, 0\): the batch is empty"),
    ("loss y shape", lambda: BCE(np.full((1, 2), 0.5), np.full((2, 1), 0.5)), ValueError,
     r"y has shape \(2, 1\) but expected shape \(1, 2\)"),
    ("loss y dtype", lambda: BCE(np.full((1, 2), 0.5), np.full((1, 2), 0.5, np.float32)), TypeError,
     "y has dtype float32 but expected dtype float64"),
    ("loss yhat above", lambda: BCE(np.array([[0.5, 1.5]]), np.array([[0.5, 0.5]])), ValueError,
     r"yhat must lie in \[0.0, 1.0\] for loss 'bce'; got values in \[0.5, 1.5\]"),
    ("loss yhat below", lambda: BCE(np.array([[-0.5, 0.5]]), np.array([[0.5, 0.5]])), ValueError,
     r"yhat must lie in \[0.0, 1.0\] for loss 'bce'; got values in \[-0.5, 0.5\]"),
    ("loss target kind", lambda: hg.Loss("x", _se_def, _se_value, _se_grad, target_kind="soft"), ValueError,
     "target_kind must be 'real', 'unit' or 'distribution', got 'soft'"),
    ("register activation str", lambda: hg.register_activation("relu"), TypeError,
     "act must be an Activation, got str"),
    ("register activation twice", lambda: hg.register_activation(hg.get_activation("relu")), ValueError,
     r"an activation named 'relu' is already registered \(pass replace=True\)"),
    ("unregister activation unknown", lambda: hg.unregister_activation("nope"), KeyError,
     r"no activation named 'nope'; known: \[.*'relu'"),
    ("register loss str", lambda: hg.register_loss("bce"), TypeError, "loss must be a Loss, got str"),
    ("register loss twice", lambda: hg.register_loss(hg.get_loss("bce")), ValueError,
     r"a loss named 'bce' is already registered \(pass replace=True\)"),
    ("unregister loss unknown", lambda: hg.unregister_loss("nope"), KeyError,
     r"no loss named 'nope'; known: \[.*'bce'"),
    ("article_init int", lambda: hg.Network((2, 1)).article_init(3), TypeError,
     "rng must be a numpy Generator or RandomState, got int"),
    ("init negative bias scale", lambda: hg.Network((2, 1)).init(np.random.default_rng(0), bias_scale=-1.0),
     ValueError, r"bias_scale must be >= 0.0, got -1.0"),
    ("init dtype not a dtype", lambda: hg.Network((2, 1)).init(np.random.default_rng(0), dtype=object()), TypeError,
     "dtype must be float32 or float64, got <object object"),
    ("params of two dtypes", lambda: NET21.check_params({"W1": np.ones((1, 2)), "B1": np.ones((1, 1), np.float32)}),
     TypeError, r"params\['B1'\] has dtype float32 but expected dtype float64"),
    ("X wrong rows, named", lambda: NET21.predict(P21, np.ones((3, 1))), ValueError,
     r"^X has shape \(3, 1\) but expected shape \(2, \?\)"),
    ("X empty, expected shape", lambda: NET23.predict(NET23.init(np.random.default_rng(0)), np.ones((2, 0))),
     ValueError, r"X has shape \(2, 0\): the batch is empty \(expected \(2, m\) with m >= 1\)"),
    ("Y float32 vs params float64", lambda: NET21.backward(P21, np.ones((2, 1)), np.ones((1, 1), np.float32)),
     TypeError, "Y has dtype float32 but expected dtype float64"),
    ("init legacy RandomState", lambda: hg.Network((2, 1)).init(np.random.RandomState(0)), TypeError,
     r"rng must be a numpy.random.Generator \(np.random.default_rng\(seed\)\), got RandomState"),
    ("labels outside the range, shown", lambda: BCE.check_target(np.array([[-0.5, 0.25, 2.0]])), ValueError,
     r"Y must lie in \[0.0, 1.0\] for loss 'bce'; got values in \[-0.5, 2.0\]$"),
    ("a size that is not an int", lambda: hg.Network((2, "3", 1)), TypeError, r"sizes\[1\] must be an int, got str"),
    ("fuse not a bool", lambda: hg.Network((2, 1), "sigmoid", "bce", fuse="yes"), TypeError,
     "fuse must be a bool, got str"),
    ("output range above the loss's, one side only", lambda: hg.Network((2, 1), ["relu"], "bce"), ValueError,
     r"loss 'bce' expects predictions in \[0.0, 1.0\] but the last activation 'relu' ranges over \[0.0, inf\]"),
]


def _se_def(yhat: Any, y: Any, ops: hg.Ops) -> Any:
    return ops.colsum((yhat - y) * (yhat - y))


def _se_value(yhat: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sum((yhat - y) ** 2, axis=0)


def _se_grad(yhat: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 2 * (yhat - y)


@pytest.mark.parametrize(("call", "error", "match"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_named(call: Callable[[], object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("kind", ["real", "unit", "distribution"])
def test_loss_accepts_each_documented_target_kind(kind: str) -> None:
    assert hg.Loss("x", _se_def, _se_value, _se_grad, target_kind=kind).target_kind == kind


def test_loss_fused_rules_are_a_read_only_copy() -> None:
    rule = hg.get_loss("bce").fused["sigmoid"]
    given = {"sigmoid": rule}
    loss = hg.Loss("x", _se_def, _se_value, _se_grad, fused=given)
    given["tanh"] = rule
    assert dict(loss.fused) == {"sigmoid": rule}
    with pytest.raises(TypeError):
        loss.fused["tanh"] = rule  # type: ignore[index]


def test_registries_register_replace_enumerate_and_unregister() -> None:
    act = hg.Activation("mutants_identity", _ident, derivative=_one)
    loss = hg.Loss("mutants_se", _se_def, _se_value, _se_grad)
    assert hg.register_activation(act) is act and hg.register_loss(loss) is loss
    try:
        assert hg.get_activation("mutants_identity") is act and hg.get_loss("mutants_se") is loss
        assert list(hg.iter_activations())[-1] is act and list(hg.iter_losses())[-1] is loss
        assert hg.loss_names()[-1] == "mutants_se"
        act2 = hg.Activation("mutants_identity", _ident, derivative=_one, doc="second")
        loss2 = hg.Loss("mutants_se", _se_def, _se_value, _se_grad, target_kind="unit")
        assert hg.register_activation(act2, replace=True) is act2 and hg.get_activation("mutants_identity") is act2
        assert hg.register_loss(loss2, replace=True) is loss2 and hg.get_loss("mutants_se") is loss2
    finally:
        hg.unregister_activation("mutants_identity")
        hg.unregister_loss("mutants_se")
    assert "mutants_identity" not in hg.activation_names() and "mutants_se" not in hg.loss_names()


# -- the network's smaller entry points --------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_article_init_honours_the_dtype(dtype: type) -> None:
    net = hg.Network((2, 3, 1))
    params = net.article_init(np.random.RandomState(0), dtype=dtype)
    assert all(v.dtype == dtype and np.all((v >= 0) & (v < 1)) for v in params.values())


def test_predict_is_the_last_activation_and_loss_value_checks_the_labels() -> None:
    net = hg.Network((2, 3, 1), "tanh", "squared_error")
    p = net.init(np.random.default_rng(0))
    X = np.array([[0.5, -1.0], [2.0, 0.25]])
    np.testing.assert_array_equal(net.predict(p, X), net.forward(p, X).a[-1])
    with pytest.raises(ValueError, match=r"Y has shape \(2, 1\) but expected shape \(1, 2\)"):
        net.loss_value(p, X, np.zeros((2, 1)))


def test_describe_names_sizes_activations_loss_and_fusion() -> None:
    # The one-line architecture every report and certificate prints.
    assert hg.Network((2, 3, 3, 1)).describe() == "2-3-3-1 sigmoid/sigmoid/sigmoid, squared_error"
    assert hg.Network((3, 5, 2), ["relu", "softmax"], "cross_entropy").describe() == \
        "3-5-2 relu/softmax, cross_entropy (fused)"
    assert hg.Network((3, 5, 2), ["relu", "softmax"], "cross_entropy", fuse=False).describe() == \
        "3-5-2 relu/softmax, cross_entropy"


def test_init_biases_are_zero_by_default_and_drawn_when_asked() -> None:
    net = hg.Network((2, 3, 1))
    default = net.init(np.random.default_rng(0))
    assert all(np.all(default[k] == 0) for k in ("B1", "B2"))
    drawn = net.init(np.random.default_rng(0), bias_scale=0.5)
    assert all(np.all(drawn[k] != 0) for k in ("B1", "B2"))


def _softmax_vjp_from_logits(z: np.ndarray, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """softmax's Jacobian-vector product recomputed from the logits, as the vjp contract allows."""
    s = hg.get_activation("softmax")(z)
    return s * (g - np.sum(g * s, axis=0, keepdims=True))


def test_backward_hands_the_logits_to_a_vjp_that_reads_them() -> None:
    builtin = hg.get_activation("softmax")
    act = hg.Activation("softmax_vjp_from_z", builtin.definition, builtin.forward, vjp=_softmax_vjp_from_logits)
    z = np.array([[0.5, -1.0], [2.0, 0.0], [-0.5, 1.0]])
    g = np.array([[1.0, 0.0], [-2.0, 0.5], [0.25, 1.0]])
    np.testing.assert_allclose(act.backward(z, act(z), g), builtin.backward(z, builtin(z), g), rtol=1e-15)


def test_init_draws_weights_at_one_over_root_fan_in_and_honours_weight_scale() -> None:
    net = hg.Network((400, 300, 1))
    p = net.init(np.random.default_rng(0))
    assert np.std(p["W1"]) == pytest.approx(1 / 20, rel=0.02)
    assert np.std(p["W2"]) == pytest.approx(1 / 300**0.5, rel=0.2)
    assert np.all(p["B1"] == 0) and np.all(p["B2"] == 0)
    assert np.std(net.init(np.random.default_rng(0), weight_scale=0.5)["W1"]) == pytest.approx(0.5, rel=0.02)


# -- the kink-side factories (added with at_kink; mutation rerun on HEAD) ------------------------

def test_relu_family_default_is_the_registered_relu_called_at_run_time() -> None:
    """relu_family() builds the registered relu at import; called again here, its default side is
    the left one (relu'(0) = 0), its range and kink are relu's, and both forms agree off the kink."""
    from handgrad.activations import relu_family

    r = relu_family()
    assert r.name == "relu" and r.kinks == (0.0,) and r.output_range == (0.0, math.inf)
    z = np.array([[-3.0, -0.5, 0.0, 0.25, 0.5, 2.0]])
    want = np.array([[0.0, 0.0, 0.0, 0.25, 0.5, 2.0]])
    assert np.array_equal(r.apply(z), want)
    assert np.array_equal(r.definition(z, NUMPY_OPS), want)
    assert np.array_equal(r.derivative(z, want), np.array([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]]))
    right = relu_family("right")
    assert right.name == "relu[right]" and right.output_range == (0.0, math.inf)
    assert np.array_equal(right.derivative(z, want), np.array([[0.0, 0.0, 1.0, 1.0, 1.0, 1.0]]))


def test_relu_forward_keeps_the_dtype_and_maps_minus_infinity_to_zero() -> None:
    """float32 in, float32 out for the forward and the derivative; and the stable forward
    max(z, 0) gives 0 at z = -inf, where the definition's 0 * z would be NaN."""
    from handgrad.activations import relu_family

    for side in ("left", "right"):
        r = relu_family(side)
        z = np.array([[-np.inf, -1.0, 0.0, 3.0]], dtype=np.float32)
        a = r.apply(z)
        assert a.dtype == np.float32 and np.array_equal(a, np.array([[0.0, 0.0, 0.0, 3.0]], dtype=np.float32))
        assert r.derivative(z, a).dtype == np.float32


def test_at_kink_names_the_type_it_refuses() -> None:
    with pytest.raises(TypeError, match="activation must be a name or an Activation, got int"):
        hg.at_kink(5, "right")  # type: ignore[arg-type]


def test_bce_gradient_at_the_ends_is_its_limit_silently_and_in_the_labels_dtype() -> None:
    """p = 0 with y = 0 and p = 1 with y = 1: the gradient is the limit (1 and -1), with no
    division warning (under -W error one would raise) and in float32 for float32 input."""
    import warnings

    bce = hg.get_loss("bce")
    for dtype in (np.float64, np.float32):
        p = np.array([[0.0, 1.0, 0.25]], dtype=dtype)
        y = np.array([[0.0, 1.0, 1.0]], dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            g = bce.grad(p, y)
        assert g.dtype == dtype
        assert g[0, 0] == 1.0 and g[0, 1] == -1.0 and math.isclose(float(g[0, 2]), -1 / 0.25, rel_tol=1e-6)
