"""reference: the independent oracles (SymPy, JAX, finite differences) and the referee.

Public API::

    from reference import certify_backward, referee, build_case, CaseSpec

Oracles live in their own modules (imported lazily, since JAX and SymPy take a moment to load):
``reference.sympy_oracle``, ``reference.jax_oracle``, ``reference.finite_diff``.
"""

from .certify import Certificate, CertificationError, certify_backward, certify_network
from .referee import ORACLES, Mismatch, Report, TensorCheck, referee
from .strategies import SCALES, CaseSpec, architectures, build_case, case_specs, cases, examples
from .tolerance import DEFAULT_POLICY, TolerancePolicy, error_budget

__all__ = [
    "DEFAULT_POLICY",
    "ORACLES",
    "SCALES",
    "CaseSpec",
    "Certificate",
    "CertificationError",
    "Mismatch",
    "Report",
    "TensorCheck",
    "TolerancePolicy",
    "architectures",
    "build_case",
    "case_specs",
    "cases",
    "certify_backward",
    "certify_network",
    "error_budget",
    "examples",
    "referee",
]
