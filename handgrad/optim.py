r"""Gradient-descent optimizers by hand (numpy only), as pure ``(init, update)`` pairs.

The article ends its second half with the update rule :math:`w = w - \alpha\,\partial L/\partial w`
and names Momentum, AdaGrad and Adam. Here they are, in order of increasing complexity, each as a
chain of a few small *transforms* (never a switch on the optimizer's name):

=============  ====================================================  ===========================
optimizer      chain of transforms                                   state
=============  ====================================================  ===========================
:func:`gd`     ``scale(-lr)``                                        ``EmptyState()``
:func:`momentum`  ``scale(-lr)``, ``trace(beta)``                    ``TraceState(trace)``
:func:`nesterov`  ``scale(-lr)``, ``trace(beta, nesterov=True)``     ``TraceState(trace)``
:func:`adagrad`   ``scale_by_rss(eps, initial_accumulator)``, ``scale(-lr)``  ``RssState``
:func:`rmsprop`   ``scale_by_rms(decay, eps)``, ``scale(-lr)``       ``RmsState(nu)``
:func:`adam`   ``scale_by_adam(b1, b2, eps)``, ``scale(-lr)``        ``AdamState(count, mu, nu)``
:func:`adamw`  ``scale_by_adam(...)``, ``add_decayed_weights(wd)``, ``scale(-lr)``
=============  ====================================================  ===========================

Notation. For one parameter tensor (every rule is elementwise and applies to each of
``W1, B1, W2, ...`` separately), :math:`w_t` is its value after step :math:`t`, :math:`g_t =
\partial L/\partial w\,(w_{t-1})` the gradient handed to step :math:`t` (by
:meth:`handgrad.Network.backward`), :math:`u_t` the *update* returned by ``update``, and
:func:`apply_updates` performs :math:`w_t = w_{t-1} + u_t`. Squares, roots and quotients of
tensors are elementwise.

Usage (the same three lines for every optimizer)::

    >>> import numpy as np, handgrad as hg
    >>> params = {"W1": np.array([[1.0, -2.0]]), "B1": np.array([[0.5]])}
    >>> grads = {"W1": np.array([[0.1, -0.3]]), "B1": np.array([[0.0]])}
    >>> opt = hg.optim.adam(learning_rate=1e-3)
    >>> state = opt.init(params)
    >>> updates, state = opt.update(grads, state, params)
    >>> new_params = hg.optim.apply_updates(params, updates)
    >>> np.round(new_params["W1"], 6)
    array([[ 0.999, -1.999]])

Purity. ``init`` and ``update`` never modify the arrays or dicts passed in; they return new ones.
States are NamedTuples (a chain's state is the tuple of its transforms' states).

Validation. Hyperparameters are checked when the optimizer is built (``ValueError`` naming the
argument and its value: a negative learning rate, :math:`\beta \notin [0, 1)`, ``eps <= 0``).
``init`` checks that params is a dict of finite float32/float64 arrays; ``update`` checks that
grads (and params, when given) have exactly the keys, shapes and dtype of the state that ``init``
built, and are finite.

Where these conventions differ from optax's (the oracle that certifies them, see
``reference/optax_oracle.py`` and ``docs/optimizers.md``): Momentum and Nesterov keep the
velocity :math:`v = -\alpha \cdot` (optax's trace); AdaGrad's accumulator starts at 0 (optax:
0.1); RMSProp adds ``eps`` outside the root (optax's default: inside).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from .network import Params
from .validation import check_array, check_real

__all__ = [
    "AdamState",
    "EmptyState",
    "Optimizer",
    "RmsState",
    "RssState",
    "State",
    "TraceState",
    "adagrad",
    "adam",
    "adamw",
    "add_decayed_weights",
    "apply_updates",
    "bias_correction",
    "chain",
    "gd",
    "momentum",
    "nesterov",
    "rmsprop",
    "scale",
    "scale_by_adam",
    "scale_by_rms",
    "scale_by_rss",
    "trace",
]

State = Any
"""An optimizer state: a NamedTuple of the transform, or a tuple of them for a chain."""


# -- states -------------------------------------------------------------------------------------


class EmptyState(NamedTuple):
    """The state of a stateless transform (:func:`scale`, :func:`add_decayed_weights`)."""


class TraceState(NamedTuple):
    r"""The running sum :math:`v_t = \beta v_{t-1} + x_t` of :func:`trace` (Momentum's velocity)."""

    trace: Params


class RssState(NamedTuple):
    r"""AdaGrad's accumulator :math:`G_t = G_{t-1} + g_t^2` (see :func:`scale_by_rss`)."""

    sum_of_squares: Params


class RmsState(NamedTuple):
    r"""RMSProp's moving average :math:`\nu_t = \rho\,\nu_{t-1} + (1-\rho) g_t^2`."""

    nu: Params


class AdamState(NamedTuple):
    r"""Adam's step count :math:`t` and moments :math:`m_t` (``mu``) and :math:`v_t` (``nu``)."""

    count: int
    mu: Params
    nu: Params


# -- the optimizer type -------------------------------------------------------------------------

InitFn = Callable[[Params], State]
UpdateFn = Callable[[Params, State, "Params | None"], "tuple[Params, State]"]


@dataclass(frozen=True)
class Optimizer:
    r"""A pure ``(init, update)`` pair over a dict of parameter arrays.

    ``state = opt.init(params)``; ``updates, state = opt.update(grads, state, params)``;
    ``params = apply_updates(params, updates)``. Build one with an alias (:func:`gd`,
    :func:`momentum`, :func:`nesterov`, :func:`adagrad`, :func:`rmsprop`, :func:`adam`,
    :func:`adamw`) or compose transforms with :func:`chain`.

    Attributes:
      name: what it is (``"adam"``), used in reports and by the optax oracle to find the
        equivalent optax optimizer.
      hyperparams: the validated hyperparameters by argument name.
      init_fn, update_fn: the unchecked functions (``update_fn(grads, state, params)``); call
        :meth:`init` and :meth:`update`, which validate their input first.
      needs_params: whether ``update`` needs the current params (weight decay does).
    """

    name: str
    hyperparams: Mapping[str, float]
    init_fn: InitFn = field(repr=False)
    update_fn: UpdateFn = field(repr=False)
    needs_params: bool = False

    def init(self, params: Mapping[str, np.ndarray]) -> State:
        """The initial state for ``params`` (a dict of finite float arrays; not modified)."""
        _check_tree("params", params)
        return self.init_fn(dict(params))

    def update(self, grads: Mapping[str, np.ndarray], state: State,
               params: Mapping[str, np.ndarray] | None = None) -> tuple[Params, State]:
        """Return ``(updates, new_state)``; add the updates with :func:`apply_updates`.

        ``grads`` must have the keys, shapes and dtype of the params ``init`` saw; ``params`` (the
        current values, before this step) is required when :attr:`needs_params` is true.
        """
        like = _first_tree(state)
        if like is None and params is not None:  # a stateless optimizer: params are the reference
            _check_tree("params", params)
            _check_tree("grads", grads, dict(params), like_name="params")
        else:
            _check_tree("grads", grads, like, like_name="the optimizer state (built by init from params)")
            if params is not None:
                _check_tree("params", params, dict(grads), like_name="grads")
        if params is None and self.needs_params:
            raise ValueError(f"{self.name}.update needs params (the current values) for weight decay; "
                             f"call update(grads, state, params)")
        return self.update_fn(dict(grads), state, None if params is None else dict(params))

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams.items())
        return f"{self.name}({hp})"


