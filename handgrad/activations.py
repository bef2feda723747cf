r"""Activations: each one's forward, its hand-written derivative, and its shared definition.

Notation (the article's): for layer :math:`l`, :math:`z^{(l)} = W^{(l)} x^{(l)} + B^{(l)}` and
the activation :math:`x^{(l+1)} = f_l(z^{(l)})`. In code ``z`` is the pre-activation and ``a`` the
activation, both of shape ``(n_l, m)`` (one column per sample).

An :class:`Activation` holds three things:

``definition(z, ops)``
    The mathematical formula, written once against a small namespace ``ops`` (``exp``, ``log``,
    ``log1p``, ``tanh``, ``erf``, ``erfc``, ``where``, ``colsum``...). It is the *shared definition*: the
    independent oracles in ``reference/`` evaluate it with ``jax.numpy`` and SymPy and
    differentiate it themselves. handgrad never differentiates it.
``forward(z)``
    handgrad's numerically stable numpy evaluation (checked against the definition by the suite).
``derivative(z, a)`` or ``vjp(z, a, g)``
    The hand-written derivative, which is what the suite certifies. Elementwise activations give
    :math:`f'(z)`; vector-valued ones (softmax) give the Jacobian-vector product
    :math:`(\partial a / \partial z)^T g`.

Kink convention (one rule for every piecewise activation): at a kink the derivative is that of
the branch *left* of it, ``z <= 0``. So relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = alpha.
Code written with the other convention (relu'(0) = 1, as ``z >= 0`` masks give) is certified
under it by declaring it: :func:`at_kink` gives the same activation whose definition, forward and
derivative take the *right* branch at the kink (``relu_at_kink_right = at_kink("relu", "right")``,
named ``"relu[right]"``). The oracles differentiate that definition, so every one of them follows
the declared convention; nothing is special-cased.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .registry import Registry
from .validation import check_array

__all__ = [
    "Activation",
    "Ops",
    "NUMPY_OPS",
    "register_activation",
    "unregister_activation",
    "get_activation",
    "activation_names",
    "iter_activations",
    "leaky_relu",
    "elu",
    "relu_family",
    "at_kink",
    "KINK_SIDES",
]

KINK_SIDES = ("left", "right")
"""Which branch's derivative a piecewise activation takes at its kink (``"left"``: the suite's)."""


class Ops(Protocol):
    """The namespace a definition is written against (numpy, jax.numpy or SymPy behind it)."""

    pi: Any

    def exp(self, x: Any) -> Any: ...
    def log(self, x: Any) -> Any: ...
    def log1p(self, x: Any) -> Any: ...
    def expm1(self, x: Any) -> Any: ...
    def tanh(self, x: Any) -> Any: ...
    def erf(self, x: Any) -> Any: ...
    def erfc(self, x: Any) -> Any: ...
    def sqrt(self, x: Any) -> Any: ...
    def where(self, cond: Any, x: Any, y: Any) -> Any: ...
    def colsum(self, x: Any) -> Any: ...


_erf_vec = np.vectorize(math.erf, otypes=[np.float64])
_erfc_vec = np.vectorize(math.erfc, otypes=[np.float64])


_erf_obj = np.frompyfunc(lambda v: v.erf(), 1, 1)
_erfc_obj = np.frompyfunc(lambda v: v.erfc(), 1, 1)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf elementwise (numpy has none). On object arrays it calls each element's ``erf()``
    method, the convention numpy's own ufuncs follow for ``exp`` etc. (used by exact proofs)."""
    x = np.asarray(x)
    if x.dtype == object:
        return _erf_obj(x)
    if x.size == 0:
        return np.zeros_like(x)
    return _erf_vec(x).astype(x.dtype if x.dtype.kind == "f" else np.float64)


def _erfc(x: np.ndarray) -> np.ndarray:
    """erfc elementwise, see :func:`_erf`."""
    x = np.asarray(x)
    if x.dtype == object:
        return _erfc_obj(x)
    if x.size == 0:
        return np.zeros_like(x)
    return _erfc_vec(x).astype(x.dtype)


