r"""Diagnosis: when a certificate fails, the likely cause that explains the failure exactly.

A failed case has, for every tensor, the hand gradient :math:`h`, one or more reference gradients
:math:`r` (SymPy, JAX, finite differences) and the per-element budgets :math:`b` within which a
correct implementation agrees with each reference. A hypothesis is a transformation :math:`T` of
the right gradient that a common mistake produces; it *explains* a tensor when, against every
reference,

.. math::
   |h - T(r)| \le |T|(b) + u_h\,|h| \quad\text{elementwise},

where :math:`|T|` is :math:`T` with its coefficients replaced by their absolute values (a correct
computation's error, at most :math:`b`, carried through the mistake) and :math:`u_h |h|` the
one rounding of the extra operation, in the hand dtype (:math:`u_h` its unit roundoff). The
tolerance is therefore the budget itself, not a guess: a zero or a copy is tested exactly
(:math:`|T| = 0`), a transpose against the transposed budget, a factor c against :math:`|c| b`.
Infinite budgets (elements the referee cannot decide, e.g. a kink inside a finite-difference step)
constrain nothing. A hypothesis is only considered on a tensor that *fails* (some element outside
its budget), so :math:`T(r)` differs detectably from :math:`r` wherever it is accepted.

The hypotheses, in the order they are reported:

1. ``dtype``: a tensor returned in another dtype than the inputs (a fact), with whether the values
   agree to that dtype's precision (the budget rescaled by :math:`(u_h + u_{64})/(u_{in} + u_{64})`).
2. ``factor``: one tensor, several, or all off by one common factor from a small set: m (N), 1/m,
   2, 1/2, -1, m/2, 2m, the output width n_L and 1/n_L, m n_L and 1/(m n_L).
3. ``l2``: every weight gradient off by :math:`\pm c W` (a penalty missing, doubled, or present but
   not declared; c from the declared ``l2`` or estimated by weighted least squares over every weight
   element and shown).
4. ``transpose``: a square weight gradient equal to the transpose of the right one.
5. ``zero``/``untouched``: a tensor, or rows/columns of it, exactly zero; a tensor exactly equal to
   its parameter or to the input.
6. ``layer``: the tensors of layers L..k+1 right and every tensor of layers k..1 wrong: the error
   enters in the step from layer k+1 to layer k.

Each :class:`Diagnosis` is stated as *likely*, with the numbers that support it; a failure that no
hypothesis explains gets none (nothing is invented).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from handgrad import Network, Params
from handgrad.notation import is_parameter_name

from ..numerics import unit_roundoff
from .conventions import Conventions, grad_label, param_label, user_index

__all__ = ["Diagnosis", "diagnose", "diagnose_case"]

_U64 = unit_roundoff(np.float64)


@dataclass(frozen=True)
class Diagnosis:
    """A likely cause of a failure, with its evidence.

    ``cause`` is one of ``dtype``, ``factor``, ``l2``, ``transpose``, ``zero``, ``untouched``,
    ``layer``; ``tensors`` are the article's names of the tensors it explains; ``sentence`` speaks
    the user's names; ``evidence`` holds the supporting numbers (``worst``: the largest
    |hand - predicted| / tolerance over the explained elements, at most 1).
    """

    cause: str
    tensors: tuple[str, ...]
    sentence: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        nums = ", ".join(f"{k} {_fmt(v)}" for k, v in self.evidence.items())
        return f"Likely cause: {self.sentence}" + (f" [{nums}]" if nums else "")

    def to_dict(self) -> dict[str, Any]:
        return {"cause": self.cause, "tensors": list(self.tensors), "sentence": self.sentence,
                "evidence": {k: (float(v) if isinstance(v, np.floating | np.integer) else v)
                             for k, v in self.evidence.items()}}

    def _repr_markdown_(self) -> str:
        nums = ", ".join(f"{k} {_fmt(v)}" for k, v in self.evidence.items())
        return f"**Likely cause** ({self.cause}): {self.sentence}" + (f" *[{nums}]*" if nums else "")

    def __str__(self) -> str:
        return self.text()


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.3g}"
    return str(v)


# ---------------------------------------------------------------------------------------------
# The test of a hypothesis.
# ---------------------------------------------------------------------------------------------

class _Case:
    """What every hypothesis reads: hand, references, budgets (per reference), names, sizes."""

    def __init__(self, hand: Mapping[str, np.ndarray], refs: Mapping[str, Any], budgets: Mapping[str, Any],
                 params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
                 conv: Conventions, loss: str | None) -> None:
        self.conv, self.loss = conv, loss
        self.params = params
        self.X, self.Y = np.asarray(X), np.asarray(Y)
        self.m, self.n_out = int(self.X.shape[1]), int(self.Y.shape[0])
        self.in_dtype = np.asarray(next(iter(params.values()))).dtype
        self.refs = _per_source("refs", refs)
        self.budgets = _budgets_per_source(budgets, self.refs)
        self.tensors = [k for k in hand if is_parameter_name(k) and all(k in r for r in self.refs.values())]
        self.hand = {k: np.asarray(hand[k]) for k in self.tensors}
        self.h64 = {k: self.hand[k].astype(np.float64) for k in self.tensors}
        self.u = {k: _unit(self.hand[k].dtype) for k in self.tensors}
        # A tensor in a lower precision than the inputs: its budget rescaled to that precision.
        u_in = _unit(self.in_dtype)
        self.scale = {k: max(1.0, (self.u[k] + _U64) / (u_in + _U64)) for k in self.tensors}
        self.wrong = [k for k in self.tensors if not self.fits(k, lambda r, k=k: r, lambda b: b)]

    def budget(self, src: str, k: str) -> np.ndarray:
        return np.asarray(self.budgets[src][k], dtype=np.float64) * self.scale[k]

    def residual(self, k: str, predict: Callable[[np.ndarray], np.ndarray],
                 tolerance: Callable[[np.ndarray], np.ndarray]) -> float:
        """max over references and elements of |hand - predict(ref)| / tolerance (inf if unexplained)."""
        h = self.h64[k]
        worst = 0.0
        for src, ref in self.refs.items():
            pred = predict(np.asarray(ref[k], dtype=np.float64))
            tol = tolerance(self.budget(src, k)) + self.u[k] * np.abs(h)
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                diff = np.abs(h - pred)
                ratio = np.where(np.isinf(tol), 0.0, np.where(diff == 0, 0.0, diff / tol))
            ratio = np.where(np.isfinite(h), ratio, np.inf)
            if ratio.size:
                worst = max(worst, float(np.max(ratio)))
        return worst

    def fits(self, k: str, predict: Callable[[np.ndarray], np.ndarray],
             tolerance: Callable[[np.ndarray], np.ndarray]) -> bool:
        return self.residual(k, predict, tolerance) <= 1.0

    def ref(self, k: str) -> np.ndarray:
        return np.asarray(next(iter(self.refs.values()))[k], dtype=np.float64)

    def label(self, k: str) -> str:
        return grad_label(k, self.conv)

    def labels(self, ks: Sequence[str]) -> str:
        names = [self.label(k) for k in ks]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

    @property
    def depth(self) -> int:
        return max(int(k[1:]) for k in self.tensors)


def _unit(dtype: np.dtype) -> float:
    return unit_roundoff(dtype) if np.dtype(dtype) in (np.float32, np.float64) else float(np.finfo(dtype).eps) / 2


def _is_tensor_dict(d: Mapping[str, Any]) -> bool:
    return bool(d) and all(is_parameter_name(k) for k in d)


def _per_source(name: str, refs: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    if not isinstance(refs, Mapping) or not refs:
        raise TypeError(f"{name} must be a dict of reference gradients (W1, B1, ...) or of such dicts by oracle")
    if _is_tensor_dict(refs):
        return {"reference": refs}
    for src, r in refs.items():
        if not isinstance(r, Mapping) or not _is_tensor_dict(r):
            raise TypeError(f"{name}[{src!r}] must be a dict of gradients keyed W1, B1, ...")
    return dict(refs)


def _budgets_per_source(budgets: Mapping[str, Any], refs: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    if not isinstance(budgets, Mapping) or not budgets:
        raise TypeError("budgets must be a dict of per-element budgets (W1, B1, ...) or of such dicts by oracle")
    if _is_tensor_dict(budgets):
        return {src: budgets for src in refs}
    missing = [src for src in refs if src not in budgets]
    if missing:
        raise ValueError(f"budgets has no entry for the references {missing}")
    return {src: budgets[src] for src in refs}


# ---------------------------------------------------------------------------------------------
# Hypotheses.
# ---------------------------------------------------------------------------------------------

def _dtype(c: _Case) -> list[Diagnosis]:
    odd = [k for k in c.tensors if c.hand[k].dtype != c.in_dtype]
    if not odd:
        return []
    dtypes = sorted({str(c.hand[k].dtype) for k in odd})
    agree = [k for k in odd if k not in c.wrong]
    worst = max(c.residual(k, lambda r: r, lambda b: b) for k in odd)
    if len(agree) == len(odd):
        tail = (f"the values agree with the references to {'/'.join(dtypes)} precision (worst "
                f"{worst:.2g} x that budget), so the arithmetic is likely right and a {'/'.join(dtypes)} "
                "array or constant leaks into the computation (np.zeros(..., dtype=np.float32), a float32 buffer)")
    else:
        tail = "the values also differ from the references beyond that precision's rounding"
    sentence = (f"{c.labels(odd)} {'is' if len(odd) == 1 else 'are'} returned in {'/'.join(dtypes)} while your "
                f"inputs are {c.in_dtype}; {tail}")
    return [Diagnosis("dtype", tuple(odd), sentence, {"dtype": "/".join(dtypes), "inputs": str(c.in_dtype),
                                                       "worst": worst})]


def _factor_candidates(c: _Case) -> list[tuple[Fraction, str, str]]:
    """(value, how it is named, what it usually means) for the declared conventions; candidates of
    equal value are merged (``m = n_L = 2``) with every meaning listed."""
    conv, m, n = c.conv, c.m, c.n_out
    b = conv.batch_axis_name
    mean = conv.reduction in ("mean", "mean_all")
    se = c.loss is None or c.loss.startswith("squared_error")
    cands: list[tuple[Fraction, str | None, str]] = [
        (Fraction(m), b,
         "a sum over the batch where the mean is expected (declare reduction='sum' if your loss is the sum)"
         if mean else "the batch counted twice"),
        (Fraction(1, m), f"1/{b}",
         "the mean taken twice (divided by the batch size once too often)" if mean else
         "a mean over the batch where the sum is declared (declare reduction='mean' if your loss is the mean)"),
        (Fraction(2), None,
         "the loss without the 1/2 while half=True is declared" if conv.half else
         "a factor 2 counted twice (as in 2(y_hat - y) and another 2)" if se else "a factor 2 too many"),
        (Fraction(1, 2), None,
         "the gradient of 1/2 (y_hat - y)^2: declare half=True if that is your loss" if se and not conv.half
         else "a factor 1/2 too many"),
        (Fraction(-1), None, "the sign is flipped: (y - y_hat) where (y_hat - y) is expected, or the "
                             "descent direction folded into the gradient"),
        (Fraction(n), "n_L (the output width)",
         "a sum over the outputs where reduction='mean_all' declares their mean"
         if conv.reduction == "mean_all" else "the outputs counted twice"),
        (Fraction(1, n), "1/n_L",
         "a mean over the outputs as well, as PyTorch's MSELoss takes: declare reduction='mean_all'"
         if conv.reduction != "mean_all" else "the mean over the outputs taken twice"),
        (Fraction(m, 2), f"{b}/2",
         "a sum over the batch and the 1/2 of (y_hat - y)^2 (declare reduction='sum' and half=True if that "
         "is your loss)" if mean and se and not conv.half else "a sum and a factor 1/2 where neither is declared"),
        (Fraction(2 * m), f"2 {b}",
         "a sum over the batch and a factor 2 too many" if mean else "a factor 2 m too many"),
        (Fraction(m * n), f"{b} n_L",
         "a sum over the batch and the outputs where the mean over both is declared"
         if conv.reduction == "mean_all" else "sums where means are expected"),
        (Fraction(1, m * n), f"1/({b} n_L)",
         "the mean over the batch and the outputs (PyTorch's MSELoss): declare reduction='mean_all'"
         if conv.reduction == "mean" else "a mean over both where another reduction is declared"),
    ]
    # One output (one sample): the candidates naming n_L (m) are 1 or others under another name;
    # offering them would read as a second cause ("n_L = m n_L = 3").
    if n == 1:
        cands = [c for c in cands if c[1] is None or "n_L" not in c[1]]
    if m == 1:
        cands = [c for c in cands if c[1] is None or not re.search(rf"\b{b}\b", c[1])]
    grouped: dict[Fraction, list[tuple[str | None, str]]] = {}
    for value, symbol, meaning in cands:
        if value != 1:
            grouped.setdefault(value, []).append((symbol, meaning))
    out = []
    for value, ms in grouped.items():
        symbols = list(dict.fromkeys(sym for sym, _ in ms if sym is not None))
        name = " = ".join([*symbols, str(value)])
        out.append((value, name, "; or ".join(dict.fromkeys(mn for _, mn in ms))))
    return out


def _factor(c: _Case) -> list[Diagnosis]:
    fits: dict[Fraction, list[str]] = {}
    worst: dict[Fraction, float] = {}
    cands = _factor_candidates(c)
    for k in c.wrong:
        for value, _, _ in cands:
            f = float(value)
            res = c.residual(k, lambda r, f=f: f * r, lambda b, f=f: abs(f) * b)
            if res <= 1.0:
                fits.setdefault(value, []).append(k)
                worst[value] = max(worst.get(value, 0.0), res)
    out = []
    for value, name, meaning in cands:
        ks = fits.get(value)
        if not ks:
            continue
        k0 = max(ks, key=lambda k: float(np.max(np.abs(c.ref(k)))))
        ref0 = c.ref(k0)
        i = np.unravel_index(int(np.argmax(np.abs(ref0))), ref0.shape)
        observed = float(c.h64[k0][i] / ref0[i])
        if len(ks) == len(c.tensors):
            who = f"every tensor ({c.labels(ks)}) is"
        else:
            who = f"{c.labels(ks)} {'is' if len(ks) == 1 else 'are'}"
        sentence = (f"{who} exactly {name} times the gradient of the declared loss, element by element "
                    f"within the budget: likely {meaning}")
        out.append(Diagnosis("factor", tuple(ks), sentence,
                             {"factor": float(value), "observed ratio": observed, "worst": worst[value]}))
    return out


def _nice(x: float) -> list[float]:
    """x rounded to 1, 2 and 3 significant digits, then x itself (distinct values)."""
    if x == 0 or not np.isfinite(x):
        return []
    out = []
    for digits in (1, 2, 3):
        v = float(f"{x:.{digits - 1}e}")
        if v not in out:
            out.append(v)
    out.append(x)
    return out


def _l2(c: _Case) -> list[Diagnosis]:
    weights = [k for k in c.tensors if k[0] == "W"]
    biases = [k for k in c.tensors if k[0] == "B"]
    if not weights or not any(k in c.wrong for k in weights):
        return []
    W = {k: np.asarray(c.params[k], dtype=np.float64) for k in c.tensors}

    def explains(coef: float) -> tuple[bool, float, bool]:
        worst = 0.0
        for k in weights:
            res = c.residual(k, lambda r, k=k: r + coef * W[k], lambda b: b)
            if res > 1:
                return False, worst, False
            worst = max(worst, res)
        with_biases = False
        for k in biases:
            if k not in c.wrong:
                continue
            res = c.residual(k, lambda r, k=k: r + coef * W[k], lambda b: b)
            if res > 1:
                return False, worst, False
            with_biases, worst = True, max(worst, res)
        return True, worst, with_biases

    declared = c.conv.l2 if c.conv.l2 > 0 else 0.0
    coef0 = (declared if c.conv.l2_half else 2 * declared) if declared else 0.0
    tried: list[tuple[float, str]] = []
    if coef0:
        tried += [(-coef0, f"the L2 term {coef0:g} W of the declared penalty (l2={declared:g}) is missing from "
                           "the weights' gradients"),
                  (coef0, f"the L2 term {coef0:g} W is counted twice (declared l2={declared:g})"),
                  (-coef0 / 2, f"the L2 term has half the declared coefficient ({coef0 / 2:g} W instead of "
                               f"{coef0:g} W): l2_half={not c.conv.l2_half} would match"),
                  (coef0 / 2, f"the L2 term is {1.5 * coef0:g} W instead of {coef0:g} W")]
    else:
        # Weighted least squares over every weight element: r = hand - ref = coef * W.
        num = den = 0.0
        buds = {k: c.budget(next(iter(c.refs)), k) for k in weights}
        good = {k: np.isfinite(b) & (b > 0) for k, b in buds.items()}
        # Weights 1/b^2 taken relative to the largest finite budget of all weight tensors (the same
        # scale for every tensor, so the estimate is unchanged): a budget at the float64 floor
        # (~1e-306, a dead unit) would overflow 1/b^2 on its own.
        top = max((float(np.max(b[good[k]])) for k, b in buds.items() if good[k].any()), default=1.0)
        for k in weights:
            b, ok = buds[k], good[k]
            wts = np.where(ok, 1.0 / np.maximum(np.where(ok, b, top) / top, 1e-150) ** 2, 0.0)
            r = c.h64[k] - c.ref(k)
            num += float(np.sum(wts * r * W[k]))
            den += float(np.sum(wts * W[k] ** 2))
        n_elements = sum(W[k].size for k in weights)
        if den <= 0 or n_elements < 2:
            return []
        est = num / den
        for coef in _nice(est):
            lam = coef / 2
            sign = "+" if coef > 0 else "-"
            tried.append((coef, f"your weights' gradients include an L2 term {sign} {abs(coef):g} W (estimated by "
                                f"least squares over the {n_elements} weight elements) that the declared loss does "
                                f"not have: declare l2={abs(lam):g} (penalty l2 * sum W^2) or l2={abs(coef):g} with "
                                f"l2_half=True if that is your loss" if coef > 0 else
                                f"your weights' gradients subtract {abs(coef):g} W (estimated by least squares "
                                f"over the {n_elements} weight elements): a penalty with the wrong sign"))
    for coef, what in tried:
        ok, worst, with_biases = explains(coef)
        if ok:
            tail = "; the biases get the same term (biases are not penalized by default)" if with_biases else ""
            ks = tuple(k for k in c.tensors if k[0] == "W" or (with_biases and k in c.wrong))
            return [Diagnosis("l2", ks, f"{what}{tail}", {"coefficient": coef, "worst": worst})]
    return []


def _transpose(c: _Case) -> list[Diagnosis]:
    out = []
    for k in c.wrong:
        h = c.hand[k]
        if k[0] != "W" or h.ndim != 2 or h.shape[0] != h.shape[1] or h.shape[0] < 2:
            continue
        res = c.residual(k, lambda r: r.T, lambda b: b.T)
        if res <= 1.0:
            out.append(Diagnosis("transpose", (k,), (
                f"{c.label(k)} is the transpose of the right gradient (a square layer hides it from the shapes): "
                f"likely delta^T a where delta a^T is expected, or a transpose missing in the layer's formula"),
                {"worst": res}))
    return out


def _axis_words(c: _Case, k: str, axis: int, idx: Sequence[int]) -> str:
    """Article rows/columns of W{l} (axis 0 = output units) named in the user's layout."""
    s = "s" if len(idx) > 1 else ""
    units = ", ".join(str(i + 1) for i in idx)
    if k[0] == "B":
        entries = ", ".join(str(list(user_index(k, (i, 0), c.conv))) for i in idx)
        return f"entr{'ies' if s else 'y'} {entries} of {c.label(k)} (unit{s} {units} of layer {k[1:]})"
    user_axis = axis if c.conv.layout != "rows" else 1 - axis
    word = ("row" if user_axis == 0 else "column") + s
    what = f"unit{s} {units} of layer {k[1:]}" if axis == 0 else f"input{s} {units} of layer {k[1:]}"
    return f"{word} {', '.join(str(i) for i in idx)} of {c.label(k)} ({what})"