def _make(name: str, hyperparams: Mapping[str, float], init_fn: InitFn, update_fn: UpdateFn,
          needs_params: bool = False) -> Optimizer:
    return Optimizer(name, MappingProxyType(dict(hyperparams)), init_fn, update_fn, needs_params)


# -- validation helpers -------------------------------------------------------------------------


def _check_tree(name: str, tree: object, like: Mapping[str, np.ndarray] | None = None,
                like_name: str = "") -> None:
    """``tree`` is a dict of finite float arrays; with ``like``: same keys, shapes and dtype."""
    if not isinstance(tree, Mapping):
        raise TypeError(f"{name} must be a dict of numpy arrays keyed like the params "
                        f"(e.g. {{'W1': ..., 'B1': ...}}), got {type(tree).__name__}")
    for key in tree:
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be str (parameter names such as 'W1'), got {key!r}")
    if like is not None:
        missing = [k for k in like if k not in tree]
        extra = [k for k in tree if k not in like]
        if missing or extra:
            parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
            raise ValueError(f"{name} has wrong keys: {', '.join(parts)}; expected exactly "
                             f"{list(like)} (the keys of {like_name})")
        for key, ref in like.items():
            check_array(f"{name}[{key!r}]", tree[key], ref.shape, dtype=ref.dtype)
    else:
        dtype = None
        for key, value in tree.items():
            dtype = check_array(f"{name}[{key!r}]", value, None, dtype=dtype).dtype


