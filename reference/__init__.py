"""handgrad.reference: the independent oracles, the judge, the cases and the exact proofs.

Public API (every name is imported on first use, PEP 562: ``import handgrad.reference`` and the
judge's names load neither hypothesis, SymPy nor JAX; the strategies load hypothesis, the
proofs SymPy, ``certify_optimizer`` JAX and optax)::

    from handgrad.reference import certify_backward, referee, build_case, CaseSpec
    from handgrad.reference import prove_network, certify_optimizer

Rooms: ``oracles`` (SymPy, JAX, finite differences, optax; the oracle table), ``judge``
(tolerance, referee, certify, reports), ``cases`` (spec, strategies, pools, the bug catalog),
``proofs``, ``cli``, ``docgen``. The hypothesis strategies themselves (``cases``,
``in_domain``, the test-profile helper ``examples``) are in :mod:`handgrad.reference.cases.strategies`.
"""

from __future__ import annotations

import importlib
from typing import Any

if __name__ != "handgrad.reference":  # the source folder imported as a top-level package
    raise ImportError(
        f"the handgrad suite is imported as handgrad.reference, not as {__name__!r} "
        "(install the project with pip install -e '.[test]' and use: from handgrad.reference import ...)"
    )

_EXPORTS: dict[str, str] = {
    "DEFAULT_POLICY": ".judge.tolerance",
    "TolerancePolicy": ".judge.tolerance",
    "error_budget": ".judge.tolerance",
    "ORACLES": ".oracles.table",
    "Architecture": ".cases.architecture",
    "SCALES": ".cases.spec",
    "CaseSpec": ".cases.spec",
    "build_case": ".cases.spec",
    "architectures": ".cases.strategies",
    "case_specs": ".cases.strategies",
    "Certificate": ".judge.reports",
    "Mismatch": ".judge.reports",
    "Report": ".judge.reports",
    "RunSummary": ".judge.reports",
    "TensorCheck": ".judge.reports",
    "CertificationError": ".judge.certify",
    "certify_backward": ".judge.certify",
    "certify_network": ".judge.certify",
    "LongRunWarning": ".judge.scale",
    "referee": ".judge.referee",
    "prove_network": ".proofs",
    "certify_optimizer": ".oracles.optax_oracle",
    "Conventions": ".judge.conventions",
    "wrap_backward": ".judge.conventions",
    "Diagnosis": ".judge.diagnosis",
    "diagnose": ".judge.diagnosis",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