def _zeros_and_copies(c: _Case) -> list[Diagnosis]:
    out = []
    for k in c.wrong:
        h = c.hand[k]
        if not np.all(np.isfinite(h)):
            continue
        if np.all(h == 0):
            out.append(Diagnosis("zero", (k,), f"{c.label(k)} is exactly zero: likely never computed (left at "
                                                f"its initial np.zeros) or a term that cancels", {"elements": h.size}))
            continue
        p = c.params.get(k)
        if p is not None and np.shape(p) == h.shape and np.array_equal(np.asarray(p, dtype=np.float64), c.h64[k]):
            out.append(Diagnosis("untouched", (k,), (
                f"{c.label(k)} is exactly your {param_label(k, c.conv)}: likely the parameter itself returned, or a "
                "gradient buffer copied from the params and never overwritten"), {"elements": h.size}))
            continue
        for what, arr in (("X", c.X), ("X^T", c.X.T)):
            if arr.shape == h.shape and np.array_equal(np.asarray(arr, dtype=np.float64), c.h64[k]):
                out.append(Diagnosis("untouched", (k,), (
                    f"{c.label(k)} is exactly the input {'X' if c.conv.layout != 'columns' else what} "
                    "(in your layout): likely the activation of layer 0 returned where its product with "
                    "delta belongs"), {"elements": h.size}))
                break
        else:
            out.extend(_zero_lines(c, k))
    return out


