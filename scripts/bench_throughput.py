r"""Throughput of the default ``certify_backward``: cases decided per second, before and after.

"Before" is the suite at a base commit (default ``c731eb6``, when issue 12 was filed; then a
top-level ``reference`` package), run from a git worktree in a subprocess with
``PYTHONPATH=<worktree>`` and this venv's python; "after" is this checkout, in another
subprocess. Both run in one invocation, one after the other per net (``--rounds`` > 1 repeats the
pair, so that a drift in the load of a shared machine shows; the two swap places every other
round), BLAS pinned to one thread. Besides the medians it reports the best run of each version
(cases per CPU second): the fairest pair on a machine that switches between a fast and a slow
mode for a while, as this one does.

Per net and version the worker first runs one *cold* certification (imports, JAX compiles per
batch bucket, SymPy derivation: reported separately), then ``--reps`` *warm* ones with the same
seed (the same cases: nothing left to compile). A case is *decided* when it was certified
(inconclusive and out-of-domain draws are not counted)::

    git worktree add --detach /tmp/base-wt c731eb6
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_throughput.py \
        --base /tmp/base-wt --reps 3 --json /tmp/bench_throughput.json

The article's net (2-3-3-1 sigmoid, squared error) runs the default settings (30 examples, every
oracle); 64-128-128-10 runs ``--big-examples`` examples (default 3: before the scale path existed,
one case there took ~10 s) and is skipped with ``--small-only``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "paired", "serve", "worker"]

NETS = {"article": (2, 3, 3, 1), "big": (64, 128, 128, 10)}
ROOT = Path(__file__).resolve().parents[1]


def worker(version: str, net: str, reps: int, examples: int | None, seed: int) -> dict:
    """One version's measurements for one net (run inside the subprocess)."""
    sizes, one = _certifier(version, net, examples, seed)
    cold_wall, cold_decided, _, _ = one()
    warm = [one() for _ in range(reps)]
    return {"version": version, "net": "-".join(map(str, sizes)), "examples": examples,
            "cold_seconds": cold_wall, "cold_decided": cold_decided,
            "warm_seconds": [w[0] for w in warm], "warm_cpu": [w[3] for w in warm],
            "decided": [w[1] for w in warm], "cases": [w[2] for w in warm]}


def serve(version: str, net: str, examples: int | None, seed: int) -> None:
    """A persistent worker for ``--paired``: two warm-up runs, then one certification per line
    read from stdin, answered with ``[wall, cpu, decided]`` as a JSON line."""
    _, one = _certifier(version, net, examples, seed)
    one()
    one()
    print("ready", flush=True)
    for _ in sys.stdin:
        wall, decided, _, cpu = one()
        print(json.dumps([wall, cpu, decided]), flush=True)


def _certifier(version: str, net: str, examples: int | None, seed: int) -> tuple[tuple[int, ...], Any]:
    """The net's sizes and a function running one certification: ``(wall, decided, cases, cpu)``."""
    import handgrad as hg

    if version == "before":
        try:
            from reference import certify_backward  # the base commit's top-level package
        except ImportError:  # a later base, already installed as handgrad.reference
            from handgrad.reference import certify_backward
    else:
        from handgrad.reference import certify_backward

    sizes = NETS[net]
    model = hg.Network(sizes, "sigmoid", "squared_error")
    kwargs = {} if examples is None else {"examples": examples}

    def one() -> tuple[float, int, int, float]:
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        cert = certify_backward(model.backward, sizes, "sigmoid", "squared_error", seed=seed, **kwargs)
        wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
        return wall, cert.certified, cert.cases, cpu

    return sizes, one


