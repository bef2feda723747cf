r"""How much a command may ask of the machine: the documented rules for ``--jobs``, ``--examples``
and ``demo --steps``, each refused or capped with an estimate rather than accepted silently.

========================  ====================================================================
option                    rule
========================  ====================================================================
``certify --jobs N``      capped to the cores this process may use (a warning line says so)
``certify --examples N``  a run of more than :data:`MAX_CASES` cases in all (examples times
                          architectures) needs ``--long``; without it, it is refused with an
                          estimate of its time at :data:`SECONDS_PER_CASE`
``demo --steps N``        at most :data:`MAX_DEMO_STEPS`; more is refused with an estimate of
                          time (timed on a few steps now) and memory
========================  ====================================================================
"""

from __future__ import annotations

import os
import time

from .args import UsageError

__all__ = [
    "MAX_CASES",
    "MAX_DEMO_STEPS",
    "SECONDS_PER_CASE",
    "cap_jobs",
    "check_case_count",
    "check_demo_steps",
    "duration_text",
    "usable_cores",
]

MAX_CASES = 100_000
"""Cases a ``certify`` run may draw in all without ``--long`` (about 1.5 hours at
:data:`SECONDS_PER_CASE`)."""

SECONDS_PER_CASE = 0.05
"""A case's cost on the 2-core reference machine, a lower estimate: the default run draws 306
cases in about 20 s on a quiet machine (0.066 s a case, JAX compilations included) and in 120 s
with four other processes on its two cores (0.39 s); the estimates printed say "at least"."""

MAX_DEMO_STEPS = 1_000_000
"""The demo keeps every step of its trajectory (about 160 bytes each) and takes about 0.04-0.4 ms a
step: a million steps is up to minutes and 160 MB."""

_DEMO_BYTES_PER_STEP = 160  # measured with tracemalloc: one ArticleStep record in the trajectory


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cap_jobs(requested: int, cores: int | None = None) -> tuple[int, str | None]:
    """``(workers, warning)``: ``requested`` capped to ``cores`` (default :func:`usable_cores`), and
    the warning to print when it was (None otherwise)."""
    cores = usable_cores() if cores is None else cores
    if requested <= cores:
        return requested, None
    return cores, (f"--jobs {requested} is more than the {cores} core(s) this process may use; "
                   f"using {cores} worker(s)")


def duration_text(seconds: float) -> str:
    """``"42 s"``, ``"7 min"``, ``"3.2 h"``, ``"12 days"``, ``"22 years"``."""
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size or (unit == "min" and seconds >= 60):
            return f"{seconds / size:,.1f} {unit}" if seconds / size < 10 else f"{seconds / size:,.0f} {unit}"
    return f"{seconds:.0f} s"


def check_case_count(examples: int, architectures: int, workers: int, *, long: bool) -> str | None:
    """Refuse (``UsageError``) a run of more than :data:`MAX_CASES` cases unless ``long``; return a
    note with the estimate for a run expected to take more than a minute (None otherwise)."""
    cases = examples * architectures
    seconds = cases * SECONDS_PER_CASE / max(workers, 1)
    estimate = (f"{cases:,} cases ({examples:,} on each of {architectures} architecture(s)), at least "
                f"{duration_text(seconds)} at ~{SECONDS_PER_CASE} s a case")
    if cases > MAX_CASES and not long:
        raise UsageError(f"--examples {examples} asks for {estimate}; a run of more than {MAX_CASES:,} cases "
                         "needs --long")
    return f"{estimate}" if seconds > 60 else None


def check_demo_steps(steps: int) -> None:
    """Refuse more than :data:`MAX_DEMO_STEPS` demo steps, with an estimate of time (from timing a
    few steps now) and memory."""
    if steps <= MAX_DEMO_STEPS:
        return
    import handgrad as hg

    probe = 200
    start = time.perf_counter()
    hg.train_article(steps=probe, out=None)
    per_step = (time.perf_counter() - start) / probe
    memory = steps * _DEMO_BYTES_PER_STEP / 1e9
    raise UsageError(f"--steps {steps} would take about {duration_text(steps * per_step)} "
                     f"({per_step * 1e3:.2g} ms a step, timed now) and keep {memory:,.1f} GB of trajectory; "
                     f"the demo runs at most {MAX_DEMO_STEPS:,} steps")
