r"""Certify a backward function -- handgrad's or your own -- over many hypothesis-drawn cases.

In your own test suite::

    import numpy as np
    from handgrad.reference import certify_backward

    def my_backward(params, X, Y):          # params: W1, B1, ...; X: (n0, m); Y: (nL, m)
        ...                                 # your hand-written backprop
        return {"W1": dW1, "B1": dB1, "W2": dW2, "B2": dB2}

    def test_my_backward():
        certify_backward(my_backward, (2, 3, 1), ["sigmoid", "sigmoid"], "squared_error")

On failure it raises :class:`CertificationError` (an ``AssertionError``, so pytest shows it as a
test failure) whose message is the shrunk failing case's report: which pair of sources disagreed,
which tensor and element in article notation (:math:`w_{12}^{(2)}`), every source's value, the
budget, and a one-line recipe that rebuilds the exact arrays. With ``raise_on_failure=False`` the
:class:`Certificate` is returned instead.

The gradients must be those of the *mean* over the batch of the per-sample loss (summed over
output units), the convention of every oracle here (see ``docs/conventions.md``).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

import handgrad as hg
from handgrad.validation import check_positive_int

from ..cases.architecture import Architecture
from ..cases.spec import SCALES, CaseSpec, build_case, in_domain, label_kinds
from ..cases.traps import trap_seed, trap_specs
from ..oracles.table import ORACLES, check_oracles
from .referee import Backward, random_state_held, referee
from .reports import Certificate, Report
from .scale import SCALE_MIN_PARAMS, LongRunWarning
from .tolerance import DEFAULT_POLICY, Budget, TolerancePolicy, error_budgets

__all__ = ["CASES_PER_EXAMPLE", "QUORUM", "TRAP_ATTEMPTS", "Certificate", "CertificationError", "LongRunWarning",
           "certify_backward", "certify_network"]


class CertificationError(AssertionError):
    """A backward failed certification; ``.certificate`` and ``.report`` hold the details."""

    def __init__(self, certificate: Certificate) -> None:
        self.certificate = certificate
        self.report = certificate.failure
        super().__init__(certificate.text())


class _Failed(Exception):
    def __init__(self, report: Report) -> None:
        self.report = report
        super().__init__(report.text())


def _fail(report: Report) -> None:
    """Raise :class:`_Failed` -- from this one line, for a failure found by a draw and for its
    replays while shrinking alike: hypothesis tells failures apart by where they were raised, and
    two raise sites made every shrink step a "different" failure, so a deterministic bug was
    reported as a nondeterministic backward (FlakyFailure)."""
    raise _Failed(report)


def _names(activations: Any, depth: int) -> tuple[str, ...]:
    acts = [activations] * depth if isinstance(activations, str | hg.Activation) else list(activations)
    if len(acts) != depth:
        raise ValueError(f"activations has {len(acts)} entries but the architecture has {depth} layers")
    names = []
    for a in acts:
        act = hg.get_activation(a)
        if act.name not in hg.activation_names() or hg.get_activation(act.name) is not act:
            raise ValueError(f"activation {act.name!r} is not registered; call handgrad.register_activation first")
        names.append(act.name)
    return tuple(names)


CASES_PER_EXAMPLE = 5
"""How many random cases one hypothesis example draws (:meth:`_Runner.random`). Five: the engine's
cost of an example (about 1 ms) is then a fifth of a millisecond a case, and shrinking a failure
found late in an example (hypothesis also simplifies the cases drawn before it, for free but for
their draws) costs at most about 1.7x what it cost with one case an example (with ten: 2-4x)."""


def _run_seed(seed: int, index: int) -> int:
    """The hypothesis seed of the ``index``-th run of the random draws: ``seed`` itself first (a
    further run only draws cases redraws left owed)."""
    return seed if index == 0 else (seed * 1_000_033 + index * 65_537) % 2**32


QUORUM = 0.8
"""The fraction of the examples asked for that must be decided (certified) for a certificate."""
TRAP_ATTEMPTS = 4
"""How many times a trap whose case was undecided is redrawn (another seed) before it counts as
undecided."""


def certify_backward(
    backward: Backward,
    sizes: Sequence[int] | hg.Network,
    activations: str | hg.Activation | Sequence[str | hg.Activation] | None = None,
    loss: str | hg.Loss | None = None,
    *,
    fuse: bool | None = None,
    dtype: str | type = "float64",
    examples: int = 30,
    min_batch: int = 1,
    max_batch: int = 33,
    vary_shapes: bool = False,
    max_width: int = 17,
    scales: Sequence[str] = tuple(SCALES),
    labels: str | Sequence[str] | None = None,
    oracles: Sequence[str] = ORACLES,
    seed: int = 0,
    policy: TolerancePolicy = DEFAULT_POLICY,
    quorum: float = QUORUM,
    nondeterminism_tolerance: float = 0.0,
    raise_on_failure: bool = True,
    progress: Callable[[int, int], None] | None = None,
    subject: str | None = None,
    conventions: Any = None,
    method: str | None = None,
    expect_long: bool = False,
) -> Certificate:
    r"""Certify ``backward(params, X, Y) -> grads`` for an architecture over trap and drawn cases.

    First the traps (:mod:`handgrad.reference.cases.traps`: m = 1, 2, every layer width, 9, 11,
    17, 33; duplicated samples; exact zeros in X; X at 0.1 and 10; a kink met exactly in every
    kinked layer; square layers with ``vary_shapes``), each redrawn up to :data:`TRAP_ATTEMPTS`
    times until decided; then ``examples`` hypothesis-drawn cases
    (:func:`~handgrad.reference.cases.strategies.design_specs`, :data:`CASES_PER_EXAMPLE` to a
    hypothesis example), an undecided one or a repeat redrawn (at most ``examples`` redraws).
    Each case is refereed elementwise, on the scale path above
    :data:`~handgrad.reference.judge.scale.SCALE_MIN_PARAMS` parameters, or, outside the float64
    oracles' domain, against the mpmath oracle (:mod:`handgrad.reference.judge.outside`; counted
    "outside" when even that cannot decide it). The certificate is refused (NOT CERTIFIED, with
    the reason) when fewer than ``quorum`` of the examples asked for were decided, when a
    requested scale or label family got no decided case, or when a trap got none; and before
    anything is drawn when no case can be (a softmax over one output unit under an unfused
    probability loss: every prediction is exactly 1).

    Args:
      backward: the function under test. ``params`` is a dict ``W1, B1, ...`` (``W{l}`` shape
        ``(n_l, n_{l-1})``, ``B{l}`` shape ``(n_l, 1)``), ``X`` has shape ``(n0, m)``, ``Y`` shape
        ``(nL, m)``; it returns a dict with the same keys and shapes: the gradients of the mean loss.
        It is called twice per case on fresh copies, ``np.random`` seeded from the case seed.
      sizes, activations, loss, fuse: the architecture, as for :class:`handgrad.Network`
        (defaults ``"sigmoid"``, ``"squared_error"``, ``fuse=True``); or ``sizes`` a
        :class:`handgrad.Network`, whose activations, loss and fuse are then taken (and not given
        again): ``certify_backward(net.backward, net)``. An :class:`~handgrad.Activation` or
        :class:`~handgrad.Loss` object that is not registered is certified as given: it is
        registered for the duration of the call (the case design names activations and losses)
        and unregistered after, also when the call fails; a *different* object registered under
        the same name is a ``ValueError``.
      dtype: ``"float64"`` or ``"float32"`` (the budget is derived for it).
      examples: how many random cases hypothesis draws (derandomized by ``seed``), beyond the traps.
      min_batch, max_batch: the batch sizes m drawn (traps outside the range are left out).
      vary_shapes: also draw the hidden widths (1..``max_width``); the depth, input and output
        widths stay as given. Use it when your backward is written for any width.
      scales: weight scales to draw from (:data:`handgrad.reference.cases.spec.SCALES`).
      labels: the label families your code accepts (:data:`handgrad.reference.cases.spec.LABEL_KINDS`
        for the loss, e.g. ``"onehot"`` for code written for one-hot labels); default every family
        the loss's definition admits.
      oracles: the references, at least two of ``"sympy"``, ``"jax"``, ``"fd"`` (the oracle table,
        :mod:`handgrad.reference.oracles.table`); checked before anything is drawn.
      seed: hypothesis seed; the same seed replays the same cases.
      quorum: the fraction of ``examples`` that must be decided.
      nondeterminism_tolerance: how far two calls on the same input may differ (relative; 0:
        bitwise equal).
      raise_on_failure: raise :class:`CertificationError` with the shrunk failing case's report.
      progress: called as ``progress(done, total)`` after each case. A run estimated at
        :data:`BATCH_MAX_SECONDS` or less is decided in batches (the same certificate as case by
        case; docs/benchmarks.md) and reports its progress, still once per case, as each batch
        settles.
      conventions: a :class:`~handgrad.reference.judge.conventions.Conventions` declaring the
        user's code (layout, names, labels, reduction, 1/2, L2): ``backward`` (a function or a model
        object) is then called in those conventions, every oracle differentiates the declared loss,
        and messages speak the user's names (docs/users-code.md). ``method`` names the model's
        gradient method when none of the usual ones fits.
      expect_long: silence the long-run warning. Before the first case the run's time is estimated
        from the architecture, the traps' batch sizes and the case design's distribution of m
        (:func:`~handgrad.reference.judge.scale.estimate_run_seconds`, the reference machine's
        costs; with ``vary_shapes`` the given widths); above
        :data:`~handgrad.reference.judge.scale.LONG_RUN_SECONDS` a
        :class:`~handgrad.reference.judge.scale.LongRunWarning` states the estimate (and the run
        goes ahead). Under pytest's ``-W error`` the warning is an error: pass ``expect_long=True``
        for a run you mean to be long (docs/bench_scale.md).

    Warns:
      LongRunWarning: the run is estimated above a minute and ``expect_long`` is False.
    """
    sizes, activations, loss, fuse = _architecture_arguments(sizes, activations, loss, fuse)
    options = dict(fuse=fuse, dtype=dtype, examples=examples, min_batch=min_batch, max_batch=max_batch,
                   vary_shapes=vary_shapes, max_width=max_width, scales=scales, labels=labels, oracles=oracles,
                   seed=seed, policy=policy, quorum=quorum, nondeterminism_tolerance=nondeterminism_tolerance,
                   raise_on_failure=raise_on_failure, progress=progress, subject=subject, expect_long=expect_long)
    unregistered = _unregistered(activations, loss)
    if unregistered:
        with _registered_for_the_call(unregistered):
            return certify_backward(backward, sizes, activations, loss, conventions=conventions, method=method,
                                    **options)
    if conventions is not None:
        return _certify_in_conventions(backward, sizes, activations, loss, conventions, method, options)
    if not callable(backward):
        raise TypeError(f"backward must be callable as backward(params, X, Y), got {type(backward).__name__}")
    oracles = check_oracles(oracles)
    net = hg.Network(sizes, activations, loss, fuse=fuse)  # validates the architecture
    act_names = _names(activations, net.depth)
    _check_settings(dtype, examples, scales, min_batch, max_batch, max_width)
    kinds = _label_kinds(labels, net.loss)
    if not (isinstance(quorum, int | float) and 0 < quorum <= 1):
        raise ValueError(f"quorum must be a fraction in (0, 1], got {quorum!r}")
    if not (isinstance(nondeterminism_tolerance, int | float) and nondeterminism_tolerance >= 0):
        raise ValueError(f"nondeterminism_tolerance must be a number >= 0, got {nondeterminism_tolerance!r}")
    dt = str(np.dtype(dtype))
    name = subject or getattr(backward, "__qualname__", None) or type(backward).__name__
    call = (f"certify_backward({name}, {tuple(net.sizes)}, {act_names}, {net.loss.name!r}, fuse={fuse}, "
            f"dtype={dt!r}, examples={examples}, min_batch={min_batch}, max_batch={max_batch}, "
            f"vary_shapes={vary_shapes}, scales={tuple(scales)}, labels={labels!r}, oracles={tuple(oracles)}, "
            f"seed={seed})")
    arch = Architecture(net.sizes, act_names, net.loss.name, fuse)
    start = time.perf_counter()
    square = arch._replace(sizes=(arch.sizes[0],) * (len(arch.sizes) - 1) + (arch.sizes[-1],)) if (
        vary_shapes and len(arch.sizes) > 2) else None
    traps = trap_specs(arch, seed=seed, scales=tuple(scales), labels=kinds, min_batch=min_batch,
                       max_batch=max_batch, square=square)
    undecidable = _no_case_decidable(net)
    if undecidable:  # refused before anything is drawn (every case would be outside the domain)
        cert = Certificate(name, net.describe(), dt, tuple(oracles), call=call, seed=seed, requested=examples,
                           quorum=float(quorum), refusals=[undecidable])
        cert.seconds = time.perf_counter() - start
        if raise_on_failure:
            raise CertificationError(cert)
        return cert
    if not expect_long:
        _warn_if_long(arch, traps, examples, min_batch, max_batch, oracles)

    def run(runner_class: type[_Runner]) -> Certificate:
        cert = Certificate(name, net.describe(), dt, tuple(oracles), call=call, seed=seed, requested=examples,
                           quorum=float(quorum))
        runner = runner_class(backward, cert, dt, oracles, policy, nondeterminism_tolerance, progress)
        runner.total = len(traps) + examples
        # np.random's global state saved once for the run, not twice a case (the backward's calls
        # are seeded as ever; the caller finds the state it left).
        with random_state_held():
            try:
                for i, spec in enumerate(traps):
                    runner.trap(spec, i, seed)
                if isinstance(runner, _BatchedRunner):
                    runner.settle()  # the last traps, before anything is drawn: a bug there costs no draws
                runner.random(arch, max_width if vary_shapes else None, examples, min_batch, max_batch, scales,
                              kinds, seed)
                if isinstance(runner, _BatchedRunner):
                    runner.settle()
            except _Failed as exc:
                cert.failure = exc.report
        return cert

    # Batches for a short run; case by case for a long one (progress per case) and whenever the
    # batched runner meets a case that is not certified (the same seed, the same draws).
    cert = None
    if _run_estimate(arch, traps, examples, min_batch, max_batch, oracles) <= BATCH_MAX_SECONDS:
        with contextlib.suppress(_Abandon):
            cert = run(_BatchedRunner)
    if cert is None:
        cert = run(_Runner)
    cert.seconds = time.perf_counter() - start
    if cert.failure is None:
        _refusals(cert, examples, quorum, scales)
        _constant_output_refusal(cert, net)
    if raise_on_failure and not cert.ok:
        cause = cert.failure.exception if cert.failure is not None else None
        raise CertificationError(cert) from cause
    return cert


_FAMILIES_OF_DECLARED_LABELS = {"soft": ("soft",), "onehot": ("onehot",), "integer": ("onehot",),
                                "binary": ("hard",), "distribution": ("onehot", "soft", "hard")}
"""The case design's label families for each label kind a user may declare (real targets: all),
intersected with the loss's own families. ``"distribution"`` (the default) is every normalized
family: one-hot and soft for the cross entropies, exact 0/1 and soft for BCE (a Bernoulli
target is a distribution over {0, 1}); only the cross entropies' unnormalized labels are left out."""


