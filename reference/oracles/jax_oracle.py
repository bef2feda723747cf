r"""The JAX oracle: the network's forward pass in ``jax.numpy``, differentiated by ``jax.grad``.

Independence. The forward pass below is written from scratch against the shared definitions only:

.. math::
   z^{(l)} = W^{(l)} x^{(l)} + B^{(l)}, \quad x^{(l+1)} = f_l(z^{(l)}) \ \text{(``act.definition(z, ops)``)},
   \quad L = \frac1m \sum_{s=1}^m \ell(\hat y_s, y_s)

with :math:`\ell` the loss's ``definition`` on :math:`\hat y` (or, when ``net.fused_rule`` is set,
the fused rule's ``definition`` on the last logits :math:`z^{(L)}`), and ``ops`` the
``jax.numpy`` namespace of :func:`handgrad.reference.oracles.ops.jax_ops` (float64). ``jax.grad`` then gives
:math:`\partial L/\partial w_{ij}^{(l)}` and :math:`\partial L/\partial b_i^{(l)}`. Nothing of
handgrad's numpy forward, backward or hand-written derivatives is called; from the network the
oracle reads only metadata (``sizes``, each activation's ``definition``, the loss's ``definition``,
the fused rule's ``definition``, ``param_names``, and ``check_params`` to reject bad input).

Precision. The oracle is a reference: it always computes in float64, whatever the dtype of the
params (float32 inputs are copied to float64), and returns numpy float64 arrays.

Where JAX's conventions differ from handgrad's (and why this oracle still agrees):

* ``jax.nn.relu`` / ``jnp.maximum(z, 0)`` have derivative 1/2 at ``z = 0`` (JAX splits ties).
  The shared ReLU definition is ``where(z > 0, z, 0*z)``, whose JAX derivative at 0 is that of the
  untaken branch ``0*z``, i.e. 0: the left-branch kink convention handgrad uses (relu'(0) = 0,
  leaky_relu'(0) = slope, elu'(0) = alpha). A user definition written with ``jnp.maximum`` would
  not follow it; write kinks with ``ops.where(z > k, right, left)``.
* ``jnp.where`` differentiates *both* branches and multiplies the untaken one by 0. If the
  untaken branch overflows (``expm1(z)`` in ELU for z > ~709.78, ``exp(-z)`` in the sigmoid
  definition for z < -709.78) the gradient is ``0 * inf = nan``. handgrad's stable numpy forms do
  not overflow there, so the oracle cannot referee such points: it raises
  :class:`NonFiniteError` naming the tensor and the largest :math:`|z^{(l)}|` of each layer rather
  than returning NaN.
* JAX differentiates a quotient :math:`x/y` with :math:`y^{-2}` (``integer_pow(y, -2)``). In a
  definition that divides by exponentials (sigmoid :math:`1/(1+e^{-z})`, SiLU, softmax
  :math:`e^{z}/\sum e^{z}`) :math:`y^{-2}` underflows to 0 once :math:`e^{|z|}` passes
  :math:`\sqrt{\text{DBL\_MAX}}`, i.e. :math:`|z| > 354.89 - \ln n`, and the gradient silently
  loses terms, with no inf or NaN to show it (measured: unfused softmax + cross-entropy at logits
  (400, 200) gives :math:`\partial L/\partial b_1 = -0.5` instead of 0.5; unfused sigmoid + BCE
  at z = -400 gives 0 instead of -0.5). So, for every layer whose definition (found by tracing it
  once, :func:`quotient_of_exponentials`) both exponentiates and divides, and for such a loss
  head, the oracle checks the computed inputs and raises :class:`OracleRangeError` beyond
  :data:`EXP_SQUARE_LIMIT` :math:`- \ln n`. handgrad and the finite differences are fine there.

Compile cost and caching. ``jax.jit`` compiles once per architecture and input shape. A
property suite draws many batch sizes, so:

* :func:`get_jax_oracle` keeps one :class:`JaxOracle` per architecture key (sizes; each
  activation's name and definition; the loss's name and definition; the fused rule; ``fuse``),
  least recently used first out beyond :data:`CACHE_SIZE`;
* the batch size is bucketed: ``X`` and ``Y`` are padded to :math:`M = \max(M_0, 2^{\lceil\log_2
  m\rceil})` columns (:math:`M_0` = 64 for nets of at most :data:`SMALL_NET_PARAMS` parameters,
  8 above) by repeating real columns, and the per-sample losses are multiplied by a 0/1
  mask, :math:`L = \sum_s \text{mask}_s\,\ell_s / \sum_s \text{mask}_s`. Padded columns are
  copies of real samples, so they are finite wherever the real ones are, and contribute exactly
  0 to the loss and to every gradient (a 0 cotangent times finite partials). This relies on
  definitions acting column by column (as ``colsum`` does), which every definition of this
  project does: a sample never influences another sample's loss;
* one executable serves ``forward``, ``loss`` and ``grads`` (the forward values are an auxiliary
  output of the value-and-gradient function), so an architecture costs one compile per bucket;
* XLA's backend optimization level is 0 (:data:`COMPILER_OPTIONS`): less compile time for these
  small graphs, run time unchanged.

Measured compile and call times per architecture: ``docs/bench_jax_oracle.md``
(``scripts/bench_jax_oracle.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from handgrad import Network, Params
from handgrad.notation import element_name

from ..numerics import stack
from .cache import OracleCache, architecture_key
from .inputs import (
    NonFiniteError,
    OracleRangeError,
    as_float64,
    check_batch,
    check_network,
    first_nonfinite,
)
from .ops import import_jax, jax_ops

FOLLOWS_DECLARED_LOSS = True  # Note [Declared loss] (judge/conventions.py): reduction and penalty followed

__all__ = [
    "CACHE_SIZE",
    "COMPILER_OPTIONS",
    "MIN_BUCKET",
    "SMALL_NET_BUCKET",
    "SMALL_NET_PARAMS",
    "STACK",
    "JaxOracle",
    "EXP_SQUARE_LIMIT",
    "NonFiniteError",
    "OracleRangeError",
    "architecture_key",
    "bucket",
    "get_jax_oracle",
    "jax_grads",
    "jax_grads_many",
    "jax_grads_unchecked",
    "quotient_of_exponentials",
]

MIN_BUCKET = 8
"""Smallest padded batch width of a large net: every m <= 8 shares one compiled executable."""

SMALL_NET_PARAMS = 1_000
"""Nets with at most this many parameters (those the elementwise referee decides) pad every batch
to at least :data:`SMALL_NET_BUCKET` columns."""

SMALL_NET_BUCKET = 64
"""Smallest padded batch width of a small net: one executable for every m <= 64, where the case
design's traps (m = 1, 2, every width, 9, 11, 17, 33) used to compile four (8, 16, 32, 64). The
compiles were most of ``handgrad certify``'s CPU time (113 s of CPU with four buckets per
architecture, 49 s with one, measured side by side); a call on 64 columns instead of 8 costs the
same at these sizes (dispatch dominates). Padding repeats real samples under a zero mask, so the
result is the same function; only XLA's summation order may differ, which the budgets' rounding
model (any order) already covers."""

STACK = 8
"""Cases per call of the stacked executable (:meth:`JaxOracle.grads_many_unchecked`). Fixed, so
that a case's bits do not depend on how many cases were stacked with it. Measured on the
2-core machine (2-3-3-1, one BLAS thread): the one-case executable costs 0.42 ms a case; a stack
of 8 costs 0.65 ms a call, 0.10 ms a case when full; a stack of 16 costs 0.93 ms a call and
0.06 ms a case. A certification's batches are 1, 10 and 30 cases (the article's net), and the case-by-case
runner calls it one case at a time, so 8 keeps the one-case call close to the old cost."""

CACHE_SIZE = 128
"""How many architectures :func:`get_jax_oracle` keeps compiled."""

COMPILER_OPTIONS: Mapping[str, Any] = MappingProxyType({"xla_backend_optimization_level": 0})
"""XLA options for every executable. Backend optimization level 0 cuts the compile time of these
small graphs by ~40% (CPU time 0.13-0.29 s -> 0.08-0.18 s per architecture) and leaves their run
time within noise (~0.2 ms, dominated by dispatch). It changes no IEEE semantics (XLA's CPU fast
math is off by default either way), so the rounding model of the budgets is unchanged."""


EXP_SQUARE_LIMIT = 0.5 * math.log(float(np.finfo(np.float64).max))
r""":math:`\tfrac12\ln(\text{DBL\_MAX}) \approx 354.89`: beyond it :math:`(e^{z})^2` overflows and
:math:`(e^{z})^{-2}` underflows to 0."""

_EXPONENTIALS = frozenset({"exp", "expm1", "exp2"})
_RECIPROCALS = frozenset({"div", "integer_pow", "pow", "rsqrt"})


def _primitives(jaxpr: Any, out: set[str]) -> set[str]:
    """Names of every primitive in ``jaxpr``, sub-jaxprs included (pjit, custom_jvp, cond...)."""
    for eqn in jaxpr.eqns:
        out.add(eqn.primitive.name)
        for value in eqn.params.values():
            for v in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(v, "jaxpr", v)
                if hasattr(inner, "eqns"):
                    _primitives(inner, out)
    return out


def quotient_of_exponentials(fn: Callable[..., Any], *shapes: tuple[int, ...]) -> bool:
    """Whether ``fn`` (traced on zero arrays of ``shapes``) both exponentiates and divides or
    takes a negative power: then JAX's derivative of it loses terms once :math:`|z|` passes
    :data:`EXP_SQUARE_LIMIT` (see the module docstring)."""
    jax = import_jax()
    import jax.numpy as jnp

    closed = jax.make_jaxpr(fn)(*(jnp.zeros(s) for s in shapes))
    names = _primitives(closed.jaxpr, set())
    return bool(names & _EXPONENTIALS) and bool(names & _RECIPROCALS)


def bucket(m: int, minimum: int = MIN_BUCKET) -> int:
    r"""Padded batch width :math:`M = \max(\text{minimum}, 2^{\lceil \log_2 m \rceil})`
    (``minimum``: :data:`MIN_BUCKET`, or :data:`SMALL_NET_BUCKET` for a small net)."""
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    return max(minimum, 1 << (m - 1).bit_length())


class JaxOracle:
    r"""``jax.grad`` of the mean batch loss of ``net``, forward written from the shared definitions.

    Args:
      net: the :class:`handgrad.Network` whose architecture (sizes, activations, loss, fusion) is
        mirrored. Only its metadata is used.

    Every public method validates its input like ``net.backward`` does (``ValueError``/``TypeError``
    naming the argument and expected shape; the ``*_unchecked`` ones leave that to their caller),
    pads the batch to its bucket, runs the cached executable, and
    raises :class:`NonFiniteError` if a result is inf or NaN.

    Example:
      >>> import numpy as np, handgrad as hg
      >>> net = hg.article_network()
      >>> params = net.init(np.random.default_rng(0))
      >>> g = JaxOracle(net).grads(params, hg.ARTICLE_X, hg.ARTICLE_LABEL)
      >>> sorted(g) == sorted(net.param_names), g["W2"].shape, g["W2"].dtype
      (True, (3, 3), dtype('float64'))
    """

    def __init__(self, net: Network) -> None:
        self._net = check_network(net, "JaxOracle")
        self._min_bucket = SMALL_NET_BUCKET if net.n_params <= SMALL_NET_PARAMS else MIN_BUCKET
        jax = import_jax()
        ops = jax_ops()  # enables float64 before any array is created
        import jax.numpy as jnp

        definitions = tuple(a.definition for a in net.activations)
        rule = net.fused_rule
        fused_definition = rule.definition if rule is not None else None
        loss_definition = net.loss.definition
        depth = net.depth
        # Note [Declared loss] (judge/conventions.py): the batch reduction and the penalty are part of
        # the loss the user declared; this oracle differentiates them like the rest.
        batch_sum = getattr(net.loss, "reduction", "mean") == "sum"
        penalty = net.loss.penalty if getattr(net.loss, "has_penalty", False) else None
        names = net.param_names

        def objective(flat: list[Any], X: Any, Y: Any, mask: Any) -> tuple[Any, tuple[Any, list[Any]]]:
            a = X
            zs = []
            for l in range(depth):
                z = flat[2 * l] @ a + flat[2 * l + 1]
                zs.append(z)
                a = definitions[l](z, ops)
            if fused_definition is not None:
                per_sample = fused_definition(zs[-1], Y, ops)
            else:
                per_sample = loss_definition(a, Y, ops)
            per_sample = jnp.reshape(per_sample, mask.shape)
            value = jnp.sum(per_sample * mask)
            if not batch_sum:
                value = value / jnp.sum(mask)
            if penalty is not None:
                value = value + penalty(dict(zip(names, flat, strict=True)), ops)[0, 0]
            return value, (a, zs)

        # Layers (and the loss head) whose JAX derivative may silently lose terms at large |z|.
        # With a fused rule the last activation only feeds the forward output, never the loss.
        self._risky = [quotient_of_exponentials(lambda z, d=d: d(z, ops), (n, 2))
                       for d, n in zip(definitions, net.sizes[1:], strict=True)]
        if fused_definition is not None:
            self._risky[-1] = False
        head = fused_definition if fused_definition is not None else loss_definition
        n_out = net.sizes[-1]
        self._risky_head = quotient_of_exponentials(lambda v, y: head(v, y, ops), (n_out, 2), (n_out, 2))
        self._value_and_grad = jax.value_and_grad(objective, has_aux=True)
        self._run: Callable[..., Any] = jax.jit(self._value_and_grad, compiler_options=dict(COMPILER_OPTIONS))
        self._run_stacked: Callable[..., Any] | None = None  # compiled on first use (grads_many_unchecked)
        lo, hi = net.loss.target_range
        self._dummy_label = float(np.clip(0.0, lo, hi))

    @property
    def net(self) -> Network:
        """The network whose architecture this oracle mirrors."""
        return self._net

    # -- evaluation ----------------------------------------------------------------------------

    def _evaluate(self, params: Mapping[str, np.ndarray], X: np.ndarray,
                  Y: np.ndarray | None) -> tuple[float, np.ndarray, list[np.ndarray], list[np.ndarray]]:
        net = self._net
        m = X.shape[1]
        cols, mask = _padding(m, bucket(m, self._min_bucket))
        Xp = np.asarray(X, dtype=np.float64)[:, cols]  # fancy indexing: a fresh array
        if Y is None:
            Yp = np.full((net.sizes[-1], mask.shape[1]), self._dummy_label)
        else:
            Yp = np.asarray(Y, dtype=np.float64)[:, cols]
        (value, (yhat, zs)), grads = self._run(as_float64(params, net.param_names), Xp, Yp, mask)
        yhat_np = np.array(yhat, dtype=np.float64)[:, :m]
        zs_np = [np.array(z, dtype=np.float64)[:, :m] for z in zs]
        grads_np = [np.array(g, dtype=np.float64) for g in grads]
        return float(value), yhat_np, zs_np, grads_np

    def _nonfinite(self, what: str, where: tuple[int, ...] | None, value: float,
                   zs: list[np.ndarray]) -> NonFiniteError:
        zmax = ", ".join(f"z^({l}): {np.max(np.abs(z)) if np.all(np.isfinite(z)) else 'non-finite'}"
                         for l, z in enumerate(zs, start=1))
        at = f" at index {where}" if where is not None else ""
        return NonFiniteError(
            f"JAX oracle: {what} is {value!r}{at} for {self._net.describe()}. The shared definitions "
            f"overflowed in float64 (exp of more than ~709.78, e.g. exp(-z) in the sigmoid definition "
            f"for z < -709, or the untaken where() branch of ELU for z > 709, whose 0*inf gradient is "
            f"nan); largest |z| per layer: {zmax}. handgrad's stable forms may be fine there, but this "
            f"oracle cannot referee the point: use smaller inputs or weights."
        )

    def _check_range(self, yhat: np.ndarray, zs: list[np.ndarray]) -> None:
        net = self._net
        inputs = [(f"pre-activations z^({l}) of layer {l} ({net.activations[l - 1].name!r})", zs[l - 1])
                  for l in range(1, net.depth + 1) if self._risky[l - 1]]
        if self._risky_head:
            head = zs[-1] if net.fused_rule is not None else yhat
            inputs.append((f"inputs of the loss {net.loss.name!r}", head))
        for what, values in inputs:
            limit = EXP_SQUARE_LIMIT - math.log(values.shape[0])
            worst = float(np.abs(values).max())
            if worst > limit:
                raise OracleRangeError(
                    f"JAX oracle: the {what} of {net.describe()} reach |z| = {worst:.4g} > {limit:.2f}. The "
                    f"definition divides by exponentials, and JAX differentiates x/y with y**-2, which "
                    f"underflows to 0 once exp(|z|)**2 overflows: the gradient would silently lose terms. "
                    f"This oracle cannot referee the point (handgrad and finite differences can)."
                )

    def _check_forward(self, yhat: np.ndarray, zs: list[np.ndarray]) -> None:
        idx = first_nonfinite(yhat)
        if idx is not None:
            raise self._nonfinite("the forward output yhat", idx, float(yhat[idx]), zs)

    def forward(self, params: Mapping[str, np.ndarray], X: np.ndarray) -> np.ndarray:
        r""":math:`\hat y = x^{(L+1)}` for every column of ``X``: float64, shape ``(nL, m)``."""
        check_batch(self._net, params, X, None)
        _, yhat, zs, _ = self._evaluate(params, X, None)
        self._check_forward(yhat, zs)
        return yhat

    def loss(self, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> float:
        r"""The mean batch loss :math:`L = \frac1m\sum_s \ell(\hat y_s, y_s)` as a Python float."""
        return self.value_and_grads(params, X, Y)[0]

    def grads(self, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> Params:
        r""":math:`\partial L/\partial W^{(l)}` and :math:`\partial L/\partial B^{(l)}`, keyed
        ``W1, B1, ...``, float64, each shaped like its parameter."""
        return self.value_and_grads(params, X, Y)[1]

    def value_and_grads(self, params: Mapping[str, np.ndarray], X: np.ndarray,
                        Y: np.ndarray) -> tuple[float, Params]:
        """``(loss, grads)`` from one call of the compiled executable."""
        if Y is None:
            raise TypeError("Y must be a numpy.ndarray of labels, got None")
        check_batch(self._net, params, X, Y)
        return self.value_and_grads_unchecked(params, X, Y)

    def grads_unchecked(self, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> Params:
        """:meth:`grads` without validating the case: for a caller that has (the referee runs
        ``net.check_batch`` once per case); a bad case gives numpy or JAX errors or wrong values."""
        return self.value_and_grads_unchecked(params, X, Y)[1]

    def value_and_grads_unchecked(self, params: Mapping[str, np.ndarray], X: np.ndarray,
                                  Y: np.ndarray) -> tuple[float, Params]:
        """:meth:`value_and_grads` without validating the case (see :meth:`grads_unchecked`)."""
        return self._checked(*self._evaluate(params, X, Y))

    def grads_many_unchecked(self, cases: Sequence[tuple[Mapping[str, np.ndarray], np.ndarray, np.ndarray]],
                             ) -> list[Params | Exception]:
        r""":meth:`grads_unchecked` of each validated case ``(params, X, Y)``, or the
        ``ValueError``/``ArithmeticError`` it raises for that case, in order, from the *stacked*
        executable: ``jax.vmap`` of the same value-and-gradient function over :data:`STACK` cases,
        one call per :data:`STACK` cases (the last stack filled with copies of its first case).

        Only for nets of at most :data:`SMALL_NET_PARAMS` parameters, whose batches share one
        bucket of :data:`SMALL_NET_BUCKET` columns. The stacked executable is a different XLA
        program from the one-case executable (a batched dot), so its results may differ from
        :meth:`grads_unchecked`'s in the last bits (the budgets' rounding model covers any
        summation order). With the stack's size fixed, a case's result does not depend on its
        place in the stack or on the other cases in it (``tests/test_jax_oracle_stacked.py``):
        so every caller that uses this method for a case, alone or with others, gets the same bits.
        """
        net = self._net
        if net.n_params > SMALL_NET_PARAMS:
            raise ValueError(f"grads_many_unchecked: {net.describe()} has {net.n_params} parameters; the "
                             f"stacked executable is for nets of at most {SMALL_NET_PARAMS}")
        if self._run_stacked is None:
            import jax

            self._run_stacked = jax.jit(jax.vmap(self._value_and_grad), compiler_options=dict(COMPILER_OPTIONS))
        out: list[Params | Exception | None] = [None] * len(cases)
        widths: dict[int, list[int]] = {}  # one bucket per stack (m <= 64 is one bucket)
        for i, (_, X, _) in enumerate(cases):
            widths.setdefault(bucket(X.shape[1], self._min_bucket), []).append(i)
        for width, members in widths.items():
            for lo in range(0, len(members), STACK):
                chunk = members[lo:lo + STACK]
                for i, result in zip(chunk, self._stacked([cases[i] for i in chunk], width), strict=True):
                    out[i] = result
        return out  # type: ignore[return-value]

    def _stacked(self, chunk: list[tuple[Mapping[str, np.ndarray], np.ndarray, np.ndarray]],
                 width: int) -> list[Params | Exception]:
        """One call of the stacked executable on at most :data:`STACK` cases of one bucket."""
        assert self._run_stacked is not None
        real = len(chunk)
        chunk = chunk + [chunk[0]] * (STACK - real)
        pads = [_padding(X.shape[1], width) for _, X, _ in chunk]
        flat = [stack([np.asarray(p[k], dtype=np.float64) for p, _, _ in chunk]) for k in self._net.param_names]
        Xs = stack([np.asarray(X, dtype=np.float64)[:, cols]
                       for (_, X, _), (cols, _) in zip(chunk, pads, strict=True)])
        Ys = stack([np.asarray(Y, dtype=np.float64)[:, cols]
                       for (_, _, Y), (cols, _) in zip(chunk, pads, strict=True)])
        masks = stack([mask for _, mask in pads])
        (values, (yhats, zss)), gradss = self._run_stacked(flat, Xs, Ys, masks)
        values, yhats = np.asarray(values, dtype=np.float64), np.asarray(yhats, dtype=np.float64)
        zss = [np.asarray(z, dtype=np.float64) for z in zss]
        gradss = [np.asarray(g, dtype=np.float64) for g in gradss]
        # every gradient of a case finite (almost always): one test a stack, not one a tensor and case
        finite = np.logical_and.reduce([np.isfinite(g.reshape(STACK, -1)).all(axis=1) for g in gradss]).tolist()
        out: list[Params | Exception] = []
        for c in range(real):
            m = chunk[c][1].shape[1]
            try:
                out.append(self._checked(float(values[c]), yhats[c, :, :m], [z[c, :, :m] for z in zss],
                                         [g[c] for g in gradss], grads_finite=finite[c])[1])
            except (ValueError, ArithmeticError) as exc:
                out.append(exc)
        return out

    def _checked(self, value: float, yhat: np.ndarray, zs: list[np.ndarray],
                 grads: list[np.ndarray], grads_finite: bool = False) -> tuple[float, Params]:
        """An evaluation's ``(loss, grads)``, or the error saying why the oracle cannot referee it
        (``grads_finite``: every gradient is known to be finite, no tensor needs a look)."""
        self._check_forward(yhat, zs)
        self._check_range(yhat, zs)
        if not np.isfinite(value):
            raise self._nonfinite("the loss L", None, value, zs)
        out: Params = {}
        for name, g in zip(self._net.param_names, grads, strict=True):
            idx = None if grads_finite else first_nonfinite(g)
            if idx is not None:
                raise self._nonfinite(f"grads[{name!r}] ({element_name(name, idx)})", idx, float(g[idx]), zs)
            out[name] = g
        return value, out


@functools.lru_cache(maxsize=256)
def _padding(m: int, M: int) -> tuple[np.ndarray, np.ndarray]:
    """The columns that pad a batch of ``m`` to its bucket ``M`` (the samples repeated) and the
    mask that keeps the first ``m`` (read-only: shared by every call with this m)."""
    cols = np.arange(M) % m
    mask = (np.arange(M) < m).astype(np.float64).reshape(1, M)
    cols.flags.writeable = False
    mask.flags.writeable = False
    return cols, mask


_CACHE: OracleCache[JaxOracle] = OracleCache(JaxOracle, CACHE_SIZE)


def get_jax_oracle(net: Network) -> JaxOracle:
    """The cached :class:`JaxOracle` for ``net``'s architecture (see :func:`architecture_key`)."""
    return _CACHE.get(net, "get_jax_oracle")


def jax_grads(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> Params:
    r"""``jax.grad`` of :math:`L` for ``net`` at ``(params, X, Y)``: a dict of float64 arrays."""
    return get_jax_oracle(net).grads(params, X, Y)


def jax_grads_unchecked(net: Network, params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> Params:
    """:func:`jax_grads` for a case its caller has validated (``net.check_batch``): the oracle
    table's entry point, so the referee validates each case once."""
    return get_jax_oracle(net).grads_unchecked(params, X, Y)


def jax_grads_many(net: Network, cases: Sequence[tuple[Mapping[str, np.ndarray], np.ndarray, np.ndarray]],
                   ) -> list[Params | Exception]:
    """:meth:`JaxOracle.grads_many_unchecked` of ``net``'s cached oracle: the certify runners'
    entry point for nets of at most :data:`SMALL_NET_PARAMS` parameters (validated cases)."""
    return get_jax_oracle(net).grads_many_unchecked(cases)
