r"""Exact certificates, part 3: the article's layer rules for symbolic sizes (the general certificate).

One fully-connected layer over a batch, with symbolic sizes: :math:`N` units, :math:`K` inputs,
:math:`M` samples,

.. math::  z_{ik} = \sum_{j=0}^{K-1} w_{ij}\, a_{jk} + b_i, \qquad x_{ik} = f(z_{ik}),

where :math:`a` is the previous layer's activation (the article's :math:`x^{(l)}`) and
:math:`f` an undefined function. Given only the multivariable chain rule
:math:`\partial L/\partial\theta = \sum_{i,k} \partial L/\partial z_{ik}\; \partial z_{ik}/\partial\theta`,
SymPy differentiates the *definition* of :math:`z` (``Indexed`` symbols, ``Sum`` over symbolic
ranges, ``KroneckerDelta`` for :math:`\partial w_{ij}/\partial w_{pq}`), evaluates the sums in
closed form, and each result is checked equal to the entry of the article's matrix formula, built
from ``MatrixSymbol`` s of symbolic shape:

=========================  ===============================================================
rule                       statement (entry ``[p, q]`` or ``[q, r]``)
=========================  ===============================================================
``dL/dW = delta a_prev^T``  :math:`\partial L/\partial w_{pq} = (\delta\, a^T)_{pq}`
``dL/dB = delta 1``         :math:`\partial L/\partial b_p = (\delta\,\mathbf 1_M)_p` (summed over the batch)
``dL/da_prev = W^T delta``  :math:`\partial L/\partial a_{qr} = (W^T \delta)_{qr}`
``delta = dL/da ⊙ f'(z)``   :math:`\partial L/\partial z_{pr} = (\partial L/\partial x \odot f'(z))_{pr}`
=========================  ===============================================================

with :math:`\delta = \partial L/\partial z` an arbitrary :math:`N\times M` matrix (symbol ``G``).

**Index ranges written into the sizes.** SymPy does not use an index's range when it decides
``KroneckerDelta`` sums or the ``Piecewise`` conditions they produce (``K >= q + 1``). So each
free index is a non-negative integer symbol and each size is written as *index + 1 + slack*,
e.g. :math:`K = q + 1 + K_q` with :math:`K_q \ge 0`: every size :math:`\ge 1` and every index in
range is covered, and nothing else. That makes the result a statement for all sizes at once,
which no finite set of architectures can give.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement

__all__ = ["LayerRule", "LayerRulesProof", "prove_layer_rules"]


@dataclass(frozen=True)
class LayerRule:
    """One rule: the chain-rule derivation, the matrix formula's entry, and whether they agree."""

    name: str
    derived: sp.Basic
    matrix_entry: sp.Basic
    ok: bool

    def __str__(self) -> str:
        mark = "proved" if self.ok else "FAILED"
        return f"  [{mark}] {self.name}:  {self.derived}  ==  {self.matrix_entry}"


@dataclass(frozen=True)
class LayerRulesProof:
    """The outcome of :func:`prove_layer_rules`."""

    rules: tuple[LayerRule, ...]
    sizes: str
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rules)

    def __str__(self) -> str:
        verdict = "PROVED" if self.ok else "NOT PROVED"
        head = f"layer rules for all sizes ({self.sizes}): {verdict} in {self.seconds:.2f} s"
        return "\n".join([head, *(str(r) for r in self.rules)])


def _canonical(e: sp.Basic) -> sp.Basic:
    """Rename every summation variable to a canonical one (c0, c1, ... in order of appearance)."""
    counter = iter(range(10**6))

    def rename(s: sp.Sum) -> sp.Sum:
        body, limits = s.function, []
        for var, lo, hi in s.limits:
            c = sp.Symbol(f"c{next(counter)}", integer=True)
            body = body.xreplace({var: c})
            limits.append((c, lo, hi))
        return sp.Sum(body, *limits)

    return e.replace(lambda x: isinstance(x, sp.Sum), rename)


