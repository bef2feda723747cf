"""The ``handgrad certify`` command: which subjects to certify, running them, the summary table."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import handgrad as hg

from ..judge.reports import SubjectResult
from ..judge.scale import LONG_RUN_SECONDS, estimate_seconds
from ..oracles.table import oracle_label
from .args import (
    UsageError,
    _check_activation,
    _check_loss,
    _imports,
    _names_list,
    _network,
    _parse_oracles,
    is_model,
    load_backward,
)
from .declarations import Declared, declared_from_args
from .limits import cap_jobs, check_case_count, usable_cores
from .progress import _Progress
from .report_files import DeclaredRunSummary, ReportDirError, check_report_dir, write_reports
from .runner import _hypothesis_home, _Job, _run_job, _run_parallel, jax_cache_dir, use_jax_cache

__all__ = ["DEFAULT_BACKWARD_EXAMPLES", "DEFAULT_EXAMPLES"]

DEFAULT_EXAMPLES = 4
"""Drawn cases per architecture of the registry run (``handgrad certify`` with no options), on top
of the traps every architecture always gets (about 12: every batch-size trap, duplicated samples,
exact zeros, X at two scales, a kink met exactly)."""
DEFAULT_REGISTRY_JOBS = 2
"""Workers of the registry run when ``--jobs`` is not given (capped to the usable cores)."""
DEFAULT_BACKWARD_EXAMPLES = 30
"""Cases for a user's backward (``--backward``): one architecture, so more cases."""
SHOW_ESTIMATE_ABOVE = 10.0
"""A run estimated at this many seconds or more says so on stderr before it starts."""
ESTIMATE_BATCH = 8
"""The batch size the time estimate assumes: most drawn batches are at most 8 samples."""


def _subjects_from_registry(args: argparse.Namespace) -> list[SubjectResult]:
    from ..cases.pools import activation_pool, loss_pool

    acts = _names_list(args.activations, "--activations") if args.activations else None
    losses = _names_list(args.losses, "--losses") if args.losses else None
    for a in acts or []:
        _check_activation(a)
    for lo in losses or []:
        _check_loss(lo)
    if acts is None and losses is None:
        acts, losses = hg.activation_names(), hg.loss_names()
    subjects = [SubjectResult(f"activation {a}", "activation", activation_pool(a))
                for a in dict.fromkeys(acts or [])]
    for lo in dict.fromkeys(losses or []):
        pool = loss_pool(lo)
        if not pool:
            raise UsageError(f"no registered output activation fits loss {lo!r}; register one whose output_range "
                             "lies in the loss's prediction_range, or a fused rule")
        subjects.append(SubjectResult(f"loss {lo}", "loss", pool))
    return subjects


def _subject_from_backward(args: argparse.Namespace, oracles: tuple[str, ...]
                           ) -> tuple[SubjectResult, Callable[..., Any], Declared]:
    """The user's backward (a function or a model object), its architecture and its declarations,
    checked against each other."""
    backward = load_backward(args.backward)
    net = _network(args, fuse=not args.no_fuse)
    declared = declared_from_args(args, net, oracles)
    if is_model(backward) and declared.conventions is None:
        declared = declared.in_article_conventions()  # a model is called through the conventions' wrapper
    elif args.method is not None and not is_model(backward):
        raise UsageError(f"--method names the gradient method of a model object; {args.backward} is a function")
    acts = tuple(a.name for a in net.activations)
    subject = SubjectResult(args.backward, "backward", [(net.sizes, acts, net.loss.name, net.fuse)])
    return subject, backward, declared


class _Plan(NamedTuple):
    """What a ``handgrad certify`` run will do, decided (and every argument checked) before it starts."""

    subjects: list[SubjectResult]
    backward: Callable[..., Any] | None
    examples: int
    oracles: tuple[str, ...]
    declared: Declared
    report_dir: Path | None
    jobs: list[_Job]
    n_workers: int


