r"""Benchmark: the scale path (one case, every entry) vs PyTorch gradcheck vs JAX check_grads.

Usage::

    .venv/bin/pip install torch==2.13.0        # benchmark only, never a project dependency
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_scale.py [--out docs/img/bench_scale.png]

Same function for every tool: a sigmoid MLP, squared error :math:`L = \frac1m\sum_s\sum_k(\hat y_{ks}
- y_{ks})^2`, float64, batch m = 4, at P = 25, 525, 4,961, 50,826 and 235,146 parameters, BLAS
pinned to one thread (and ``torch.set_num_threads(1)``), all in one process, one after the other
per size. What each tool checks:

* ``scale_referee`` (handgrad's hand backward): every element vs JAX, plus finite differences
  elementwise on a covering sample and along random/tensor/row/column directions;
* ``torch.autograd.gradcheck`` slow mode: torch's analytical Jacobian vs a numerical one, every
  entry (two perturbed forwards per parameter); skipped where 2.5 P times one forward's time
  exceeds ``--slow-limit`` seconds;
* ``gradcheck(fast_mode=True)``: one random direction (a vJu product vs its numerical value);
* ``jax.test_util.check_grads(order=1, modes=["rev"])``: JAX's VJP along one random direction vs
  finite differences.

Prints a Markdown table (paste into ``docs/bench_scale.md``) and writes the log-log figure.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from handgrad.reference.judge import scale
from handgrad.reference.judge.referee import referee
from handgrad.reference.judge.scale import CostModel, estimate_seconds, scale_referee
from handgrad.reference.oracles.jax_oracle import get_jax_oracle

import handgrad as hg

SIZES = [(2, 3, 3, 1), (12, 20, 12, 1), (20, 80, 40, 1), (64, 256, 128, 10), (784, 256, 128, 10)]
M = 4


def _case(sizes: tuple[int, ...], seed: int = 0) -> tuple[hg.Network, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    net = hg.Network(sizes, "sigmoid", "squared_error")
    rng = np.random.default_rng(seed)
    params = net.init(rng)
    X = rng.standard_normal((sizes[0], M))
    Y = rng.uniform(0.05, 0.95, (sizes[-1], M))
    return net, params, X, Y


def _timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _torch_loss(torch: Any, n_layers: int, X: np.ndarray, Y: np.ndarray) -> Callable[..., Any]:
    Xt, Yt = torch.tensor(X), torch.tensor(Y)

    def loss(*flat: Any) -> Any:
        a = Xt
        for l in range(n_layers):
            a = torch.sigmoid(flat[2 * l] @ a + flat[2 * l + 1])
        return ((a - Yt) ** 2).sum() / Xt.shape[1]

    return loss


def _jax_loss(n_layers: int, X: np.ndarray, Y: np.ndarray) -> Callable[..., Any]:
    import jax.numpy as jnp

    def loss(flat: Any) -> Any:
        a = X
        for l in range(n_layers):
            a = 1 / (1 + jnp.exp(-(flat[2 * l] @ a + flat[2 * l + 1])))
        return jnp.sum((a - Y) ** 2) / X.shape[1]

    return loss


def bench_size(sizes: tuple[int, ...], slow_limit: float) -> dict[str, Any]:
    import torch
    from jax.test_util import check_grads

    net, params, X, Y = _case(sizes)
    P = net.n_params
    row: dict[str, Any] = {"sizes": "-".join(map(str, sizes)), "P": P}

    # JAX: compile once per architecture (and batch bucket), then run; m = 7 shares m = 4's bucket.
    oracle = get_jax_oracle(net)
    row["jax_compile"], _ = _timed(lambda: oracle.grads(params, X, Y))
    rng = np.random.default_rng(1)
    X7, Y7 = rng.standard_normal((sizes[0], 7)), rng.uniform(0.05, 0.95, (sizes[-1], 7))
    row["jax_other_m"], _ = _timed(lambda: oracle.grads(params, X7, Y7))
    row["jax_run"], _ = _timed(lambda: oracle.grads(params, X, Y), 3)

    # The scale path, one case, every entry (JAX compiled, the budget's derivatives cached).
    row["scale_first"], _ = _timed(lambda: scale_referee(net, params, X, Y, net.backward))
    tm: dict[str, float] = {}
    row["scale"], report = _timed(lambda: scale_referee(net, params, X, Y, net.backward, timings=tm), 2)
    assert report.verdict == "certified", report.notes
    row["scale_phases"] = dict(tm)
    row["estimate"] = estimate_seconds(sizes, 1, M, (), path="scale")
    if P <= 60_000:
        row["classic"], rep = _timed(lambda: referee(net, params, X, Y, net.backward, oracles=("jax", "fd")))
        assert rep.verdict == "certified"
    else:
        row["classic"] = None

    # PyTorch.
    torch.set_num_threads(1)
    flat = [torch.tensor(params[k], requires_grad=True) for k in net.param_names]
    loss = _torch_loss(torch, net.depth, X, Y)
    row["torch_fast"], ok = _timed(lambda: torch.autograd.gradcheck(loss, tuple(flat), fast_mode=True), 2)
    assert ok
    # Slow mode perturbs each of the P inputs twice: predict it from one forward's time.
    t_forward, _ = _timed(lambda: loss(*flat), 5)
    predicted = 2.5 * P * t_forward
    row["torch_forward"] = t_forward
    if predicted > slow_limit:
        row["torch_slow"] = None
        row["torch_slow_predicted"] = predicted
    else:
        row["torch_slow"], ok = _timed(lambda: torch.autograd.gradcheck(loss, tuple(flat)))
        assert ok

    # JAX check_grads on the same function (un-jitted, as its docs use it).
    jflat = [np.asarray(params[k]) for k in net.param_names]
    jloss = _jax_loss(net.depth, X, Y)
    check_grads(jloss, (jflat,), order=1, modes=["rev"])  # warm-up (tracing)
    row["jax_check_grads"], _ = _timed(lambda: check_grads(jloss, (jflat,), order=1, modes=["rev"]), 2)
    return row


def throughput(sizes: tuple[int, ...], cases: int = 20) -> dict[str, Any]:
    """Cases per second: scale path vs the elementwise referee (JAX + finite differences)."""
    out: dict[str, Any] = {"sizes": "-".join(map(str, sizes))}
    built = [_case(sizes, seed) for seed in range(cases)]
    for name, run in (("scale", lambda c: scale_referee(*c, c[0].backward)),
                      ("classic", lambda c: referee(*c, c[0].backward, oracles=("jax", "fd")))):
        run(built[0])
        start = time.perf_counter()
        for c in built:
            assert run(c).verdict == "certified"
        out[name] = cases / (time.perf_counter() - start)
    return out


def paired(sizes: tuple[int, ...], pairs: int) -> list[tuple[float, float]]:
    """Alternate one scale-path case and one slow-mode gradcheck on the same net, ``pairs`` times:
    the ratio pair by pair holds when the shared machine's speed drifts."""
    import torch

    torch.set_num_threads(1)
    net, params, X, Y = _case(sizes)
    scale_referee(net, params, X, Y, net.backward)
    flat = [torch.tensor(params[k], requires_grad=True) for k in net.param_names]
    loss = _torch_loss(torch, net.depth, X, Y)
    out = []
    for _ in range(pairs):
        a, _ = _timed(lambda: scale_referee(net, params, X, Y, net.backward))
        b, ok = _timed(lambda: torch.autograd.gradcheck(loss, tuple(flat)))
        assert ok
        out.append((a, b))
        print(f"- pair at {'-'.join(map(str, sizes))}: scale path {a:.3f} s, gradcheck {b:.1f} s, ratio {b / a:.0f}x",
              flush=True)
    return out


