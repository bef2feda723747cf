r"""A digest of everything a certification computes, to show that a speed-up changed no number.

Runs a fixed set of ``certify_backward`` calls (the article's net, relu, tanh with softmax and
cross-entropy, float32, a user backward with a planted bug at a trap and one that only a draw can
find, a >1,000-parameter net on the scale path) and records, for every case the runner referees:
the spec, the report's verdict, notes and every check's numbers, and the raw bytes of every
oracle's output (SymPy, JAX and finite differences: gradients, error estimates, kink flags) and of
the error budget. Run it in two
checkouts and compare the digests (and, on a difference, the JSON files)::

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_same_numerics.py --json /tmp/after.json
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH=/tmp/before-wt .venv/bin/python \
        scripts/bench_same_numerics.py --json /tmp/before.json

(``/tmp/before-wt`` a ``git worktree`` of the earlier commit with a symlink
``handgrad/reference -> ../reference``, so that ``handgrad.reference`` is imported from it.)

A different digest is not yet a different number: hypothesis draws some integers from the literal
constants it finds in the project's own modules, so a new literal anywhere in the checkout can
change a case the shrinker tries. Compare the JSON records: the same spec must give the same
record; only the list of specs may differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["digest_run", "main"]


def _bytes_of(obj: Any) -> bytes:
    """Every array inside ``obj`` (dicts by sorted key, sequences in order, NamedTuples by field)."""
    if isinstance(obj, np.ndarray):
        return obj.dtype.str.encode() + str(obj.shape).encode() + np.ascontiguousarray(obj).tobytes()
    if isinstance(obj, dict):
        return b"".join(k.encode() + _bytes_of(obj[k]) for k in sorted(obj))
    if hasattr(obj, "_asdict"):
        return _bytes_of(dict(obj._asdict()))
    if isinstance(obj, list | tuple):
        return b"".join(_bytes_of(x) for x in obj)
    if isinstance(obj, float):
        return np.float64(obj).tobytes()
    return repr(obj).encode()


def _runs() -> list[tuple[str, dict[str, Any]]]:
    import handgrad as hg

    article = hg.Network((2, 3, 3, 1), "sigmoid", "squared_error")
    relu = hg.Network((3, 4, 2), ["relu", "sigmoid"], "squared_error")
    soft = hg.Network((3, 5, 3), ["tanh", "softmax"], "cross_entropy")
    mid = hg.Network((40, 30, 4), ["tanh", "sigmoid"], "squared_error")

    def planted(params: Any, X: Any, Y: Any) -> Any:
        g = relu.backward(params, X, Y)
        g["W1"] = g["W1"].copy()
        g["W1"][1, 2] *= 1.0 + 1e-6
        return g

    def planted_late(params: Any, X: Any, Y: Any) -> Any:  # no trap has m = 6, 7 or 8: found by a draw
        g = relu.backward(params, X, Y)
        if X.shape[1] in (6, 7, 8):
            g["B2"] = g["B2"] * 1.01
        return g

    planted.__qualname__ = "planted"
    planted_late.__qualname__ = "planted_late"
    return [
        ("article", dict(backward=article.backward, sizes=(2, 3, 3, 1), activations="sigmoid")),
        ("relu", dict(backward=relu.backward, sizes=(3, 4, 2), activations=["relu", "sigmoid"], examples=12)),
        ("softmax", dict(backward=soft.backward, sizes=(3, 5, 3), activations=["tanh", "softmax"],
                         loss="cross_entropy", examples=12)),
        ("float32", dict(backward=article.backward, sizes=(2, 3, 3, 1), activations="sigmoid", dtype="float32",
                         examples=12)),
        ("planted", dict(backward=planted, sizes=(3, 4, 2), activations=["relu", "sigmoid"], examples=12)),
        ("planted, by a draw", dict(backward=planted_late, sizes=(3, 4, 2), activations=["relu", "sigmoid"])),
        ("scale path", dict(backward=mid.backward, sizes=(40, 30, 4), activations=["tanh", "sigmoid"],
                            examples=2, oracles=("jax", "fd"))),
    ]


def digest_run() -> tuple[str, dict[str, Any]]:
    """Run every certification; return the overall digest and the per-case records."""
    from handgrad.reference import certify_backward
    from handgrad.reference.judge import certify, referee
    from handgrad.reference.oracles import finite_diff, jax_oracle, sympy_oracle

    records: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    def hook(module: Any, name: str) -> None:
        real = getattr(module, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            out = real(*args, **kwargs)
            current.setdefault("raw", []).append(f"{name}:{hashlib.sha256(_bytes_of(out)).hexdigest()[:20]}")
            return out

        setattr(module, name, wrapped)

    for module, name in ((finite_diff, "fd_grads_unchecked"), (jax_oracle, "jax_grads_unchecked"),
                         (jax_oracle, "jax_grads_many"), (sympy_oracle, "sympy_grads_unchecked")):
        if hasattr(module, name):  # jax_grads_many: the stacked executable, since 2026-12-01
            hook(module, name)
    real_budget = referee.error_budget

    def budget(*args: Any, **kwargs: Any) -> Any:
        out = real_budget(*args, **kwargs)
        parts = [out.against(np.float64), out.against(args[1][next(iter(args[1]))].dtype)]
        current.setdefault("raw", []).append(f"budget:{hashlib.sha256(_bytes_of(parts)).hexdigest()[:20]}")
        return out

    referee.error_budget = budget
    real_referee = certify._Runner._referee

    def run_case(self: Any, net: Any, params: Any, X: Any, Y: Any, spec: Any) -> Any:
        current.clear()
        report = real_referee(self, net, params, X, Y, spec)
        checks = [[c.pair, c.tensor, c.max_abs, c.max_rel, c.ratio, c.worst, c.ok, c.n_bad] for c in report.checks]
        records.append({"spec": repr(spec), "verdict": report.verdict, "notes": list(report.notes),
                        "checks": [[float(x).hex() if isinstance(x, float) else x for x in c] for c in checks],
                        "mismatches": [repr(m) for m in report.mismatches], "raw": list(current.get("raw", []))})
        return report

    certify._Runner._referee = run_case
    # Case by case: the batched pass decides the same cases with bitwise the same references
    # (tests/test_certify_batched.py compares the two certificates); this digest reads the
    # references as the case-by-case referee computes them.
    if hasattr(certify, "BATCH_MAX_SECONDS"):
        certify.BATCH_MAX_SECONDS = -1.0
    out: dict[str, Any] = {}
    for label, kwargs in _runs():
        start = len(records)
        cert = certify_backward(raise_on_failure=False, expect_long=True, **kwargs) if _takes_expect_long() else \
            certify_backward(raise_on_failure=False, **kwargs)
        failure = cert.failure.text() if cert.failure is not None else ""
        out[label] = {"ok": cert.ok, "cases": cert.cases, "certified": cert.certified, "failure": failure,
                      "records": records[start:]}
    digest = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()
    return digest, out


def _takes_expect_long() -> bool:
    import inspect

    from handgrad.reference import certify_backward

    return "expect_long" in inspect.signature(certify_backward).parameters


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    digest, out = digest_run()
    for label, row in out.items():
        part = hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()[:16]
        print(f"{label:12s} ok={row['ok']!s:5s} cases={row['cases']:3d} certified={row['certified']:3d} {part}")
    print(f"digest {digest}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
