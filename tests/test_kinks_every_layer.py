"""Exact kinks in every layer (issue 10, item 4): a dyadic family whose forward is exact puts a
pre-activation exactly on the kink in each kinked layer (``CaseSpec.kink_layer``), the budget
*proves* which pre-activations every correct forward computes exactly (``Budget.exactly_computed``,
boolean arrays per layer), and such units are decided with the suite's kink convention instead of
being masked: relu'(0) = 1 used only below layer 1 is refused by ``certify_backward``'s defaults,
correct backwards are certified."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from handgrad.reference import CaseSpec, build_case, certify_backward, referee
from handgrad.reference.cases.bug_catalog import ReluPrimeOneBelowLayer1, Textbook
from handgrad.reference.cases.traps import trap_specs
from handgrad.reference.judge.tolerance import error_budget

import handgrad as hg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from soak import StyledBackward

RELU3 = ["relu", "relu", "sigmoid"]


def _zs(net, params, X):
    a, out = X.astype(np.float64), []
    for l in range(1, net.depth + 1):
        z = params[f"W{l}"].astype(np.float64) @ a + params[f"B{l}"].astype(np.float64)
        out.append(z)
        a = net.activations[l - 1].apply(z)
    return out


# -- the proof, as data --------------------------------------------------------------------------

def test_random_draws_prove_nothing_and_the_arrays_have_the_layers_shapes():
    spec = CaseSpec((3, 4, 2), ("relu", "sigmoid"), "squared_error", True, 3, "unit", 1)
    net, params, X, Y = build_case(spec)
    b = error_budget(net, params, X, Y)
    proved = b.exactly_computed(np.float64)
    assert [p.shape for p in proved] == [(4, 3), (2, 3)]
    assert all(p.dtype == bool and not p.any() for p in proved)


def test_the_proof_depends_on_the_dtype_s_significand():
    """w = x = 1 + 2^-20 are float32 numbers, but w x needs 41 bits: exact in float64, not float32."""
    net = hg.Network((1, 1, 1), ["relu", "identity"], "squared_error")
    v = 1 + 2.0**-20
    params = {"W1": np.array([[v]]), "B1": np.array([[-v * v]]), "W2": np.array([[0.5]]), "B2": np.zeros((1, 1))}
    X, Y = np.array([[v]]), np.zeros((1, 1))
    b = error_budget(net, params, X, Y)
    assert 41 <= b.exact_bits_needed()[0][0, 0] <= 42  # 41 exactly; the bound on the sum may add one
    assert b.exactly_computed(np.float64)[0][0, 0] and not b.exactly_computed(np.float32)[0][0, 0]
    assert b.kink_where(np.float64) == "" and b.ambiguous_units(np.float32) == [(1, 1, 1)]
    # the layer above is exact too (its input relu(0) = 0 is exact, and 0.5 * 0 + 0 is exact)
    assert b.exactly_computed(np.float64)[1][0, 0]


def test_an_activation_that_is_not_exact_stops_the_proof():
    """sigmoid(0) = 1/2 is neither z nor 0, and a sigmoid underflowed to 0.0 is not 0 in fact."""
    for w in (0.0, -2000.0):
        net = hg.Network((1, 1, 1), ["sigmoid", "relu"], "squared_error")
        params = {"W1": np.array([[w]]), "B1": np.zeros((1, 1)), "W2": np.array([[1.0]]), "B2": np.zeros((1, 1))}
        with np.errstate(over="ignore"):
            b = error_budget(net, params, np.ones((1, 1)), np.zeros((1, 1)))
        assert b.exactly_computed(np.float64)[0][0, 0] and not b.exactly_computed(np.float64)[1][0, 0]


def test_a_unit_exactly_on_its_kink_deep_in_the_net_is_not_ambiguous():
    arch = ((2, 3, 3, 3, 1), ("relu", "relu", "relu", "sigmoid"), "squared_error", True)
    deep = [s for s in trap_specs(arch) if s.kink_layer]
    assert [s.kink_layer for s in deep] == [2, 3]
    for spec in deep:
        for dtype in ("float64", "float32"):
            net, params, X, Y = build_case(spec, dtype, filter_domain=False)
            zs = _zs(net, params, X)
            on_kink = [int((z == 0).sum()) for z in zs]
            assert on_kink[spec.kink_layer - 1] == 1 and sum(on_kink) == 1, on_kink
            b = error_budget(net, params, X, Y)
            assert b.exactly_computed(dtype)[spec.kink_layer - 1][zs[spec.kink_layer - 1] == 0].all()
            assert b.kink_where(dtype) == "" and b.ambiguous_units(dtype) == []
            assert any(u[1] is not None and u[2].startswith(f"layer {spec.kink_layer} ") for u in b.kink_units)


def test_the_deep_kink_field_keeps_old_recipes():
    old = CaseSpec((2, 3, 1), ("relu", "sigmoid"), "squared_error", True, 2, "unit", 7)
    assert "kink_layer" not in repr(old) and old.kink_layer == 0
    new = old._replace(sizes=(2, 3, 3, 1), activations=("relu", "relu", "sigmoid"), kink_layer=2)
    assert eval(repr(new), {"CaseSpec": CaseSpec}) == new


def test_traps_name_each_reachable_kinked_layer():
    names = [s.trap for s in trap_specs(((2, 3, 3, 1), ("identity", "relu", "sigmoid"), "squared_error", True))]
    assert "relu exactly at its kink in layer 2 (dyadic)" in names
    tanh_first = trap_specs(((2, 3, 3, 1), ("tanh", "relu", "sigmoid"), "squared_error", True))
    assert not [s for s in tanh_first if s.kink_layer or s.dyadic]  # a tanh forward is not exact


# -- decided with the convention -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_relu_prime_one_below_layer_1_is_not_certified(dtype):
    # (no RuntimeWarning: the diagnosis's 1/b^2 weights no longer overflow at a budget at the floor)
    cert = certify_backward(ReluPrimeOneBelowLayer1(RELU3), (2, 3, 3, 1), RELU3, dtype=dtype, examples=6,
                            raise_on_failure=False)
    assert not cert.ok and cert.failure is not None and cert.failure.verdict == "mismatch"
    assert cert.traps["relu exactly at its kink (dyadic)"] == "certified"  # layer 1 is right
    assert cert.traps["relu exactly at its kink in layer 2 (dyadic)"] == "mismatch"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("sizes", "acts"), [((2, 3, 3, 1), RELU3), ((3, 4, 4, 4, 2), ["relu"] * 4),
                                             ((3, 5, 4, 1), RELU3)])  # 3-5-4-1: a tie put one unit on its
# kink in two samples of the first-layer trap; finite differences refused the correct backward at 1.55 x budget
def test_a_correct_relu_backward_is_certified_on_every_kink_trap(sizes, acts, dtype):
    cert = certify_backward(Textbook(acts), sizes, acts, dtype=dtype, examples=6, raise_on_failure=False)
    assert cert.ok, cert.text()
    kink_traps = {k: v for k, v in cert.traps.items() if "dyadic" in k}
    assert len(kink_traps) == len(sizes) - 1 - (acts[-1] != "relu")
    assert set(kink_traps.values()) == {"certified"}


KINK_ARCHS = [
    ((2, 3, 3, 1), ("relu", "relu", "sigmoid"), "squared_error", True),
    ((3, 5, 4, 2), ("relu", "leaky_relu", "identity"), "squared_error", True),
    ((2, 4, 3, 3), ("elu", "relu", "softmax"), "cross_entropy", True),
    ((3, 4, 4, 4, 1), ("relu", "identity", "relu", "sigmoid"), "bce", True),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_no_false_alarm_on_exact_kinks_over_many_seeds_and_styles(dtype):
    """Every kink trap (first layer and each deeper one) of four architectures, 6 seeds each, judged
    on correct backwards in four independent styles: no mismatch, and every case decided."""
    verdicts: dict[str, int] = {}
    for arch in KINK_ARCHS:
        net_arch = hg.Network(arch[0], list(arch[1]), arch[2], fuse=arch[3])
        styles = [StyledBackward(net_arch, s) for s in ("handgrad", "loop", "einsum", "longdouble")]
        for seed in range(6):
            for spec in (s for s in trap_specs(arch, seed=seed) if s.dyadic or s.kink_layer):
                net, params, X, Y = build_case(spec, dtype, filter_domain=False)
                for style in styles:
                    report = referee(net, params, X, Y, style, oracles=("jax", "fd"))
                    verdicts[report.verdict] = verdicts.get(report.verdict, 0) + 1
                    assert report.verdict != "mismatch", (spec, style.style, report.text())
    assert set(verdicts) == {"certified"}, verdicts
    assert verdicts["certified"] >= 4 * 6 * 4 * 2
