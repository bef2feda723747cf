"""Exact certificates (handgrad.reference.proofs): local rules, network identities, layer rules, and teeth.

Everything here is exact (SymPy, SymEngine, or arithmetic modulo a prime); no tolerance appears.
The big architectures live in scripts/bench_proof.py; the largest net proved here is 8-16-16-1.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import sympy as sp
from handgrad.reference.cases.strategies import examples
from handgrad.reference.proofs import (
    ERROR_TARGET,
    PRIME,
    ULP_BUDGET,
    exact_constant,
    prove_activation,
    prove_fused_rule,
    prove_layer_rules,
    prove_loss,
    prove_network,
    symbolic_cost,
)
from handgrad.reference.proofs import activation as proof_activation
from handgrad.reference.proofs import exact as proof_exact
from handgrad.reference.proofs import layers as proof_layers
from handgrad.reference.proofs import modular as proof_modular
from handgrad.reference.proofs import network as proof_network
from handgrad.reference.proofs.network import MATMUL_CHUNK, ModArray, UnsupportedOperation
from hypothesis import given, settings
from hypothesis import strategies as st

import handgrad as hg
from handgrad import Network
from handgrad.notation import element_name

# ---------------------------------------------------------------------------------------------
# 1. local rules
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", hg.activation_names())
def test_activation_rule_is_proved(name: str) -> None:
    proof = prove_activation(name)
    assert proof.ok, str(proof)
    # every registered activation is checked on both sides of 0 and at 0 itself
    regions = [c.region for c in proof.cases]
    if hg.get_activation(name).elementwise:
        assert "z < 0" in regions and "z > 0" in regions and any(r.startswith("z = 0") for r in regions)


@pytest.mark.parametrize("name", hg.loss_names())
def test_loss_gradient_is_proved(name: str) -> None:
    proof = prove_loss(name)
    assert proof.ok, str(proof)


@pytest.mark.parametrize("loss, act", [(loss.name, act) for loss in hg.iter_losses() for act in loss.fused],
                         ids=lambda v: str(v))
def test_fused_rule_is_proved(loss: str, act: str) -> None:
    proof = prove_fused_rule(loss, act)
    assert proof.ok, str(proof)


def _variant(base: str, name: str, **kw: object) -> hg.Activation:
    act = hg.get_activation(base)
    fields = dict(definition=act.definition, forward=act.forward, derivative=act.derivative, vjp=act.vjp,
                  kinks=act.kinks)
    fields.update(kw)
    return hg.Activation(name, **fields)  # type: ignore[arg-type]


def test_kink_convention_is_checked_exactly_at_the_kink() -> None:
    # relu'(0) must be 0 (left branch); (z >= 0) gives 1 there and agrees everywhere else
    bad = _variant("relu", "relu_ge", derivative=lambda z, a: (z >= 0).astype(z.dtype))
    proof = prove_activation(bad)
    assert not proof.ok
    failing = [c for c in proof.cases if not c.ok]
    assert [c.region for c in failing] == ["z = 0 (kink: left-branch derivative)"]
    assert failing[0].status == "refuted" and failing[0].hand == 1 and failing[0].expected == 0


def test_elu_kink_value_is_alpha() -> None:
    proof = prove_activation(hg.elu(2.5))
    assert proof.ok, str(proof)
    at_kink = next(c for c in proof.cases if c.region.startswith("z = 0"))
    assert at_kink.expected == sp.Rational(5, 2)


def test_undeclared_kink_is_reported() -> None:
    proof = prove_activation(_variant("relu", "relu_without_kinks", kinks=()))
    assert not proof.ok
    assert "undeclared kink" in proof.first_failure.detail  # type: ignore[union-attr]


def test_wrong_derivative_is_refuted_with_a_witness() -> None:
    proof = prove_activation(_variant("sigmoid", "sigmoid_plus", derivative=lambda z, a: a * (1 + a)))
    assert not proof.ok
    assert all(c.status == "refuted" for c in proof.cases)
    assert "differs by" in proof.cases[0].detail


def test_article_form_of_the_sigmoid_rule_is_proved() -> None:
    assert prove_activation(_variant("sigmoid", "sigmoid_article", derivative=lambda z, a: a * (1 - a))).ok


def test_diagonal_softmax_jacobian_is_refuted() -> None:
    proof = prove_activation(_variant("softmax", "softmax_diag", vjp=lambda z, a, g: a * (1 - a) * g))
    assert not proof.ok
    assert proof.cases[0].ok  # one row: the diagonal is the whole Jacobian
    assert proof.cases[1].status == "refuted"


def test_softmax_sum_over_the_wrong_axis_is_refuted() -> None:
    bad = _variant("softmax", "softmax_axis1", vjp=lambda z, a, g: a * (g - np.sum(g * a, axis=1, keepdims=True)))
    assert not prove_activation(bad).ok


def test_kink_away_from_zero() -> None:
    def definition(z: object, ops: hg.Ops) -> object:
        return ops.where(z > 1, z - 1, 0 * z)

    good = hg.Activation("hinge1", definition, None, lambda z, a: (z > 1).astype(z.dtype), kinks=(1.0,))
    bad = hg.Activation("hinge1_ge", definition, None, lambda z, a: (z >= 1).astype(z.dtype), kinks=(1.0,))
    assert prove_activation(good).ok
    proof = prove_activation(bad)
    assert [c.region for c in proof.cases if not c.ok] == ["z = 1 (kink: left-branch derivative)"]


def test_float_constants_are_read_exactly_only_within_4_ulp() -> None:
    assert ULP_BUDGET == 4
    assert exact_constant(1 / math.sqrt(2 * math.pi)) == sp.sqrt(2) / (2 * sp.sqrt(sp.pi))
    assert exact_constant(math.sqrt(2.0)) == sp.sqrt(2)
    assert exact_constant(0.01) == sp.Rational(1, 100)
    truncated = 0.39894228  # 1/sqrt(2 pi) to 8 digits: far more than 4 ulp off
    assert exact_constant(truncated) == sp.Rational(truncated)
    gelu = hg.get_activation("gelu")
    inv = 1 / math.sqrt(2 * math.pi)

    def truncated_rule(z: np.ndarray, a: np.ndarray) -> np.ndarray:
        # gelu's own rule with its constant 1/sqrt(2 pi) swapped for the truncated one
        phi = np.exp(-(z * z) / 2)
        return gelu.derivative(z, a) - z * phi * inv + z * phi * truncated

    bad = _variant("gelu", "gelu_truncated", derivative=truncated_rule)
    proof = prove_activation(bad)
    assert not proof.ok
    assert any(not c.recognised and c.value == truncated for c in proof.constants)


@pytest.mark.parametrize("bad, kind", [("x", TypeError), (float("inf"), ValueError), (True, TypeError)])
def test_exact_constant_rejects(bad: object, kind: type) -> None:
    with pytest.raises(kind):
        exact_constant(bad)  # type: ignore[arg-type]


def test_wrong_loss_gradient_is_refuted() -> None:
    se = hg.get_loss("squared_error")
    flipped = hg.Loss("se_sign", se.definition, se.value, lambda yhat, y: 2 * (y - yhat))
    assert not prove_loss(flipped).ok


def test_prove_fused_rule_needs_a_rule() -> None:
    with pytest.raises(ValueError, match="no fused rule"):
        prove_fused_rule("squared_error", "sigmoid")


# ---------------------------------------------------------------------------------------------
# 2. network identities
# ---------------------------------------------------------------------------------------------


def test_article_network_symbolic() -> None:
    proof = prove_network(hg.article_network(), method="symbolic")
    assert proof.ok and proof.method == "symbolic" and proof.error_bound == 0.0, str(proof)
    assert proof.first_failure is None and proof.n_params == 25
    assert "sigmoid'" in proof.relies_on


def test_8_16_16_1_modular_meets_the_error_target() -> None:
    net = Network((8, 16, 16, 1), "sigmoid", "squared_error")
    proof = prove_network(net)  # auto: too big for the symbolic method
    assert proof.ok and proof.method == "modular", str(proof)
    assert 0 < proof.error_bound <= ERROR_TARGET
    assert proof.n_params == 433


def test_auto_chooses_by_symbolic_cost() -> None:
    assert symbolic_cost(hg.article_network()) == 25 * 3
    assert prove_network(Network((4, 8, 8, 1), "tanh")).method == "symbolic"
    assert prove_network(Network((4, 8, 8, 8, 8, 1), "tanh")).method == "modular"


CONFIGS = [
    ((2, 3, 3, 1), "sigmoid", "bce", True),
    ((2, 3, 3, 1), "sigmoid", "bce", False),
    ((3, 4, 3), ["relu", "softmax"], "cross_entropy", True),
    ((3, 4, 3), ["relu", "softmax"], "cross_entropy", False),
    ((3, 4, 4, 2), ["softmax", "gelu", "identity"], "softmax_cross_entropy", True),
    ((2, 3, 3, 3, 3, 1), ["elu", "leaky_relu", "silu", "softplus", "tanh"], "squared_error", True),
    ((5, 2), "identity", "squared_error", True),
]


@pytest.mark.parametrize("sizes, acts, loss, fuse", CONFIGS,
                         ids=["-".join(map(str, c[0])) + f"-{c[2]}-{'fused' if c[3] else 'unfused'}" for c in CONFIGS])
@pytest.mark.parametrize("method", ["auto", "modular"])
def test_network_identity(sizes: tuple[int, ...], acts: object, loss: str, fuse: bool, method: str) -> None:
    net = Network(sizes, acts, loss, fuse=fuse)  # type: ignore[arg-type]
    proof = prove_network(net, method=method)
    assert proof.ok, str(proof)
    if net.fused_rule is not None:
        assert proof.method == "modular" and "fused" in proof.head


@st.composite
def _architectures(draw: st.DrawFn) -> Network:
    depth = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 5), min_size=depth + 1, max_size=depth + 1))
    names = [n for n in hg.activation_names() if hg.get_activation(n).elementwise]
    acts = draw(st.lists(st.sampled_from(names), min_size=depth, max_size=depth))
    return Network(tuple(sizes), acts, "squared_error")


@settings(max_examples=examples(20))
@given(net=_architectures(), batch=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_network_identity_random_architectures(net: Network, batch: int, seed: int) -> None:
    proof = prove_network(net, method="modular", seed=seed, batch=batch)
    assert proof.ok, str(proof)


def test_same_seed_same_certificate() -> None:
    net = Network((3, 5, 2), "tanh", "squared_error")
    a, b = prove_network(net, method="modular", seed=7), prove_network(net, method="modular", seed=7)
    assert (a.ok, a.trials, a.error_bound) == (b.ok, b.trials, b.error_bound)


def test_fixed_trial_count_reports_its_bound() -> None:
    net = Network((3, 5, 2), "tanh", "squared_error")
    one = prove_network(net, method="modular", trials=1)
    two = prove_network(net, method="modular", trials=2)
    assert one.trials == 1 and two.trials == 2
    assert 0 < two.error_bound < one.error_bound < 1


# -- teeth: bugs in handgrad's backward make the proof fail and name the first bad parameter ----


class NoTransposeInSquareLayer(Network):
    """Bug: grad_a = W delta instead of W^T delta where W is square (shapes still fit)."""

    def backward_unchecked(self, params, cache, Y):  # type: ignore[no-untyped-def]
        grads = {}
        delta = self.output_delta(cache, Y)
        for l in range(self.depth, 0, -1):
            grads[f"W{l}"] = delta @ cache.a[l - 1].T
            grads[f"B{l}"] = np.sum(delta, axis=1, keepdims=True)
            if l > 1:
                W = params[f"W{l}"]
                grad_a = (W if W.shape[0] == W.shape[1] else W.T) @ delta
                delta = self.activations[l - 2].backward_unchecked(cache.z[l - 2], cache.a[l - 1], grad_a)
        return {k: grads[k] for k in self.param_names}


class DerivativeAtA(Network):
    """Bug: the hidden layers' f' evaluated at a instead of z."""

    def backward_unchecked(self, params, cache, Y):  # type: ignore[no-untyped-def]
        grads = {}
        delta = self.output_delta(cache, Y)
        for l in range(self.depth, 0, -1):
            grads[f"W{l}"] = delta @ cache.a[l - 1].T
            grads[f"B{l}"] = np.sum(delta, axis=1, keepdims=True)
            if l > 1:
                grad_a = params[f"W{l}"].T @ delta
                delta = self.activations[l - 2].backward_unchecked(cache.a[l - 1], cache.a[l - 1], grad_a)
        return {k: grads[k] for k in self.param_names}


class BiasNotSummed(Network):
    """Bug: the bias gradient takes the first sample's column instead of the sum over the batch."""

    def backward_unchecked(self, params, cache, Y):  # type: ignore[no-untyped-def]
        grads = super().backward_unchecked(params, cache, Y)
        delta = self.output_delta(cache, Y)
        grads[f"B{self.depth}"] = delta[:, :1]
        return grads