def fit_costs(rows: list[dict[str, Any]]) -> dict[str, float]:
    r"""Calibrate :class:`~handgrad.reference.judge.scale.CostModel` from this run.

    ``mac`` and ``entry`` come from micro-benchmarks in this process (a 128 x 256 matrix times
    256 x 4096 columns; the shared sigmoid definition on 2^18 entries); ``direction`` and ``case``
    are then fitted by non-negative least squares, relative to each size's measured warm case.
    """
    from handgrad.reference.judge.scale import scale_work
    from scipy.optimize import nnls

    rng = np.random.default_rng(0)
    W, A = rng.standard_normal((128, 256)), rng.standard_normal((256, 4096))
    t_mm, _ = _timed(lambda: W @ A, 5)
    sig = hg.get_activation("sigmoid").definition
    Z = rng.standard_normal(1 << 18)
    t_sig, _ = _timed(lambda: sig(Z, hg.NUMPY_OPS), 5)
    mac, entry = t_mm / (128 * 256 * 4096), t_sig / (1 << 18)
    works = [scale_work(tuple(int(x) for x in r["sizes"].split("-")), M) for r in rows]
    rest = np.array([r["scale"] - mac * w["mac"] - entry * w["entry"] for r, w in zip(rows, works, strict=True)])
    scale = np.array([r["scale"] for r in rows])
    A_fit = np.array([[w["direction"], w["budget"], 1.0] for w in works]) / scale[:, None]
    coef, _ = nnls(A_fit, rest / scale)
    reference = scale.calibrate().mac / scale.COSTS.mac * scale._REFERENCE_SECONDS
    print(f"- calibration workload now: {reference:.3f} s (the costs below go with it)")
    return {"mac": mac, "entry": entry, "direction": float(coef[0]), "budget": float(coef[1]), "case": float(coef[2])}


