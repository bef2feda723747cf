r"""The ``handgrad`` command: certify, derive, prove, demo.

::

    handgrad certify                      # every registered activation and loss, < 1 minute
    handgrad certify --backward mybp:backward --arch 2-3-3-1 --activation sigmoid --loss squared_error
    handgrad derive --arch 2-3-3-1 --activation sigmoid --weight "w_11^(3)" --latex
    handgrad prove --arch 2-3-3-1 --activation sigmoid
    handgrad demo

Arguments are *parsed*, never evaluated: architectures are matched by ``\d+(-\d+)+``, weight
names by regular expressions (:func:`parse_weight`), activation and loss names looked up in the
registry, ``module:function`` imported with :mod:`importlib`. A bad argument gets one line on
stderr (``handgrad certify: error: ...``) and exit code 2, never a traceback.

Exit codes: 0 success (everything certified / proved), 1 a certification or proof failed,
2 bad arguments, 130 interrupted.

Heavy imports (JAX, SymPy, matplotlib) happen inside the subcommands, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import re
import shlex
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, TextIO

import handgrad as hg

__all__ = [
    "UsageError",
    "build_parser",
    "latex_to_text",
    "load_backward",
    "main",
    "parse_activations",
    "parse_sizes",
    "parse_weight",
]

REPORT_STEM = "handgrad-report"
DEFAULT_EXAMPLES = 6
"""Cases per architecture of the registry run (``handgrad certify`` with no options)."""
DEFAULT_BACKWARD_EXAMPLES = 30
"""Cases for a user's backward (``--backward``): one architecture, so more cases."""


class UsageError(Exception):
    """A bad command line; ``main`` prints it as one line on stderr and returns 2."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line and never exit the interpreter by themselves."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the epilog's examples as written; show the defaults that say something."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        # Paragraphs of the description are wrapped; the epilog's indented lines are kept as written.
        paras = text.split("\n\n")
        out = [p if "\n" in p.strip("\n") else textwrap.fill(p, width, initial_indent=indent,
                                                              subsequent_indent=indent) for p in paras]
        return "\n\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_ = action.help or ""
        if action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in help_ \
                and action.option_strings:
            help_ += " (default: %(default)s)"
        return help_


# ---------------------------------------------------------------------------------------------
# Parsing helpers (public: the tests and other front ends use them)
# ---------------------------------------------------------------------------------------------

_SIZES_RE = re.compile(r"[0-9]+(?:-[0-9]+)+")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"2-3-3-1"`` -> ``(2, 3, 3, 1)``: at least two widths, each a positive integer.

    >>> parse_sizes("2-3-3-1")
    (2, 3, 3, 1)
    """
    if not isinstance(text, str) or _SIZES_RE.fullmatch(text.strip()) is None:
        raise UsageError(f"architecture must be layer widths joined by '-', like 2-3-3-1; got {text!r}")
    sizes = tuple(int(t) for t in text.strip().split("-"))
    if any(n < 1 for n in sizes):
        raise UsageError(f"every layer width must be at least 1; got {text!r}")
    if any(n > 4096 for n in sizes):
        raise UsageError(f"layer widths above 4096 are not supported here; got {text!r}")
    return sizes


def _names_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not items or any(_NAME_RE.fullmatch(t) is None for t in items):
        raise UsageError(f"{what} must be comma-separated names like sigmoid,tanh; got {text!r}")
    return items


def _check_activation(name: str) -> str:
    if name not in hg.activation_names():
        raise UsageError(f"unknown activation {name!r}; registered: {', '.join(hg.activation_names())}")
    return name


def _check_loss(name: str) -> str:
    if name not in hg.loss_names():
        raise UsageError(f"unknown loss {name!r}; registered: {', '.join(hg.loss_names())}")
    return name


def parse_activations(text: str, depth: int) -> tuple[str, ...]:
    """``"sigmoid"`` (every layer) or one registered name per layer, ``"tanh,tanh,sigmoid"``."""
    names = _names_list(text, "activation")
    for n in names:
        _check_activation(n)
    if len(names) == 1:
        return tuple(names) * depth
    if len(names) != depth:
        raise UsageError(f"--activation lists {len(names)} names but the architecture has {depth} layers; "
                         "give one name for every layer or one per layer")
    return tuple(names)


_W_ARTICLE = re.compile(r"""
    (?P<kind>[wWbB])_?\{?
    (?: (?P<i>[0-9]+),(?P<j>[0-9]+)       # w_{1,2}^{(3)}: any number of digits, comma-separated
      | (?P<ij>[0-9]{1,2}) )              # w_12^(3): one digit each (b_1^(3): one index)
    \}?\^\{?\(?(?P<layer>[0-9]+)\)?\}?
    """, re.VERBOSE)
_W_CODE = re.compile(r"(?P<kind>[WB])(?P<layer>[0-9]+)(?:\[(?P<i>[0-9]+)(?:,(?P<j>[0-9]+))?\])?")