class _NumpyOps:
    """``Ops`` backed by numpy (``math.erf`` for erf, which numpy lacks)."""

    pi = math.pi
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    log1p = staticmethod(np.log1p)
    expm1 = staticmethod(np.expm1)
    tanh = staticmethod(np.tanh)
    sqrt = staticmethod(np.sqrt)
    erf = staticmethod(_erf)
    erfc = staticmethod(_erfc)
    where = staticmethod(np.where)

    @staticmethod
    def colsum(x: np.ndarray) -> np.ndarray:
        return np.sum(x, axis=0, keepdims=True)


NUMPY_OPS: Ops = _NumpyOps()

Definition = Callable[[Any, Ops], Any]


@dataclass(frozen=True)
class Activation:
    r"""An activation function with its hand-written derivative.

    Args:
      name: registry key, also used in reports (``"sigmoid"``, ``"leaky_relu(0.2)"``).
      definition: the formula ``definition(z, ops)`` shared with the oracles.
      forward: numpy forward ``forward(z) -> a`` (defaults to ``definition(z, NUMPY_OPS)``).
      derivative: for elementwise activations, ``derivative(z, a) -> f'(z)`` by hand.
      vjp: for vector-valued activations, ``vjp(z, a, g) -> (\partial a/\partial z)^T g`` by hand.
      kinks: the points where f is not smooth (f' or f'' jumps); finite differences are not
        trusted within a margin of them.
      complex_step: whether ``definition`` accepts complex numpy input (enables the complex-step
        witness in the finite-difference oracle).
      output_range: the closed interval the activation maps into (``(0, 1)`` for sigmoid), used to
        check that a loss on probabilities follows a suitable activation.
    """

    name: str
    definition: Definition
    forward: Callable[[np.ndarray], np.ndarray] | None = None
    derivative: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    vjp: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None
    kinks: tuple[float, ...] = ()
    complex_step: bool = False
    output_range: tuple[float, float] = (-math.inf, math.inf)
    doc: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Activation name must be a non-empty str, got {self.name!r}")
        if not callable(self.definition):
            raise TypeError(f"Activation {self.name!r}: definition must be callable")
        if (self.derivative is None) == (self.vjp is None):
            raise ValueError(
                f"Activation {self.name!r}: give exactly one of derivative (elementwise) or vjp (vector-valued)"
            )

    @property
    def elementwise(self) -> bool:
        """True when the Jacobian is diagonal, so ``derivative`` is given."""
        return self.derivative is not None

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Validated forward: ``z`` of shape ``(n, m)``, float32 or float64, finite."""
        check_array("z", z, ndim=2)
        return self.apply(z)

    def apply(self, z: np.ndarray) -> np.ndarray:
        """The forward pass without validation."""
        if self.forward is not None:
            return self.forward(z)
        return self.definition(z, NUMPY_OPS)

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        r"""Return :math:`\partial L/\partial z` from :math:`\partial L/\partial a` (validated).

        Elementwise: :math:`\delta = \partial L/\partial a \odot f'(z)` (the article's matrix form).
        """
        check_array("z", z, ndim=2)
        check_array("a", a, z.shape, dtype=z.dtype)
        check_array("grad_a", grad_a, z.shape, dtype=z.dtype)
        return self.backward_unchecked(z, a, grad_a)

    def backward_unchecked(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        """:meth:`backward` without validation (also runs on object arrays of exact numbers)."""
        if self.derivative is not None:
            return grad_a * self.derivative(z, a)
        assert self.vjp is not None
        return self.vjp(z, a, grad_a)


_REGISTRY: Registry[Activation] = Registry("activation", Activation)


def register_activation(act: Activation, *, replace: bool = False) -> Activation:
    """Add ``act`` to the registry, from anywhere (no need to edit handgrad).

    Every registered activation is picked up by the property suite and by ``handgrad certify``.
    Raises ``ValueError`` if the name is taken and ``replace`` is false.
    """
    return _REGISTRY.register(act, replace=replace, argument="act")


def unregister_activation(name: str) -> None:
    """Remove a registered activation (raises ``KeyError`` naming the known ones)."""
    _REGISTRY.unregister(name)


def get_activation(name: str | Activation) -> Activation:
    """Look an activation up by name (an :class:`Activation` is returned as is)."""
    return _REGISTRY.get(name)


def activation_names() -> list[str]:
    """Names of all registered activations, in registration order."""
    return _REGISTRY.names()


def iter_activations() -> Iterator[Activation]:
    """The registered activations themselves, in registration order."""
    return _REGISTRY.values()


# ---------------------------------------------------------------------------------------------
# Built-in activations: forward and hand-written derivative side by side.
# ---------------------------------------------------------------------------------------------

def _identity_def(z: Any, ops: Ops) -> Any:
    r"""identity: :math:`f(z) = z`, :math:`f'(z) = 1`."""
    return z


def _identity_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.ones_like(z)


def _sigmoid_def(z: Any, ops: Ops) -> Any:
    r"""sigmoid (the article's :math:`\delta`): :math:`\sigma(z) = 1/(1+e^{-z})`."""
    return 1 / (1 + ops.exp(-z))


def _sigmoid_forward(z: np.ndarray) -> np.ndarray:
    # exp(-|z|) never overflows; both branches are exact rearrangements of 1/(1+e^{-z}).
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _sigmoid_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    r""":math:`\sigma'(z) = \sigma(z)(1-\sigma(z))` (the article's :math:`x(1-x)`).

    Evaluated as :math:`e/(1+e)^2` with :math:`e = e^{-|z|}`, which equals :math:`a(1-a)` but
    keeps full relative accuracy for large positive z, where :math:`1-a` cancels.
    """
    e = np.exp(-np.abs(z))
    return e / ((1 + e) * (1 + e))


def _tanh_def(z: Any, ops: Ops) -> Any:
    r"""tanh: :math:`f(z) = \tanh z`."""
    return ops.tanh(z)


def _tanh_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    r""":math:`\tanh'(z) = 1 - \tanh^2 z`, evaluated as :math:`4e/(1+e)^2`, :math:`e = e^{-2|z|}`
    (same value, no cancellation when :math:`|a| \to 1`)."""
    e = np.exp(-2 * np.abs(z))
    return 4 * e / ((1 + e) * (1 + e))


def _check_side(at_kink: str) -> bool:
    """True for the right branch; refuses anything but ``"left"`` and ``"right"``."""
    if at_kink not in KINK_SIDES:
        raise ValueError(f"at_kink must be one of {KINK_SIDES}, got {at_kink!r}")
    return at_kink == "right"


def _kinked_name(name: str, right: bool) -> str:
    return f"{name}[right]" if right else name


def relu_family(at_kink: str = "left") -> Activation:
    r"""ReLU: :math:`f(z) = z` for :math:`z > 0`, else 0, with relu'(0) = 0 (``at_kink="left"``,
    the registered ``relu``) or relu'(0) = 1 (``"right"``: the branch :math:`z \ge 0` is taken)."""
    right = _check_side(at_kink)

    def definition(z: Any, ops: Ops) -> Any:
        return ops.where(z >= 0 if right else z > 0, z, 0 * z)

    def derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return ((z >= 0) if right else (z > 0)).astype(z.dtype)

    return Activation(_kinked_name("relu", right), definition, lambda z: np.maximum(z, 0), derivative,
                      kinks=(0.0,), output_range=(0.0, math.inf))


def leaky_relu(slope: float = 0.01, at_kink: str = "left") -> Activation:
    r"""Leaky ReLU with the given negative-side slope.

    :math:`f(z) = z` for :math:`z > 0`, :math:`\text{slope}\cdot z` otherwise;
    :math:`f'(z) = 1` for :math:`z > 0`, slope otherwise (so f'(0) = slope; f'(0) = 1 with
    ``at_kink="right"``).
    """
    s = float(slope)
    if not math.isfinite(s):
        raise ValueError(f"slope must be finite, got {slope}")
    right = _check_side(at_kink)

    def positive(z: Any) -> Any:
        return z >= 0 if right else z > 0

    def definition(z: Any, ops: Ops) -> Any:
        return ops.where(positive(z), z, s * z)

    def forward(z: np.ndarray) -> np.ndarray:
        return np.where(z > 0, z, z.dtype.type(s) * z)

    def derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return np.where(positive(z), 1, s).astype(z.dtype)

    name = "leaky_relu" if s == 0.01 else f"leaky_relu({s:g})"
    return Activation(_kinked_name(name, right), definition, forward, derivative,
                      kinks=(0.0,) if s != 1 else ())


def elu(alpha: float = 1.0, at_kink: str = "left") -> Activation:
    r"""ELU with parameter alpha.

    :math:`f(z) = z` for :math:`z > 0`, :math:`\alpha(e^z - 1)` otherwise;
    :math:`f'(z) = 1` for :math:`z > 0`, :math:`\alpha e^z` otherwise (so f'(0) = alpha, or 1 with
    ``at_kink="right"``; the derivative is continuous only when alpha = 1).
    """
    al = float(alpha)
    if not math.isfinite(al):
        raise ValueError(f"alpha must be finite, got {alpha}")
    right = _check_side(at_kink)

    def positive(z: Any) -> Any:
        return z >= 0 if right else z > 0

    def definition(z: Any, ops: Ops) -> Any:
        return ops.where(positive(z), z, al * ops.expm1(z))

    def forward(z: np.ndarray) -> np.ndarray:
        # expm1 only ever sees z <= 0, so it cannot overflow.
        return np.where(z > 0, z, z.dtype.type(al) * np.expm1(np.minimum(z, 0)))

    def derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return np.where(positive(z), 1, z.dtype.type(al) * np.exp(np.minimum(z, 0))).astype(z.dtype)

    name = _kinked_name("elu" if al == 1.0 else f"elu({al:g})", right)
    # z = 0 is listed even for alpha = 1: f' is continuous there but f'' jumps, which spoils
    # finite-difference truncation bounds, so the referee keeps its distance all the same.
    return Activation(name, definition, forward, derivative, kinks=(0.0,))


_FAMILY = re.compile(r"^(relu|leaky_relu|elu)(?:\(([^()]*)\))?(\[right\])?$")


def at_kink(activation: str | Activation, side: str) -> Activation:
    r"""The built-in piecewise ``activation`` (``relu``, ``leaky_relu(s)``, ``elu(a)``, by name or
    object) with the derivative of the ``side`` branch at its kink: ``at_kink("relu", "right")``
    has relu'(0) = 1 and is named ``"relu[right]"``. Same forward values; the definition the
    oracles differentiate takes the same branch, so they all follow the declared convention.

    An activation of your own states its convention in its own definition and derivative (the
    branch its ``where`` takes at the kink); this function refuses it rather than guess.
    """
    name = activation.name if isinstance(activation, Activation) else activation
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name or an Activation, got {type(activation).__name__}")
    _check_side(side)
    match = _FAMILY.match(name)
    if match is None:
        raise ValueError(
            f"at_kink knows the built-in piecewise activations relu, leaky_relu(slope) and elu(alpha), "
            f"got {name!r}; an activation of your own states its kink convention in its definition")
    family, arg = match.group(1), match.group(2)
    if family == "relu":
        if arg is not None:
            raise ValueError(f"relu takes no parameter, got {name!r}")
        return relu_family(side)
    param = float(arg) if arg is not None else (0.01 if family == "leaky_relu" else 1.0)
    return leaky_relu(param, side) if family == "leaky_relu" else elu(param, side)


def _softplus_def(z: Any, ops: Ops) -> Any:
    r"""softplus: :math:`f(z) = \log(1 + e^z)`; :math:`f'(z) = \sigma(z)`."""
    return ops.log1p(ops.exp(z))


def _softplus_forward(z: np.ndarray) -> np.ndarray:
    # log(1+e^z) = max(z, 0) + log1p(e^{-|z|}): no overflow, no cancellation.
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _softplus_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return _sigmoid_forward(z)


def _silu_def(z: Any, ops: Ops) -> Any:
    r"""SiLU (swish): :math:`f(z) = z\,\sigma(z)`."""
    return z / (1 + ops.exp(-z))


def _silu_forward(z: np.ndarray) -> np.ndarray:
    return z * _sigmoid_forward(z)


def _silu_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    r""":math:`f'(z) = \sigma(z)\,(1 + z\,\sigma(-z))`, i.e. :math:`\sigma + z\sigma(1-\sigma)`
    with :math:`1-\sigma(z)` taken as :math:`\sigma(-z)` to avoid cancellation."""
    return _sigmoid_forward(z) * (1 + z * _sigmoid_forward(-z))


_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _gelu_def(z: Any, ops: Ops) -> Any:
    r"""GELU, exact: :math:`f(z) = z\,\Phi(z) = \tfrac{z}{2}\operatorname{erfc}(-z/\sqrt 2)`
    (:math:`= \tfrac z2(1 + \operatorname{erf}(z/\sqrt 2))`; the erfc form keeps the oracles that
    evaluate this definition in float64 accurate for very negative z)."""
    return z * ops.erfc(-z / ops.sqrt(2)) / 2


def _gelu_forward(z: np.ndarray) -> np.ndarray:
    # Phi(z) = erfc(-z/sqrt2)/2 keeps relative accuracy for very negative z.
    return z * (_erfc(-z / z.dtype.type(_SQRT2)) / 2)


def _gelu_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    r""":math:`f'(z) = \Phi(z) + z\,\varphi(z)`, :math:`\varphi(z) = e^{-z^2/2}/\sqrt{2\pi}`."""
    phi = np.exp(-(z * z) / 2) * z.dtype.type(_INV_SQRT_2PI)
    return _erfc(-z / z.dtype.type(_SQRT2)) / 2 + z * phi


def _softmax_def(z: Any, ops: Ops) -> Any:
    r"""softmax over each column: :math:`a_i = e^{z_i} / \sum_k e^{z_k}`."""
    e = ops.exp(z)
    return e / ops.colsum(e)


def _softmax_forward(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z, axis=0, keepdims=True))  # shift-invariant; largest exponent is 0
    return e / np.sum(e, axis=0, keepdims=True)


def _softmax_vjp(z: np.ndarray, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    r"""Jacobian-vector product of softmax, per column.

    :math:`\partial a_i/\partial z_j = a_i(\delta_{ij} - a_j)`, so
    :math:`(J^T g)_j = a_j\,(g_j - \sum_i g_i a_i)`. Not an elementwise product.
    """
    return a * (g - np.sum(g * a, axis=0, keepdims=True))


identity = register_activation(Activation("identity", _identity_def, None, _identity_derivative,
                                          complex_step=True))
sigmoid = register_activation(Activation("sigmoid", _sigmoid_def, _sigmoid_forward, _sigmoid_derivative,
                                         complex_step=True, output_range=(0.0, 1.0)))
tanh = register_activation(Activation("tanh", _tanh_def, np.tanh, _tanh_derivative, complex_step=True,
                                      output_range=(-1.0, 1.0)))
relu = register_activation(relu_family("left"))
register_activation(leaky_relu(0.01))
register_activation(elu(1.0))
softplus = register_activation(Activation("softplus", _softplus_def, _softplus_forward,
                                          _softplus_derivative, complex_step=True,
                                          output_range=(0.0, math.inf)))
silu = register_activation(Activation("silu", _silu_def, _silu_forward, _silu_derivative, complex_step=True))
gelu = register_activation(Activation("gelu", _gelu_def, _gelu_forward, _gelu_derivative))
softmax = register_activation(Activation("softmax", _softmax_def, _softmax_forward, vjp=_softmax_vjp,
                                         complex_step=True, output_range=(0.0, 1.0)))
