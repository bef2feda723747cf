"""Importing the oracle table, the Ops namespaces, the input checks or the cache loads none of the
heavy libraries; the namespaces are built on first use and stay one object each."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from handgrad.reference.oracles import ops

HEAVY = ("sympy", "symengine", "mpmath", "jax", "optax", "hypothesis")


def _loaded_after(code: str) -> list[str]:
    probe = code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_table_ops_inputs_and_cache_import_nothing_heavy() -> None:
    code = ("import handgrad.reference.oracles.table, handgrad.reference.oracles.ops\n"
            "import handgrad.reference.oracles.inputs, handgrad.reference.oracles.cache\n"
            "from handgrad.reference.oracles.table import ORACLE_TABLE, check_oracles\n"
            "check_oracles(('sympy', 'jax'))\n"
            "assert 'SympyOps' in dir(handgrad.reference.oracles.ops)\n")
    assert _loaded_after(code) == []


def test_the_namespaces_are_built_on_first_use() -> None:
    code = ("import sys\nimport handgrad.reference.oracles.ops as ops\n"
            "assert 'sympy' not in sys.modules\n"
            "from handgrad.reference.oracles.ops import SYMPY_OPS\n"
            "assert ops.SYMPY_OPS is SYMPY_OPS and 'mpmath' in sys.modules\n"
            "assert ops.MPMATH_OPS is ops.MPMATH_OPS and 'jax' not in sys.modules\n")
    assert _loaded_after(code) == ["sympy", "mpmath"]


def test_unknown_names_still_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'JAX_OPS'"):
        ops.JAX_OPS  # noqa: B018