def _certify_in_conventions(backward: Any, sizes: Sequence[int], activations: Any, loss: str | hg.Loss,
                            conventions: Any, method: str | None, options: dict[str, Any]) -> Certificate:
    """``certify_backward`` for code in the user's conventions: the declared loss is registered for
    the call (the case design names losses), the user's code is wrapped into the article's layout
    by exact transposes and reshapes, and only the label families the user declared are drawn."""
    from .conventions import Conventions, check_oracles_support, declared_loss, registered_loss, wrap_backward

    if not isinstance(conventions, Conventions):
        raise TypeError(f"conventions must be a Conventions, got {type(conventions).__name__}")
    oracles = check_oracles(options["oracles"])
    decl = declared_loss(loss, conventions, hg.Network(sizes, activations, loss).sizes[-1])
    check_oracles_support(decl, oracles)
    if options["labels"] is None and decl.target_kind != "real":
        allowed = label_kinds(decl)
        options["labels"] = tuple(k for k in _FAMILIES_OF_DECLARED_LABELS.get(conventions.labels, allowed)
                                  if k in allowed) or None
    raise_on_failure = options.pop("raise_on_failure")
    with registered_loss(decl):
        net = hg.Network(sizes, activations, decl, fuse=options["fuse"])
        wrapped = wrap_backward(backward, conventions, net, method=method)
        subject = options.pop("subject") or getattr(backward, "__qualname__", None) or type(backward).__name__
        cert = certify_backward(wrapped, sizes, activations, decl, subject=subject, raise_on_failure=False,
                                **options)
    if cert.failure is not None and decl.name != getattr(loss, "name", loss):
        base = getattr(loss, "name", loss)
        cert.failure.notes.append(
            f"to rebuild this case, register the declared loss {decl.name!r} again (it exists only during "
            f"certify_backward): with registered_loss(declared_loss({base!r}, conventions, {net.sizes[-1]})): "
            "build_case(...) as below, then referee(net, params, X, Y, wrap_backward(your_code, conventions, net)) "
            "(from handgrad.reference.judge.conventions; docs/certify-your-backward.md section 6)")
    if raise_on_failure and not cert.ok:
        cause = cert.failure.exception if cert.failure is not None else None
        raise CertificationError(cert) from cause
    return cert


