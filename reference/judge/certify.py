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

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import handgrad as hg
from handgrad.validation import check_positive_int

from ..cases.architecture import Architecture
from ..cases.spec import SCALES, CaseSpec, build_case
from ..oracles.table import ORACLES, check_oracles
from .referee import Backward, referee
from .reports import Certificate, Report
from .tolerance import DEFAULT_POLICY, TolerancePolicy

__all__ = ["Certificate", "CertificationError", "certify_backward", "certify_network"]


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


def certify_backward(
    backward: Backward,
    sizes: Sequence[int],
    activations: str | hg.Activation | Sequence[str | hg.Activation] = "sigmoid",
    loss: str | hg.Loss = "squared_error",
    *,
    fuse: bool = True,
    dtype: str | type = "float64",
    examples: int = 30,
    min_batch: int = 1,
    max_batch: int = 8,
    vary_shapes: bool = False,
    max_width: int = 8,
    scales: Sequence[str] = tuple(SCALES),
    oracles: Sequence[str] = ORACLES,
    seed: int = 0,
    policy: TolerancePolicy = DEFAULT_POLICY,
    raise_on_failure: bool = True,
    progress: Callable[[int, int], None] | None = None,
    subject: str | None = None,
) -> Certificate:
    r"""Certify ``backward(params, X, Y) -> grads`` for an architecture over drawn cases.

    Args:
      backward: the function under test. ``params`` is a dict ``W1, B1, ...`` (``W{l}`` shape
        ``(n_l, n_{l-1})``, ``B{l}`` shape ``(n_l, 1)``), ``X`` has shape ``(n0, m)``, ``Y`` shape
        ``(nL, m)``; it returns a dict with the same keys and shapes: the gradients of the mean loss.
      sizes, activations, loss, fuse: the architecture, as for :class:`handgrad.Network`.
      dtype: ``"float64"`` or ``"float32"`` (the budget is derived for it).
      examples: how many cases hypothesis draws (derandomized by ``seed``).
      min_batch, max_batch: the batch sizes m drawn.
      vary_shapes: also draw the hidden widths (1..``max_width``); the depth, input and output
        widths stay as given. Use it when your backward is written for any width.
      scales: weight scales to draw from (see :mod:`handgrad.reference.cases.strategies`), saturating included.
      oracles: the references, at least two of ``"sympy"``, ``"jax"``, ``"fd"`` (the oracle table,
        :mod:`handgrad.reference.oracles.table`); checked before anything is drawn.
      seed: hypothesis seed; the same seed replays the same cases.
      raise_on_failure: raise :class:`CertificationError` with the shrunk failing case's report.
      progress: called as ``progress(done, total)`` after each case.
    """
    if not callable(backward):
        raise TypeError(f"backward must be callable as backward(params, X, Y), got {type(backward).__name__}")
    oracles = check_oracles(oracles)
    net = hg.Network(sizes, activations, loss, fuse=fuse)  # validates the architecture
    act_names = _names(activations, net.depth)
    _check_settings(dtype, examples, scales, min_batch, max_batch, max_width)
    dt = str(np.dtype(dtype))
    name = subject or getattr(backward, "__qualname__", None) or type(backward).__name__
    call = (f"certify_backward({name}, {tuple(net.sizes)}, {act_names}, {net.loss.name!r}, fuse={fuse}, "
            f"dtype={dt!r}, examples={examples}, min_batch={min_batch}, max_batch={max_batch}, "
            f"vary_shapes={vary_shapes}, scales={tuple(scales)}, oracles={tuple(oracles)}, seed={seed})")
    cert = Certificate(name, net.describe(), dt, tuple(oracles), call=call, seed=seed)

    from hypothesis import HealthCheck, Phase, Verbosity, given, settings  # imported when certifying
    from hypothesis import seed as hypothesis_seed

    from ..cases.strategies import case_specs

    spec_st = case_specs(_architectures(Architecture(net.sizes, act_names, net.loss.name, fuse),
                                        max_width if vary_shapes else None),
                         min_batch=min_batch, max_batch=max_batch, scales=tuple(scales))
    done = [0]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              verbosity=Verbosity.quiet, print_blob=False,
              # No "explain" phase: it re-runs the shrunk case dozens of times to annotate lines
              # of *our* code; the report already localizes the failure.
              phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @hypothesis_seed(seed)
    @given(spec=spec_st)
    def run(spec: CaseSpec) -> None:
        case_net, params, X, Y = build_case(spec, dt)
        report = referee(case_net, params, X, Y, backward, oracles=oracles, policy=policy,
                         reproduce=spec.reproduce(dt))
        report.seed = spec.seed
        cert.add(report)
        done[0] += 1
        if progress is not None:
            progress(min(done[0], examples), examples)
        if report.verdict in ("mismatch", "error"):
            raise _Failed(report)

    start = time.perf_counter()
    try:
        run()
    except _Failed as exc:
        cert.failure = exc.report
    cert.seconds = time.perf_counter() - start
    if raise_on_failure and not cert.ok:
        raise CertificationError(cert)
    return cert


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
    acts = [a.name for a in net.activations]
    return certify_backward(net.backward, net.sizes, acts, net.loss.name, fuse=net.fuse,
                            subject=kwargs.pop("subject", "handgrad backward"), **kwargs)