class SumNotMean(Network):
    """Bug: the output delta is not divided by the batch size."""

    def output_delta(self, cache, Y):  # type: ignore[no-untyped-def]
        return super().output_delta(cache, Y) * Y.shape[1]


class OneElementDropped(Network):
    """Bug: one element of dL/dW2 is lost (w_12^(2))."""

    def backward_unchecked(self, params, cache, Y):  # type: ignore[no-untyped-def]
        grads = super().backward_unchecked(params, cache, Y)
        grads["W2"] = grads["W2"] * np.array([[1, 0, 1], [1, 1, 1], [1, 1, 1]])
        return grads


BUGS = [
    (NoTransposeInSquareLayer, "w_11^(1)", {"W1", "B1"}),
    (DerivativeAtA, "w_11^(1)", {"W1", "B1", "W2", "B2"}),
    (BiasNotSummed, "b_1^(3)", {"B3"}),
    (SumNotMean, "w_11^(1)", {"W1", "B1", "W2", "B2", "W3", "B3"}),
    (OneElementDropped, "w_12^(2)", {"W2"}),
]


def _tensor(name: str) -> str:
    """'w_12^(2)' -> 'W2'."""
    return name[0].upper() + name.split("^(")[1].rstrip(")")


@pytest.mark.parametrize("bug, first, tensors", BUGS, ids=[b[0].__name__ for b in BUGS])
@pytest.mark.parametrize("method", ["symbolic", "modular"])
def test_bug_is_caught_and_named(bug: type[Network], first: str, tensors: set[str], method: str) -> None:
    net = bug((2, 3, 3, 1), "sigmoid", "squared_error")
    proof = prove_network(net, method=method)
    assert not proof.ok
    assert proof.first_failure == first, str(proof)
    assert {_tensor(n) for n in proof.failures} == tensors
    assert proof.error_bound == 0.0  # a failure is certain
    assert first in str(proof) and "FAILED" in str(proof)