def parse_weight(text: str, sizes: Sequence[int]) -> list[tuple[str, tuple[int, int]]]:
    r"""Which parameters ``text`` names, as ``[(tensor, (row, col)), ...]`` with 0-based indices.

    Accepted (spaces ignored): ``all``; the article's notation, 1-based, ``w_11^(3)``,
    ``w_{12}^{(2)}``, ``w_{1,12}^{(2)}``, ``b_2^(1)``; the code's names, 0-based, ``W3[0,0]``,
    ``B2[1]``, ``B2[1,0]``, or a whole tensor ``W2``.

    >>> parse_weight("w_12^(3)", (2, 3, 3, 1))
    [('W3', (0, 1))]
    >>> parse_weight("B1", (2, 3, 1))
    [('B1', (0, 0)), ('B1', (1, 0)), ('B1', (2, 0))]
    """
    depth = len(sizes) - 1
    t = "".join(str(text).split())
    if t.lower() == "all":
        return [(f"{k}{l}", idx) for l in range(1, depth + 1) for k in "WB"
                for idx in _indices(k, sizes[l], sizes[l - 1])]
    m = _W_CODE.fullmatch(t)
    if m is not None:
        kind, layer = m["kind"], int(m["layer"])
        _check_layer(layer, depth, t)
        rows, cols = sizes[layer], (sizes[layer - 1] if kind == "W" else 1)
        if m["i"] is None:
            return [(f"{kind}{layer}", idx) for idx in _indices(kind, rows, sizes[layer - 1])]
        i = int(m["i"])
        j = int(m["j"]) if m["j"] is not None else None
        if kind == "W" and j is None:
            raise UsageError(f"{t}: W{layer} is a matrix of shape ({rows}, {cols}); name an element as W{layer}[i,j]")
        j = 0 if j is None else j
        if not (i < rows and j < cols):
            raise UsageError(f"{t} is out of range: {kind}{layer} has shape ({rows}, {cols}) "
                             f"(0-based indices; in article notation use w_ij^(l), 1-based)")
        return [(f"{kind}{layer}", (i, j))]
    m = _W_ARTICLE.fullmatch(t)
    if m is not None:
        kind, layer = m["kind"].upper(), int(m["layer"])
        _check_layer(layer, depth, t)
        rows, cols = sizes[layer], (sizes[layer - 1] if kind == "W" else 1)
        if m["ij"] is not None:
            digits = m["ij"]
            if kind == "W" and len(digits) != 2:
                raise UsageError(f"{t}: a weight needs two indices, w_ij^(l) (use w_{{i,j}}^(l) for i or j >= 10)")
            if kind == "B" and len(digits) != 1:
                raise UsageError(f"{t}: a bias has one index, b_i^(l) (use b_{{i}}^(l))")
            i1, j1 = (int(digits[0]), int(digits[1])) if kind == "W" else (int(digits), 1)
        else:
            if kind == "B":
                raise UsageError(f"{t}: a bias has one index, b_i^(l)")
            i1, j1 = int(m["i"]), int(m["j"])
        if not (1 <= i1 <= rows and 1 <= j1 <= cols):
            sym = "w_ij" if kind == "W" else "b_i"
            raise UsageError(f"{t} is out of range: {sym}^({layer}) has i in 1..{rows}"
                             + (f", j in 1..{cols}" if kind == "W" else "") + " (article indices are 1-based)")
        return [(f"{kind}{layer}", (i1 - 1, j1 - 1))]
    raise UsageError(f"cannot read weight {text!r}: use all, w_ij^(l) (article, 1-based), "
                     "W<l>[i,j] or B<l>[i] (code, 0-based), or a tensor name like W2")


def _indices(kind: str, rows: int, cols_w: int) -> list[tuple[int, int]]:
    cols = cols_w if kind == "W" else 1
    return [(i, j) for i in range(rows) for j in range(cols)]


def _check_layer(layer: int, depth: int, t: str) -> None:
    if not 1 <= layer <= depth:
        raise UsageError(f"{t}: layer {layer} does not exist; the architecture has layers 1..{depth}")


def _import_module(name: str, what: str) -> Any:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", name):
        raise UsageError(f"{what}: {name!r} is not a module name like package.module")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise UsageError(f"{what}: cannot import module {name!r} ({exc}); run handgrad from the folder "
                         "that contains it, or install it") from None
    except Exception as exc:
        msg = " ".join(str(exc).split())
        raise UsageError(f"{what}: importing module {name!r} raised {type(exc).__name__}: {msg}") from None


def load_backward(spec: str) -> Callable[..., Any]:
    """Import ``module:function`` (the module from the current folder or an installed package;
    ``function`` may be a dotted attribute path) and return it; it must be callable."""
    m = re.fullmatch(r"([^:]+):([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)", spec or "")
    if m is None:
        raise UsageError(f"--backward must be module:function, like mybackprop:backward; got {spec!r}")
    module = _import_module(m.group(1), "--backward")
    obj: Any = module
    for part in m.group(2).split("."):
        if not hasattr(obj, part):
            raise UsageError(f"--backward: module {m.group(1)!r} has no attribute {m.group(2)!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"--backward: {spec} is not callable (it is of type {type(obj).__name__}); "
                         "expected a function backward(params, X, Y) -> grads")
    return obj


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text!r}")
    return v


