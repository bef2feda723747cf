"""Validate once: the referee validates a case, the oracle table's entries do not validate it again,
and the oracles' public functions keep validating for direct callers."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from handgrad.reference import referee
from handgrad.reference.oracles import finite_diff, jax_oracle, sympy_oracle
from handgrad.reference.oracles.table import ORACLE_TABLE, ORACLES

import handgrad as hg

ORACLE_DIR = Path(sympy_oracle.__file__).resolve().parent


def _case(net: hg.Network, seed: int = 3, m: int = 4) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = net.init(rng)
    X = rng.uniform(-1, 1, (net.sizes[0], m))
    Y = rng.uniform(0, 1, (net.sizes[-1], m))
    return params, X, Y


def _validations_from_oracles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every ``Network.check_params`` call made from code in reference/oracles/, as the
    outermost oracle function on the stack (``file:function``)."""
    seen: list[str] = []
    real = hg.Network.check_params

    def counting(self: hg.Network, *args: Any, **kwargs: Any) -> Any:
        for frame in traceback.extract_stack()[:-1]:
            if Path(frame.filename).resolve().parent == ORACLE_DIR:
                seen.append(f"{Path(frame.filename).name}:{frame.name}")
                break
        return real(self, *args, **kwargs)

    monkeypatch.setattr(hg.Network, "check_params", counting)
    return seen


def test_table_targets_are_the_unchecked_entry_points() -> None:
    for entry in ORACLE_TABLE.values():
        assert entry.target.endswith("_unchecked"), entry


def test_referee_case_is_validated_by_no_oracle(monkeypatch: pytest.MonkeyPatch) -> None:
    net = hg.article_network()
    params, X, Y = _case(net)
    referee(net, params, X, Y, net.backward(params, X, Y), oracles=ORACLES)  # builds, outside the count
    seen = _validations_from_oracles(monkeypatch)
    report = referee(net, params, X, Y, net.backward(params, X, Y), oracles=ORACLES)
    assert report.verdict == "certified"
    assert seen == []


def test_public_functions_still_validate_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    net = hg.article_network()
    params, X, Y = _case(net)
    seen = _validations_from_oracles(monkeypatch)
    sympy_oracle.sympy_grads(net, params, X, Y)
    jax_oracle.jax_grads(net, params, X, Y)
    finite_diff.fd_grads(net, params, X, Y)
    # one validation per call (fd_grads validated twice before the unchecked entry points)
    assert seen == ["sympy_oracle.py:sympy_grads", "jax_oracle.py:jax_grads", "finite_diff.py:fd_grads"], seen


PUBLIC: list[tuple[str, Callable[..., Any]]] = [
    ("sympy_grads", sympy_oracle.sympy_grads),
    ("jax_grads", jax_oracle.jax_grads),
    ("fd_grads", finite_diff.fd_grads),
    ("SympyOracle.grads", lambda net, *a: sympy_oracle.get_sympy_oracle(net).grads(*a)),
    ("JaxOracle.grads", lambda net, *a: jax_oracle.get_jax_oracle(net).grads(*a)),
]


@pytest.mark.parametrize(("name", "fn"), PUBLIC, ids=[n for n, _ in PUBLIC])
def test_public_functions_reject_a_bad_case(name: str, fn: Callable[..., Any]) -> None:
    net = hg.article_network()
    params, X, Y = _case(net)
    with pytest.raises(ValueError, match=r"X has shape \(3, 4\)"):
        fn(net, params, np.ones((3, 4)), Y)
    with pytest.raises(TypeError, match=r"params\['W2'\] has dtype float32"):
        fn(net, {**params, "W2": params["W2"].astype(np.float32)}, X, Y)
    with pytest.raises(ValueError, match="non-finite"):
        fn(net, params, X, np.full_like(Y, np.nan))


@pytest.mark.parametrize("name", ORACLES)
def test_unchecked_entry_gives_the_checked_result(name: str) -> None:
    net = hg.Network((3, 4, 2), ["tanh", "softmax"], "cross_entropy")
    params, X, _ = _case(net, seed=8, m=5)
    Y = np.eye(2)[:, [0, 1, 1, 0, 1]]
    checked = {"sympy": sympy_oracle.sympy_grads, "jax": jax_oracle.jax_grads, "fd": finite_diff.fd_grads}[name]
    a, b = checked(net, params, X, Y), ORACLE_TABLE[name].compute(net, params, X, Y)
    ga, gb = (r if isinstance(r, dict) else r.grads for r in (a, b))
    assert list(ga) == list(gb) == net.param_names
    assert all(np.array_equal(ga[k], gb[k]) for k in ga)


def test_an_oracle_disagreement_through_the_table_is_inconclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    net = hg.article_network()
    params, X, Y = _case(net)
    real = jax_oracle.JaxOracle.grads_unchecked

    def broken(self: jax_oracle.JaxOracle, *args: Any) -> dict[str, np.ndarray]:
        g = real(self, *args)
        return {**g, "B3": g["B3"] * 2}

    monkeypatch.setattr(jax_oracle.JaxOracle, "grads_unchecked", broken)
    report = referee(net, params, X, Y, net.backward, oracles=ORACLES)
    assert report.verdict == "inconclusive"
    assert any("oracles disagree" in n and "b_1^(3)" in n for n in report.notes), report.notes