def test_bug_is_caught_on_a_bigger_net_with_a_fused_head() -> None:
    net = NoTransposeInSquareLayer((4, 6, 6, 1), ["tanh", "tanh", "sigmoid"], "bce")
    proof = prove_network(net)
    assert not proof.ok and proof.first_failure == "w_11^(1)"


def test_wrong_loss_gradient_fails_the_network_identity() -> None:
    se = hg.get_loss("squared_error")
    flipped = hg.Loss("se_sign", se.definition, se.value, lambda yhat, y: 2 * (y - yhat))
    for method in ("symbolic", "modular"):
        proof = prove_network(Network((2, 3, 1), "sigmoid", flipped), method=method)
        assert not proof.ok and proof.first_failure == "w_11^(1)"


class TwoElementsDropped(Network):
    """Bug: dL/dW1 loses W1[0, 12] and W1[10, 2], which a comma-less name would both call w_113^(1)."""

    def backward_unchecked(self, params, cache, Y):  # type: ignore[no-untyped-def]
        grads = super().backward_unchecked(params, cache, Y)
        keep = np.ones_like(grads["W1"])
        keep[0, 12] = keep[10, 2] = 0
        grads["W1"] = grads["W1"] * keep
        return grads


@pytest.mark.parametrize("method", ["symbolic", "modular"])
def test_failures_use_the_one_notation_rule(method: str) -> None:
    proof = prove_network(TwoElementsDropped((13, 11, 1), "tanh", "squared_error"), method=method)
    assert proof.failures == (element_name("W1", (0, 12)), element_name("W1", (10, 2)))
    assert proof.failures == ("w_1,13^(1)", "w_11,3^(1)")


