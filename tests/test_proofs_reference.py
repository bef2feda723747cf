"""The modular method's reference gradient: the factorized forward mode equals one tangent per parameter.

``prove_network``'s reference pushes one tangent per pre-activation entry z_ik^(l) and applies the
chain rule at the affine map (``network._reference``). Here the textbook forward mode, one tangent
per parameter pushed through the whole forward pass, is written out independently on the same
residues and atoms, and the two must agree exactly, entry by entry, together with their degree
bounds (which enter the certified error bound).
"""

from __future__ import annotations

import numpy as np
import pytest
from handgrad.reference.proofs import network as proof_network
from handgrad.reference.proofs.duals import _Dual, _DualOps
from handgrad.reference.proofs.modular import PRIME, ModArray, _mod, _Trial

import handgrad as hg


def _per_parameter_reference(net: hg.Network, trial: _Trial, params: dict[str, ModArray], X: ModArray,
                             Y: ModArray, m: int) -> dict[str, ModArray]:
    """dL/dtheta for every parameter theta: its own tangent through every layer, then the loss's duals."""
    shapes = [params[name].shape for name in net.param_names]
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    count = int(offsets[-1])
    a, da = X, _mod(np.zeros((count, *X.shape), dtype=np.int64), (0, 0))
    for l in range(1, net.depth + 1):
        tangents = {}
        for k, name in enumerate(net.param_names):
            if name in (f"W{l}", f"B{l}"):
                seed = np.zeros((count, *shapes[k]), dtype=np.int64)
                rows = np.arange(sizes[k])
                seed[offsets[k] + rows, rows // shapes[k][1], rows % shapes[k][1]] = 1
                tangents[name[0]] = _mod(seed, (0, 0))
        W, B = params[f"W{l}"], params[f"B{l}"]
        z = W @ a + B
        dz = tangents["W"] @ a + W @ da + tangents["B"]
        a, da = trial.f(l, z), trial.fprime(l, z) * dz
    flat = net.loss.definition(_Dual(a, da), Y, _DualOps(trial)).t.sum(axis=(1, 2)) / m
    return {name: flat[offsets[k]:offsets[k + 1]].reshape(shapes[k]) for k, name in enumerate(net.param_names)}


@pytest.mark.parametrize("sizes, acts", [
    ((2, 3, 1), "sigmoid"),
    ((3, 4, 5, 2), "tanh"),
    ((4, 3, 4, 4, 2), ["gelu", "elu", "tanh", "identity"]),
    ((5, 2), "identity"),
], ids=lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else str(v))
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_factorized_reference_equals_one_tangent_per_parameter(sizes: tuple[int, ...], acts: object, m: int,
                                                               seed: int) -> None:
    net = hg.Network(sizes, acts, "squared_error")  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    trial = _Trial(rng, net.sizes)
    params = {name: _mod(rng.integers(0, PRIME, shape), (1, 0)) for name, shape in net.param_shapes.items()}
    X = _mod(rng.integers(0, PRIME, (sizes[0], m)), (1, 0))
    Y = _mod(rng.integers(0, PRIME, (sizes[-1], m)), (1, 0))
    fast = proof_network._reference(net, trial, "exact", params, X, Y, m)
    slow = _per_parameter_reference(net, trial, params, X, Y, m)  # same trial: the same atoms
    for name in net.param_names:
        assert fast[name].shape == params[name].shape
        assert (fast[name].view(np.ndarray) % PRIME == slow[name].view(np.ndarray) % PRIME).all(), name
        assert fast[name].deg[1] == 0 and fast[name].deg[0] >= 1  # a polynomial bound, not a trivial one
    # the comparison has teeth: one changed entry is seen
    bad = slow["W1"].view(np.ndarray).copy()
    bad[0, 0] = (bad[0, 0] + 1) % PRIME
    assert not (fast["W1"].view(np.ndarray) == bad).all()


def test_a_trial_bound_of_one_stops_the_run_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # at widths where one trial's collision term reaches 1, more trials cannot help: stop and say so
    monkeypatch.setattr(_Trial, "epsilon", lambda self, degree: 1.0)
    proof = proof_network.prove_network(hg.Network((3, 4, 2), "tanh", "squared_error"), method="modular")
    assert proof.trials == 1 and proof.error_bound == 1.0
    assert "error target not reached" in proof.detail and "certifies nothing" in proof.detail
    assert "error target not reached" in str(proof)
    # a bound that certifies nothing is no proof: not ok, yet no parameter is blamed
    assert not proof.ok and proof.failures == () and proof.first_failure is None
    assert str(proof).splitlines()[0].split(": ")[1].startswith("NOT DECIDED")


def test_the_default_run_reaches_the_target_without_a_note() -> None:
    proof = proof_network.prove_network(hg.Network((3, 4, 2), "tanh", "squared_error"), method="modular")
    assert proof.ok and proof.error_bound <= proof_network.ERROR_TARGET and proof.detail == ""