def _architecture_arguments(sizes: Any, activations: Any, loss: Any,
                            fuse: bool | None) -> tuple[tuple[int, ...] | Any, Any, Any, bool]:
    """``(sizes, activations, loss, fuse)`` with the defaults filled in, or read from a
    :class:`handgrad.Network` given as ``sizes`` (then none of the others may be given)."""
    if isinstance(sizes, hg.Network):
        given = [n for n, v in (("activations", activations), ("loss", loss), ("fuse", fuse)) if v is not None]
        if given:
            raise ValueError(f"sizes is a handgrad.Network, which already fixes its activations, loss and fuse; "
                             f"do not give {' and '.join(given)} as well")
        return tuple(sizes.sizes), list(sizes.activations), sizes.loss, sizes.fuse
    return (sizes, "sigmoid" if activations is None else activations,
            "squared_error" if loss is None else loss, True if fuse is None else fuse)


def _unregistered(activations: Any, loss: Any) -> list[hg.Activation | hg.Loss]:
    """The Activation and Loss objects among the arguments that are not registered under their
    name (each once); a different object registered under the same name is a ``ValueError``."""
    acts = [activations] if isinstance(activations, str | hg.Activation) else list(activations)
    found: list[hg.Activation | hg.Loss] = []
    for obj, names, get, kind in ([(a, hg.activation_names, hg.get_activation, "activation") for a in acts]
                                  + [(loss, hg.loss_names, hg.get_loss, "loss")]):
        if isinstance(obj, str) or any(obj is f for f in found):
            continue
        if not isinstance(obj, hg.Activation | hg.Loss):
            continue  # the architecture's own validation names the argument
        if obj.name in names():
            if get(obj.name) is not obj:
                raise ValueError(f"another {kind} named {obj.name!r} is registered; give the registered one, "
                                 f"its name, or your {kind} under another name")
            continue
        found.append(obj)
    return found