@pytest.mark.parametrize("kwargs, kind, match", [
    ({"net": "2-3-3-1"}, TypeError, "net must be"),
    ({"method": "fast"}, ValueError, "method must be"),
    ({"trials": 0}, ValueError, "trials must be"),
    ({"trials": 1.5}, TypeError, "trials must be"),
    ({"seed": -1}, ValueError, "seed must be"),
    ({"batch": 2.0}, TypeError, "batch must be"),
    ({"batch": 0}, ValueError, "batch must be"),
    ({"seed": "0"}, TypeError, "seed must be"),
])
def test_prove_network_validates_arguments(kwargs: dict, kind: type, match: str) -> None:
    args = {"net": hg.article_network(), **kwargs}
    net = args.pop("net")
    with pytest.raises(kind, match=match):
        prove_network(net, **args)


def test_symbolic_method_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="modular"):
        prove_network(Network((2, 3, 1), "sigmoid", "bce"), method="symbolic")


# -- the modular arithmetic itself ------------------------------------------------------------


def test_modular_matmul_is_exact_beyond_one_chunk() -> None:
    rng = np.random.default_rng(0)
    k = MATMUL_CHUNK * 2 + 3
    a = rng.integers(0, PRIME, (2, k))
    b = rng.integers(0, PRIME, (k, 3))
    got = a.view(ModArray) @ b.view(ModArray)
    want = [[sum(int(a[i, t]) * int(b[t, j]) for t in range(k)) % PRIME for j in range(3)] for i in range(2)]
    assert got.view(np.ndarray).tolist() == want
    assert MATMUL_CHUNK * (PRIME - 1) ** 2 <= 2**63 - 1 < (MATMUL_CHUNK + 1) * (PRIME - 1) ** 2


