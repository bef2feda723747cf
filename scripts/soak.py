"""No-false-alarm soak: many random cases, all activations and losses, float64 or float32,
saturating scales included; counts the referee's verdicts on correct backwards written in several
independent styles (``--styles``: handgrad's own; a per-sample loop then the mean; einsum
contractions; a sigmoid written 0.5 (1 + tanh(z / 2)) with sigma' = a (1 - a); softmax as
exp(z - logsumexp z); the whole recurrence in numpy's longdouble, rounded at the end). Zero
mismatches expected: a mismatch on a correct backward is a false alarm, a defect of the budget model.

    python scripts/soak.py --cases 100000 --workers 2 --dtype float32 --out docs/soak.md

Architectures come from a seeded pool (JAX compiles once per architecture, ~0.3 s, and caches 128;
a pool of 100 keeps compiles to a minute while covering depth 1-5, widths 1-8, square layers, every
activation in hidden and output position and every loss, fused and unfused); parameters, inputs,
batch sizes (1-8) and scales are drawn per case. SymPy joins every ``--sympy-every``-th case (its
derivation per architecture is the expensive part). Every mismatch is printed with its recipe.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
from handgrad.reference.cases.architecture import Architecture  # noqa: E402
from handgrad.reference.cases.pools import fits_output  # noqa: E402
from handgrad.reference.cases.strategies import SCALES, CaseSpec, build_case, in_domain  # noqa: E402
from handgrad.reference.judge.tolerance import prediction_in_domain  # noqa: E402
from handgrad.reference.oracles.mp_oracle import float64_domain, mp_grads_unchecked  # noqa: E402

import handgrad as hg  # noqa: E402


def _sigmoid_tanh(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(z / 2))


def _softmax_lse(z: np.ndarray) -> np.ndarray:
    zmax = z.max(axis=0, keepdims=True)
    lse = zmax + np.log(np.sum(np.exp(z - zmax), axis=0, keepdims=True))
    return np.exp(z - lse)


class StyledBackward:
    """A correct backward for any architecture, written in one ``style`` (see the module docstring).

    Forward values come from handgrad's activation forwards except where the style replaces them;
    derivatives from each activation's ``backward_unchecked`` (vector-Jacobian product), except the
    tanh-form sigmoid's a (1 - a). Every style is a different order of the same exact computation.
    """

    STYLES = ("handgrad", "loop", "einsum", "tanh_sigmoid", "lse_softmax", "longdouble")

    def __init__(self, net: hg.Network, style: str) -> None:
        if style not in self.STYLES:
            raise ValueError(f"style must be one of {self.STYLES}, got {style!r}")
        self.net, self.style = net, style

    def applies(self) -> bool:
        names = [a.name for a in self.net.activations]
        if self.style == "tanh_sigmoid":
            return "sigmoid" in names
        if self.style == "lse_softmax":
            return "softmax" in names
        return True

    def _act(self, l: int, z: np.ndarray) -> np.ndarray:
        act = self.net.activations[l]
        if self.style == "tanh_sigmoid" and act.name == "sigmoid":
            return _sigmoid_tanh(z)
        if self.style == "lse_softmax" and act.name == "softmax":
            return _softmax_lse(z)
        return act.apply(z)

    def _back(self, l: int, z: np.ndarray, a: np.ndarray, g: np.ndarray) -> np.ndarray:
        act = self.net.activations[l]
        if self.style == "tanh_sigmoid" and act.name == "sigmoid":
            return g * (a * (1 - a))
        return act.backward_unchecked(z, a, g)

    def _grads(self, params: dict, X: np.ndarray, Y: np.ndarray) -> dict:
        net, m = self.net, X.shape[1]
        zs, acts = [], [X]
        for l in range(net.depth):
            zs.append(params[f"W{l + 1}"] @ acts[-1] + params[f"B{l + 1}"])
            acts.append(self._act(l, zs[-1]))
        rule = net.fused_rule
        if rule is not None:
            delta = rule.delta(zs[-1], acts[-1], Y) / m
        else:
            delta = self._back(net.depth - 1, zs[-1], acts[-1], net.loss.grad(acts[-1], Y) / m)
        grads = {}
        for l in range(net.depth, 0, -1):
            if self.style == "einsum":
                grads[f"W{l}"] = np.einsum("is,js->ij", delta, acts[l - 1])
                grads[f"B{l}"] = np.einsum("is->i", delta)[:, None]
            else:
                grads[f"W{l}"] = delta @ acts[l - 1].T
                grads[f"B{l}"] = np.sum(delta, axis=1, keepdims=True)
            if l > 1:
                g = (np.einsum("ij,is->js", params[f"W{l}"], delta) if self.style == "einsum"
                     else params[f"W{l}"].T @ delta)
                delta = self._back(l - 2, zs[l - 2], acts[l - 1], g)
        return {k: grads[k] for k in net.param_names}

    def __call__(self, params: dict, X: np.ndarray, Y: np.ndarray) -> dict:
        if self.style == "handgrad":
            return self.net.backward(params, X, Y)
        dtype = X.dtype
        if self.style == "longdouble":
            wide = {k: v.astype(np.longdouble) for k, v in params.items()}
            g = self._grads(wide, X.astype(np.longdouble), Y.astype(np.longdouble))
            return {k: v.astype(dtype) for k, v in g.items()}
        if self.style == "loop":
            m = X.shape[1]
            parts = [self._grads(params, X[:, [s]], Y[:, [s]]) for s in range(m)]
            return {k: (sum(p[k] for p in parts) / m).astype(dtype) for k in self.net.param_names}
        return self._grads(params, X, Y)


def _versus_mp(net: hg.Network, params: dict, X: np.ndarray, Y: np.ndarray, backward: StyledBackward,
               spec: CaseSpec, style: str, dtype: str) -> tuple[str, float, str]:
    """Decide a case outside the float64 oracles' domain against the mpmath oracle alone, with the
    budget of docs/tolerances.md section 9 (``Budget.against_exact``)."""
    from handgrad.reference.judge.tolerance import error_budget

    recipe = f"{spec.reproduce(dtype)}  # style {style}, vs mpmath"
    budget = error_budget(net, params, X, Y)
    if budget.kink_ambiguous(np.dtype(dtype)):
        return "inconclusive", 0.0, recipe
    try:
        ref = mp_grads_unchecked(net, params, X, Y)
    except (ValueError, ArithmeticError):
        return "declined", 0.0, recipe
    try:
        with np.errstate(all="ignore"):
            hand = backward(params, X, Y)
    except (ValueError, ArithmeticError, FloatingPointError) as exc:
        return "error", float("inf"), f"{recipe}: {exc}"
    bud = budget.against_exact(np.dtype(dtype), ref)
    if not all(np.all(np.isfinite(v)) for v in bud.values()):
        return "budget overflow", 0.0, recipe  # |z| far past float64's range: the magnitudes overflow
    ratio = max(float(np.max(np.abs(hand[k].astype(np.float64) - ref[k]) / bud[k])) for k in ref)
    if not np.isfinite(ratio):
        return "mismatch", float("inf"), recipe
    return ("mismatch" if ratio > 1 else "certified"), ratio, recipe


def make_pool(n: int, seed: int) -> list[Architecture]:
    rng = np.random.default_rng(seed)
    acts, losses = hg.activation_names(), hg.loss_names()
    pool = []
    while len(pool) < n:
        depth = int(rng.integers(1, 6))
        if rng.uniform() < 0.3:
            sizes = (int(rng.integers(2, 9)),) * (depth + 1)
        else:
            sizes = tuple(int(v) for v in rng.integers(1, 9, depth + 1))
        loss = hg.get_loss(losses[len(pool) % len(losses)])
        fuse = bool(rng.integers(0, 2))
        hidden = tuple(acts[int(i)] for i in rng.integers(0, len(acts), depth - 1))
        lasts = [a for a in acts if fits_output(loss, a, fuse)]
        pool.append(Architecture(sizes, (*hidden, lasts[int(rng.integers(0, len(lasts)))]), loss.name, fuse))
    return pool


def run_chunk(args: tuple) -> tuple[Counter, list[str], int, dict[str, tuple[float, str]]]:
    pool, start, count, seed, sympy_every, dtype, styles, use_mp = args
    from handgrad.reference.judge.referee import referee

    rng = np.random.default_rng([seed, start])
    verdicts: Counter = Counter()
    failures: list[str] = []
    skipped = 0
    worst: dict[str, tuple[float, str]] = {}
    scales = list(SCALES)
    for i in range(start, start + count):
        sizes, acts, loss, fuse = pool[int(rng.integers(0, len(pool)))]
        spec = CaseSpec(sizes, acts, loss, fuse, int(rng.integers(1, 9)), scales[int(rng.integers(0, len(scales)))],
                        int(rng.integers(0, 2**32)))
        net, params, X, Y = build_case(spec, dtype, filter_domain=False)
        usable = [s for s in styles if StyledBackward(net, s).applies()]
        style = usable[i % len(usable)]
        if use_mp and not float64_domain(net, params, X) and prediction_in_domain(net, params, X):
            verdict, ratio, recipe = _versus_mp(net, params, X, Y, StyledBackward(net, style), spec, style, dtype)
            verdicts[verdict] += 1
            if verdict in ("certified", "mismatch"):
                verdicts["style " + style] += 1
            key = f"hand vs mpmath [{style}]"
            if verdict == "certified" and ratio > worst.get(key, (-1.0, ""))[0]:
                worst[key] = (ratio, recipe)
            if verdict == "mismatch":
                failures.append(f"MISMATCH vs mpmath, ratio {ratio:.3g}: {recipe}")
            continue
        if use_mp or not (in_domain(net, params, X) and prediction_in_domain(net, params, X)):
            skipped += 1
            continue
        oracles = ("sympy", "jax", "fd") if (i + 1) % sympy_every == 0 else ("jax", "fd")
        recipe = f"{spec.reproduce(dtype)}  # style {style}"
        report = referee(net, params, X, Y, StyledBackward(net, style), oracles=oracles, reproduce=recipe)
        verdicts[report.verdict] += 1
        verdicts["style " + style] += 1
        if report.ok:
            for c in report.checks:
                key = f"{c.pair} [{style}]" if c.pair.startswith("hand") else c.pair
                if c.ratio > worst.get(key, (-1.0, ""))[0]:
                    worst[key] = (c.ratio, report.reproduce)
        if report.verdict not in ("certified", "inconclusive"):
            failures.append(report.text())
        elif report.verdict == "inconclusive" and len(failures) < 50:
            failures.append("INCONCLUSIVE " + "; ".join(report.notes) + " " + report.reproduce)
    return verdicts, failures, skipped, worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pool", type=int, default=100, help="architectures; keep below the oracles' caches (JAX: 128)")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--sympy-every", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=2000)
    ap.add_argument("--out", default=None, help="write a Markdown summary here")
    ap.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    ap.add_argument("--styles", default=",".join(StyledBackward.STYLES))
    ap.add_argument("--mp", action="store_true",
                    help="referee only the cases outside the float64 oracles' domain, against the mpmath oracle")
    ap.add_argument("--deadline", type=float, default=0.0,
                    help="stop submitting chunks after this many seconds (0: run every case)")
    a = ap.parse_args(argv)
    pool = make_pool(a.pool, a.seed)
    styles = tuple(a.styles.split(","))
    jobs = [(pool, s, min(a.chunk, a.cases - s), a.seed, a.sympy_every, a.dtype, styles, a.mp)
            for s in range(0, a.cases, a.chunk)]
    t0 = time.perf_counter()
    total: Counter = Counter()
    fails: list[str] = []
    skipped = 0
    worst: dict[str, tuple[float, str]] = {}
    drawn = 0
    with ProcessPoolExecutor(a.workers) as ex:
        futures = [(job[2], ex.submit(run_chunk, job)) for job in jobs]
        for n, (count, fut) in enumerate(futures, 1):
            if a.deadline and time.perf_counter() - t0 > a.deadline:
                for _, later in futures[n:]:
                    later.cancel()
                if fut.cancel() or fut.cancelled():
                    break
            v, f, s, w = fut.result()
            drawn += count
            total.update(v)
            fails += f
            skipped += s
            for pair, (r, where) in w.items():
                if r > worst.get(pair, (-1.0, ""))[0]:
                    worst[pair] = (r, where)
            print(f"[{n}/{len(jobs)}] {dict(total)} skipped {skipped} ({time.perf_counter() - t0:.0f} s)", flush=True)
    secs = time.perf_counter() - t0
    undecided = ("declined", "budget overflow")
    decided = sum(v for k, v in total.items() if not k.startswith("style ") and k not in undecided)
    mismatches = total["mismatch"] + total["error"]
    per_style = ", ".join(f"{k[6:]} {v}" for k, v in sorted(total.items()) if k.startswith("style "))
    where = "inside the float64 oracles' domain (left to them)" if a.mp else "outside the oracles' domain"
    summary = (f"{a.dtype}: {drawn} cases drawn (of {a.cases} asked), {skipped} {where}, "
               f"{decided} refereed{' against mpmath' if a.mp else ''} ({total['declined']} declined by "
               f"the mp oracle as too large, {total['budget overflow']} whose budget overflows float64): "
               f"{total['certified']} certified, {total['inconclusive']} inconclusive, "
               f"{mismatches} mismatches; {secs:.0f} s with {a.workers} workers "
               f"(pool of {a.pool} architectures, seed {a.seed}, SymPy on every {a.sympy_every}th case). "
               f"Cases per style: {per_style}.")
    print(summary)
    for f in fails[:20]:
        print(f)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write("# No-false-alarm soak\n\n")
            fh.write("Generated by `python scripts/soak.py " + " ".join(argv or sys.argv[1:]) + "`.\n\n")
            fh.write(summary + "\n\n")
            fh.write("| verdict | count |\n|---|---:|\n")
            for k in ("certified", "inconclusive", "mismatch", "error"):
                fh.write(f"| {k} | {total[k]} |\n")
            fh.write("\nWorst error-to-budget ratio among certified cases, per comparison (1 would be a "
                     "mismatch):\n\n| comparison | worst ratio | case |\n|---|---:|---|\n")
            for pair in sorted(worst):
                r, where = worst[pair]
                fh.write(f"| {pair} | {r:.3g} | `{where}` |\n")
            if fails:
                fh.write("\nFirst reports that were not certified:\n\n```\n" + "\n\n".join(fails[:10]) + "\n```\n")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
