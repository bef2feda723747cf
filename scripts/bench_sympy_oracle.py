r"""Measure the SymPy oracle: derivation + compile cost against parameters and depth, per-call cost.

    python scripts/bench_sympy_oracle.py            # prints the table, writes docs/bench_sympy_oracle.md
    python scripts/bench_sympy_oracle.py --quick    # fewer architectures, no file

For each architecture and activation (sigmoid, ReLU, GELU and softmax in every layer; softmax nets
use cross-entropy, fused -- with one output, softmax hidden layers and an identity output --, the
others squared error) it reports the parameters P, the cost model
:func:`handgrad.reference.oracles.sympy_oracle.estimated_nodes`, the real number of distinct derivative nodes, the
seconds of each build stage (composite, SymEngine ``diff``, program extraction, compile) and their
total, then the per-call time of ``grads`` (m = 1 and m = 64, cached oracle) and of ``grads_mp``
per sample (40 digits). Networks the size limit declines are built anyway (limits lifted) so the
table shows what the limit avoids; they are marked "declined".

One BLAS thread; wall-clock on whatever machine runs it (numbers in the docs come from the
project's 2-core container); the SymPy cache is warmed on a small net first, as in a test session.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import handgrad.reference.oracles.sympy_oracle as so  # noqa: E402
import numpy as np  # noqa: E402

import handgrad as hg  # noqa: E402

ARCHS = [(2, 3, 3, 1), (4, 4, 4, 4), (3, 8, 8, 1), (8, 8, 8), (4, 6, 6, 6, 4), (8, 8, 8, 8), (6, 6, 6, 6, 6, 6),
         (8, 16, 16, 1), (8, 8, 8, 8, 8), (16, 16, 16, 1), (8, 8, 8, 8, 8, 8)]
QUICK = [(2, 3, 3, 1), (4, 4, 4, 4), (8, 8, 8, 8)]
ACTIVATIONS = ("sigmoid", "relu", "gelu", "softmax")


def network(sizes: tuple[int, ...], act: str) -> hg.Network:
    if act == "softmax" and sizes[-1] > 1:
        return hg.Network(sizes, ["softmax"] * (len(sizes) - 1), "cross_entropy")
    if act == "softmax":  # a softmax of one unit is the constant 1: identity output instead
        return hg.Network(sizes, ["softmax"] * (len(sizes) - 2) + ["identity"], "squared_error")
    return hg.Network(sizes, act, "squared_error")


def best_of(f, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(sizes: tuple[int, ...], act: str) -> dict:
    net = network(sizes, act)
    reason = so.SympyOracle.decline_reason(net)
    saved = so.SYMPY_MAX_PARAMS, so.SYMPY_MAX_NODES, so.SYMPY_HARD_NODES
    so.SYMPY_MAX_PARAMS, so.SYMPY_MAX_NODES, so.SYMPY_HARD_NODES = 10**9, 10**12, 10**8
    try:
        t0 = time.perf_counter()
        oracle = so.SympyOracle(net)
        total = time.perf_counter() - t0
    finally:
        so.SYMPY_MAX_PARAMS, so.SYMPY_MAX_NODES, so.SYMPY_HARD_NODES = saved
    rng = np.random.default_rng(0)
    params = net.init(rng, bias_scale=0.5)
    X1, X64 = rng.standard_normal((sizes[0], 1)), rng.standard_normal((sizes[0], 64))
    Y1, Y64 = np.full((sizes[-1], 1), 1.0 / sizes[-1]), np.full((sizes[-1], 64), 1.0 / sizes[-1])
    call1 = best_of(lambda: oracle.grads(params, X1, Y1))
    call64 = best_of(lambda: oracle.grads(params, X64, Y64))
    oracle.grads_mp(params, X1, Y1)  # compiles the mpmath program once
    mp1 = best_of(lambda: oracle.grads_mp(params, X1, Y1), n=1)
    return dict(net=net, P=net.n_params, depth=net.depth, est=so.estimated_nodes(net), nodes=oracle.n_nodes,
                total=total, stages=oracle.timings, call1=call1, call64=call64, mp1=mp1, declined=reason is not None)


def table(rows: list[dict]) -> str:
    out = ["| architecture | P | L | estimate | nodes | build | diff | program | compile | **total s** "
           "| grads m=1 | grads m=64 | grads_mp /sample |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        st = r["stages"]
        tag = " (declined)" if r["declined"] else ""
        out.append(f"| {r['net'].describe()}{tag} | {r['P']} | {r['depth']} | {r['est']} | {r['nodes']} "
                   f"| {st['build']:.3f} | {st['diff']:.3f} | {st['program']:.3f} | {st['compile']:.3f} "
                   f"| **{r['total']:.2f}** | {1e3 * r['call1']:.1f} ms | {1e3 * r['call64']:.1f} ms "
                   f"| {1e3 * r['mp1']:.0f} ms |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="three architectures, print only")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "bench_sympy_oracle.md"))
    a = ap.parse_args(argv)
    so.SympyOracle(network((2, 2, 1), "sigmoid")).grads_mp(
        {"W1": np.ones((2, 2)), "B1": np.zeros((2, 1)), "W2": np.ones((1, 2)), "B2": np.zeros((1, 1))},
        np.ones((2, 1)), np.ones((1, 1)))  # warm SymPy's cache and the imports
    rows = []
    for sizes in (QUICK if a.quick else ARCHS):
        for act in ACTIVATIONS:
            r = measure(sizes, act)
            rows.append(r)
            print(f"{r['net'].describe():60s} P={r['P']:4d} est={r['est']:6d} nodes={r['nodes']:6d} "
                  f"total={r['total']:.2f}s grads(m=1)={1e3 * r['call1']:.1f}ms"
                  f"{'  declined' if r['declined'] else ''}", flush=True)
    text = table(rows)
    ok = [r for r in rows if not r["declined"]]
    ratio = max(r["nodes"] / r["est"] for r in rows if r["nodes"] > 3000) if any(r["nodes"] > 3000 for r in rows) \
        else float("nan")
    per_node = [r["total"] / r["nodes"] for r in rows if r["nodes"] > 3000]
    summary = (f"Accepted networks: slowest derivation {max(r['total'] for r in ok):.2f} s. Real nodes / estimate "
               f"at most {ratio:.2f} (networks above 3,000 nodes); derivation costs "
               f"{1e6 * min(per_node):.0f}-{1e6 * max(per_node):.0f} us per node." if per_node else "")
    print("\n" + text + "\n\n" + summary)
    if not a.quick:
        header = (
            "# SymPy oracle: derivation cost\n\n"
            "Generated by `python scripts/bench_sympy_oracle.py` (do not edit) on "
            f"{platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} cores, one BLAS thread. "
            "Derivation = build the composite + SymEngine `diff` + extract the straight-line program + compile "
            "(numpy and, lazily, mpmath flavours). Limits: `SYMPY_MAX_NODES` = "
            f"{so.SYMPY_MAX_NODES} on the estimate, `SYMPY_MAX_PARAMS` = {so.SYMPY_MAX_PARAMS}, "
            f"`SYMPY_HARD_NODES` = {so.SYMPY_HARD_NODES} on the real DAG; rows marked declined were built "
            "with the limits lifted, to show what the limit avoids. Softmax nets use cross-entropy (fused) "
            "or, with one output, an identity output and squared error; the others squared error. "
            "How the oracle works: `reference/oracles/sympy_oracle.py` (its module docstring).\n\n")
        Path(a.out).write_text(header + text + "\n\n" + summary + "\n", encoding="utf-8")
        print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
