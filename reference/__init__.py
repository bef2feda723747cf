"""reference: the independent oracles (SymPy, JAX, finite differences) and the referee.

Public API::

    from handgrad.reference import certify_backward, referee, build_case, CaseSpec

Oracles live in their own modules (imported lazily, since JAX and SymPy take a moment to load):
``handgrad.reference.oracles.sympy_oracle``, ``handgrad.reference.oracles.jax_oracle``,
``handgrad.reference.oracles.finite_diff``.
"""

if __name__ != "handgrad.reference":  # the source folder imported as a top-level package
    raise ImportError(
        f"the handgrad suite is imported as handgrad.reference, not as {__name__!r} "
        "(install the project with pip install -e '.[test]' and use: from handgrad.reference import ...)"
    )


from .cases.strategies import SCALES, CaseSpec, architectures, build_case, case_specs, cases, examples
from .judge.certify import Certificate, CertificationError, certify_backward, certify_network
from .judge.referee import ORACLES, Mismatch, Report, TensorCheck, referee
from .judge.tolerance import DEFAULT_POLICY, TolerancePolicy, error_budget

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