@contextmanager
def _registered_for_the_call(objects: Sequence[hg.Activation | hg.Loss]) -> Iterator[None]:
    """Register ``objects`` (activations and losses) for a ``with`` block, unregister them after
    (also on an exception), leaving the registries as they were."""
    done: list[hg.Activation | hg.Loss] = []
    try:
        for obj in objects:
            if isinstance(obj, hg.Activation):
                hg.register_activation(obj)
            else:
                hg.register_loss(obj)
            done.append(obj)
        yield
    finally:
        for obj in reversed(done):
            if isinstance(obj, hg.Activation):
                hg.unregister_activation(obj.name)
            else:
                hg.unregister_loss(obj.name)


def _run_estimate(arch: Architecture, traps: Sequence[CaseSpec], examples: int, min_batch: int, max_batch: int,
                  oracles: Sequence[str]) -> float:
    """Seconds the run should take on the reference machine: the traps at their batch sizes, the
    random draws at the case design's distribution of m, the oracles' one-time costs."""
    from ..cases.strategies import batch_size_distribution
    from .scale import estimate_run_seconds

    batches: dict[int, float] = {}
    for spec in traps:
        batches[spec.m] = batches.get(spec.m, 0.0) + 1.0
    for m, p in batch_size_distribution(arch.sizes, min_batch=min_batch, max_batch=max_batch).items():
        batches[m] = batches.get(m, 0.0) + p * examples
    return estimate_run_seconds(arch.sizes, batches, oracles)