def test_modular_division_and_unsupported_operations() -> None:
    x = np.array([[3, 5]]).view(ModArray)
    assert ((x / 7) * 7).view(np.ndarray).tolist() == [[3, 5]]
    assert (x / 2).view(np.ndarray).tolist() == [[3 * pow(2, -1, PRIME) % PRIME, 5 * pow(2, -1, PRIME) % PRIME]]
    with pytest.raises(ZeroDivisionError):
        x / np.array([[0, 1]])
    with pytest.raises(UnsupportedOperation):
        np.exp(x)
    with pytest.raises(UnsupportedOperation):
        x < 1  # noqa: B015  (order has no meaning mod p)


# ---------------------------------------------------------------------------------------------
# 3. the general certificate: the layer rules for symbolic sizes
# ---------------------------------------------------------------------------------------------


def test_layer_rules_for_all_sizes() -> None:
    """The general certificate: the article's four layer rules hold for every N, K, M >= 1."""
    proof = prove_layer_rules()
    assert proof.ok, str(proof)
    assert [r.name.split(" (")[0] for r in proof.rules] == [
        "dL/dW = delta a_prev^T", "dL/dB = delta 1_M", "dL/da_prev = W^T delta", "delta = dL/da ⊙ f'(z)"]
    # and the comparison has teeth: delta a_prev^T is not a_prev delta^T's transpose index
    wrong = proof.rules[0].derived.xreplace({sp.Symbol("p", integer=True, nonnegative=True):
                                             sp.Symbol("q", integer=True, nonnegative=True)})
    assert not proof_layers._same(wrong, proof.rules[0].matrix_entry)


@pytest.mark.parametrize("module", [proof_activation, proof_exact, proof_modular, proof_network, proof_layers],
                         ids=lambda m: m.__name__)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)  # type: ignore[arg-type]
    assert result.failed == 0