def _rate(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return v


def _network(args: argparse.Namespace, *, fuse: bool = True) -> hg.Network:
    sizes = parse_sizes(args.arch)
    _check_loss(args.loss)
    acts = parse_activations(args.activation, len(sizes) - 1)
    try:
        return hg.Network(sizes, list(acts), args.loss, fuse=fuse)
    except (ValueError, TypeError) as exc:
        raise UsageError(" ".join(str(exc).split())) from None


def _imports(args: argparse.Namespace) -> None:
    for name in getattr(args, "imports", None) or []:
        _import_module(name, "--import")


# ---------------------------------------------------------------------------------------------
# certify
# ---------------------------------------------------------------------------------------------

class _Progress:
    """A plain-text progress bar on a stream: ``[#####.....]  57/264  label``."""

    def __init__(self, total: int, stream: TextIO | None, width: int = 28) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.width = width
        self.base = 0
        self.done = 0
        self.label = ""
        self._last = ""

    def job(self, label: str) -> None:
        self.base = self.done
        self.label = label
        self.draw()

    def update(self, done_in_job: int, _total_in_job: int) -> None:
        self.done = self.base + done_in_job
        self.draw()

    def finish_job(self, examples: int) -> None:
        self.done = self.base + examples

    def draw(self) -> None:
        if self.stream is None:
            return
        frac = min(self.done / self.total, 1.0)
        fill = round(frac * self.width)
        line = f"[{'#' * fill}{'.' * (self.width - fill)}] {min(self.done, self.total):>4}/{self.total}  {self.label}"
        line = line[:max(40, shutil.get_terminal_size((100, 24)).columns - 1)]  # one terminal line: \r redraws it
        if line != self._last:
            self.stream.write("\r" + line.ljust(len(self._last)))
            self.stream.flush()
            self._last = line

    def close(self) -> None:
        if self.stream is not None and self._last:
            self.stream.write("\r" + " " * len(self._last) + "\r")
            self.stream.flush()


@dataclass
class _Subject:
    """One row of the summary: an activation, a loss, or a user's backward, over its architectures."""

    name: str
    kind: str
    archs: list[tuple[tuple[int, ...], tuple[str, ...], str, bool]]
    backward: Callable[..., Any] | None = None
    certificates: list[Any] = field(default_factory=list)

    @property
    def cases(self) -> int:
        return sum(c.cases for c in self.certificates)

    @property
    def certified(self) -> int:
        return sum(c.certified for c in self.certificates)

    @property
    def inconclusive(self) -> int:
        return sum(c.inconclusive for c in self.certificates)

    @property
    def failed(self) -> bool:
        return any(c.failure is not None for c in self.certificates)

    @property
    def ok(self) -> bool:
        return bool(self.certificates) and all(c.ok for c in self.certificates)

    @property
    def status(self) -> str:
        if self.ok:
            return "certified"
        if self.failed:
            return "FAILED"
        return "UNDECIDED"

    def ratios(self) -> dict[str, float]:
        from .plot import certificate_ratios

        return certificate_ratios(self.certificates)

    def worst(self) -> float | None:
        r = self.ratios()
        return max(r.values()) if r else None


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.3g}"


def _table(subjects: Sequence[_Subject]) -> str:
    w = max([len("subject"), *(len(s.name) for s in subjects)])
    head = f"{'subject':<{w}}  {'archs':>5}  {'cases':>5}  {'certified':>9}  {'inconclusive':>12}  " \
           f"{'worst err/budget':>16}  status"
    lines = [head, "-" * len(head)]
    for s in subjects:
        lines.append(f"{s.name:<{w}}  {len(s.archs):>5}  {s.cases:>5}  {s.certified:>9}  {s.inconclusive:>12}  "
                     f"{_fmt_ratio(s.worst()):>16}  {s.status}")
    return "\n".join(lines)


def _subjects_from_registry(args: argparse.Namespace) -> list[_Subject]:
    from ..cases.pools import activation_pool, loss_pool

    acts = _names_list(args.activations, "--activations") if args.activations else None
    losses = _names_list(args.losses, "--losses") if args.losses else None
    for a in acts or []:
        _check_activation(a)
    for lo in losses or []:
        _check_loss(lo)
    if acts is None and losses is None:
        acts, losses = hg.activation_names(), hg.loss_names()
    subjects = [_Subject(f"activation {a}", "activation", activation_pool(a)) for a in dict.fromkeys(acts or [])]
    for lo in dict.fromkeys(losses or []):
        pool = loss_pool(lo)
        if not pool:
            raise UsageError(f"no registered output activation fits loss {lo!r}; register one whose output_range "
                             "lies in the loss's prediction_range, or a fused rule")
        subjects.append(_Subject(f"loss {lo}", "loss", pool))
    return subjects


def _subject_from_backward(args: argparse.Namespace) -> _Subject:
    backward = load_backward(args.backward)
    net = _network(args, fuse=not args.no_fuse)
    acts = tuple(a.name for a in net.activations)
    return _Subject(args.backward, "backward", [(net.sizes, acts, net.loss.name, net.fuse)], backward=backward)


def _parse_oracles(text: str) -> tuple[str, ...]:
    from ..judge.referee import ORACLES

    names = _names_list(text, "--oracles")
    for n in names:
        if n not in ORACLES:
            raise UsageError(f"unknown oracle {n!r}; choose from {', '.join(ORACLES)}")
    return tuple(dict.fromkeys(names))


class _Job(NamedTuple):
    """One certification: a subject on one architecture (picklable, for worker processes)."""

    index: int
    subject: str
    kind: str
    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    fuse: bool
    dtype: str
    examples: int
    vary_shapes: bool
    max_width: int
    oracles: tuple[str, ...]
    seed: int

    def label(self) -> str:
        return f"{self.subject}: {'-'.join(map(str, self.sizes))} {'/'.join(self.activations)}, {self.loss}"

    def cost(self) -> int:
        """A rough cost for scheduling (bigger first): parameters times depth."""
        n = sum(a * b + a for a, b in zip(self.sizes[1:], self.sizes[:-1], strict=False))
        return n * len(self.sizes)


def _run_job(job: _Job, backward: Callable[..., Any] | None = None,
             progress: Callable[[int, int], None] | None = None) -> Any:
    from ..judge.certify import certify_backward

    if backward is None:
        backward = hg.Network(job.sizes, list(job.activations), job.loss, fuse=job.fuse).backward
    subject = job.subject if job.kind == "backward" else f"{job.subject} (handgrad backward)"
    return certify_backward(backward, job.sizes, list(job.activations), job.loss, fuse=job.fuse, dtype=job.dtype,
                            examples=job.examples, vary_shapes=job.vary_shapes, max_width=job.max_width,
                            oracles=job.oracles, seed=job.seed, raise_on_failure=False, progress=progress,
                            subject=subject)


def _init_worker(imports: Sequence[str], cwd: str) -> None:
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for name in imports:
        importlib.import_module(name)


def _run_worker_job(job: _Job) -> Any:
    with _hypothesis_home():
        return _run_job(job)