def _warn_if_long(arch: Architecture, traps: Sequence[CaseSpec], examples: int, min_batch: int, max_batch: int,
                  oracles: Sequence[str]) -> None:
    """A :class:`LongRunWarning` when the run is estimated above ``LONG_RUN_SECONDS``."""
    from .scale import LONG_RUN_SECONDS, LongRunWarning

    seconds = _run_estimate(arch, traps, examples, min_batch, max_batch, oracles)
    if seconds <= LONG_RUN_SECONDS:
        return
    cases = len(traps) + examples
    warnings.warn(f"certifying {'-'.join(map(str, arch.sizes))} over {cases} cases ({len(traps)} traps and "
                  f"{examples} examples, batch up to {max_batch}) is estimated at {seconds:.0f} s on the reference "
                  f"machine (more than {LONG_RUN_SECONDS:.0f} s); pass expect_long=True to silence this warning, "
                  "or lower examples= or max_batch=", LongRunWarning, stacklevel=_outside_this_module())


def _outside_this_module() -> int:
    """The ``stacklevel`` of the first caller outside this module (``certify_backward`` may have
    called itself, through ``certify_network`` or the conventions), for a warning that points at
    the user's line."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    return level


def _label_kinds(labels: str | Sequence[str] | None, loss: hg.Loss) -> tuple[str, ...]:
    """The declared label families (default: every family the loss admits), checked against the loss."""
    allowed = label_kinds(loss)
    if labels is None:
        return allowed
    kinds = (labels,) if isinstance(labels, str) else tuple(labels)
    if not kinds:
        raise ValueError("labels must name at least one label family")
    for k in kinds:
        if k not in allowed:
            raise ValueError(f"labels {k!r} do not fit loss {loss.name!r}; choose from {list(allowed)}")
    return kinds


def _refusals(cert: Certificate, examples: int, quorum: float, scales: Sequence[str]) -> None:
    """Why a certificate without a failing case still certifies nothing (``cert.refusals``)."""
    need = math.ceil(quorum * examples)
    got = cert.random_decided
    if got < need:
        cert.refusals.append(f"only {got} of the {examples} random examples asked for were decided; "
                             f"a certificate needs {need} ({quorum:.0%})")
    for s in scales:
        row = cert.per_scale.get(s, {})
        if not row.get("decided"):
            cert.refusals.append(f"scale {s!r} was requested but no case at it was decided "
                                 f"({row.get('inconclusive', 0)} inconclusive, {row.get('outside', 0)} outside "
                                 "the oracles' domain)")
    for t, v in cert.traps.items():
        if v != "certified":
            cert.refusals.append(f"the trap '{t}' got no decided case ({v})")


def _no_case_decidable(net: hg.Network) -> str:
    """Why no case of ``net`` can be decided, known before any is drawn (empty when none is
    known): the built-in softmax over one output unit makes every prediction exactly 1
    (:math:`e^{z}/e^{z}`), which no case of an unfused probability loss may take (outside every
    oracle's domain: each case was drawn, redrawn and sent to the mpmath oracle in vain, about
    25 s for the default 30 examples)."""
    if (net.sizes[-1] == 1 and net.activations[-1].definition is _BUILTIN_SOFTMAX
            and net.fused_rule is None and net.loss.prediction_range == (0.0, 1.0)):
        return _constant_output_sentence(net)
    return ""


def _constant_output_sentence(net: hg.Network) -> str:
    return (f"the output is a {net.activations[-1].name} over one unit: every prediction is exactly 1, "
            f"outside the oracles' domain for {net.loss.name!r}, so no case can be decided "
            "(for one output, a sigmoid is the probability of a class)")


def _constant_output_refusal(cert: Certificate, net: hg.Network) -> None:
    """The cause, first, when nothing could be decided because the output is a vector-valued
    activation (softmax) over one unit: its prediction is exactly 1 on every input, which no case of
    an unfused probability loss can take (outside every oracle's domain), and its derivative is 0."""
    last = net.activations[-1]
    if not cert.refusals or cert.certified or last.elementwise or net.sizes[-1] != 1:
        return
    cert.refusals.insert(0, _constant_output_sentence(net))


_BUILTIN_SOFTMAX = hg.activations.softmax.definition


class _Runner:
    """Runs cases for one certificate: builds, domain-checks, referees, tallies, stops on a failure."""

    def __init__(self, backward: Backward, cert: Certificate, dt: str, oracles: Sequence[str],
                 policy: TolerancePolicy, tol: float, progress: Callable[[int, int], None] | None) -> None:
        self.backward, self.cert, self.dt, self.oracles = backward, cert, dt, tuple(oracles)
        self.policy, self.tol, self.progress = policy, tol, progress
        self.total, self.done = 0, 0
        self.first_failure: Report | None = None
        cert.random_decided = 0

    def run(self, spec: CaseSpec) -> str:
        """One case: its outcome (``certified``, ``inconclusive``, ``outside``, or a failure
        verdict, in which case the report is kept as the first failure)."""
        case_net, params, X, Y = build_case(spec, self.dt, filter_domain=False)
        if in_domain(case_net, params, X):
            report = self._referee(case_net, params, X, Y, spec)
        else:
            outside = self._outside(case_net, params, X, Y, spec)
            if outside is None:
                self.cert.tally(spec.scale, "outside")
                return "outside"
            report = outside
        return self._record(spec, report)

    def _record(self, spec: CaseSpec, report: Report) -> str:
        """Count a decided case in the certificate (or keep it as the first failure); its outcome."""
        report.seed = spec.seed
        if report.verdict in ("mismatch", "error"):
            if spec.trap:
                report.notes.insert(0, f"trap: {spec.trap}, scale {spec.scale}, labels {spec.labels}")
            if self.first_failure is None:
                self.first_failure = report
            return report.verdict
        self.cert.add(report)
        self.cert.tally(spec.scale, report.verdict, shape="-".join(map(str, spec.sizes)), m=spec.m,
                        labels=spec.labels)
        self.done += 1
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)
        return report.verdict

    def trap(self, spec: CaseSpec, index: int, seed: int) -> None:
        outcome = "not run"
        for attempt in range(TRAP_ATTEMPTS):
            outcome = self.run(spec._replace(seed=trap_seed(seed, index, attempt)) if attempt else spec)
            if outcome in ("mismatch", "error"):
                self.cert.traps[spec.trap] = outcome
                self.cert.cases += 1
                raise _Failed(self.first_failure)  # type: ignore[arg-type]
            if outcome == "certified":
                break
        self.cert.traps[spec.trap] = outcome if outcome != "outside" else "outside the domain"

    def random(self, arch: Architecture, max_width: int | None, examples: int, min_batch: int, max_batch: int,
               scales: Sequence[str], kinds: Sequence[str], seed: int) -> None:
        """``examples`` hypothesis-drawn cases, :data:`CASES_PER_EXAMPLE` to a hypothesis example
        (``st.data()``): hypothesis's engine costs about 1 ms an example whatever it draws, as much
        as deciding a small case, and its mutations of earlier examples made a third of one-case
        examples exact repeats. An undecided case and an exact repeat of a spec already run (two
        choice sequences can build one spec) are redrawn, at most ``examples`` times in all; after
        that they count as drawn. Every example draws its full count of specs (hypothesis requires
        the draws to follow from the choices alone); specs drawn after the last case owed are not
        run. When redraws leave cases owed at the end, another hypothesis run draws them, with the
        seed :func:`_run_seed` of the next index.

        A failure is shrunk by hypothesis as before: a replay decides only the spec drawn at the
        failure's position in its example (the specs drawn before it decide nothing about it, so
        hypothesis may simplify them for free), and hypothesis simplifies that spec's choices. A
        failure hypothesis cannot replay (a nondeterministic backward) is reported as it was first
        seen."""
        from ..cases.strategies import design_specs

        spec_st = design_specs(_architectures(arch, max_width), min_batch=min_batch, max_batch=max_batch,
                               scales=tuple(scales), labels=("mixed", *kinds) if len(kinds) > 1 else kinds)
        state = {"owed": examples, "redraws": 0}
        seen: set[CaseSpec] = set()
        index = 0
        while state["owed"] > 0:
            before = (state["owed"], state["redraws"])
            # + 1: hypothesis's first example draws every choice at its simplest, so one spec
            self._hypothesis_run(spec_st, math.ceil(state["owed"] / CASES_PER_EXAMPLE) + 1, _run_seed(seed, index),
                                 state, examples, seen)
            index += 1
            if (state["owed"], state["redraws"]) == before:  # hypothesis drew nothing new: its space is spent
                break

    def _hypothesis_run(self, spec_st: Any, n_examples: int, seed: int, state: dict[str, int], examples: int,
                        seen: set[CaseSpec]) -> None:
        """One hypothesis run of ``n_examples`` examples for :meth:`random`."""
        from hypothesis import HealthCheck, Phase, Verbosity, given, settings
        from hypothesis import seed as hypothesis_seed
        from hypothesis import strategies as st
        from hypothesis.errors import Flaky

        failing: list[int] = []  # the position of the first failure in its example, once there is one

        @settings(max_examples=n_examples, deadline=None, database=None, derandomize=False,
                  verbosity=Verbosity.quiet, print_blob=False,
                  # No "explain" phase: it re-runs the shrunk case dozens of times to annotate lines
                  # of *our* code; the report already localizes the failure.
                  phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.large_base_example])
        @hypothesis_seed(seed)
        @given(data=st.data())
        def run(data: Any) -> None:
            mine: set[CaseSpec] = set()
            for position in range(CASES_PER_EXAMPLE):
                spec = data.draw(spec_st)
                if failing:  # shrinking: replays are not new cases, nothing is counted
                    if position == failing[0]:
                        self._replay(spec)  # the failing case's own draw, as hypothesis simplifies it
                    continue  # the cases drawn before it decide nothing about the failure
                if state["owed"] == 0 or spec in mine:
                    # drawn because every example draws alike, or again in this example (as in
                    # hypothesis's first example, every draw at its simplest): nothing owed
                    continue
                mine.add(spec)
                if spec in seen:
                    outcome = "repeat"
                else:
                    seen.add(spec)
                    outcome = self.run(spec)
                    if outcome in ("mismatch", "error"):
                        failing.append(position)
                        self.cert.cases += 1
                        _fail(self.first_failure)  # type: ignore[arg-type]
                    if outcome == "certified":
                        self.cert.random_decided += 1
                if outcome != "certified" and state["redraws"] < examples:
                    state["redraws"] += 1
                    continue
                state["owed"] -= 1

        # Hypothesis hashes the test function's source (inspect.getsource, tokenized) for its
        # database key on every run, about 0.1 ms a case on the article's net; there is no database
        # (database=None), and the draws come from the seed, not the key: give it none.
        run._hypothesis_internal_database_key = None  # type: ignore[attr-defined]
        try:
            run()
        except Flaky:
            report = self.first_failure
            assert report is not None
            report.notes.append("hypothesis could not replay this failure: the backward gave different "
                                "results on the same input (nondeterministic backward)")
            raise _Failed(report) from None
        except BaseExceptionGroup as group:
            # hypothesis reports several distinct failures as a group; one that could not be
            # replayed (a backward that is wrong now and then) comes as a FlakyFailure inside it.
            # Either way the first failure seen is the report, never a raw exception group.
            report = self.first_failure
            if report is None:
                raise
            if group.subgroup(Flaky) is not None:
                report.notes.append("hypothesis could not replay every failure: the backward gave different "
                                    "results on the same input (nondeterministic backward)")
            raise _Failed(report) from None

    def _replay(self, spec: CaseSpec) -> None:
        """A shrink step: referee ``spec`` and raise if it fails, without counting it (a case
        outside every oracle's domain decides nothing and passes, as when it was first drawn)."""
        case_net, params, X, Y = build_case(spec, self.dt, filter_domain=False)
        report = (self._referee(case_net, params, X, Y, spec) if in_domain(case_net, params, X)
                  else self._outside(case_net, params, X, Y, spec))
        if report is None:
            return
        report.seed = spec.seed
        if report.verdict in ("mismatch", "error"):
            _fail(report)

    def _outside(self, net: hg.Network, params: hg.Params, X: np.ndarray, Y: np.ndarray,
                 spec: CaseSpec) -> Report | None:
        """A case outside the float64 oracles' domain, decided against the mpmath oracle with the
        budget of docs/tolerances.md section 13 (:func:`~handgrad.reference.judge.outside.referee_outside`);
        None (counted "outside") when it is inside float64's domain but not the hand dtype's, or
        when the mpmath oracle or the budget cannot decide it (more than 200 parameters, a
        prediction a correct forward may round onto 0 or 1, ...)."""
        from ..oracles.mp_oracle import float64_domain
        from .outside import referee_outside

        if float64_domain(net, params, X):
            return None
        report = referee_outside(net, params, X, Y, self.backward, policy=self.policy,
                                 reproduce=spec.reproduce(self.dt), seed=spec.numpy_seed,
                                 nondeterminism_tolerance=self.tol)
        return None if report.verdict == "inconclusive" else report

    def _referee(self, net: hg.Network, params: hg.Params, X: np.ndarray, Y: np.ndarray, spec: CaseSpec) -> Report:
        """The elementwise referee, or above :data:`~handgrad.reference.judge.scale.SCALE_MIN_PARAMS`
        parameters (with JAX and finite differences among the oracles) the scale path, whose
        guarantee per element is written in docs/tolerances.md section 7. Both call the backward
        the same way (the referee's call phase: twice, ``np.random`` seeded, in-place changes noted)."""
        from .scale import scale_referee

        if net.n_params > SCALE_MIN_PARAMS and {"jax", "fd"} <= set(self.oracles):
            return scale_referee(net, params, X, Y, self.backward, policy=self.policy, seed=spec.numpy_seed,
                                 reproduce=spec.reproduce(self.dt), nondeterminism_tolerance=self.tol)
        # JAX from the stacked executable, as in the batched pass: the same bits either way (a
        # larger net, decided here when the oracles lack JAX or FD, asks the one-case executable).
        stacked = "jax" in self.oracles and _jax_stacked(net)
        references = {"jax": _jax_many(net, [(params, X, Y)])[0]} if stacked else None
        return referee(net, params, X, Y, self.backward, oracles=self.oracles, policy=self.policy,
                       reproduce=spec.reproduce(self.dt), seed=spec.numpy_seed, nondeterminism_tolerance=self.tol,
                       references=references)


