r"""Directional finite differences at scale: many directional derivatives of the loss, stacked.

The elementwise witness (:mod:`handgrad.reference.oracles.finite_diff`) perturbs one parameter at
a time; at a few hundred thousand parameters that is millions of forwards. This module measures
instead the directional derivative :math:`d\cdot\nabla L` along chosen directions :math:`d`, each
by central differences with Richardson extrapolation and an error estimate, evaluating all the
perturbed points of a batch of directions as *extra columns* of one forward pass (so the work goes
through BLAS, never a Python loop over parameters).

Its own forward pass, from the shared definitions evaluated with ``handgrad.NUMPY_OPS`` (never
``Network.forward``, never JAX): :math:`z^{(l)} = W^{(l)} a^{(l-1)} + B^{(l)}`,
:math:`a^{(l)} = f_l(z^{(l)})`, :math:`L = \frac1m\sum_s \ell_s`, float64.

Directions (:class:`Direction`). A direction is sparse: a list of parts, each a tensor name and
the elements it moves with their weights. How its points are evaluated depends on its support:

* one row of one tensor (``W`` row i, or one ``b_i``): only row i of :math:`z^{(l)}` moves, by
  :math:`t\,\sum_j d_j a_j^{(l-1)}`; for an elementwise activation only row i of :math:`a^{(l)}`
  changes, and the next layer is updated by the rank-one term :math:`W_{:,i}\,\Delta a_i`;
* one layer (a column, a tensor, any subset of ``W`` and ``B`` of layer l): all of
  :math:`z^{(l)}` moves by :math:`t\,(D\,a^{(l-1)} + b)`, exact because the layers before are
  untouched; the forward runs on from layer l;
* several layers (the random directions over every parameter): a forward of the moved network,
  the points stacked as columns.

The point is never formed as ``W + t D`` (which would round the parameters): the perturbation
enters as :math:`t\,(D a)`, so the evaluated point is exactly :math:`w + t d`.

Step. For a direction with :math:`s = \max|\partial z/\partial t|` (the largest rate at which a
pre-activation of its own layers moves), :math:`t = 2^{\mathrm{round}(\log_2(h_0/s))}` with
:math:`h_0` = :data:`H0_DIRECTIONAL` = :math:`2^{-6}`: every pre-activation moves by at most
:math:`h_0` per unit of the multipliers below. (Richardson's fourth-order error allows a much
larger step than the :math:`(3u)^{1/3}` of plain central differences, and a larger step divides
the rounding error by more.)

Estimate (Richardson). With :math:`D(h) = (L(w+hd) - L(w-hd))/2h` at :math:`h = t, 2t, 4t`
(six points),

.. math::
   R_1 = \frac{4D(t) - D(2t)}{3}, \qquad R_2 = \frac{4D(2t) - D(4t)}{3}, \qquad
   R_1 = d\cdot\nabla L + c\,t^4 + O(t^6), \quad R_2 = d\cdot\nabla L + 16\,c\,t^4 + O(t^6).

The value is :math:`R_1`; the error estimate

.. math::
   E = \text{ROUND\_SAFETY}\cdot\Big(\tfrac43\,\frac{\epsilon_{+1}+\epsilon_{-1}}{2t}
       + \tfrac13\,\frac{\epsilon_{+2}+\epsilon_{-2}}{4t}\Big)
     + \text{TRUNC\_SAFETY}\cdot\frac{|R_1 - R_2|}{15} + 4u|R_1|,

with :math:`\epsilon_{\pm k}` a bound on the rounding error of the computed loss at
:math:`w \pm k t d`. *Screening* takes every :math:`\epsilon` as the centre's running-error bound
(:func:`~handgrad.reference.oracles.finite_diff.loss_rounding_bound`, a rigorous Wilkinson bound
at :math:`w`): the bound moves by :math:`O(h_0)` relative within the step except at an exact fit,
where the residual is ~0 at the centre only. A direction whose comparison fails at screening is
*rechecked* with the rigorous bound at each of its own points (``loss_rounding_bound`` at the
moved parameters) before anything is called a mismatch. Underestimating :math:`E` can only cause
a false alarm (which the recheck removes), never hide a bug.

Kinks. Where an activation has kinks, a point whose branch pattern :math:`[z > k]` differs from
the centre's straddles a kink; that direction is flagged ``kink`` and its estimate is not used.

Bisection (:func:`bisect`). A direction whose derivative disagrees with a gradient is split in
two halves (by tensor, then by row, then by column), each half measured, and the failing halves
split again, down to single elements: a wrong element is named in :math:`2\log_2(\text{support})`
further evaluations, then confirmed by an elementwise central difference (a one-element direction).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from handgrad import NUMPY_OPS, Network

from .finite_diff import ROUND_SAFETY, TRUNC_SAFETY, U, loss_rounding_bound

__all__ = [
    "H0_DIRECTIONAL",
    "MULTIPLIERS",
    "Direction",
    "DirectionSet",
    "DirectionalResult",
    "StackedForward",
    "bisect",
    "column_directions",
    "element_directions",
    "random_direction",
    "row_directions",
    "sample_elements",
    "tensor_directions",
]

H0_DIRECTIONAL = 2.0**-6
r"""Largest move of a pre-activation per unit multiplier: :math:`t\,\max|\partial z/\partial t| \approx h_0`."""

MULTIPLIERS = np.array([1.0, -1.0, 2.0, -2.0, 4.0, -4.0])
"""The six points of one directional derivative: :math:`w + k t d` for these k."""

_CHUNK_ENTRIES = 1 << 18
"""Entries per wide array (widest layer x stacked columns) when points are evaluated in chunks."""

_BISECT_LEAVES = 16
"""At most this many single elements are named per failing direction by :func:`bisect`."""


def _pow2(x: np.ndarray) -> np.ndarray:
    """Nearest power of two (in log scale) of each positive entry."""
    return np.exp2(np.round(np.log2(x)))


def _layer_of(name: str) -> int:
    """0-based layer of a parameter name ``W3`` / ``B3`` -> 2."""
    return int(name[1:]) - 1


# ---------------------------------------------------------------------------------------------
# Directions
# ---------------------------------------------------------------------------------------------


class Part(NamedTuple):
    """The elements of one tensor that a direction moves: ``rows[k], cols[k]`` with ``weights[k]``."""

    tensor: str
    rows: np.ndarray
    cols: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class Direction:
    r"""A sparse direction :math:`d` in parameter space and a label saying what it is.

    ``parts`` holds, per tensor, the moved elements (0-based ``rows``/``cols``) and their weights.
    ``label`` reads like ``"row 3 of W1"``; ``kind`` is one of ``"random"``, ``"tensor"``, ``"row"``,
    ``"column"``, ``"element"``, ``"half"`` (a bisection step).
    """

    parts: tuple[Part, ...]
    label: str
    kind: str

    @property
    def layers(self) -> set[int]:
        return {_layer_of(p.tensor) for p in self.parts}

    @property
    def size(self) -> int:
        return int(sum(p.weights.size for p in self.parts))

    def single_row(self) -> tuple[str, int] | None:
        """``(tensor, row)`` when the direction moves one row of one tensor, else None."""
        return self._shape_info[0]

    @cached_property
    def _shape_info(self) -> tuple[tuple[str, int] | None, bool]:
        """(single row or None, whether each row appears at most once in every part)."""
        if self.kind in ("row", "element", "column") and len(self.parts) == 1:
            # Known by construction: a row family moves one row; a column family distinct rows.
            p = self.parts[0]
            one_row = self.kind != "column" or p.rows.size == 1
            return ((p.tensor, int(p.rows[0])) if one_row else None), self.kind == "column" or p.rows.size == 1
        row = None
        if len(self.parts) == 1:
            p = self.parts[0]
            if p.rows.size and np.all(p.rows == p.rows[0]):
                row = (p.tensor, int(p.rows[0]))
        unique = all(np.unique(p.rows).size == p.rows.size for p in self.parts)
        return row, unique

    def dot(self, grads: Mapping[str, np.ndarray]) -> float:
        r""":math:`d\cdot g` (float64)."""
        return float(sum(np.dot(p.weights, np.asarray(grads[p.tensor], dtype=np.float64)[p.rows, p.cols])
                         for p in self.parts))

    def abs_dot(self, values: Mapping[str, np.ndarray]) -> float:
        r""":math:`\sum_e |d_e|\,|v_e|` (a budget or a magnitude along the direction)."""
        return float(sum(np.dot(np.abs(p.weights),
                                np.abs(np.asarray(values[p.tensor], dtype=np.float64)[p.rows, p.cols]))
                         for p in self.parts))

    def elements(self) -> Iterable[tuple[str, int, int, float]]:
        for p in self.parts:
            for i, j, w in zip(p.rows.tolist(), p.cols.tolist(), p.weights.tolist(), strict=True):
                yield p.tensor, i, j, w

    def halves(self) -> list[Direction]:
        """Split in two: by tensor when it has several parts, else by row when it spans several rows,
        else by column. A one-element direction has no halves."""
        if len(self.parts) > 1:
            k = len(self.parts) // 2
            return [Direction(self.parts[:k], f"{self.label} [{', '.join(p.tensor for p in self.parts[:k])}]", "half"),
                    Direction(self.parts[k:], f"{self.label} [{', '.join(p.tensor for p in self.parts[k:])}]", "half")]
        p = self.parts[0]
        if p.weights.size <= 1:
            return []
        distinct_rows = np.unique(p.rows)
        if distinct_rows.size > 1:
            low = np.isin(p.rows, distinct_rows[: distinct_rows.size // 2])
            what = "rows"
        else:
            order = np.argsort(p.cols, kind="stable")
            low = np.zeros(p.weights.size, dtype=bool)
            low[order[: p.weights.size // 2]] = True
            what = "columns"
        out = []
        for mask in (low, ~low):
            part = Part(p.tensor, p.rows[mask], p.cols[mask], p.weights[mask])
            lo, hi = (part.rows, part.cols) if what == "rows" else (part.cols, part.rows)
            out.append(Direction((part,), f"{p.tensor} {what} {int(lo.min()) + 1}..{int(lo.max()) + 1}"
                                 + (f" of row {int(hi[0]) + 1}" if what == "columns" else ""), "half"))
        return out


def _weights(rng: np.random.Generator, n: int) -> np.ndarray:
    r"""Weights :math:`\pm(1 + U)`, :math:`U \sim \mathcal U[0,1)`: every moved element counts with
    a weight of at least 1 in magnitude (a single wrong element shifts the derivative by at least
    its error), and the continuous magnitudes make an exact cancellation of several errors a
    probability-zero event (the density of :math:`d_e\delta_e` is at most :math:`1/(2|\delta_e|)`)."""
    return rng.choice(np.array([-1.0, 1.0]), size=n) * (1.0 + rng.random(n))


def random_direction(net: Network, rng: np.random.Generator, label: str = "random direction") -> Direction:
    """A direction moving every parameter of ``net`` (weights as in :func:`_weights`)."""
    parts = []
    for name, (r, c) in net.param_shapes.items():
        rows, cols = np.divmod(np.arange(r * c), c)
        parts.append(Part(name, rows, cols, _weights(rng, r * c)))
    return Direction(tuple(parts), label, "random")


def tensor_directions(net: Network, rng: np.random.Generator) -> list[Direction]:
    """One direction per tensor, moving each of its elements."""
    out = []
    for name, (r, c) in net.param_shapes.items():
        rows, cols = np.divmod(np.arange(r * c), c)
        out.append(Direction((Part(name, rows, cols, _weights(rng, r * c)),), f"all of {name}", "tensor"))
    return out


def row_directions(net: Network, rng: np.random.Generator, tensors: Sequence[str] | None = None) -> list[Direction]:
    """One direction per row of each tensor (a bias tensor's rows are its single elements)."""
    out = []
    for name, (r, c) in net.param_shapes.items():
        if tensors is not None and name not in tensors:
            continue
        cols = np.arange(c)
        weights = _weights(rng, r * c).reshape(r, c)
        kind = "row" if c > 1 else "element"
        out.extend(Direction((Part(name, np.full(c, i), cols, weights[i]),), f"row {i + 1} of {name}", kind)
                   for i in range(r))
    return out


def column_directions(net: Network, rng: np.random.Generator, tensors: Sequence[str] | None = None) -> list[Direction]:
    """One direction per column of each tensor (a bias tensor has one column: all of it)."""
    out = []
    for name, (r, c) in net.param_shapes.items():
        if tensors is not None and name not in tensors:
            continue
        rows = np.arange(r)
        weights = _weights(rng, r * c).reshape(c, r)
        out.extend(Direction((Part(name, rows, np.full(r, j), weights[j]),), f"column {j + 1} of {name}", "column")
                   for j in range(c))
    return out


def sample_elements(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    r"""``max(n_rows, n_cols)`` distinct elements of a tensor, every row and every column among them.

    Row :math:`\pi(k) \bmod r` and column :math:`\sigma(k) \bmod c` for :math:`k < \max(r, c)`, with
    :math:`\pi, \sigma` random permutations: each row and each column is hit at least once, and the
    pairs are distinct (k and k' share a row only if they differ modulo r, hence a column... when
    r and c are coprime; duplicates are dropped otherwise)."""
    r, c = shape
    n = max(r, c)
    k = np.arange(n)
    rows = rng.permutation(r)[k % r]
    cols = rng.permutation(c)[rng.permutation(n) % c]
    flat = np.unique(rows * c + cols)
    out_r, out_c = np.divmod(flat, c)
    # Duplicates dropped above may leave a row or column out: add one element for each.
    for i in np.setdiff1d(np.arange(r), out_r):
        out_r, out_c = np.append(out_r, i), np.append(out_c, rng.integers(c))
    for j in np.setdiff1d(np.arange(c), out_c):
        out_r, out_c = np.append(out_r, rng.integers(r)), np.append(out_c, j)
    return out_r, out_c


def element_directions(tensor: str, rows: np.ndarray, cols: np.ndarray) -> list[Direction]:
    """One direction per element (weight 1): elementwise central differences."""
    return [Direction((Part(tensor, np.array([i]), np.array([j]), np.ones(1)),), f"{tensor}[{i}, {j}]", "element")
            for i, j in zip(np.asarray(rows).tolist(), np.asarray(cols).tolist(), strict=True)]


class DirectionSet:
    r"""Many directions flattened per tensor, for their dot products in a few numpy calls.

    For tensor T, ``seg``, ``rows``, ``cols``, ``weights`` list every moved element of every
    direction (``seg`` = the direction's index); :math:`d_k\cdot g` is then
    ``bincount(seg, weights * g[rows, cols])`` summed over tensors.
    """

    def __init__(self, directions: Sequence[Direction]) -> None:
        self.directions = list(directions)
        self.K = len(self.directions)
        by: dict[str, list[tuple[int, Part]]] = {}
        for k, d in enumerate(self.directions):
            for p in d.parts:
                by.setdefault(p.tensor, []).append((k, p))
        self._flat = {}
        for t, items in by.items():
            seg = np.repeat(np.array([k for k, _ in items]), [p.weights.size for _, p in items])
            ncols = 1 + max(int(p.cols.max(initial=0)) for _, p in items)
            flat = np.concatenate([p.rows * ncols + p.cols for _, p in items])
            w = np.concatenate([p.weights for _, p in items])
            self._flat[t] = (seg, flat, ncols, w, np.abs(w))
        self.sizes = np.array([d.size for d in self.directions], dtype=np.float64)

    def dots(self, grads: Mapping[str, np.ndarray], absolute: bool = False) -> np.ndarray:
        r""":math:`d_k\cdot g` for every k, or :math:`\sum_e |d_{k,e}||g_e|` with ``absolute``."""
        out = np.zeros(self.K)
        for t, (seg, flat, ncols, w, aw) in self._flat.items():
            arr = np.asarray(grads[t], dtype=np.float64)
            if arr.shape[1] != ncols:  # a tensor whose last columns no direction touches
                arr = arr[:, :ncols]
            g = arr.ravel().take(flat)
            out += np.bincount(seg, weights=(aw * np.abs(g)) if absolute else w * g, minlength=self.K)
        return out


# ---------------------------------------------------------------------------------------------
# The stacked forward
# ---------------------------------------------------------------------------------------------


class DirectionalResult(NamedTuple):
    r"""Directional derivatives of a batch of directions.

    ``value[k]`` is :math:`R_1` for direction k, ``error[k]`` its error estimate :math:`E`,
    ``step[k]`` the unit step t, ``kink[k]`` True when a point crossed a kink (value not usable),
    ``rechecked[k]`` True when :math:`E` uses the rigorous bound at the direction's own points.
    """

    value: np.ndarray
    error: np.ndarray
    step: np.ndarray
    kink: np.ndarray
    rechecked: np.ndarray


class StackedForward:
    r"""The centre forward of ``net`` at ``(params, X, Y)`` and the losses at many moved points.

    Args:
      net: the architecture (sizes, activations, loss, fusion); only its definitions are used.
      params, X, Y: the centre; evaluated in float64.

    Attributes:
      L0: the loss at the centre; eps0: the running-error bound of it (``loss_rounding_bound``).
      evaluations: how many loss values were computed so far (one per point).
    """

    def __init__(self, net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        net.check_params(params)
        net.check_batch(params, X, Y)
        self.net = net
        self.params = {k: np.asarray(params[k], dtype=np.float64) for k in net.param_names}
        self.W = [self.params[f"W{l + 1}"] for l in range(net.depth)]
        self.B = [self.params[f"B{l + 1}"] for l in range(net.depth)]
        self.X = np.asarray(X, dtype=np.float64)
        self.Y = np.asarray(Y, dtype=np.float64)
        self.m = self.X.shape[1]
        self.defs = [a.definition for a in net.activations]
        self.kinks = [tuple(float(k) for k in a.kinks) for a in net.activations]
        self.elementwise = [bool(a.elementwise) for a in net.activations]
        rule = net.fused_rule
        self._fused = rule.definition if rule is not None else None
        self._loss = net.loss.definition
        self.zs: list[np.ndarray] = []
        self.acts: list[np.ndarray] = [self.X]
        with np.errstate(all="ignore"):
            for l in range(net.depth):
                self.zs.append(self.W[l] @ self.acts[-1] + self.B[l])
                self.acts.append(np.asarray(self.defs[l](self.zs[-1], NUMPY_OPS), dtype=np.float64))
            self.L0 = float(np.sum(self._per_sample(self.zs[-1], self.acts[-1], self.Y)) / self.m)
        if not math.isfinite(self.L0):
            raise ArithmeticError(f"directional differences: the loss of {net.describe()} is {self.L0!r} at the "
                                  "given params (a definition overflowed in float64)")
        self.patterns = [[z > k for k in ks] for z, ks in zip(self.zs, self.kinks, strict=True)]
        self.eps0 = loss_rounding_bound(net, self.params, self.X, self.Y)
        self.evaluations = 0

    # -- per-sample losses of stacked columns ---------------------------------------------------

    def _per_sample(self, z: np.ndarray, a: np.ndarray, Y: np.ndarray) -> np.ndarray:
        out = self._fused(z, Y, NUMPY_OPS) if self._fused is not None else self._loss(a, Y, NUMPY_OPS)
        return np.asarray(out, dtype=np.float64).reshape(-1)

    def _changed(self, l: int, z: np.ndarray, groups: int) -> np.ndarray:
        """Per group: does the branch pattern of layer l differ from the centre's?"""
        out = np.zeros(groups, dtype=bool)
        n = z.shape[0]
        for k, base in zip(self.kinks[l], self.patterns[l], strict=True):
            pat = (z > k).reshape(n, groups, self.m)
            out |= np.any(pat != base[:, None, :], axis=(0, 2))
        return out

    def _from_z(self, l: int, z: np.ndarray, groups: int,
                a: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean losses ``(groups,)`` and kink flags from layer l's pre-activations ``z`` (``n_l, groups*m``),
        optionally with its activation ``a`` already computed."""
        depth = self.net.depth
        changed = np.zeros(groups, dtype=bool)
        if a is None:
            changed |= self._changed(l, z, groups)
            a = np.asarray(self.defs[l](z, NUMPY_OPS), dtype=np.float64)
        for k in range(l + 1, depth):
            z = self.W[k] @ a + self.B[k]
            changed |= self._changed(k, z, groups)
            a = np.asarray(self.defs[k](z, NUMPY_OPS), dtype=np.float64)
        per = self._per_sample(z, a, np.tile(self.Y, (1, groups)))
        self.evaluations += groups
        return per.reshape(groups, self.m).sum(axis=1) / self.m, changed

    def _chunk(self, columns_per_group: int) -> int:
        widest = max(self.net.sizes[1:])
        return max(1, _CHUNK_ENTRIES // (widest * columns_per_group))

    def losses_layer(self, l: int, dz: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Losses at :math:`z^{(l)} + s\,t_k\,\Delta z_k` for each direction k and multiplier s.

        ``dz``: ``(K, n_l, m)`` rates :math:`\partial z^{(l)}/\partial t`; ``steps``: ``(K,)``.
        Returns ``(K, len(MULTIPLIERS))`` losses and kink flags of the same shape.
        """
        K = dz.shape[0]
        S = MULTIPLIERS.size
        n = dz.shape[1]
        losses = np.empty((K, S))
        flags = np.zeros((K, S), dtype=bool)
        chunk = max(1, self._chunk(S * self.m))
        z0 = self.zs[l]
        with np.errstate(all="ignore"):
            for start in range(0, K, chunk):
                sl = slice(start, min(K, start + chunk))
                E = sl.stop - sl.start
                moves = (steps[sl, None] * MULTIPLIERS[None, :])[:, :, None, None] * dz[sl][:, None]  # E,S,n,m
                z = z0[None, None] + moves
                z = z.transpose(2, 0, 1, 3).reshape(n, E * S * self.m)
                lv, fl = self._from_z(l, z, E * S)
                losses[sl], flags[sl] = lv.reshape(E, S), fl.reshape(E, S)
        return losses, flags

    def losses_row(self, l: int, rows: np.ndarray, dz: np.ndarray,
                   steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Losses when only row ``rows[k]`` of :math:`z^{(l)}` moves, at rate ``dz[k]`` (``(K, m)``).

        For an elementwise activation only that row of :math:`a^{(l)}` changes, and
        :math:`z^{(l+1)}` is updated by the rank-one term :math:`W^{(l+1)}_{:,i}\,\Delta a_i`.
        """
        if not self.elementwise[l]:
            K = dz.shape[0]
            full = np.zeros((K, self.zs[l].shape[0], self.m))
            full[np.arange(K), rows] = dz
            return self.losses_layer(l, full, steps)
        K = dz.shape[0]
        S = MULTIPLIERS.size
        m = self.m
        losses = np.empty((K, S))
        flags = np.zeros((K, S), dtype=bool)
        chunk = self._chunk(S * m)
        depth = self.net.depth
        with np.errstate(all="ignore"):
            for start in range(0, K, chunk):
                sl = slice(start, min(K, start + chunk))
                E = sl.stop - sl.start
                r = rows[sl]
                moves = (steps[sl, None] * MULTIPLIERS[None, :])[:, :, None] * dz[sl][:, None, :]  # E,S,m
                zrow = self.zs[l][r][:, None, :] + moves
                changed = np.zeros((E, S), dtype=bool)
                for k, base in zip(self.kinks[l], self.patterns[l], strict=True):
                    changed |= np.any((zrow > k) != base[r][:, None, :], axis=2)
                arow = np.asarray(self.defs[l](zrow, NUMPY_OPS), dtype=np.float64)  # E,S,m
                delta = arow - self.acts[l + 1][r][:, None, :]
                if l + 1 < depth:
                    Wcol = self.W[l + 1][:, r]  # n_{l+1}, E
                    znext = self.zs[l + 1][:, None, None, :] + Wcol[:, :, None, None] * delta[None]
                    znext = znext.reshape(znext.shape[0], E * S * m)
                    lv, fl = self._from_z(l + 1, znext, E * S)
                else:
                    n = self.zs[l].shape[0]
                    z = np.repeat(self.zs[l][:, None, :], E * S, axis=1)  # n, E*S, m
                    a = np.repeat(self.acts[l + 1][:, None, :], E * S, axis=1)
                    q = np.arange(E * S)
                    z[np.repeat(r, S), q] = zrow.reshape(E * S, m)
                    a[np.repeat(r, S), q] = arow.reshape(E * S, m)
                    lv, fl = self._from_z(l, z.reshape(n, E * S * m), E * S, a=a.reshape(n, E * S * m))
                losses[sl] = lv.reshape(E, S)
                flags[sl] = fl.reshape(E, S) | changed
        return losses, flags

    def losses_moved(self, direction: Direction, step: float) -> tuple[np.ndarray, np.ndarray]:
        r"""Losses at :math:`w + s\,t\,d` for a direction over several layers (all points stacked)."""
        S = MULTIPLIERS.size
        m = self.m
        mult = np.repeat(step * MULTIPLIERS, m)[None, :]  # 1, S*m
        dW, dB = self._dense(direction)
        a = np.tile(self.X, (1, S))
        changed = np.zeros(S, dtype=bool)
        with np.errstate(all="ignore"):
            for l in range(self.net.depth):
                z = self.W[l] @ a + self.B[l]
                if l in dW:
                    z = z + mult * (dW[l] @ a + dB[l])
                changed |= self._changed(l, z, S)
                a = np.asarray(self.defs[l](z, NUMPY_OPS), dtype=np.float64)
            per = self._per_sample(z, a, np.tile(self.Y, (1, S)))
        self.evaluations += S
        return per.reshape(S, m).sum(axis=1) / m, changed

    def _dense(self, direction: Direction) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        dW: dict[int, np.ndarray] = {}
        dB: dict[int, np.ndarray] = {}
        for l in sorted(direction.layers):
            dW[l] = np.zeros_like(self.W[l])
            dB[l] = np.zeros_like(self.B[l])
        for p in direction.parts:
            l = _layer_of(p.tensor)
            target = dW[l] if p.tensor[0] == "W" else dB[l]
            np.add.at(target, (p.rows, p.cols), p.weights)
        return dW, dB

    def rate(self, direction: Direction) -> np.ndarray:
        r""":math:`\partial z^{(l)}/\partial t` at the centre for a one-layer direction, ``(n_l, m)``.

        A part whose rows are distinct (a column, a bias) is scattered directly, O(size m); others
        go through a dense :math:`D a`."""
        (l,) = direction.layers
        if direction._shape_info[1]:
            out = np.zeros((self.zs[l].shape[0], self.m))
            for p in direction.parts:
                if p.tensor[0] == "W":
                    out[p.rows] += p.weights[:, None] * self.acts[l][p.cols]
                else:
                    out[p.rows] += p.weights[:, None]
            return out
        dW, dB = self._dense(direction)
        return dW[l] @ self.acts[l] + dB[l]

    def moved_params(self, direction: Direction, t: float) -> dict[str, np.ndarray]:
        """The parameters at ``w + t d`` (rounded to float64; used for the rigorous rounding bound)."""
        out = {k: v.copy() for k, v in self.params.items()}
        for p in direction.parts:
            np.add.at(out[p.tensor], (p.rows, p.cols), t * p.weights)
        return out

    # -- directional derivatives ----------------------------------------------------------------

    def derivatives(self, directions: Sequence[Direction]) -> DirectionalResult:
        """Directional derivatives (Richardson, with error estimates) along each direction."""
        K = len(directions)
        losses = np.empty((K, MULTIPLIERS.size))
        flags = np.zeros((K, MULTIPLIERS.size), dtype=bool)
        steps = np.ones(K)
        rows_by_layer: dict[int, list[int]] = {}
        layer_by_layer: dict[int, list[int]] = {}
        for k, d in enumerate(directions):
            if len(d.layers) > 1:
                steps[k] = self._step_multi(d)
                losses[k], flags[k] = self.losses_moved(d, steps[k])
            elif d.single_row() is not None:
                rows_by_layer.setdefault(next(iter(d.layers)), []).append(k)
            else:
                layer_by_layer.setdefault(next(iter(d.layers)), []).append(k)
        for l, ks in rows_by_layer.items():
            rows = np.array([directions[k].single_row()[1] for k in ks])  # type: ignore[index]
            dz = np.stack([self._row_rate(directions[k], l) for k in ks])
            steps[ks] = self._steps(np.max(np.abs(dz), axis=1))
            losses[ks], flags[ks] = self.losses_row(l, rows, dz, steps[ks])
        for l, ks in layer_by_layer.items():
            dz = np.stack([self.rate(directions[k]) for k in ks])
            steps[ks] = self._steps(np.max(np.abs(dz), axis=(1, 2)))
            losses[ks], flags[ks] = self.losses_layer(l, dz, steps[ks])
        eps = np.full((K, MULTIPLIERS.size), self.eps0)
        value, error = _richardson(losses, eps, steps)
        return DirectionalResult(value, error, steps, flags.any(axis=1), np.zeros(K, dtype=bool))

    def recheck(self, direction: Direction, step: float) -> tuple[float, float]:
        r"""Value and error of one direction at unit step ``step`` with the rigorous rounding bound
        (``loss_rounding_bound``) at each of its six points instead of the centre's."""
        if len(direction.layers) > 1:
            losses, _ = self.losses_moved(direction, step)
        else:
            losses, _ = self._losses_one(direction, step)
        eps = np.array([loss_rounding_bound(self.net, self.moved_params(direction, s * step), self.X, self.Y)
                        for s in MULTIPLIERS])
        value, error = _richardson(losses[None, :], eps[None, :], np.array([step]))
        return float(value[0]), float(error[0])

    def _losses_one(self, direction: Direction, step: float) -> tuple[np.ndarray, np.ndarray]:
        (l,) = direction.layers
        row = direction.single_row()
        if row is not None:
            lv, fl = self.losses_row(l, np.array([row[1]]), self._row_rate(direction, l)[None], np.array([step]))
        else:
            lv, fl = self.losses_layer(l, self.rate(direction)[None], np.array([step]))
        return lv[0], fl[0]

    def _row_rate(self, direction: Direction, l: int) -> np.ndarray:
        p = direction.parts[0]
        if p.tensor[0] == "W":
            return p.weights @ self.acts[l][p.cols]
        return np.full(self.m, float(np.sum(p.weights)))

    def _steps(self, rate: np.ndarray) -> np.ndarray:
        return np.where(rate > 0, _pow2(H0_DIRECTIONAL / np.where(rate > 0, rate, 1.0)), 1.0)

    def _step_multi(self, direction: Direction) -> float:
        dW, dB = self._dense(direction)
        rate = max(float(np.max(np.abs(dW[l] @ self.acts[l] + dB[l]))) for l in dW)
        return float(self._steps(np.array([rate]))[0])


def _richardson(losses: np.ndarray, eps: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`R_1` and its error estimate :math:`E` (module doc) from the six losses per direction."""
    t = steps
    Lp1, Lm1, Lp2, Lm2, Lp4, Lm4 = losses.T
    D1 = (Lp1 - Lm1) / (2 * t)
    D2 = (Lp2 - Lm2) / (4 * t)
    D4 = (Lp4 - Lm4) / (8 * t)
    R1 = (4 * D1 - D2) / 3
    R2 = (4 * D2 - D4) / 3
    e = eps.T
    rounding = (4 / 3) * (e[0] + e[1]) / (2 * t) + (1 / 3) * (e[2] + e[3]) / (4 * t)
    error = ROUND_SAFETY * rounding + TRUNC_SAFETY * np.abs(R1 - R2) / 15 + 4 * U * np.abs(R1)
    bad = ~np.isfinite(R1) | ~np.isfinite(error)
    return np.where(bad, np.nan, R1), np.where(bad, np.inf, error)


# ---------------------------------------------------------------------------------------------
# Bisection
# ---------------------------------------------------------------------------------------------


class Pinned(NamedTuple):
    """One element named by bisection: the FD derivative there with its error estimate."""

    tensor: str
    index: tuple[int, int]
    fd: float
    fd_error: float


def bisect(forward: StackedForward, direction: Direction, fails: Callable[[Direction, float, float], bool],
           *, max_leaves: int = _BISECT_LEAVES) -> tuple[list[Pinned], list[str], int]:
    r"""Pin the disagreement along ``direction`` to single elements.

    ``fails(d, value, error)`` says whether a measured directional derivative disagrees with the
    gradient under test. Each failing direction is split (:meth:`Direction.halves`), both halves
    measured in one stacked evaluation, and the failing halves split again, down to single
    elements (at most ``max_leaves`` of them). Returns the pinned elements (each a one-element
    central difference :math:`\partial L/\partial w_e` with its error), the path of labels that
    led there, and the number of directional evaluations made.
    """
    pinned: list[Pinned] = []
    path: list[str] = [direction.label]
    frontier = [direction]
    evaluations = 0
    while frontier and len(pinned) < max_leaves:
        children = [h for d in frontier for h in d.halves()]
        if not children:
            break
        res = forward.derivatives(children)
        evaluations += len(children)
        frontier = []
        for d, v, e, kink in zip(children, res.value, res.error, res.kink, strict=True):
            if kink or not fails(d, float(v), float(e)):
                continue
            if d.size == 1:
                (tensor, i, j, w), = d.elements()
                pinned.append(Pinned(tensor, (i, j), float(v) / w, float(e) / abs(w)))
                path.append(d.label)
            else:
                frontier.append(d)
                if len(frontier) == 1:
                    path.append(d.label)
        frontier = frontier[: max(1, max_leaves - len(pinned))]
    return pinned, path, evaluations