def _zero_lines(c: _Case, k: str) -> list[Diagnosis]:
    h = c.h64[k]
    out = []
    for axis in (0, 1):
        if k[0] == "B" and axis == 1:
            continue
        if h.shape[axis] < 2:
            continue
        zero = np.all(h == 0, axis=1 - axis)
        if not zero.any() or zero.all():
            continue
        idx = [int(i) for i in np.flatnonzero(zero)]
        keep = ~zero
        # The zero lines must be wrong (their reference is not ~0) and every other line right.
        def predict(r: np.ndarray, axis: int = axis, zero: np.ndarray = zero) -> np.ndarray:
            return np.where(zero[:, None] if axis == 0 else zero[None, :], 0.0, r)

        def tolerance(b: np.ndarray, axis: int = axis, zero: np.ndarray = zero) -> np.ndarray:
            return np.where(zero[:, None] if axis == 0 else zero[None, :], 0.0, b)

        if c.fits(k, predict, tolerance) and keep.any():
            out.append(Diagnosis("zero", (k,), (
                f"{_axis_words(c, k, axis, idx)} {'are' if len(idx) > 1 else 'is'} exactly zero and the rest "
                f"of {c.label(k)} is right: "
                "likely a loop that skips them (an off-by-one range, a chunk or block never processed)"),
                {"zero lines": len(idx), "of": int(h.shape[axis])}))
    return out