class _Abandon(Exception):
    """A speculative pass met a case that was not certified: the run is redone case by case."""


BATCH_MAX_SECONDS = 10.0
"""Runs estimated above this many seconds on the reference machine (:func:`_run_estimate`, one-time
compile costs included: 3.3 s for the article's net, whose warm run takes 0.3 s) are decided case by
case, with progress per case; shorter ones in batches (:class:`_BatchedRunner`), whose progress
comes as each batch settles."""


class _BatchedRunner(_Runner):
    """The same run, decided in batches (issue 12: throughput on small networks).

    Every case is speculative: a case in the oracles' domain is taken as certified when it is
    built (a trap is then not redrawn, and hypothesis draws exactly what the case-by-case runner
    draws after a certified case: it redraws only after an undecided one). :meth:`settle` decides
    the first trap alone, then the other traps together, then the random draws together after the
    last one: a bug at a trap, where most bugs show, costs no random draws, and a bug at the first
    trap no other case. (The traps were settled in batches of 1, 2, 4, ... until each batch's
    fixed cost -- the finite differences' definitions, a JAX stack, a budget group per batch size
    -- was the larger share: two settles fewer make a certified run of the article's net 3-5%
    cheaper, and a bug at a later trap costs the ten or so traps' references, tens of
    milliseconds, before the case-by-case run.) It computes the finite
    differences and the SymPy closed forms of the pending cases side by side (``fd_grads_many``,
    ``sympy_grads_many``: every number bitwise the single-case one), referees each case with
    those references, and records the cases in the order they were built. If any case is not
    certified (a mismatch, an error, an inconclusive case), or a case outside the float64 domain
    fails, the whole run is abandoned (:class:`_Abandon`) and redone by :class:`_Runner` with the
    same seed, so that a failure is found, shrunk and reported exactly as without this pass."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[tuple[CaseSpec, Any]] = []  # (spec, the drawn case | a report | None: outside)
        self.abandoned = False
        self.trap_first = True  # the first trap is settled alone, the others together

    def run(self, spec: CaseSpec) -> str:
        outcome = self._speculate(spec)
        if spec.trap and self.trap_first:
            self.trap_first = False
            self.settle()
        return outcome

    def _speculate(self, spec: CaseSpec) -> str:
        if self.abandoned:  # the run will be redone: let hypothesis finish without work
            return "certified"
        case_net, params, X, Y = build_case(spec, self.dt, filter_domain=False)
        if in_domain(case_net, params, X):
            self.events.append((spec, (case_net, params, X, Y)))
            return "certified"
        outside = self._outside(case_net, params, X, Y, spec)
        if outside is not None and outside.verdict != "certified":
            self.abandoned = True
            return "certified"
        self.events.append((spec, outside))
        return "outside" if outside is None else "certified"

    def settle(self) -> None:
        """Decide the pending cases together and record them in order, or raise :class:`_Abandon`."""
        if self.abandoned:
            raise _Abandon
        events, self.events = self.events, []
        drawn = [(i, e) for i, (_, e) in enumerate(events) if isinstance(e, tuple)]
        references: dict[int, dict[str, object]] = {i: {} for i, _ in drawn}
        budgets: dict[int, Budget] = {}
        groups: dict[Any, list[int]] = {}
        for i, (case_net, *_) in drawn:
            groups.setdefault((case_net.sizes, tuple(a.name for a in case_net.activations), case_net.loss.name,
                               case_net.fuse), []).append(i)
        try:
            for members in groups.values():
                net = events[members[0]][1][0]
                cases = [events[i][1][1:] for i in members]
                if net.n_params > SCALE_MIN_PARAMS:
                    continue  # the scale path decides these, case by case
                for name, many in (("fd", _fd_many), ("sympy", _sympy_many), ("jax", _jax_many)):
                    if name in self.oracles and (name != "jax" or _jax_stacked(net)):
                        for i, result in zip(members, many(net, cases), strict=True):
                            references[i][name] = result
                for i, budget in zip(members, error_budgets(net, cases, self.policy), strict=True):
                    budgets[i] = budget
            reports: dict[int, Report] = {}
            for i, (case_net, params, X, Y) in drawn:
                spec = events[i][0]
                report = (self._referee(case_net, params, X, Y, spec) if case_net.n_params > SCALE_MIN_PARAMS
                          else referee(case_net, params, X, Y, self.backward, oracles=self.oracles,
                                       policy=self.policy, reproduce=spec.reproduce(self.dt), seed=spec.numpy_seed,
                                       nondeterminism_tolerance=self.tol, references=references[i],
                                       budget=budgets.get(i)))
                if report.verdict != "certified":
                    raise _Abandon
                reports[i] = report
        except _Abandon:
            raise
        except Exception as exc:  # anything unexpected: the case-by-case run meets it in its place
            raise _Abandon from exc
        for i, (spec, event) in enumerate(events):
            if event is None:
                self.cert.tally(spec.scale, "outside")
            else:
                self._record(spec, reports[i] if i in reports else event)


def _fd_many(net: hg.Network, cases: Sequence[Any]) -> list[Any]:
    from ..oracles.finite_diff import fd_grads_many

    return fd_grads_many(net, cases)


def _jax_stacked(net: hg.Network) -> bool:
    """Whether the runners ask JAX's stacked executable for ``net`` (both runners alike)."""
    from ..oracles.jax_oracle import SMALL_NET_PARAMS

    return net.n_params <= SMALL_NET_PARAMS