def _first_tree(state: State) -> Mapping[str, np.ndarray] | None:
    """The first dict of arrays found in ``state`` (the shapes reference), or None."""
    if isinstance(state, Mapping):
        return state
    if isinstance(state, tuple):
        for item in state:
            found = _first_tree(item)
            if found is not None:
                return found
    return None


def _rate(name: str, value: object) -> float:
    return check_real(name, value, low=0.0)


def _decay(name: str, value: object) -> float:
    return check_real(name, value, low=0.0, high=1.0, high_open=True)


def _eps(name: str, value: object) -> float:
    return check_real(name, value, low=0.0, low_open=True)


def _map(f: Callable[..., np.ndarray], *trees: Mapping[str, np.ndarray]) -> Params:
    return {k: f(*(t[k] for t in trees)) for k in trees[0]}


# -- transforms (the primitives) ----------------------------------------------------------------


def scale(factor: float) -> Optimizer:
    r"""Multiply the incoming updates by a constant: :math:`u_t = c\,x_t` (``factor`` = :math:`c`).

    With :math:`c = -\alpha` it turns a direction into a descent step; any real :math:`c` is
    allowed here (the aliases validate :math:`\alpha \ge 0`).

    Example:
      >>> import numpy as np
      >>> opt = scale(-0.1)
      >>> u, _ = opt.update({"w": np.array([2.0])}, opt.init({"w": np.array([0.0])}))
      >>> u["w"]
      array([-0.2])
    """
    c = check_real("factor", factor)

    def init_fn(params: Params) -> EmptyState:
        return EmptyState()

    def update_fn(updates: Params, state: State, params: Params | None = None) -> tuple[Params, State]:
        return _map(lambda x: c * x, updates), state

    return _make("scale", {"factor": c}, init_fn, update_fn)


def trace(decay: float, *, nesterov: bool = False) -> Optimizer:
    r"""Accumulate a decaying sum of the incoming updates (the momentum primitive).

    .. math::
       v_t = \beta\,v_{t-1} + x_t, \quad v_0 = 0, \qquad
       u_t = \begin{cases} v_t & \text{(heavy ball)} \\ x_t + \beta\,v_t & \text{(Nesterov)} \end{cases}

    ``decay`` = :math:`\beta \in [0, 1)`, ``nesterov`` selects the second form; :math:`x_t` is the
    incoming update (in :func:`momentum`, :math:`x_t = -\alpha g_t`, so :math:`v` is the velocity).

    Example:
      >>> import numpy as np
      >>> opt = trace(0.5)
      >>> s = opt.init({"w": np.zeros(1)})
      >>> u, s = opt.update({"w": np.array([1.0])}, s)
      >>> u, s = opt.update({"w": np.array([1.0])}, s)
      >>> u["w"]
      array([1.5])
    """
    beta = _decay("decay", decay)
    if not isinstance(nesterov, bool):
        raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")

    def init_fn(params: Params) -> TraceState:
        return TraceState(trace=_map(np.zeros_like, params))

    def update_fn(updates: Params, state: TraceState, params: Params | None = None) -> tuple[Params, State]:
        v = _map(lambda x, t: x + beta * t, updates, state.trace)
        out = _map(lambda x, t: x + beta * t, updates, v) if nesterov else v
        return out, TraceState(trace=v)

    return _make("trace", {"decay": beta, "nesterov": nesterov}, init_fn, update_fn)


