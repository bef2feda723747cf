"""No-false-alarm soak: many random cases, all activations and losses, float64, saturating scales
included; counts the referee's verdicts on handgrad's (correct) backward. Zero mismatches expected.

    python scripts/soak.py --cases 100000 --workers 2 --out docs/soak.md

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

import handgrad as hg  # noqa: E402


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
    pool, start, count, seed, sympy_every = args
    from handgrad.reference.judge.referee import referee

    rng = np.random.default_rng([seed, start])
    verdicts: Counter = Counter()
    failures: list[str] = []
    skipped = 0
    worst: dict[str, tuple[float, str]] = {}
    scales = list(SCALES)
    for i in range(start, start + count):
        sizes, acts, loss, fuse = pool[int(rng.integers(0, len(pool)))]
        spec = CaseSpec(sizes, acts, loss, fuse, int(rng.integers(1, 9)), scales[int(rng.integers(0, 4))],
                        int(rng.integers(0, 2**32)))
        net, params, X, Y = build_case(spec, filter_domain=False)
        if not in_domain(net, params, X):
            skipped += 1
            continue
        oracles = ("sympy", "jax", "fd") if (i + 1) % sympy_every == 0 else ("jax", "fd")
        report = referee(net, params, X, Y, net.backward, oracles=oracles, reproduce=spec.reproduce())
        verdicts[report.verdict] += 1
        if report.ok:
            for c in report.checks:
                if c.ratio > worst.get(c.pair, (-1.0, ""))[0]:
                    worst[c.pair] = (c.ratio, report.reproduce)
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
    a = ap.parse_args(argv)
    pool = make_pool(a.pool, a.seed)
    jobs = [(pool, s, min(a.chunk, a.cases - s), a.seed, a.sympy_every) for s in range(0, a.cases, a.chunk)]
    t0 = time.perf_counter()
    total: Counter = Counter()
    fails: list[str] = []
    skipped = 0
    worst: dict[str, tuple[float, str]] = {}
    with ProcessPoolExecutor(a.workers) as ex:
        for n, (v, f, s, w) in enumerate(ex.map(run_chunk, jobs), 1):
            total.update(v)
            fails += f
            skipped += s
            for pair, (r, where) in w.items():
                if r > worst.get(pair, (-1.0, ""))[0]:
                    worst[pair] = (r, where)
            print(f"[{n}/{len(jobs)}] {dict(total)} skipped {skipped} ({time.perf_counter() - t0:.0f} s)", flush=True)
    secs = time.perf_counter() - t0
    decided = sum(total.values())
    mismatches = total["mismatch"] + total["error"]
    summary = (f"{a.cases} cases drawn, {skipped} outside the oracles' domain, {decided} refereed: "
               f"{total['certified']} certified, {total['inconclusive']} inconclusive, "
               f"{mismatches} mismatches; {secs:.0f} s with {a.workers} workers "
               f"(pool of {a.pool} architectures, seed {a.seed}, SymPy on every {a.sympy_every}th case)")
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
