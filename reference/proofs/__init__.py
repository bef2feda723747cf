r"""Exact certificates: symbolic proofs that handgrad's backward pass is right, fast.

A tolerance check says "agrees at these points"; an exact certificate says "equal as formulas".
Three layers, each documented in its module:

1. :func:`prove_activation`, :func:`prove_loss`, :func:`prove_fused_rule`
   (:mod:`handgrad.reference.proofs.activation`): every hand-written local rule (``derivative``, ``vjp``,
   a loss's ``grad``, a fused ``delta``) equals the SymPy derivative of its shared definition,
   branch by branch, with the kink convention checked exactly at the kink.
2. :func:`prove_network` (:mod:`handgrad.reference.proofs.network`): handgrad's actual forward and backward
   code, run with opaque activations on exact values, equals the derivative of the composite
   loss for every parameter: deterministically (SymEngine) for small nets, by an exact
   randomized identity test modulo a prime, with a stated error bound, for large ones.
3. :func:`prove_layer_rules` (:mod:`handgrad.reference.proofs.layers`): the article's matrix rules for one
   layer, :math:`\partial L/\partial W = \delta\, a_{prev}^T`, :math:`\partial L/\partial B = \delta\,\mathbf 1`,
   :math:`\partial L/\partial a_{prev} = W^T\delta`, :math:`\delta = \partial L/\partial a \odot f'(z)`,
   for symbolic sizes: the general certificate.

Layer 2 relies on layer 1 for the activations' and the loss head's rules; together they certify
the whole backward pass of a given architecture; layer 3 certifies the rules for every shape.

The machinery behind them: :mod:`~handgrad.reference.proofs.exact` (SymPy scalars and arrays the hand
code runs on, float constants), :mod:`~handgrad.reference.proofs.modular` (residues mod p with degree
bookkeeping, random atoms), :mod:`~handgrad.reference.proofs.duals` (dual numbers for the loss head),
:mod:`~handgrad.reference.proofs.opaque` (opaque activations and loss, the per-element verdict),
:mod:`~handgrad.reference.proofs.symbolic` (the SymEngine method), and
:mod:`~handgrad.reference.proofs.errors` (:class:`UnsupportedOperation`).
"""

from __future__ import annotations

from .activation import (
    ULP_BUDGET,
    ActivationProof,
    CaseProof,
    ConstantMatch,
    exact_constant,
    prove_activation,
    prove_fused_rule,
    prove_loss,
)
from .errors import UnsupportedOperation
from .layers import LayerRule, LayerRulesProof, prove_layer_rules
from .network import (
    ERROR_TARGET,
    MATMUL_CHUNK,
    PRIME,
    SYMBOLIC_MAX_COST,
    NetworkProof,
    prove_network,
    symbolic_cost,
)

__all__ = [
    "ERROR_TARGET",
    "MATMUL_CHUNK",
    "PRIME",
    "SYMBOLIC_MAX_COST",
    "ULP_BUDGET",
    "ActivationProof",
    "CaseProof",
    "ConstantMatch",
    "LayerRule",
    "LayerRulesProof",
    "NetworkProof",
    "UnsupportedOperation",
    "exact_constant",
    "prove_activation",
    "prove_fused_rule",
    "prove_layer_rules",
    "prove_loss",
    "prove_network",
    "symbolic_cost",
]