def _chain_sum(expr: sp.Basic, *limits: tuple[sp.Symbol, sp.Basic, sp.Basic]) -> sp.Basic:
    """Sum ``expr`` over ``limits`` one index at a time, those a KroneckerDelta can collapse first."""
    deltas = expr.atoms(sp.KroneckerDelta)
    order = sorted(limits, key=lambda lim: not any(lim[0] in d.free_symbols for d in deltas))
    out = expr
    for lim in order:
        out = sp.Sum(out, lim).doit()
    return out


def _as_indexed(e: sp.Basic) -> sp.Basic:
    """Read each matrix entry ``X[i, j]`` of a MatrixSymbol as the Indexed ``X[i, j]`` of the same name."""
    return e.replace(lambda x: isinstance(x, MatrixElement),
                     lambda x: sp.IndexedBase(x.parent.name)[x.i, x.j])


def _same(a: sp.Basic, b: sp.Basic) -> bool:
    a, b = _canonical(_as_indexed(sp.sympify(a).doit())), _canonical(_as_indexed(sp.sympify(b).doit()))
    return a == b or sp.simplify(a - b) == 0


def prove_layer_rules() -> LayerRulesProof:
    r"""Prove the four layer rules of the article's backward pass for symbolic sizes N, K, M.

    Returns:
      A :class:`LayerRulesProof`; ``.ok`` is True when every rule's chain-rule derivation equals
      the entry of its matrix formula (see the module docstring for the statements).
    """
    start = time.perf_counter()
    p, q, r = sp.symbols("p q r", integer=True, nonnegative=True)
    n_p, k_q, m_r = sp.symbols("N_p K_q M_r", integer=True, nonnegative=True)
    N, K, M = p + 1 + n_p, q + 1 + k_q, r + 1 + m_r
    i, j, k = sp.symbols("i j k", integer=True)
    w, b, a, g, h, zz = (sp.IndexedBase(s) for s in ("w", "b", "a", "G", "H", "z"))
    f = sp.Function("f")
    Wm, Am, Gm, Hm = sp.MatrixSymbol("w", N, K), sp.MatrixSymbol("a", K, M), sp.MatrixSymbol("G", N, M), \
        sp.MatrixSymbol("H", N, M)

    z = sp.Sum(w[i, j] * a[j, k], (j, 0, K - 1)) + b[i]            # z_ik, the layer's definition
    over_z = ((i, 0, N - 1), (k, 0, M - 1))

    def through_z(theta: sp.Indexed) -> sp.Basic:
        """The chain rule: sum_ik dL/dz_ik * dz_ik/dtheta, with dL/dz_ik = G[i, k]."""
        return _chain_sum(g[i, k] * sp.diff(z, theta).doit(), *over_z)

    rules = []
    dw = through_z(w[p, q])
    rules.append(LayerRule("dL/dW = delta a_prev^T", dw, (Gm * Am.T)[p, q], _same(dw, (Gm * Am.T)[p, q])))
    db = through_z(b[p])
    ones = sp.OneMatrix(M, 1)
    rules.append(LayerRule("dL/dB = delta 1_M (summed over the batch)", db, (Gm * ones)[p, 0],
                           _same(db, (Gm * ones)[p, 0])))
    da = through_z(a[q, r])
    rules.append(LayerRule("dL/da_prev = W^T delta", da, (Wm.T * Gm)[q, r], _same(da, (Wm.T * Gm)[q, r])))
    # delta: x_ik = f(z_ik), dL/dx_ik = H[i, k]
    dz = _chain_sum(h[i, k] * sp.diff(f(zz[i, k]), zz[p, r]), *over_z)
    fprime = sp.diff(f(zz[p, r]), zz[p, r])                          # f'(z_pr)
    Fm = sp.MatrixSymbol("F", N, M)                                  # the matrix f'(z), entrywise
    entry = sp.HadamardProduct(Hm, Fm)[p, r].xreplace({Fm[p, r]: fprime})
    rules.append(LayerRule("delta = dL/da ⊙ f'(z)", dz, entry, _same(dz, entry)))
    return LayerRulesProof(tuple(rules), "N = p+1+N_p units, K = q+1+K_q inputs, M = r+1+M_r samples",
                           time.perf_counter() - start)