def _cmd_certify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``handgrad certify``: plan (check every argument), run the jobs, render the results."""
    plan = _plan(args, err)
    seconds = _run(plan, args, err)
    return _render(plan, args, seconds, out, err)


def _plan(args: argparse.Namespace, err: TextIO) -> _Plan:
    """The subjects, their jobs and the settings; every bad argument is a :class:`UsageError` here,
    and the limits of :mod:`handgrad.reference.cli.limits` are applied (a capped ``--jobs`` and a
    long run's estimate are one line each on ``err``)."""
    _imports(args)
    oracles = _parse_oracles(args.oracles)
    if args.backward is None:
        for opt in ("arch", "activation", "loss"):
            if getattr(args, opt) is not None:
                raise UsageError(f"--{opt} describes the architecture of --backward; "
                                 "use --activations/--losses to restrict the registry run")
        if args.no_fuse or args.vary_shapes or args.method is not None:
            raise UsageError("--no-fuse, --vary-shapes and --method apply to --backward only")
        declared = declared_from_args(args, None, oracles)
        subjects, backward = _subjects_from_registry(args), None
        examples = args.examples or DEFAULT_EXAMPLES
    else:
        if args.activations or args.losses:
            raise UsageError("--activations/--losses restrict the registry run; with --backward give "
                             "--activation and --loss")
        missing = [f"--{o}" for o in ("arch", "activation") if getattr(args, o) is None]
        if missing:
            raise UsageError(f"--backward needs {' and '.join(missing)} (e.g. --arch 2-3-3-1 --activation sigmoid)")
        args.loss = args.loss or "squared_error"
        subject, backward, declared = _subject_from_backward(args, oracles)
        subjects = [subject]
        examples = args.examples or DEFAULT_BACKWARD_EXAMPLES
    jobs = [_Job(i, s.name, s.kind, *arch, args.dtype, examples, bool(args.vary_shapes), args.max_width,
                 oracles, args.seed, args.backward, declared, args.method)
            for i, s in enumerate(subjects) for arch in s.architectures]
    workers, warning = cap_jobs(args.jobs if args.jobs is not None else _default_jobs(args))
    workers = min(workers, len(jobs))
    estimate = check_case_count(examples, len(jobs), workers, long=args.long)
    per_job = [_estimated_seconds(j, examples, oracles) for j in jobs]
    seconds = sum(per_job) / max(workers, 1)
    longest = max(range(len(jobs)), key=per_job.__getitem__)
    if per_job[longest] > LONG_RUN_SECONDS and not args.yes:
        raise UsageError(f"certifying {'-'.join(map(str, jobs[longest].sizes))} is estimated at "
                         f"{per_job[longest]:.0f} s ({examples} cases; {seconds:.0f} s for the whole run); "
                         "lower --examples, or pass --yes to go ahead")
    _check_jax_cache(args.jax_cache)
    report_dir = None if args.no_report else _report_dir(args.report_dir)  # last: it creates the folder
    if warning is not None:
        print(f"handgrad certify: warning: {warning}", file=err)
    if estimate is not None:
        print(f"handgrad certify: note: {estimate}", file=err)
    if not args.quiet and seconds >= SHOW_ESTIMATE_ABOVE:
        print(f"handgrad certify: estimated time {seconds:.0f} s", file=err)
    return _Plan(subjects, backward, examples, oracles, declared, report_dir, jobs, workers)


def _estimated_seconds(job: _Job, examples: int, oracles: tuple[str, ...]) -> float:
    """Seconds one job should take on the reference machine (:func:`judge.scale.estimate_seconds`,
    at a typical drawn batch, :data:`ESTIMATE_BATCH`). The ``--yes`` rule looks at the longest job:
    many small architectures (the registry run) add up to a known total, but one architecture over a
    minute is a real-sized net, where the user should choose the number of examples."""
    return estimate_seconds(tuple(job.sizes), examples, ESTIMATE_BATCH, oracles)


def _default_jobs(args: argparse.Namespace) -> int:
    """Workers when ``--jobs`` is not given: the registry run spreads its many architectures over up
    to :data:`DEFAULT_REGISTRY_JOBS` cores; a user's backward (one architecture) runs here."""
    return min(DEFAULT_REGISTRY_JOBS, usable_cores()) if args.backward is None else 1


def _check_jax_cache(option: str | None) -> None:
    """A ``--jax-cache`` folder named on the command line must be usable (the default one, or the
    environment's, is used when it can be and skipped quietly when not)."""
    path = jax_cache_dir(option) if option is not None else None
    if path is None:
        return
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--jax-cache {option!r} cannot be made ({exc.strerror or type(exc).__name__}); "
                         "choose another folder, or 'off'") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--jax-cache {option!r} cannot be written; choose another folder, or 'off'")