def _layer(c: _Case) -> list[Diagnosis]:
    L = c.depth
    layers = {l: [k for k in c.tensors if int(k[1:]) == l] for l in range(1, L + 1)}
    wrong = set(c.wrong)
    right_layers = [l for l in layers if layers[l] and not (set(layers[l]) & wrong)]
    wrong_layers = [l for l in layers if layers[l] and set(layers[l]) <= wrong]
    if not wrong_layers or not right_layers:
        return []
    k = max(wrong_layers)
    if sorted(wrong_layers) != list(range(1, k + 1)) or sorted(right_layers) != list(range(k + 1, L + 1)):
        return []
    right = [t for l in right_layers for t in layers[l]]
    below = f"layers 1-{k}" if k > 1 else "layer 1"
    sentence = (f"{c.labels(right)} {'is' if len(right) == 1 else 'are'} right; every tensor of {below} is wrong: "
                f"the error likely enters between layer {k + 1} and layer {k}, in the step that carries "
                f"delta^({k + 1}) to delta^({k}) (the product with {param_label(f'W{k + 1}', c.conv)}'s transpose, "
                f"or the derivative of layer {k}'s activation), and propagates to every layer below")
    return [Diagnosis("layer", tuple(t for l in wrong_layers for t in layers[l]), sentence,
                      {"first wrong layer": k, "right layers": f"{k + 1}-{L}" if k + 1 < L else str(L)})]


