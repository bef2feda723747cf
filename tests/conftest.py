"""Test configuration: BLAS pinned to one thread, hypothesis profiles, shared fixtures.

Hypothesis profiles (choose with HANDGRAD_PROFILE):
  ci        (default) derandomized, so a red run replays exactly;
  thorough  10x the examples, still derandomized;
  random    like ci but with fresh randomness (for exploration; print_blob shows the seed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS"):
    if _var == "XLA_FLAGS":
        os.environ.setdefault(_var, "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    else:
        os.environ.setdefault(_var, "1")
# The CLI keeps no JAX compilation cache between test runs (tests that want one name a tmp folder).
os.environ.setdefault("HANDGRAD_JAX_CACHE", "off")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

TESTS = Path(__file__).resolve().parent

_common = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=40, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=400, derandomize=True, **_common)
settings.register_profile("random", max_examples=40, derandomize=False, **_common)
settings.load_profile(os.environ.get("HANDGRAD_PROFILE", "ci"))


@pytest.fixture
def in_tests_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from tests/ (where the user modules live), restoring sys.path and sys.modules after."""
    monkeypatch.chdir(TESTS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("user_backward_example", "user_plugin_example"):
        if name in sys.modules:
            monkeypatch.delitem(sys.modules, name)
    return TESTS