def _jax_many(net: hg.Network, cases: Sequence[Any]) -> list[Any]:
    """JAX's gradients of each case, or the error declining it, from the stacked executable
    (:func:`_jax_stacked` nets), whose bits do not depend on the batch."""
    from ..oracles.jax_oracle import jax_grads_many

    return jax_grads_many(net, cases)


def _sympy_many(net: hg.Network, cases: Sequence[Any]) -> list[Any]:
    from ..oracles.sympy_oracle import sympy_grads_many

    return sympy_grads_many(net, cases)


def _check_settings(dtype: Any, examples: int, scales: Sequence[str], min_batch: int, max_batch: int,
                    max_width: int) -> None:
    """certify_backward's drawing settings, checked before anything is drawn."""
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    check_positive_int("examples", examples)
    for s in scales:
        if s not in SCALES:
            raise ValueError(f"unknown scale {s!r}; choose from {list(SCALES)}")
    check_positive_int("min_batch", min_batch)
    check_positive_int("max_batch", max_batch, minimum=min_batch)
    check_positive_int("max_width", max_width)


def _architectures(arch: Architecture, max_width: int | None) -> Any:
    """A strategy: ``arch`` itself, or (``max_width`` given) ``arch`` with its hidden widths drawn
    from 1..``max_width``, input and output widths kept."""
    from hypothesis import strategies as st

    if max_width is None:
        return st.just(arch)
    hidden = st.tuples(*[st.integers(1, max_width) for _ in range(len(arch.sizes) - 2)])
    return hidden.map(lambda h: arch._replace(sizes=(arch.sizes[0], *h, arch.sizes[-1])))


def certify_network(net: hg.Network, **kwargs: Any) -> Certificate:
    """Certify handgrad's own backward for ``net``'s architecture (``net.backward``)."""
    return certify_backward(net.backward, net, subject=kwargs.pop("subject", "handgrad backward"), **kwargs)