_HYPOTHESES = (_dtype, _factor, _l2, _transpose, _zeros_and_copies, _layer)


def diagnose(hand: Mapping[str, np.ndarray], refs: Mapping[str, Any], budgets: Mapping[str, Any], *,
             params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
             conventions: Conventions | None = None, loss: str | None = None) -> list[Diagnosis]:
    r"""The hypotheses that explain a failed case exactly (module docstring), most specific first.

    Args:
      hand: the hand gradients, article names and layout (``W1, B1, ...``; tensors a user does not
        return, such as the B of a layer without a bias, may be absent).
      refs: the reference gradients: one dict ``W1, B1, ...`` or several by oracle
        (``{"sympy": {...}, "jax": {...}}``); a hypothesis must hold against every one.
      budgets: the per-element budgets of hand vs reference (the referee's ``budget.against(dtype)``;
        for finite differences its ``hand_only + fd.error``, with ``inf`` where a kink leaves an
        element undecided): one dict for all references or one per reference.
      params, X, Y: the case, article layout (X ``(n0, m)``, Y ``(nL, m)``).
      conventions: the user's, for names, layout and the declared loss (default: the article's).
      loss: the base loss name, for the factor-2 and 1/2 wording of squared error.
    """
    conv = conventions if conventions is not None else Conventions()
    if not isinstance(conv, Conventions):
        raise TypeError(f"conventions must be a Conventions, got {type(conv).__name__}")
    if not isinstance(hand, Mapping):
        raise TypeError(f"hand must be a dict of gradients keyed W1, B1, ..., got {type(hand).__name__}")
    case = _Case(hand, refs, budgets, params, X, Y, conv, loss)
    if not case.tensors:
        return []
    found: list[Diagnosis] = []
    for hypothesis in _HYPOTHESES:
        found.extend(hypothesis(case))
    return found


