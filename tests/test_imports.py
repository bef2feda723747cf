"""Lazy, honest imports: what each import loads (measured in a fresh interpreter's sys.modules),
names that cannot be shadowed, and a user's own reference.py that cannot hide the suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("hypothesis", "sympy", "jax", "mpmath", "optax", "symengine")

JUDGE_NAMES = ["CaseSpec", "Certificate", "CertificationError", "DEFAULT_POLICY", "Mismatch", "ORACLES",
               "Report", "RunSummary", "SCALES", "TensorCheck", "TolerancePolicy", "Architecture", "build_case",
               "certify_backward", "certify_network", "error_budget", "referee", "Conventions", "wrap_backward",
               "Diagnosis", "diagnose", "LongRunWarning"]


def _loaded(code: str, cwd: Path | None = None) -> list[str]:
    """Run ``code`` in a fresh interpreter; return which of HEAVY (and handgrad.reference) it loaded."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps([m for m in {(*HEAVY, 'handgrad.reference')!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_handgrad_loads_numpy_only() -> None:
    assert _loaded("import handgrad, numpy; handgrad.Network((2, 3, 1))") == []


def test_the_suite_and_its_judge_load_no_heavy_dependency() -> None:
    loaded = _loaded(f"import handgrad.reference\nfrom handgrad.reference import {', '.join(JUDGE_NAMES)}\n"
                     "from handgrad.reference.judge.reports import provenance; provenance('x', 1)")
    assert loaded == ["handgrad.reference"]


@pytest.mark.parametrize(("name", "heavy"), [("architectures", "hypothesis"), ("case_specs", "hypothesis")])
def test_a_strategy_name_loads_hypothesis_when_asked_for(name: str, heavy: str) -> None:
    assert heavy in _loaded(f"from handgrad.reference import {name}")


def test_a_users_reference_py_does_not_shadow_the_suite(tmp_path: Path) -> None:
    (tmp_path / "reference.py").write_text("NOTHING = 'a user module that happens to be called reference'\n")
    code = ("import reference\nassert reference.NOTHING\n"
            "from handgrad.reference import certify_backward\nassert certify_backward.__module__ == "
            "'handgrad.reference.judge.certify'")
    assert "handgrad.reference" in _loaded(code, cwd=tmp_path)


def test_public_names_resolve_and_are_listed() -> None:
    import handgrad.reference as ref
    from handgrad.reference.judge.referee import referee

    assert set(JUDGE_NAMES) | {"architectures", "case_specs", "prove_network", "certify_optimizer"} == set(ref.__all__)
    assert set(ref.__all__) <= set(dir(ref))
    assert ref.referee is referee and callable(ref.referee)
    for gone in ("cases", "examples"):  # the room and a test-profile helper, not top-level functions
        assert gone not in ref.__all__
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        ref.nope  # noqa: B018


def test_the_cases_room_is_a_module_not_a_function() -> None:
    import importlib
    import types

    import handgrad.reference as ref

    pools = importlib.import_module("handgrad.reference.cases.pools")
    assert isinstance(ref.cases, types.ModuleType) and ref.cases.pools is pools
    from handgrad.reference.cases.strategies import cases

    assert callable(cases)


def test_readme_names_are_exported() -> None:
    from handgrad.reference import prove_network
    from handgrad.reference.proofs.network import prove_network as real

    assert prove_network is real


@pytest.mark.slow  # imports JAX and optax (~3 s)
def test_certify_optimizer_is_exported() -> None:
    from handgrad.reference import certify_optimizer
    from handgrad.reference.oracles.optax_oracle import certify_optimizer as real

    assert certify_optimizer is real