def scale_by_rss(eps: float = 1e-7, initial_accumulator: float = 0.0) -> Optimizer:
    r"""AdaGrad's scaling: divide by the root of the sum of all squared gradients so far.

    .. math::
       G_t = G_{t-1} + g_t^2, \quad G_0 = G_{\text{init}}, \qquad u_t = \frac{g_t}{\sqrt{G_t + \epsilon}}

    ``eps`` = :math:`\epsilon > 0` (inside the root), ``initial_accumulator`` =
    :math:`G_{\text{init}} \ge 0`.

    Example:
      >>> import numpy as np
      >>> opt = scale_by_rss(eps=1e-12)
      >>> u, _ = opt.update({"w": np.array([3.0])}, opt.init({"w": np.zeros(1)}))
      >>> np.round(u["w"], 9)
      array([1.])
    """
    e = _eps("eps", eps)
    g0 = check_real("initial_accumulator", initial_accumulator, low=0.0)

    def init_fn(params: Params) -> RssState:
        return RssState(sum_of_squares=_map(lambda p: np.full_like(p, g0), params))

    def update_fn(updates: Params, state: RssState, params: Params | None = None) -> tuple[Params, State]:
        G = _map(lambda g, s: g * g + s, updates, state.sum_of_squares)
        return _map(lambda g, s: g / np.sqrt(s + e), updates, G), RssState(sum_of_squares=G)

    return _make("scale_by_rss", {"eps": e, "initial_accumulator": g0}, init_fn, update_fn)


def scale_by_rms(decay: float = 0.9, eps: float = 1e-8) -> Optimizer:
    r"""RMSProp's scaling: divide by the root of a moving average of squared gradients.

    .. math::
       \nu_t = \rho\,\nu_{t-1} + (1 - \rho)\,g_t^2, \quad \nu_0 = 0, \qquad
       u_t = \frac{g_t}{\sqrt{\nu_t} + \epsilon}

    ``decay`` = :math:`\rho \in [0, 1)`, ``eps`` = :math:`\epsilon > 0` (outside the root).

    Example:
      >>> import numpy as np
      >>> opt = scale_by_rms(decay=0.0, eps=1e-12)
      >>> u, _ = opt.update({"w": np.array([-4.0])}, opt.init({"w": np.zeros(1)}))
      >>> np.round(u["w"], 9)
      array([-1.])
    """
    rho = _decay("decay", decay)
    e = _eps("eps", eps)

    def init_fn(params: Params) -> RmsState:
        return RmsState(nu=_map(np.zeros_like, params))

    def update_fn(updates: Params, state: RmsState, params: Params | None = None) -> tuple[Params, State]:
        nu = _map(lambda g, n: (1.0 - rho) * (g * g) + rho * n, updates, state.nu)
        return _map(lambda g, n: g / (np.sqrt(n) + e), updates, nu), RmsState(nu=nu)

    return _make("scale_by_rms", {"decay": rho, "eps": e}, init_fn, update_fn)


def bias_correction(beta: float, t: int) -> float:
    r""":math:`1 - \beta^t`, accurate to a few ulp even for :math:`\beta` close to 1.

    Computed as :math:`-\operatorname{expm1}(t \ln \beta)`: the naive ``1 - beta**t`` loses
    :math:`\log_{10}(1/(1-\beta))` digits to cancellation (about 4 at :math:`\beta = 0.9999`).

    Example:
      >>> bias_correction(0.999, 1)
      0.0010000000000000009
    """
    if beta == 0.0:
        return 1.0
    return -math.expm1(t * math.log(beta))


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    r"""Adam's scaling: bias-corrected first moment over the root of the second.

    .. math::
       m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,
       \quad m_0 = v_0 = 0,

       \hat m_t = \frac{m_t}{1 - \beta_1^t}, \quad \hat v_t = \frac{v_t}{1 - \beta_2^t}, \qquad
       u_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    ``b1`` = :math:`\beta_1`, ``b2`` = :math:`\beta_2` (both in [0, 1)), ``eps`` =
    :math:`\epsilon > 0` (outside the root); :math:`t` counts the calls to ``update`` from 1.
    :math:`1-\beta^t` is computed by :func:`bias_correction`.

    Example:
      >>> import numpy as np
      >>> opt = scale_by_adam(eps=1e-12)
      >>> u, s = opt.update({"w": np.array([-0.02])}, opt.init({"w": np.zeros(1)}))
      >>> np.round(u["w"], 9), s.count
      (array([-1.]), 1)
    """
    beta1, beta2 = _decay("b1", b1), _decay("b2", b2)
    e = _eps("eps", eps)

    def init_fn(params: Params) -> AdamState:
        return AdamState(count=0, mu=_map(np.zeros_like, params), nu=_map(np.zeros_like, params))

    def update_fn(updates: Params, state: AdamState, params: Params | None = None) -> tuple[Params, State]:
        t = state.count + 1
        mu = _map(lambda g, m: (1.0 - beta1) * g + beta1 * m, updates, state.mu)
        nu = _map(lambda g, v: (1.0 - beta2) * (g * g) + beta2 * v, updates, state.nu)
        c1, c2 = bias_correction(beta1, t), bias_correction(beta2, t)
        out = _map(lambda m, v: (m / c1) / (np.sqrt(v / c2) + e), mu, nu)
        return out, AdamState(count=t, mu=mu, nu=nu)

    return _make("scale_by_adam", {"b1": beta1, "b2": beta2, "eps": e}, init_fn, update_fn)