def diagnose_case(net: Network, params: Params, X: np.ndarray, Y: np.ndarray,
                  grads: Mapping[str, np.ndarray] | Callable[[Params, np.ndarray, np.ndarray], Mapping[str, Any]],
                  *, conventions: Conventions | None = None, oracles: Sequence[str] = ("sympy", "jax"),
                  policy: Any = None) -> list[Diagnosis]:
    """Compute the references and budgets of one case and :func:`diagnose` it (article layout).

    ``grads`` is the hand gradient dict or ``backward(params, X, Y)`` (e.g. from
    :func:`~handgrad.reference.judge.conventions.wrap_backward`). The referee calls
    :func:`diagnose` itself after a mismatch with what it already has (``Report.diagnoses``); this
    is for notebooks and tests.
    """
    from .tolerance import DEFAULT_POLICY, error_budget

    if callable(grads):
        grads = grads({k: v.copy() for k, v in params.items()}, X.copy(), Y.copy())
    refs: dict[str, Params] = {}
    for name in oracles:
        if name == "sympy":
            from ..oracles.sympy_oracle import get_sympy_oracle

            refs[name] = get_sympy_oracle(net).grads(params, X, Y)
        elif name == "jax":
            from ..oracles.jax_oracle import get_jax_oracle

            refs[name] = get_jax_oracle(net).grads(params, X, Y)
        else:
            raise ValueError(f"diagnose_case uses the 'sympy' and 'jax' oracles, got {name!r}")
    dtype = next(iter(params.values())).dtype
    budgets = error_budget(net, params, X, Y, policy if policy is not None else DEFAULT_POLICY).against(dtype)
    base = getattr(getattr(net.loss, "base", None), "name", None) or net.loss.name
    return diagnose(grads, refs, budgets, params=params, X=X, Y=Y, conventions=conventions, loss=base)
