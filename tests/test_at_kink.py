"""Declared kink conventions (issue 10 item 4): ``hg.at_kink`` gives the built-in piecewise
activations with the other branch's derivative at the kink; the oracles differentiate that
definition, so code written with relu'(0) = 1 is certified under the declaration and refused
without it, and code with the suite's relu'(0) = 0 is refused under the declaration."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from handgrad.reference import certify_backward
from handgrad.reference.cases.bug_catalog import ReluPrimeOneAtZero, Textbook

import handgrad as hg

ACTS = ("relu", "relu", "sigmoid")


@pytest.fixture
def relu_right() -> Iterator[hg.Activation]:
    act = hg.at_kink("relu", "right")
    hg.register_activation(act)
    try:
        yield act
    finally:
        hg.unregister_activation(act.name)


@pytest.mark.parametrize(("name", "left", "right"), [
    ("relu", 0.0, 1.0), ("leaky_relu", 0.01, 1.0), ("leaky_relu(0.2)", 0.2, 1.0), ("elu", 1.0, 1.0),
    ("elu(0.5)", 0.5, 1.0),
])
def test_the_declared_side_sets_the_derivative_at_the_kink_only(name: str, left: float, right: float) -> None:
    base, other = hg.at_kink(name, "left"), hg.at_kink(name, "right")
    z = np.array([[-2.0, -1e-300, 0.0, 1e-300, 3.0]])
    assert other.name == f"{name}[right]"
    np.testing.assert_array_equal(other.apply(z), base.apply(z))  # same function
    d_base, d_other = base.derivative(z, base.apply(z)), other.derivative(z, other.apply(z))
    assert d_base[0, 2] == left and d_other[0, 2] == right
    np.testing.assert_array_equal(np.delete(d_base, 2), np.delete(d_other, 2))  # away from 0: equal
    assert hg.at_kink(other, "left").name == base.name == name


def test_every_oracle_differentiates_the_declared_definition() -> None:
    import sympy as sp
    from handgrad.reference.oracles.ops import SYMPY_OPS

    z = sp.Symbol("z", real=True)
    for side, expected in (("left", 0), ("right", 1)):
        expr = hg.at_kink("relu", side).definition(z, SYMPY_OPS)
        assert sp.diff(expr, z).subs(z, 0) == expected
    from handgrad.reference.oracles.ops import jax_ops

    ops = jax_ops()
    import jax
    import jax.numpy as jnp

    for side, expected in (("left", 0.0), ("right", 1.0)):
        act = hg.at_kink("relu", side)
        grad = jax.grad(lambda v, act=act: jnp.sum(act.definition(v, ops)))(jnp.zeros((1, 1)))
        assert float(grad[0, 0]) == expected


@pytest.mark.parametrize("bad", ["sigmoid", "softmax", "relu(2)", "my_relu"])
def test_only_the_built_in_piecewise_families_are_known(bad: str) -> None:
    with pytest.raises(ValueError, match=r"states its kink convention in its definition|relu takes no parameter"):
        hg.at_kink(bad, "right")
    with pytest.raises(ValueError, match="at_kink must be one of"):
        hg.at_kink("relu", "up")
    with pytest.raises(TypeError, match="a name or an Activation"):
        hg.at_kink(3, "right")  # type: ignore[arg-type]


def test_code_with_relu_prime_one_is_certified_under_its_declaration(relu_right: hg.Activation) -> None:
    acts = [relu_right.name, relu_right.name, "sigmoid"]
    bug = ReluPrimeOneAtZero(["relu", "relu", "sigmoid"])  # its relu'(z) is (z >= 0)
    cert = certify_backward(bug, (2, 3, 3, 1), acts, examples=6, raise_on_failure=False)
    assert cert.ok, cert.text()
    assert cert.traps["relu[right] exactly at its kink (dyadic)"] == "certified", cert.text()


def test_code_with_the_suites_convention_is_refused_under_the_other_declaration(relu_right: hg.Activation) -> None:
    acts = [relu_right.name, relu_right.name, "sigmoid"]
    cert = certify_backward(Textbook(list(ACTS)), (2, 3, 3, 1), acts, examples=6, raise_on_failure=False)
    assert not cert.ok
    assert "your backward uses relu[right]'(0) = 0" in cert.text(), cert.text()
    assert "declare it: hg.at_kink('relu', 'left'), named 'relu'" in cert.text()


def test_without_the_declaration_relu_prime_one_is_still_refused() -> None:
    cert = certify_backward(ReluPrimeOneAtZero(list(ACTS)), (2, 3, 3, 1), list(ACTS), examples=6,
                            raise_on_failure=False)
    assert not cert.ok and "your backward uses relu'(0) = 1" in cert.text()
    assert "if yours is intended, declare it: hg.at_kink('relu', 'right'), named 'relu[right]'" in cert.text()


def test_the_declared_object_is_certified_without_registering_it() -> None:
    act = hg.at_kink("relu", "right")
    cert = certify_backward(ReluPrimeOneAtZero(list(ACTS)), (2, 3, 3, 1), [act, act, "sigmoid"], examples=6)
    assert cert.ok and act.name not in hg.activation_names()


def test_elements_decided_at_a_kink_do_not_fill_the_worst_ratio_column() -> None:
    # The exact-kink trap's elements are decided against a one-sided quotient; their distance to the
    # central quotient (half the jump) used to be shown as err/budget 0.99999 for every relu subject.
    cert = certify_backward(Textbook(list(ACTS)), (2, 3, 3, 1), list(ACTS), examples=6)
    assert cert.ok and cert.traps["relu exactly at its kink (dyadic)"] == "certified"
    worst = max(t["ratio"] for t in cert.per_tensor.values())
    assert worst < 0.5, cert.text()


def test_prove_and_derive_take_an_unregistered_activation_object() -> None:
    from handgrad.reference import prove_network
    from handgrad.reference.docgen.derive_format import format_derivation

    act = hg.at_kink("relu", "right")
    net = hg.Network((2, 2, 1), [act, "sigmoid"], "squared_error")
    assert act.name not in hg.activation_names()
    assert "PROVED" in str(prove_network(net))
    assert "dL/dw" in format_derivation(net, [("W1", (0, 0))])
    assert act.name not in hg.activation_names()  # nothing was registered behind the user's back