def add_decayed_weights(weight_decay: float) -> Optimizer:
    r"""Add the decoupled weight-decay term: :math:`u_t = x_t + \lambda\,w_{t-1}`.

    ``weight_decay`` = :math:`\lambda \ge 0`; needs the current params in ``update``.

    Example:
      >>> import numpy as np
      >>> opt = add_decayed_weights(0.5)
      >>> u, _ = opt.update({"w": np.array([1.0])}, opt.init({"w": np.array([4.0])}), {"w": np.array([4.0])})
      >>> u["w"]
      array([3.])
    """
    lam = check_real("weight_decay", weight_decay, low=0.0)

    def init_fn(params: Params) -> EmptyState:
        return EmptyState()

    def update_fn(updates: Params, state: State, params: Params | None = None) -> tuple[Params, State]:
        assert params is not None
        return _map(lambda x, p: x + lam * p, updates, params), state

    return _make("add_decayed_weights", {"weight_decay": lam}, init_fn, update_fn, needs_params=True)


def chain(*transforms: Optimizer, name: str = "chain",
          hyperparams: Mapping[str, float] | None = None) -> Optimizer:
    r"""Apply ``transforms`` one after the other: the updates of one are the input of the next.

    The state is the tuple of the transforms' states. ``name`` and ``hyperparams`` label the
    result (the aliases below pass theirs).

    Example:
      >>> import numpy as np
      >>> opt = chain(trace(0.9), scale(-0.1))   # optax's form of Momentum
      >>> u, s = opt.update({"w": np.array([1.0])}, opt.init({"w": np.zeros(1)}))
      >>> u["w"]
      array([-0.1])
    """
    if not transforms:
        raise ValueError("chain needs at least one transform")
    for i, t in enumerate(transforms):
        if not isinstance(t, Optimizer):
            raise TypeError(f"transforms[{i}] must be an Optimizer (e.g. scale(-0.1)), got {type(t).__name__}")
    ts = tuple(transforms)

    def init_fn(params: Params) -> tuple[State, ...]:
        return tuple(t.init_fn(params) for t in ts)

    def update_fn(updates: Params, state: tuple[State, ...], params: Params | None = None) -> tuple[Params, State]:
        new_states = []
        for t, s in zip(ts, state, strict=True):
            updates, s = t.update_fn(updates, s, params)
            new_states.append(s)
        return updates, tuple(new_states)

    if hyperparams is None:
        hyperparams = {f"{i}.{k}": v for i, t in enumerate(ts) for k, v in t.hyperparams.items()}
    return _make(name, hyperparams, init_fn, update_fn, needs_params=any(t.needs_params for t in ts))


# -- the optimizers, in order of increasing complexity -----------------------------------------


def gd(learning_rate: float) -> Optimizer:
    r"""Plain gradient descent, the article's rule :math:`w = w - \alpha\,\partial L/\partial w`.

    .. math:: u_t = -\alpha\,g_t

    ``learning_rate`` = :math:`\alpha \ge 0`. Whether :math:`g_t` is the gradient of the whole
    batch, of one sample or of a mini-batch is the training loop's business
    (:mod:`handgrad.training`).

    Example:
      >>> import numpy as np
      >>> opt = gd(learning_rate=0.1)
      >>> u, _ = opt.update({"w": np.array([2.0])}, opt.init({"w": np.array([1.0])}))
      >>> u["w"]
      array([-0.2])
    """
    a = _rate("learning_rate", learning_rate)
    return chain(scale(-a), name="gd", hyperparams={"learning_rate": a})