def _fmt(x: float | None) -> str:
    if x is None:
        return "skipped"
    return f"{x:.3g}" if x >= 0.01 else f"{x * 1e3:.2g} ms"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| net | P | scale path: one case, every entry (s) | PyTorch gradcheck, every entry (s) | "
             "ratio | gradcheck fast_mode, one direction (s) | ratio | JAX check_grads, one direction (s) | "
             "ratio | JAX compile / run / other m (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        slow = r["torch_slow"]
        slow_txt = _fmt(slow) if slow is not None else f"skipped (~{r['torch_slow_predicted']:.0f} s predicted)"
        ratio = f"{slow / r['scale']:.0f}x" if slow is not None else f"(~{r['torch_slow_predicted'] / r['scale']:.0f}x)"
        lines.append(
            f"| {r['sizes']} | {r['P']:,} | {_fmt(r['scale'])} | {slow_txt} | {ratio} | {_fmt(r['torch_fast'])} | "
            f"{r['torch_fast'] / r['scale']:.2g}x | {_fmt(r['jax_check_grads'])} | "
            f"{r['jax_check_grads'] / r['scale']:.2g}x | {r['jax_compile']:.2f} / {_fmt(r['jax_run'])} / "
            f"{_fmt(r['jax_other_m'])} |")
    return "\n".join(lines)


def figure(rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    P = [r["P"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.loglog(P, [r["scale"] for r in rows], "o-", label="scale path (every entry, 2 references)")
    slow = [(r["P"], r["torch_slow"]) for r in rows if r["torch_slow"] is not None]
    ax.loglog(*zip(*slow, strict=True), "s-", label="PyTorch gradcheck (every entry)")
    ax.loglog(P, [r["torch_fast"] for r in rows], "^--", label="gradcheck fast_mode (one direction)")
    ax.loglog(P, [r["jax_check_grads"] for r in rows], "v--", label="JAX check_grads (one direction)")
    ax.set_xlabel("parameters P")
    ax.set_ylabel("seconds (one case, batch 4, one BLAS thread)")
    ax.set_title("Gradient checking cost, sigmoid MLP, squared error, float64")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/img/bench_scale.png")
    parser.add_argument("--json", default="")
    parser.add_argument("--slow-limit", type=float, default=120.0)
    parser.add_argument("--fit-only", default="", help="refit the costs from a --json file of an earlier run")
    parser.add_argument("--pairs", type=int, default=0, help="only alternate scale path / gradcheck at 64-256-128-10")
    args = parser.parse_args()
    if args.pairs:
        paired((64, 256, 128, 10), args.pairs)
        return
    if args.fit_only:
        with open(args.fit_only) as fh:
            print(fit_costs(json.load(fh)))
        return
    rows: list[dict[str, Any]] = []
    for sizes in SIZES:
        rows.append(bench_size(sizes, args.slow_limit))
        print(json.dumps(rows[-1]), flush=True)
    print()
    print(table(rows))
    print()
    for r in rows:
        ph = ", ".join(f"{k} {v:.3f}" for k, v in r["scale_phases"].items())
        classic = f"; elementwise referee (JAX + FD) {_fmt(r['classic'])}" if r["classic"] is not None else ""
        print(f"- {r['sizes']}: scale first case {r['scale_first']:.3f} s (after the JAX compile); phases {ph}; "
              f"estimate_seconds {r['estimate']:.3f}{classic}")
    for sizes in ((2, 3, 3, 1), (64, 128, 128, 10)):
        t = throughput(sizes)
        print(f"- throughput {t['sizes']}: scale path {t['scale']:.1f} cases/s, elementwise referee "
              f"{t['classic']:.1f} cases/s")
    costs = fit_costs(rows)
    print("- fitted costs: " + ", ".join(f"{k} {v:.3g}" for k, v in costs.items()))
    for r in rows:
        sizes = tuple(int(x) for x in r["sizes"].split("-"))
        model = CostModel(**{**scale.COSTS.__dict__, **costs})
        print(f"  - {r['sizes']}: measured {r['scale']:.3f} s, estimate_seconds with the fitted costs "
              f"{estimate_seconds(sizes, 1, M, (), path='scale', costs=model):.3f} s")
    figure(rows, args.out)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
