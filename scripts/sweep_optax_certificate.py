"""Random exploration of the optax certificate: many fresh hypothesis examples per optimizer.

    python scripts/sweep_optax_certificate.py [examples per optimizer, default 1000]

The test suite runs the certificate derandomized (20 examples per optimizer under the ``ci``
profile); this sweep draws fresh random examples (no database, new seeds every run) and prints,
per optimizer, the largest discrepancy seen relative to the magnitude scale (in units of
u = 2^-53) and the largest derived bound. Any failure is shrunk and printed by hypothesis.
"""

from __future__ import annotations

import sys
import time

import handgrad.reference.oracles.optax_oracle as oo
from handgrad.reference.cases.optim_strategies import OptimProblem, gradient_problems, hyperparams
from hypothesis import HealthCheck, given, settings

import handgrad as hg

NAMES = ("gd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")


def sweep(name: str, n: int) -> tuple[float, float]:
    worst = [0.0, 0.0]

    @settings(max_examples=n, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(problem=gradient_problems(steps=60), kw=hyperparams(name))
    def check(problem: OptimProblem, kw: dict[str, float]) -> None:
        opt = getattr(hg.optim, name)(**kw)
        report = oo.certify_optimizer(opt, problem.params0, problem.grads)
        assert report.ok, report.message()
        worst[0] = max(worst[0], report.worst)
        worst[1] = max(worst[1], report.rtol)

    check()
    return worst[0], worst[1]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    for name in NAMES:
        t0 = time.perf_counter()
        worst, bound = sweep(name, n)
        print(f"{name:9s} {n} examples: worst {worst:.2e} x scale ({worst / 2**-53:.0f} u), "
              f"largest bound {bound:.2e}  ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