def momentum(learning_rate: float, beta: float = 0.9) -> Optimizer:
    r"""Momentum (Polyak's heavy ball), in velocity form.

    .. math::
       v_t = \beta\,v_{t-1} - \alpha\,g_t, \quad v_0 = 0, \qquad u_t = v_t

    ``learning_rate`` = :math:`\alpha \ge 0`, ``beta`` = :math:`\beta \in [0, 1)`. The state's
    ``trace`` is the velocity :math:`v`. :math:`\beta = 0` is plain gradient descent. optax (and
    PyTorch) accumulate the gradients instead, :math:`m_t = g_t + \beta m_{t-1}`,
    :math:`u_t = -\alpha m_t`: the same steps for a constant :math:`\alpha`, with
    :math:`v_t = -\alpha m_t`.

    Example:
      >>> import numpy as np
      >>> opt = momentum(learning_rate=0.1, beta=0.5)
      >>> s = opt.init({"w": np.zeros(1)})
      >>> u, s = opt.update({"w": np.array([1.0])}, s)
      >>> u, s = opt.update({"w": np.array([1.0])}, s)
      >>> np.round(u["w"], 12)
      array([-0.15])
    """
    a, b = _rate("learning_rate", learning_rate), _decay("beta", beta)
    return chain(scale(-a), trace(b), name="momentum", hyperparams={"learning_rate": a, "beta": b})


def nesterov(learning_rate: float, beta: float = 0.9) -> Optimizer:
    r"""Nesterov's accelerated gradient, in the form that needs the gradient at :math:`w_{t-1}` only.

    .. math::
       v_t = \beta\,v_{t-1} - \alpha\,g_t, \quad v_0 = 0, \qquad u_t = \beta\,v_t - \alpha\,g_t

    ``learning_rate`` = :math:`\alpha \ge 0`, ``beta`` = :math:`\beta \in [0, 1)`.
    Sutskever et al.'s look-ahead form, :math:`v_t = \beta v_{t-1} - \alpha \nabla L(\theta_{t-1}
    + \beta v_{t-1})`, :math:`\theta_t = \theta_{t-1} + v_t`, is the same sequence of steps in the
    variable :math:`w_t = \theta_t + \beta v_t` (tests/test_training.py checks it). :math:`\beta
    = 0` is plain gradient descent.

    Example:
      >>> import numpy as np
      >>> opt = nesterov(learning_rate=0.1, beta=0.5)
      >>> u, s = opt.update({"w": np.array([1.0])}, opt.init({"w": np.zeros(1)}))
      >>> np.round(u["w"], 12)
      array([-0.15])
    """
    a, b = _rate("learning_rate", learning_rate), _decay("beta", beta)
    return chain(scale(-a), trace(b, nesterov=True), name="nesterov",
                 hyperparams={"learning_rate": a, "beta": b})


def adagrad(learning_rate: float, eps: float = 1e-7, initial_accumulator: float = 0.0) -> Optimizer:
    r"""AdaGrad: a per-weight step that shrinks with the sum of the squared gradients so far.

    .. math::
       G_t = G_{t-1} + g_t^2, \quad G_0 = G_{\text{init}}, \qquad
       u_t = -\alpha\,\frac{g_t}{\sqrt{G_t + \epsilon}}

    ``learning_rate`` = :math:`\alpha \ge 0`, ``eps`` = :math:`\epsilon > 0` (inside the root, as
    in optax and Keras; PyTorch adds it outside), ``initial_accumulator`` =
    :math:`G_{\text{init}} \ge 0` (0 as in Duchi et al. and PyTorch; optax's default is 0.1).

    Example:
      >>> import numpy as np
      >>> opt = adagrad(learning_rate=0.1, eps=1e-12)
      >>> u, s = opt.update({"w": np.array([3.0])}, opt.init({"w": np.zeros(1)}))
      >>> np.round(u["w"], 9)
      array([-0.1])
    """
    a = _rate("learning_rate", learning_rate)
    rss = scale_by_rss(eps=eps, initial_accumulator=initial_accumulator)
    return chain(rss, scale(-a), name="adagrad", hyperparams={"learning_rate": a, **rss.hyperparams})