def _run_parallel(jobs: Sequence[_Job], n_workers: int, imports: Sequence[str], bar: _Progress) -> list[Any]:
    """Run ``jobs`` in ``n_workers`` spawned processes (not forked: JAX is multithreaded), biggest
    first; results in the order of ``jobs``. Each worker runs single-threaded BLAS and XLA."""
    import concurrent.futures as cf
    import multiprocessing

    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    saved = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        os.environ.setdefault(k, v)
    results: list[Any] = [None] * len(jobs)
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].cost())
    try:
        with cf.ProcessPoolExecutor(max_workers=n_workers, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_init_worker, initargs=(tuple(imports), os.getcwd())) as pool:
            futures = {pool.submit(_run_worker_job, jobs[i]): i for i in order}
            bar.job(f"{n_workers} worker processes")
            try:
                for fut in cf.as_completed(futures):
                    i = futures[fut]
                    results[i] = fut.result()
                    bar.done += jobs[i].examples
                    bar.label = f"done: {jobs[i].label()}"
                    bar.draw()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return results


@contextlib.contextmanager
def _hypothesis_home() -> Iterator[None]:
    """Point hypothesis's storage (its cache of constants found in the code under test) at a
    temporary folder for the run, instead of littering ``./.hypothesis`` in the user's folder;
    HYPOTHESIS_STORAGE_DIRECTORY, when set, is respected. The previous home is restored."""
    from hypothesis.configuration import set_hypothesis_home_dir, storage_directory

    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        yield
        return
    previous = storage_directory(intent_to_write=False).home_directory
    mine = os.environ.get("HANDGRAD_HYPOTHESIS_HOME")
    with contextlib.ExitStack() as stack:
        if mine is None:
            mine = stack.enter_context(tempfile.TemporaryDirectory(prefix="handgrad-hypothesis-"))
            os.environ["HANDGRAD_HYPOTHESIS_HOME"] = mine
            stack.callback(os.environ.pop, "HANDGRAD_HYPOTHESIS_HOME", None)
        set_hypothesis_home_dir(mine)
        try:
            yield
        finally:
            set_hypothesis_home_dir(previous)


def _cmd_certify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _imports(args)
    if args.backward is None:
        for opt in ("arch", "activation", "loss"):
            if getattr(args, opt) is not None:
                raise UsageError(f"--{opt} describes the architecture of --backward; "
                                 "use --activations/--losses to restrict the registry run")
        if args.no_fuse or args.vary_shapes:
            raise UsageError("--no-fuse and --vary-shapes apply to --backward only")
        subjects = _subjects_from_registry(args)
        examples = args.examples or DEFAULT_EXAMPLES
    else:
        if args.activations or args.losses:
            raise UsageError("--activations/--losses restrict the registry run; with --backward give "
                             "--activation and --loss")
        missing = [f"--{o}" for o in ("arch", "activation") if getattr(args, o) is None]
        if missing:
            raise UsageError(f"--backward needs {' and '.join(missing)} (e.g. --arch 2-3-3-1 --activation sigmoid)")
        args.loss = args.loss or "squared_error"
        subjects = [_subject_from_backward(args)]
        examples = args.examples or DEFAULT_BACKWARD_EXAMPLES
    oracles = _parse_oracles(args.oracles)
    report_dir = Path(args.report_dir) if not args.no_report else None
    if report_dir is not None and report_dir.exists() and not report_dir.is_dir():
        raise UsageError(f"--report-dir {args.report_dir!r} exists and is not a folder")

    show = args.progress or (not args.quiet and err.isatty())
    jobs = [_Job(i, s.name, s.kind, *arch, args.dtype, examples, bool(args.vary_shapes), args.max_width,
                 oracles, args.seed) for i, s in enumerate(subjects) for arch in s.archs]
    bar = _Progress(examples * len(jobs), err if show else None)
    n_workers = min(args.jobs, len(jobs))
    start = time.perf_counter()
    try:
        with _hypothesis_home():
            if n_workers <= 1:
                for job in jobs:
                    bar.job(job.label())
                    s = subjects[job.index]
                    try:
                        cert = _run_job(job, s.backward, bar.update)
                    except (ValueError, TypeError) as exc:
                        if s.kind == "backward":  # the user's architecture: a bad argument
                            raise UsageError(" ".join(str(exc).split())) from None
                        raise
                    bar.finish_job(examples)
                    s.certificates.append(cert)
            else:
                results = _run_parallel(jobs, n_workers, list(args.imports), bar)
                for job, cert in zip(jobs, results, strict=True):
                    subjects[job.index].certificates.append(cert)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    ok = all(s.ok for s in subjects)

    failing = [c for s in subjects for c in s.certificates if not c.ok]
    for c in failing:
        print(c.text(), file=out)
        print(file=out)
    if failing:
        print(f"re-run: handgrad {shlex.join(args.argv)}  (same seed, same cases)", file=out)
        print(file=out)
    written: list[Path] = []
    notes: list[str] = []
    if report_dir is not None:
        written, notes = _write_reports(report_dir, subjects, args, examples, oracles, seconds, ok)
    if not args.quiet:
        print(_table(subjects), file=out)
        print(file=out)
    n_bad = sum(not s.ok for s in subjects)
    cases = sum(s.cases for s in subjects)
    if ok:
        verdict = f"CERTIFIED: all {len(subjects)} subject(s), {cases} cases, {args.dtype}, {seconds:.1f} s"
    else:
        names = ", ".join(s.name for s in subjects if not s.ok)
        verdict = f"NOT CERTIFIED: {n_bad} of {len(subjects)} subject(s) ({names}); {cases} cases, {seconds:.1f} s"
    print(verdict, file=out)
    for p in written:
        print(f"report: {p}", file=out)
    for n in notes:
        print(f"note: {n}", file=out)
    return 0 if ok else 1