def paired(n: int, net: str, examples: int | None, seed: int, base: Path, after: Path | None) -> str:
    """Both versions as persistent workers, warmed up, then ``n`` pairs of runs, one of each version
    back to back (their order swapped every other pair): a change of the machine's mode lasts
    seconds, a pair half a second, so nearly every pair sees one mode. Reports the median and
    quartiles of the pairs' ratios of cases per CPU second, and each version's median."""
    procs = {}
    for version in ("before", "after"):
        env, cwd = _environment(version, base, after)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", version, "--net", net, "--seed", str(seed)]
        if examples is not None:
            cmd += ["--examples", str(examples)]
        procs[version] = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True)
    try:
        for version, proc in procs.items():
            line = proc.stdout.readline().strip()  # type: ignore[union-attr]
            if line != "ready":
                raise SystemExit(f"the {version} worker failed to start ({line!r})")
        rates: dict[str, list[float]] = {"before": [], "after": []}
        for i in range(n):
            for version in (("before", "after") if i % 2 == 0 else ("after", "before")):
                proc = procs[version]
                proc.stdin.write("run\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                _, cpu, decided = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
                rates[version].append(decided / cpu)
    finally:
        for proc in procs.values():
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait()
    ratios = sorted(a / b for a, b in zip(rates["after"], rates["before"], strict=True))
    q1, med, q3 = statistics.quantiles(ratios, n=4) if n >= 4 else (ratios[0], statistics.median(ratios), ratios[-1])
    b, a = statistics.median(rates["before"]), statistics.median(rates["after"])
    return (f"- {net}, {n} pairs: cases decided per CPU second, median of each version {a:.1f} (after) vs "
            f"{b:.1f} (before); ratio per pair: median **{med:.2f}x** (quartiles {q1:.2f}-{q3:.2f}, range "
            f"{ratios[0]:.2f}-{ratios[-1]:.2f}); best run of each {max(rates['after']):.1f} vs "
            f"{max(rates['before']):.1f}: {max(rates['after']) / max(rates['before']):.2f}x")


def _environment(version: str, base: Path, after: Path | None) -> tuple[dict[str, str], str]:
    """The subprocess environment and working directory of a version's worker."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cwd = str(ROOT)
    tree = base if version == "before" else after
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
        cwd = "/tmp"  # so that this checkout's files are not importable as the other tree's
    return env, cwd


def _run(version: str, net: str, reps: int, examples: int | None, seed: int, base: Path,
         after: Path | None = None) -> dict:
    env, cwd = _environment(version, base, after)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", version, "--net", net, "--reps", str(reps),
           "--seed", str(seed)]
    if examples is not None:
        cmd += ["--examples", str(examples)]
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the {version} worker failed on {net}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rate(row: dict, key: str = "warm_seconds") -> list[float]:
    return [d / s for d, s in zip(row["decided"], row[key], strict=True)]


def _table(rows: list[dict]) -> str:
    lines = ["| net | version | examples | decided per run | warm s per run (median) | cases decided / s "
             "(median; all runs) | cases decided / CPU s (median) | ms per case | cold first run (s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rates = _rate(r)
        med = statistics.median(r["warm_seconds"])
        decided = statistics.median(r["decided"])
        lines.append(f"| {r['net']} | {r['version']} | {r['examples'] or 30} | {decided:g} | {med:.3f} | "
                     f"{statistics.median(rates):.1f} ({', '.join(f'{x:.1f}' for x in rates)}) | "
                     f"{statistics.median(_rate(r, 'warm_cpu')):.1f} | "
                     f"{1000 * med / max(decided, 1):.1f} | {r['cold_seconds']:.2f} |")
    return "\n".join(lines)


def _pooled(rows: list[dict], key: str) -> float:
    return statistics.median([x for r in rows for x in _rate(r, key)])


def _ratios(rows: list[dict]) -> str:
    out = []
    for net in sorted({r["net"] for r in rows}):
        by: dict[str, list[dict]] = {}
        for r in rows:
            if r["net"] == net:
                by.setdefault(r["version"], []).append(r)
        if {"before", "after"} <= set(by):  # medians over every warm run of every round
            b, a, bc, ac = (_pooled(by[v], key) for v, key in (("before", "warm_seconds"), ("after", "warm_seconds"),
                                                                ("before", "warm_cpu"), ("after", "warm_cpu")))
            out.append(f"- {net}: {a:.1f} vs {b:.1f} cases decided per second: **{a / b:.2f}x** "
                       f"(per CPU second {ac:.1f} vs {bc:.1f}: {ac / bc:.2f}x)")
            # The best run of each version: both at the machine's fast mode, the fairest pair there.
            bb, ab = (max(x for r in by[v] for x in _rate(r, "warm_cpu")) for v in ("before", "after"))
            out.append(f"- {net}, best run of each: {ab:.1f} vs {bb:.1f} cases decided per CPU second: "
                       f"**{ab / bb:.2f}x**")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", choices=("before", "after"))
    p.add_argument("--serve", choices=("before", "after"), help=argparse.SUPPRESS)
    p.add_argument("--paired", type=int, default=0, metavar="N",
                   help="N back-to-back pairs of warm runs from two persistent workers (the article's net), "
                        "instead of the rounds of separate subprocesses")
    p.add_argument("--net", choices=tuple(NETS), default="article")
    p.add_argument("--base", type=Path, default=Path("/tmp/base-wt"), help="worktree of the base commit")
    p.add_argument("--after", type=Path, default=None,
                   help="a worktree to measure as 'after' instead of this checkout (with a symlink "
                        "handgrad/reference -> ../reference in it); default this checkout")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--examples", type=int, default=None)
    p.add_argument("--big-examples", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=1, help="before/after pairs per net")
    p.add_argument("--small-only", action="store_true")
    p.add_argument("--after-only", action="store_true")
    p.add_argument("--json", type=Path)
    p.add_argument("--from-json", type=Path, help="print the tables of an earlier run's --json file")
    args = p.parse_args(argv)
    if args.from_json:
        rows = json.loads(args.from_json.read_text())
        print(_table(rows), _ratios(rows), sep="\n\n")
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.net, args.reps, args.examples, args.seed)))
        return 0
    if args.serve:
        serve(args.serve, args.net, args.examples, args.seed)
        return 0
    if not args.after_only and not (args.base / "reference").is_dir():
        raise SystemExit(f"--base {args.base} is not a worktree of the base commit "
                         "(git worktree add --detach /tmp/base-wt c731eb6)")
    if args.paired:
        print(paired(args.paired, args.net, args.examples, args.seed, args.base, args.after))
        return 0
    rows = []
    nets = [("article", None)] + ([] if args.small_only else [("big", args.big_examples)])
    versions = ("after",) if args.after_only else ("before", "after")
    for net, examples in nets:
        # before/after alternate, and swap places every other round: a machine that switches
        # between a fast and a slow mode for a while (this one does) favours neither
        for version in [v for r in range(args.rounds) for v in (versions if r % 2 == 0 else versions[::-1])]:
            print(f"{net} {version} ...", file=sys.stderr, flush=True)
            rows.append(_run(version, net, args.reps, examples, args.seed, args.base, args.after))
    print(_table(rows))
    print()
    print(_ratios(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