def rmsprop(learning_rate: float, decay: float = 0.9, eps: float = 1e-8) -> Optimizer:
    r"""RMSProp: divide by the root of a moving average of the squared gradients.

    .. math::
       \nu_t = \rho\,\nu_{t-1} + (1 - \rho)\,g_t^2, \quad \nu_0 = 0, \qquad
       u_t = -\alpha\,\frac{g_t}{\sqrt{\nu_t} + \epsilon}

    ``learning_rate`` = :math:`\alpha \ge 0`, ``decay`` = :math:`\rho \in [0, 1)`, ``eps`` =
    :math:`\epsilon > 0`, added outside the root as in PyTorch and Adam (optax's default adds it
    inside; its ``eps_in_sqrt=False`` is this rule).

    Example:
      >>> import numpy as np
      >>> opt = rmsprop(learning_rate=0.1, decay=0.0, eps=1e-12)
      >>> u, s = opt.update({"w": np.array([-4.0])}, opt.init({"w": np.zeros(1)}))
      >>> np.round(u["w"], 9)
      array([0.1])
    """
    a = _rate("learning_rate", learning_rate)
    rms = scale_by_rms(decay=decay, eps=eps)
    return chain(rms, scale(-a), name="rmsprop", hyperparams={"learning_rate": a, **rms.hyperparams})


def adam(learning_rate: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    r"""Adam (Kingma and Ba): momentum on the gradient and on its square, bias-corrected.

    .. math::
       m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,
       \quad m_0 = v_0 = 0,

       u_t = -\alpha\,\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}, \quad
       \hat m_t = \frac{m_t}{1 - \beta_1^t}, \quad \hat v_t = \frac{v_t}{1 - \beta_2^t}

    ``learning_rate`` = :math:`\alpha \ge 0`, ``b1`` = :math:`\beta_1`, ``b2`` = :math:`\beta_2`
    (both in [0, 1)), ``eps`` = :math:`\epsilon > 0`. The first step is
    :math:`u_1 = -\alpha\,g_1/(|g_1| + \epsilon) \approx -\alpha\,\mathrm{sign}(g_1)`.

    Example:
      >>> import numpy as np
      >>> opt = adam(learning_rate=0.01)
      >>> u, s = opt.update({"w": np.array([0.5, -3.0])}, opt.init({"w": np.zeros(2)}))
      >>> np.round(u["w"], 6)
      array([-0.01,  0.01])
    """
    a = _rate("learning_rate", learning_rate)
    sa = scale_by_adam(b1=b1, b2=b2, eps=eps)
    return chain(sa, scale(-a), name="adam", hyperparams={"learning_rate": a, **sa.hyperparams})


def adamw(learning_rate: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 1e-2) -> Optimizer:
    r"""AdamW: Adam with decoupled weight decay (Loshchilov and Hutter).

    .. math::
       u_t = -\alpha\left(\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon} + \lambda\,w_{t-1}\right)

    with :math:`\hat m_t, \hat v_t` as in :func:`adam`. ``weight_decay`` = :math:`\lambda \ge 0`;
    the other arguments as in :func:`adam`. The decay is multiplied by the learning rate, as in
    optax and PyTorch (the paper's schedule multiplier :math:`\eta_t` is 1 here).
    :math:`\lambda = 0` is Adam.

    Example:
      >>> import numpy as np
      >>> opt = adamw(learning_rate=0.01, weight_decay=0.5)
      >>> p = {"w": np.array([2.0])}
      >>> u, s = opt.update({"w": np.array([0.5])}, opt.init(p), p)
      >>> np.round(u["w"], 6)
      array([-0.02])
    """
    a = _rate("learning_rate", learning_rate)
    sa = scale_by_adam(b1=b1, b2=b2, eps=eps)
    wd = add_decayed_weights(weight_decay)
    return chain(sa, wd, scale(-a), name="adamw",
                 hyperparams={"learning_rate": a, **sa.hyperparams, **wd.hyperparams})


def apply_updates(params: Mapping[str, np.ndarray], updates: Mapping[str, np.ndarray]) -> Params:
    r"""Return new params :math:`w_t = w_{t-1} + u_t` (neither argument is modified).

    Both must be dicts with the same keys, shapes and dtype; the result keeps the key order of
    ``params``.

    Example:
      >>> import numpy as np
      >>> apply_updates({"w": np.array([1.0])}, {"w": np.array([-0.25])})
      {'w': array([0.75])}
    """
    _check_tree("params", params)
    _check_tree("updates", updates, dict(params), like_name="params")
    return {k: params[k] + updates[k] for k in params}