def _demote(markdown: str) -> str:
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def _write_reports(report_dir: Path, subjects: Sequence[_Subject], args: argparse.Namespace, examples: int,
                   oracles: Sequence[str], seconds: float, ok: bool) -> tuple[list[Path], list[str]]:
    report_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path, png_path = (report_dir / f"{REPORT_STEM}.{ext}" for ext in ("md", "json", "png"))
    notes: list[str] = []
    written: list[Path] = []
    chart = False
    from .plot import matplotlib_available, plot_error_budget

    ratios = {s.name: s.ratios() for s in subjects if s.ratios()}
    if not ratios:
        notes.append("no per-tensor ratios to chart (no case was decided)")
    elif not matplotlib_available():
        notes.append("matplotlib is not installed: no chart (pip install 'handgrad[plots]')")
    else:
        plot_error_budget(ratios, png_path)
        chart = True
    command = "handgrad " + shlex.join(args.argv)
    settings = {"dtype": args.dtype, "examples_per_architecture": examples, "seed": args.seed,
                "oracles": list(oracles), "vary_shapes": bool(args.vary_shapes)}
    lines = ["# handgrad certification report", "",
             f"Command: `{command}` (handgrad {hg.__version__}).", "",
             f"Settings: {args.dtype}, {examples} hypothesis-drawn cases per architecture, seed {args.seed}, "
             f"oracles {', '.join(oracles)}; {seconds:.1f} s.", "",
             ("**Verdict: every subject is certified.**" if ok else
              "**Verdict: NOT certified** -- " + ", ".join(s.name for s in subjects if not s.ok) + "."), "",
             "| subject | architectures | cases | certified | inconclusive | worst err / budget | status |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for s in subjects:
        lines.append(f"| {s.name} | {len(s.archs)} | {s.cases} | {s.certified} | {s.inconclusive} | "
                     f"{_fmt_ratio(s.worst())} | {'certified' if s.ok else '**' + s.status + '**'} |")
    lines += ["", "A case is *certified* when the hand gradient agrees with every reference (SymPy closed "
              "forms, JAX, finite differences) within its derived rounding budget (`reference/tolerance.py`); "
              "*inconclusive* cases (a pre-activation within rounding reach of a kink, or oracles that "
              "disagree among themselves) are skipped, never counted as certified."]
    if chart:
        lines += ["", f"![worst error-to-budget ratio per tensor]({png_path.name})", "",
                  "Each bar is the worst |hand - reference| / budget over every case, reference and element "
                  "of that tensor; the dashed line is the budget (ratio 1)."]
    for s in subjects:
        lines += ["", f"## {s.name}", ""]
        for c in s.certificates:
            body = _demote(c.markdown()).splitlines()
            body[0] = f"### `{c.architecture}`: " + ("certified" if c.ok else "**NOT certified**")
            body = [line.removeprefix(f"`{c.architecture}`, ") for line in body]
            lines += [*body, ""]
    md_path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    data = {"tool": "handgrad", "version": hg.__version__, "command": command, "settings": settings, "ok": ok,
            "seconds": seconds,
            "subjects": [{"subject": s.name, "kind": s.kind, "status": s.status, "ok": s.ok,
                          "architectures": ["-".join(map(str, a[0])) + " " + "/".join(a[1]) + f", {a[2]}"
                                            + ("" if a[3] else " (unfused)") for a in s.archs],
                          "cases": s.cases, "certified": s.certified, "inconclusive": s.inconclusive,
                          "worst_ratio": s.worst(), "per_tensor_ratio": s.ratios(),
                          "certificates": [c.to_dict() for c in s.certificates]} for s in subjects],
            "chart": png_path.name if chart else None}
    json_path.write_text(json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    written += [md_path, json_path] + ([png_path] if chart else [])
    return written, notes


# ---------------------------------------------------------------------------------------------
# derive, prove, demo
# ---------------------------------------------------------------------------------------------

def _cmd_derive(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _imports(args)
    net = _network(args, fuse=not args.no_fuse)
    selected = parse_weight(args.weight, net.sizes)
    from ..oracles.sympy_oracle import get_sympy_oracle

    try:
        oracle = get_sympy_oracle(net)
    except ValueError as exc:  # SympyTooLarge: beyond the oracle's size limit
        raise UsageError(" ".join(str(exc).split())) from None
    legend = [f"dL/dw for {net.describe()}: closed forms from the SymPy oracle (the composite loss "
              "differentiated symbol by symbol), for one sample; the batch gradient is their mean.",
              "x_1j: input j; x_ki (k >= 2): output of unit i of layer k-1, f(z_i^(k-1)); z_i^(l): pre-activation "
              "of unit i of layer l; yhat: the output; y: the label."]
    for line in legend:
        print(("% " + line.replace("yhat", r"\hat y")) if args.latex else ("# " + line), file=out)
    for name, (i, j) in selected:
        tex = oracle.latex(name, i + 1, j + 1)
        if args.latex:
            print(tex, file=out)
            continue
        text = latex_to_text(tex)
        if text is None:  # a construct the text rendering does not know: show the LaTeX
            print(f"{_article_name(name, i, j)} (LaTeX): {tex}", file=out)
        else:
            print(text, file=out)
    return 0


def _article_name(name: str, i: int, j: int) -> str:
    return f"dL/dw_{i + 1}{j + 1}^({name[1:]})" if name[0] == "W" else f"dL/db_{i + 1}^({name[1:]})"


_TEX_FUNCS = {"exp", "log", "tanh", "sinh", "cosh", "sqrt", "erf", "erfc", "sin", "cos", "max", "min", "Max", "Min"}
_TEX_SPACES = {":", ",", ";", "!", "quad", "qquad", " "}
_TEX_SYMBOLS = {"pi": "pi", "cdot": "*", "times": "*", "infty": "inf", "geq": ">=", "leq": "<=", "neq": "!=",
                "wedge": "and", "vee": "or"}


def _tex_tokens(tex: str) -> list[str] | None:
    tokens: list[str] = []
    k = 0
    while k < len(tex):
        c = tex[k]
        if c == "\\":
            m = re.match(r"\\([A-Za-z]+|.)", tex[k:])
            if m is None:
                return None
            tokens.append(m.group(0))
            k += len(m.group(0))
        elif c.isspace():
            if tokens and tokens[-1] != " ":
                tokens.append(" ")
            k += 1
        else:
            tokens.append(c)
            k += 1
    return tokens


class _TexError(Exception):
    pass


class _TexText:
    r"""A small recursive-descent reader for the LaTeX subset SymPy prints for these closed forms
    (fractions, sub/superscripts, ``e^{...}``, named functions, ``\left( \right)``, ``cases``)."""

    def __init__(self, tokens: list[str]) -> None:
        self.t = tokens
        self.k = 0

    def peek(self) -> str | None:
        return self.t[self.k] if self.k < len(self.t) else None

    def take(self) -> str:
        if self.k >= len(self.t):
            raise _TexError("unexpected end")
        self.k += 1
        return self.t[self.k - 1]

    def skip_space(self) -> None:
        while self.peek() == " ":
            self.k += 1

    def group(self) -> str:
        """``{...}`` or a single token, as text."""
        self.skip_space()
        if self.peek() == "{":
            self.take()
            body = self.seq(stop={"}"})
            if self.take() != "}":
                raise _TexError("unbalanced braces")
            return body
        tok = self.take()
        return self.atom(tok)

    def atom(self, tok: str) -> str:
        if tok.startswith("\\"):
            return self.command(tok[1:])
        if tok in "{}":
            raise _TexError("stray brace")
        return tok

    @staticmethod
    def wrap(text: str) -> str:
        t = text.strip()
        if re.fullmatch(r"[A-Za-z0-9_.^()]+", t) and (not t.startswith("(") or _balanced_outer(t)):
            return t
        return f"({t})"

    def command(self, name: str) -> str:
        if name == "frac":
            num, den = self.group(), self.group()
            return f"{self.wrap(num)}/{self.wrap(den)}"
        if name == "left":
            return self.take()
        if name == "right":
            return self.take()
        if name == "hat":
            return self.group().strip() + "hat"
        if name == "sqrt":
            return f"sqrt({self.group().strip()})"
        if name == "operatorname":
            return self.group().strip()
        if name == "text":
            return self.group()
        if name == "begin":
            env = self.group().strip()
            if env != "cases":
                raise _TexError(env)
            return self.cases()
        if name in _TEX_FUNCS:
            return name
        if name in _TEX_SYMBOLS:
            return _TEX_SYMBOLS[name]
        if name in _TEX_SPACES:
            return " "
        raise _TexError(name)

    def cases(self) -> str:
        branches: list[tuple[str, str]] = []
        while True:
            value = self.seq(stop={"&"})
            self.take()
            cond = self.seq(stop={"\\\\", "\\end"})
            cond = re.sub(r"^\s*for\s*", "", cond).strip()
            branches.append((value.strip(), cond))
            tok = self.take()
            if tok == "\\end":
                self.group()
                break
        parts = []
        for value, cond in branches:
            parts.append(value if cond == "otherwise" else f"{value} if {cond} else")
        return " ".join(parts)

    def seq(self, stop: set[str]) -> str:
        out: list[str] = []
        while self.peek() is not None and self.peek() not in stop:
            tok = self.take()
            if tok == " ":
                out.append(" ")
            elif tok == "{":  # invisible grouping, e.g. the argument of \operatorname{erfc}{...}
                self.k -= 1
                out.append(self.group())
            elif tok in ("_", "^"):
                arg = self.group().strip()
                if out and out[-1] == "e" and tok == "^":
                    out[-1] = f"exp({arg})"
                    continue
                simple = re.fullmatch(r"[A-Za-z0-9]+|\(\d+\)", arg) is not None
                out.append(tok + (arg if simple else f"({arg})"))
            elif tok.startswith("\\") and tok[1:] in _TEX_FUNCS and tok[1:] != "sqrt":
                self.skip_space()
                arg = self.group() if self.peek() == "{" else self.atom(self.take())
                out.append(f"{tok[1:]}{self.wrap(arg) if not arg.strip().startswith('(') else arg.strip()}")
            else:
                out.append(self.atom(tok))
        text = "".join(out)
        return re.sub(r" {2,}", " ", text)


def _balanced_outer(t: str) -> bool:
    depth = 0
    for n, c in enumerate(t):
        depth += (c == "(") - (c == ")")
        if depth == 0 and n < len(t) - 1:
            return False
    return True


def latex_to_text(tex: str) -> str | None:
    r"""Plain text for the LaTeX that :meth:`handgrad.reference.oracles.sympy_oracle.SympyOracle.latex` prints:
    ``\frac{\partial L}{\partial w_{11}^{(3)}} = 2 \hat y x_{31} ...`` becomes
    ``dL/dw_11^(3) = 2 yhat x_31 ...``. None when the LaTeX holds a construct this reader does not
    know (the caller then shows the LaTeX itself).

    >>> latex_to_text(r"\frac{\partial L}{\partial w_{11}^{(3)}} = \frac{x_{21} e^{z_{1}^{(2)}}}{e^{z_{1}^{(2)}} + 1}")
    'dL/dw_11^(3) = (x_21 exp(z_1^(2)))/(exp(z_1^(2)) + 1)'
    """
    m = re.fullmatch(r"\\frac\{\\partial L\}\{\\partial ([wb])_\{([0-9,]+)\}\^\{\((\d+)\)\}\} = (.*)", tex.strip(),
                     re.S)
    if m is None:
        return None
    kind, idx, layer, body = m.groups()
    tokens = _tex_tokens(body)
    if tokens is None:
        return None
    try:
        reader = _TexText(tokens)
        text = reader.seq(stop=set())
    except (_TexError, IndexError):
        return None
    text = re.sub(r"\s+\)", ")", re.sub(r"\(\s+", "(", text)).strip()
    sub = f"({idx})" if "," in idx else idx
    return f"dL/d{kind}_{sub}^({layer}) = {text}"


def _cmd_prove(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _imports(args)
    net = _network(args, fuse=not args.no_fuse)
    from ..proofs import prove_activation, prove_fused_rule, prove_loss, prove_network

    try:
        proof = prove_network(net, method=args.method, trials=args.trials, seed=args.seed, batch=args.batch)
    except ValueError as exc:  # e.g. method='symbolic' on an architecture it does not support
        raise UsageError(" ".join(str(exc).split())) from None
    print(proof, file=out)
    ok = bool(proof.ok)
    if not args.network_only:
        print("", file=out)
        print("The local rules it relies on:", file=out)
        rules = [prove_activation(a) for a in dict.fromkeys(a.name for a in net.activations)]
        if net.fused_rule is not None:
            rules.append(prove_fused_rule(net.loss.name, net.activations[-1].name))
        else:
            rules.append(prove_loss(net.loss.name))
        for r in rules:
            print(r, file=out)
            ok = ok and bool(r.ok)
    print("", file=out)
    print(f"{'PROVED' if ok else 'NOT PROVED'}: handgrad's backward for {net.describe()}", file=out)
    return 0 if ok else 1


def _cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    def emit(line: str) -> None:
        print(line, file=out)

    hg.train_article(seed=args.seed, steps=args.steps, rate=args.rate, print_every=args.print_every, out=emit)
    return 0


# ---------------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------------

_CERTIFY_EPILOG = """\
examples:
  handgrad certify
      every registered activation and loss, each on a small pool of architectures,
      6 cases per architecture; writes handgrad-report.md/.json/.png here
  handgrad certify --activations relu,gelu --examples 20 --dtype float32
  handgrad certify --losses bce --report-dir build/reports
  handgrad certify --backward mybackprop:backward --arch 2-3-3-1 --activation sigmoid --loss squared_error
      your own backward(params, X, Y) -> grads, imported from ./mybackprop.py
  handgrad certify --backward mybackprop:backward --arch 4-8-8-2 --activation tanh,tanh,identity --vary-shapes

your backward: params is a dict W1, B1, W2, ... (W<l> of shape (n_l, n_{l-1}), B<l> of shape
(n_l, 1)); X has shape (n0, m), samples as columns; Y has shape (nL, m). It returns a dict with
the same keys and shapes: the gradients of the MEAN over the batch of the per-sample loss.

exit status: 0 everything certified, 1 something was not (the failing report is printed), 2 bad arguments.
"""

_DERIVE_EPILOG = """\
examples:
  handgrad derive --arch 2-3-3-1 --activation sigmoid --weight "w_11^(3)"
  handgrad derive --arch 2-3-3-1 --activation sigmoid --weight "W3[0,0]" --latex
  handgrad derive --arch 2-2-1 --activation tanh,sigmoid --loss bce --weight b_1^(1)
  handgrad derive --arch 2-3-1 --activation sigmoid              (every weight and bias)

weights: all; article notation, 1-based: w_ij^(l), w_{i,j}^{(l)}, b_i^(l);
code names, 0-based: W<l>[i,j], B<l>[i], or a whole tensor W<l> / B<l>.
"""

_PROVE_EPILOG = """\
examples:
  handgrad prove --arch 2-3-3-1 --activation sigmoid
  handgrad prove --arch 4-8-8-3 --activation tanh,tanh,softmax --loss cross_entropy --method modular
  handgrad prove --arch 3-3-1 --activation relu,identity --network-only

exit status: 0 proved, 1 not proved, 2 bad arguments.
"""

_DEMO_EPILOG = """\
examples:
  handgrad demo                        the article's run: 100 steps, rate 0.1, x = [5, 7]^T, label 0.6
  handgrad demo --steps 1000 --rate 0.5 --print-every 200
"""


def _arch_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--arch", "--sizes", dest="arch", required=required, default=None, metavar="N0-N1-...",
                   help="layer widths from input to output, e.g. 2-3-3-1 (the article's network)")
    p.add_argument("--activation", required=required, default=None, metavar="NAME[,NAME...]",
                   help="one registered activation for every layer, or one per layer (comma-separated)")
    p.add_argument("--no-fuse", action="store_true",
                   help="do not use the loss's fused output rule (e.g. sigmoid + bce), differentiate them apart")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (repeatable): a package that registers its own activations or losses")


def build_parser() -> argparse.ArgumentParser:
    """The ``handgrad`` argument parser (subcommands certify, derive, prove, demo)."""
    parser = _Parser(prog="handgrad", formatter_class=_Formatter,
                     description="Certify hand-written backpropagation against independent oracles "
                                 "(SymPy closed forms, JAX, finite differences).",
                     epilog="examples:\n  handgrad certify\n  handgrad derive --arch 2-3-3-1 --activation sigmoid "
                            "--weight 'w_11^(3)'\n  handgrad prove --arch 2-3-3-1 --activation sigmoid\n"
                            "  handgrad demo\n\nrun 'handgrad COMMAND --help' for each command's options.")
    parser.add_argument("--version", action="version", version=f"handgrad {hg.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("certify", formatter_class=_Formatter, epilog=_CERTIFY_EPILOG,
                       help="certify handgrad's backward (every activation and loss) or your own",
                       description="Certify a backward pass over hypothesis-drawn shapes and inputs: every "
                                   "gradient element must agree with SymPy, JAX and finite differences within "
                                   "its derived rounding budget. Without --backward: handgrad's own backward "
                                   "for every registered activation and loss.")
    p.add_argument("--examples", type=_positive_int, default=None, metavar="N",
                   help=f"cases per architecture (default {DEFAULT_EXAMPLES}; "
                        f"{DEFAULT_BACKWARD_EXAMPLES} with --backward)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision of the backward under test; the budget is derived for it")
    p.add_argument("--activations", default=None, metavar="A,B",
                   help="certify only these activations (alone: no losses)")
    p.add_argument("--losses", default=None, metavar="L1,L2", help="certify only these losses (alone: no activations)")
    p.add_argument("--seed", type=_seed, default=0, help="hypothesis seed: the same seed replays the same cases")
    p.add_argument("--oracles", default="sympy,jax,fd", metavar="O1,O2",
                   help="references to compare with (sympy, jax, fd)")
    p.add_argument("--jobs", "-j", type=_positive_int, default=1, metavar="N",
                   help="worker processes, one architecture at a time each; the results do not depend on it. "
                        "Each worker starts in ~2 s and compiles its own oracles: worth it on idle cores only")
    p.add_argument("--report-dir", default=".", metavar="DIR",
                   help=f"where to write {REPORT_STEM}.md, .json and .png (created if missing)")
    p.add_argument("--no-report", action="store_true", help="write no report files")
    noise = p.add_mutually_exclusive_group()
    noise.add_argument("--quiet", action="store_true", help="no progress bar and no table: failures and the verdict")
    noise.add_argument("--progress", action="store_true",
                       help="show the progress bar on stderr even when it is not a terminal")
    g = p.add_argument_group("your own backward")
    g.add_argument("--backward", default=None, metavar="MODULE:FUNCTION",
                   help="certify FUNCTION(params, X, Y) -> grads from MODULE (importable from the current folder)")
    g.add_argument("--arch", "--sizes", dest="arch", default=None, metavar="N0-N1-...",
                   help="its architecture, e.g. 2-3-3-1")
    g.add_argument("--activation", default=None, metavar="NAME[,NAME...]",
                   help="one activation for every layer, or one per layer")
    g.add_argument("--loss", default=None, metavar="NAME", help="its loss (default squared_error)")
    g.add_argument("--no-fuse", action="store_true", help="compare with the unfused loss (no fused output rule)")
    g.add_argument("--vary-shapes", action="store_true",
                   help="also draw the hidden widths (1..--max-width): for a backward written for any width")
    g.add_argument("--max-width", type=_positive_int, default=8, metavar="N", help="largest hidden width drawn")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (repeatable): a package that registers its own activations or losses")
    p.set_defaults(func=_cmd_certify)

    p = sub.add_parser("derive", formatter_class=_Formatter, epilog=_DERIVE_EPILOG,
                       help="print the closed-form gradient of a weight (SymPy), as text or LaTeX",
                       description="Print dL/dw for a chosen weight (default: all) of an architecture, as the "
                                   "SymPy oracle derives it by differentiating the whole composite loss.")
    _arch_options(p, required=True)
    p.add_argument("--loss", default="squared_error", help="registered loss")
    p.add_argument("--weight", default="all", metavar="NAME",
                   help="w_ij^(l) (article, 1-based), W<l>[i,j] / B<l>[i] (code, 0-based), W<l>, or all")
    p.add_argument("--latex", action="store_true", help="print LaTeX instead of plain text")
    p.set_defaults(func=_cmd_derive)

    p = sub.add_parser("prove", formatter_class=_Formatter, epilog=_PROVE_EPILOG,
                       help="exact certificate: handgrad's backward equals the derivative, as formulas",
                       description="Prove that handgrad's backward for an architecture equals the derivative of "
                                   "the composite loss for every parameter (reference/proof.py), and prove the "
                                   "local rules (activation derivatives, loss gradient) it relies on.")
    _arch_options(p, required=True)
    p.add_argument("--loss", default="squared_error", help="registered loss")
    p.add_argument("--method", choices=("auto", "symbolic", "modular"), default="auto",
                   help="symbolic (deterministic), modular (exact randomized identity test), or auto")
    p.add_argument("--trials", type=_positive_int, default=None, metavar="N",
                   help="modular trials (default: until the miss probability is below the target)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the modular method's random points")
    p.add_argument("--batch", type=_positive_int, default=2, metavar="M", help="samples per batch in the proof")
    p.add_argument("--network-only", action="store_true", help="skip the proofs of the local rules")
    p.set_defaults(func=_cmd_prove)

    p = sub.add_parser("demo", formatter_class=_Formatter, epilog=_DEMO_EPILOG,
                       help="the article's example run (2-3-3-1 sigmoid net, one sample)",
                       description="Train the article's 2-3-3-1 sigmoid network on x = [5, 7]^T, label 0.6, with "
                                   "squared error and plain gradient descent, printing the iteration, prediction "
                                   "and loss (before that step's update).")
    p.add_argument("--steps", type=_positive_int, default=100, help="gradient steps")
    p.add_argument("--rate", type=_rate, default=0.1, help="learning rate")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the article's uniform [0, 1) initialization")
    p.add_argument("--print-every", type=_positive_int, default=20, metavar="N",
                   help="print every N steps and the last one")
    p.set_defaults(func=_cmd_demo)
    return parser


def _prog(argv: Sequence[str]) -> str:
    """``handgrad`` and the subcommand named in ``argv`` (for error messages)."""
    cmd = next((a for a in argv if a in ("certify", "derive", "prove", "demo")), None)
    return "handgrad" if cmd is None else f"handgrad {cmd}"


def main(argv: list[str] | None = None) -> int:
    """Run the ``handgrad`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out, err = sys.stdout, sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("handgrad: error: choose a command: certify, derive, prove or demo "
                             "(see 'handgrad --help')")
        args.argv = argv
        return int(args.func(args, out, err))
    except UsageError as exc:
        msg = " ".join(str(exc).split())
        if not msg.startswith("handgrad"):
            msg = f"{_prog(argv)}: error: {msg}"
        print(msg, file=err)
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print("handgrad: interrupted", file=err)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
