"""Running the certification jobs of ``handgrad certify``: one subject on one architecture per
job, in this process or in spawned worker processes, with hypothesis's storage kept out of the
user's folder.

Note [JAX compilation cache]: most of a cold run's time is XLA compiling the JAX oracle (one
compilation per architecture and batch size, 0.2-0.6 s each on the 2-core machine, about 230 in
the registry run). The command turns on JAX's persistent compilation cache
(:func:`use_jax_cache`, in ``~/.cache/handgrad/jax`` or ``$XDG_CACHE_HOME/handgrad/jax``; the
folder named by ``$HANDGRAD_JAX_CACHE`` or ``--jax-cache``; ``off`` turns it off), so a later run
loads the compiled functions instead of compiling them again. It changes nothing that is
computed: JAX keys an entry by the program's HLO, the compile options, the backend and the jax and
jaxlib versions, so a different program or version compiles afresh. Workers always start fresh
(spawned) and turn it on first; in this process it is turned on only when JAX has not compiled
anything yet, as in a command-line run.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import handgrad as hg

from .declarations import Declared
from .progress import _Progress

__all__ = ["JAX_CACHE_ENV", "jax_cache_dir", "use_jax_cache"]

JAX_CACHE_ENV = "HANDGRAD_JAX_CACHE"
"""The environment variable naming the JAX compilation cache's folder (``off``: none)."""

_OFF = ("", "off", "none", "0", "no")


def jax_cache_dir(option: str | None = None) -> str | None:
    """The folder of the JAX compilation cache (Note [JAX compilation cache]): ``option``
    (``--jax-cache``), else ``$HANDGRAD_JAX_CACHE``, else ``handgrad/jax`` in the user's cache folder;
    ``None`` when the chosen value is ``off``."""
    value = option if option is not None else os.environ.get(JAX_CACHE_ENV)
    if value is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(base, "handgrad", "jax")
    return None if value.strip().lower() in _OFF else value


def use_jax_cache(path: str | None) -> bool:
    """Turn on JAX's persistent compilation cache in ``path`` for this process, every compilation
    kept however quick it was; ``False`` (and nothing changed) when ``path`` is None or cannot be
    written. Call it before JAX compiles anything: JAX decides once per process."""
    if path is None:
        return False
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    if not os.access(path, os.W_OK | os.X_OK):
        return False
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return True


class _Job(NamedTuple):
    """One certification: a subject on one architecture (picklable, for worker processes: plain
    values only, see Note [Declarations cross the pool] in :mod:`.declarations`). ``backward`` is
    the ``--backward`` spec (``module:function``, loaded again in a worker), ``None`` for handgrad's
    own; ``method`` the model's gradient method (``--method``)."""

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
    backward: str | None = None
    declared: Declared = Declared()
    method: str | None = None

    def label(self) -> str:
        """``subject: architecture`` as the certificate names it (``Network.describe``: with
        ``(fused)`` when the loss's fused output rule is used, so fused and unfused differ)."""
        net = hg.Network(self.sizes, list(self.activations), self.loss, fuse=self.fuse)
        return f"{self.subject}: {net.describe()}"

    def cost(self) -> int:
        """A rough cost for scheduling (bigger first): parameters times depth."""
        n = sum(a * b + a for a, b in zip(self.sizes[1:], self.sizes[:-1], strict=False))
        return n * len(self.sizes)


def _run_job(job: _Job, backward: Callable[..., Any] | None = None,
             progress: Callable[[int, int], None] | None = None) -> Any:
    """Certify ``job``: with ``backward`` (already loaded in this process), or the job's
    ``--backward`` loaded here, or handgrad's own; the declarations rebuilt from the job's values."""
    from ..judge.certify import certify_backward
    from .args import load_backward

    if backward is None and job.backward is not None:
        backward = load_backward(job.backward)
    if backward is None:
        backward = hg.Network(job.sizes, list(job.activations), job.loss, fuse=job.fuse).backward
    subject = job.subject if job.kind == "backward" else f"{job.subject} (handgrad backward)"
    options = job.declared.certify_options()
    return certify_backward(backward, job.sizes, list(job.activations), job.loss, fuse=job.fuse, dtype=job.dtype,
                            examples=job.examples, vary_shapes=job.vary_shapes, max_width=job.max_width,
                            oracles=job.oracles, seed=job.seed, raise_on_failure=False, progress=progress,
                            subject=subject, method=job.method, expect_long=True,  # the plan applied --yes
                            **options)


def _init_worker(imports: Sequence[str], cwd: str, jax_cache: str | None = None) -> None:
    use_jax_cache(jax_cache)
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for name in imports:
        importlib.import_module(name)


def _run_worker_job(job: _Job) -> Any:
    with _hypothesis_home():
        return _run_job(job)


def _run_parallel(jobs: Sequence[_Job], n_workers: int, imports: Sequence[str], bar: _Progress,
                  jax_cache: str | None = None) -> list[Any]:
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
        context = multiprocessing.get_context("spawn")
        initargs = (tuple(imports), os.getcwd(), jax_cache)
        with cf.ProcessPoolExecutor(max_workers=n_workers, mp_context=context, initializer=_init_worker,
                                    initargs=initargs) as pool:
            futures = {pool.submit(_run_worker_job, jobs[i]): i for i in order}
            bar.job(f"{n_workers} worker processes")
            try:
                for fut in cf.as_completed(futures):
                    i = futures[fut]
                    results[i] = fut.result()
                    bar.finish_job(results[i].cases, f"done: {jobs[i].label()}")
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