def _report_dir(text: str) -> Path:
    try:
        return check_report_dir(text)
    except ReportDirError as exc:
        raise UsageError(str(exc)) from None


def _run(plan: _Plan, args: argparse.Namespace, err: TextIO) -> float:
    """Run every job (here, or in worker processes), attaching each certificate to its subject;
    return the wall time in seconds."""
    show = args.progress or (not args.quiet and err.isatty())
    jax_cache = jax_cache_dir(args.jax_cache)
    if plan.n_workers <= 1 and "jax" not in sys.modules:  # Note [JAX compilation cache] in .runner
        use_jax_cache(jax_cache)
    bar = _Progress(len(plan.jobs), err if show else None)
    start = time.perf_counter()
    try:
        with _hypothesis_home():
            if plan.n_workers <= 1:
                for job in plan.jobs:
                    bar.job(job.label())
                    s = plan.subjects[job.index]
                    try:
                        cert = _run_job(job, plan.backward, bar.update)
                    except (ValueError, TypeError) as exc:
                        if s.kind == "backward":  # the user's architecture: a bad argument
                            raise UsageError(" ".join(str(exc).split())) from None
                        raise
                    bar.finish_job(cert.cases)
                    s.certificates.append(cert)
            else:
                results = _run_parallel(plan.jobs, plan.n_workers, list(args.imports), bar, jax_cache)
                for job, cert in zip(plan.jobs, results, strict=True):
                    plan.subjects[job.index].certificates.append(cert)
    finally:
        bar.close()
    return time.perf_counter() - start


def _render(plan: _Plan, args: argparse.Namespace, seconds: float, out: TextIO, err: TextIO) -> int:
    """Print the failing reports, the table, its legend and the verdict, *then* write the report
    files, so that a folder that fails at the end loses nothing printed; the exit code (2 when the
    files could not be written)."""
    summary = DeclaredRunSummary(plan.subjects, "handgrad " + shlex.join(args.argv), args.seed, plan.examples,
                                 plan.oracles, seconds, dtype=args.dtype, vary_shapes=bool(args.vary_shapes),
                                 declared=plan.declared.to_dict(), declared_text=plan.declared.describe())
    failing = [c for s in plan.subjects for c in s.certificates if not c.ok]
    for c in failing:
        print(c.text(), file=out)
        print(file=out)
    if failing:
        print(f"re-run: handgrad {shlex.join(args.argv)}  (same seed, same cases)", file=out)
        print(file=out)
    if not args.quiet:
        print(summary.table(), file=out)
        print(_legend(plan), file=out)
        print(file=out)
    print(summary.verdict(), file=out)
    out.flush()
    code = 0 if summary.ok else 1
    if plan.report_dir is None:
        return code
    try:
        written, notes = write_reports(plan.report_dir, summary)
    except OSError as exc:
        print(f"handgrad certify: error: the results above are complete, but the report files could not be "
              f"written to {str(plan.report_dir)!r}: {exc}", file=err)
        return 2
    for p in written:
        print(f"report: {p}", file=out)
    for n in notes:
        print(f"note: {n}", file=out)
    return code


def _legend(plan: _Plan) -> str:
    """The line under the table: what was certified, against what, and what the ratio column means."""
    refs = ", ".join(oracle_label(o) for o in plan.oracles)
    if plan.backward is None:
        what = "handgrad's own backward for each activation and loss above"
    else:
        what = f"your backward {plan.subjects[0].name} (not handgrad's)"
    legend = (f"checked: {what}, against {refs}; worst err/budget: the largest |hand - reference| / derived "
              "rounding budget over every case, element and reference (at most 1 passes)")
    declared = plan.declared.describe()
    return legend if not declared else f"{legend}\ndeclared: {declared}"
