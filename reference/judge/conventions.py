r"""Users' conventions: their layout, names, labels and loss, translated exactly to the article's.

A user declares how their code is written with a :class:`Conventions`; the suite keeps drawing and
refereeing in the article's conventions and translates at the boundary, with transposes and
reshapes only (nothing is broadcast, nothing is rescaled):

==========  ====================  =====================  ===============  ==========================
layout      X                     W of layer l           b of layer l     forward
==========  ====================  =====================  ===============  ==========================
columns     (n0, m)               (n_l, n_{l-1})         (n_l, 1)         :math:`z = W a + b` (the article)
rows        (N, n0)               (n_{l-1}, n_l)         (n_l,)           ``z = a @ W + b`` (CS231n)
torch       (N, n0)               (n_l, n_{l-1})         (n_l,)           ``z = a @ W.T + b`` (nn.Linear)
==========  ====================  =====================  ===============  ==========================

Element ``(i, j)`` of the article's ``W{l}`` (its :math:`w_{i+1,j+1}^{(l)}`) is the user's
``W[j, i]`` in ``rows`` and ``W[i, j]`` otherwise; every message names the user's element first
and the article's beside it (:func:`user_element_label`: ``dW1[3, 4] (the article's w_54^(1))``).

Names. ``names`` maps the article's ``W1, B1, ...`` to the user's keys: ``None`` (the article's
own), a preset of :data:`NAME_SCHEMES` (``"W1/b1"``, ``"w1/b1"``, ``"weights[0]/biases[0]"``,
``"fc1.weight/fc1.bias"``), a pair of templates (``("layer{l}.W", "layer{l}.b")``; ``{l}`` is the
1-based layer, ``{i}`` the 0-based one; ``[k]`` steps into a nested list or dict), or an explicit
mapping. ``grad_names`` does the same for the returned gradients when they are keyed differently
(``"dW1/db1"`` as in deeplearning.ai); by default they mirror the params. Layers listed in
``no_bias`` have no bias: the suite draws a zero B for them and the user returns no gradient.

Labels. ``"distribution"`` (default: what the loss takes, the article's), ``"soft"`` (the same
arrays; a label domain for the case design), ``"onehot"``, ``"binary"`` (0/1, for BCE) and
``"integer"`` (class indices of shape (N,) or (m,), int64, from the one-hot labels the oracles see).

Loss. Note [Declared loss]: the loss conventions change *what is differentiated*, so they are a
declared loss that every oracle differentiates (:func:`declared_loss`), never a rescaling of
gradients after the fact. ``half`` (:math:`\tfrac12(\hat y - y)^2`) and ``reduction="mean_all"``
(the mean over the outputs as well, as PyTorch's ``MSELoss``) are per-sample losses, so the
declared loss is a :class:`handgrad.Loss` whose definition is the scaled one and the oracles need no
change. ``reduction="sum"`` and ``l2`` are not per-sample: :class:`DeclaredLoss` carries them
(``reduction``, :meth:`DeclaredLoss.penalty` written once against an ``Ops`` namespace, like every
shared definition) for the oracles and the budget to read; each says it does with
``FOLLOWS_DECLARED_LOSS = True``, and :func:`check_oracles_support` refuses such a loss with a
sentence for any that does not, rather than certifying against the wrong loss.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np

import handgrad as hg
from handgrad import Network, Params
from handgrad.notation import element_name

from .referee import GradsStructureError

__all__ = [
    "LABELS",
    "LAYOUTS",
    "NAME_SCHEMES",
    "REDUCTIONS",
    "Conventions",
    "DeclaredLoss",
    "Path",
    "UserGradsError",
    "add_convention_arguments",
    "as_exact_array",
    "check_oracles_support",
    "conventions_from_args",
    "declared_loss",
    "describe_user_case",
    "from_user_data",
    "from_user_grads",
    "from_user_params",
    "grad_label",
    "param_label",
    "registered_loss",
    "resolve_names",
    "to_user",
    "user_element_label",
    "user_index",
    "user_shape",
    "wrap_backward",
]

LAYOUTS = ("columns", "rows", "torch")
LABELS = ("distribution", "soft", "onehot", "binary", "integer")
REDUCTIONS = ("mean", "sum", "mean_all")
_BIAS_SHAPES = (None, "vector", "column", "row")

NAME_SCHEMES: dict[str, tuple[str, str]] = {
    "W1/B1": ("W{l}", "B{l}"),
    "W1/b1": ("W{l}", "b{l}"),
    "w1/b1": ("w{l}", "b{l}"),
    "dW1/db1": ("dW{l}", "db{l}"),
    "weights[0]/biases[0]": ("weights[{i}]", "biases[{i}]"),
    "fc1.weight/fc1.bias": ("fc{l}.weight", "fc{l}.bias"),
}
"""Common naming schemes, by example of layer 1: the weight and bias templates."""

Path = tuple[str | int, ...]
"""Where a tensor lives in the user's structure: ``("W1",)``, ``("weights", 0)``, ``("layers", 0, "W")``."""

NameSpec = None | str | tuple[str, str | None] | Mapping[str, "str | Path | None"]


class UserGradsError(GradsStructureError):
    """The user's backward returned gradients of the wrong structure, shape or type, stated in the
    user's own names and layout."""


@dataclass(frozen=True)
class Conventions:
    r"""How a user's code is written (see the module docstring for each field's meaning).

    Args:
      layout: ``"columns"`` (the article's), ``"rows"`` (CS231n) or ``"torch"`` (``nn.Linear``).
      names: the user's parameter names: ``None``, a key of :data:`NAME_SCHEMES`, a
        ``(weight_template, bias_template)`` pair, or a mapping ``{"W1": "w1", "B1": ("biases", 0)}``.
      grad_names: the names of the returned gradients, the same forms; ``None`` mirrors ``names``.
      no_bias: 1-based layers without a bias.
      bias_shape: ``None`` (the layout's: ``(n, 1)`` in columns, ``(n,)`` otherwise), ``"vector"``,
        ``"column"`` ``(n, 1)`` or ``"row"`` ``(1, n)``.
      labels: ``"distribution"``, ``"soft"``, ``"onehot"``, ``"binary"`` or ``"integer"``.
      flat_targets: a one-output net's targets as a vector ``(N,)`` instead of ``(N, 1)``/``(1, m)``.
      reduction: ``"mean"`` over the batch, summed over the outputs (the article's); ``"sum"``;
        ``"mean_all"``, the mean over the batch and the outputs (PyTorch's ``MSELoss``).
      half: squared error written :math:`\tfrac12(\hat y - y)^2`.
      l2: :math:`\lambda` of an L2 penalty :math:`\lambda\sum_l\|W^{(l)}\|^2` in the loss (0: none).
      l2_half: the penalty is :math:`\tfrac\lambda2\sum\|W\|^2` (its gradient :math:`\lambda W`).
      l2_biases: the penalty covers the biases too.
    """

    layout: str = "columns"
    names: NameSpec = None
    grad_names: NameSpec = None
    no_bias: tuple[int, ...] = ()
    bias_shape: str | None = None
    labels: str = "distribution"
    flat_targets: bool = False
    reduction: str = "mean"
    half: bool = False
    l2: float = 0.0
    l2_half: bool = False
    l2_biases: bool = False

    def __post_init__(self) -> None:
        for name, value, allowed in (("layout", self.layout, LAYOUTS), ("labels", self.labels, LABELS),
                                     ("reduction", self.reduction, REDUCTIONS),
                                     ("bias_shape", self.bias_shape, _BIAS_SHAPES)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
        for name in ("flat_targets", "half", "l2_half", "l2_biases"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        l2 = self.l2
        if isinstance(l2, bool) or not isinstance(l2, int | float | np.integer | np.floating) \
                or not np.isfinite(l2) or l2 < 0:
            raise ValueError(f"l2 must be a finite real >= 0 (the penalty's lambda), got {l2!r}")
        object.__setattr__(self, "l2", float(l2))
        if isinstance(self.no_bias, int | str) or not all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in self.no_bias):
            raise ValueError(f"no_bias must be a tuple of 1-based layer numbers, got {self.no_bias!r}")
        object.__setattr__(self, "no_bias", tuple(sorted(set(self.no_bias))))
        for name in ("names", "grad_names"):
            _check_name_spec(name, getattr(self, name))

    # -- what the layout says ------------------------------------------------------------------

    @property
    def batch_axis_name(self) -> str:
        """What the user calls the batch size: ``m`` in columns, ``N`` in rows and torch."""
        return "m" if self.layout == "columns" else "N"

    def with_(self, **changes: Any) -> Conventions:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


# ---------------------------------------------------------------------------------------------
# Names and paths.
# ---------------------------------------------------------------------------------------------

_STEP = re.compile(r"\[(?:'([^']*)'|\"([^\"]*)\"|(-?[0-9]+)|([^\]]*))\]")


def _parse_path(text: str) -> Path:
    """``"weights[0]"`` -> ``("weights", 0)``; ``"layers[0][W]"`` -> ``("layers", 0, "W")``; dots stay in keys."""
    head, _, rest = text.partition("[")
    if not head:
        raise ValueError(f"a name must start with a key, got {text!r}")
    path: list[str | int] = [head]
    rest = "[" + rest if rest else ""
    pos = 0
    for m in _STEP.finditer(rest):
        if m.start() != pos:
            raise ValueError(f"cannot read the name {text!r}: expected key[index][key]...")
        quoted = m.group(1) if m.group(1) is not None else m.group(2)
        if quoted is not None:
            path.append(quoted)
        elif m.group(3) is not None:
            path.append(int(m.group(3)))
        else:
            path.append(m.group(4))
        pos = m.end()
    if pos != len(rest):
        raise ValueError(f"cannot read the name {text!r}: expected key[index][key]...")
    return tuple(path)


def _as_path(name: str, value: object) -> Path:
    if isinstance(value, str):
        return _parse_path(value)
    if isinstance(value, tuple) and value and all(isinstance(p, str | int) and not isinstance(p, bool)
                                                  for p in value):
        return value
    raise TypeError(f"{name} must be a key such as 'W1' or 'weights[0]', or a path tuple such as "
                    f"('weights', 0); got {value!r}")


def _check_name_spec(name: str, spec: object) -> None:
    if spec is None:
        return
    if isinstance(spec, str):
        if spec not in NAME_SCHEMES:
            raise ValueError(f"{name} {spec!r} is not a known scheme; choose from {list(NAME_SCHEMES)}, "
                             "or pass (weight_template, bias_template) or a mapping")
        return
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and \
            (spec[1] is None or isinstance(spec[1], str)):
        for t in spec:
            if t is not None and "{l}" not in t and "{i}" not in t:
                raise ValueError(f"{name} templates need a {{l}} (1-based layer) or {{i}} (0-based), got {t!r}")
        return
    if isinstance(spec, Mapping):
        for k, v in spec.items():
            if not hg.notation.is_parameter_name(k):
                raise ValueError(f"{name} maps the article's names (W1, B1, ...) to yours; {k!r} is not one")
            if v is not None:
                _as_path(f"{name}[{k!r}]", v)
        return
    raise TypeError(f"{name} must be None, a scheme name, a (weight, bias) template pair or a mapping, "
                    f"got {type(spec).__name__}")


def resolve_names(spec: NameSpec, depth: int, no_bias: Sequence[int] = ()) -> dict[str, Path]:
    """The user's path of every article tensor that exists (layers in ``no_bias`` have no B)."""
    if isinstance(spec, str):
        spec = NAME_SCHEMES[spec]
    out: dict[str, Path] = {}
    for l in range(1, depth + 1):
        for kind in ("W", "B"):
            article = f"{kind}{l}"
            if kind == "B" and l in no_bias:
                continue
            if spec is None:
                path: Path | None = (article,)
            elif isinstance(spec, tuple):
                template = spec[0] if kind == "W" else spec[1]
                path = None if template is None else _parse_path(template.format(l=l, i=l - 1))
            else:
                v = spec.get(article, article)
                path = None if v is None else _as_path(f"names[{article!r}]", v)
            if path is None:
                if kind == "W":
                    raise ValueError(f"the names give no key for {article}: every layer has weights")
                raise ValueError(f"the names give no key for {article}; declare no_bias=({l},) for a layer "
                                 "without a bias")
            out[article] = path
    paths = list(out.values())
    dup = sorted({_show(p) for p in paths if paths.count(p) > 1})
    if dup:
        raise ValueError(f"the names map two tensors to the same key: {dup}")
    return out


def _show(path: Path) -> str:
    head, *rest = path
    return str(head) + "".join(f"[{p}]" if isinstance(p, int) else f"[{p!r}]" for p in rest)


def param_label(article: str, conv: Conventions) -> str:
    """The user's name of a parameter tensor: ``"W1"``, ``"b1"``, ``"weights[0]"``."""
    return _show(_names(conv, _layer(article))[article])


def grad_label(article: str, conv: Conventions) -> str:
    """The user's name of a gradient tensor: ``"dW1"`` (``d`` + a plain name), ``"dW1"`` as declared
    by ``grad_names``, or ``grads['weights'][0]`` for a nested path."""
    if conv.grad_names is not None:
        return _show(_grad_names(conv, _layer(article))[article])
    path = _names(conv, _layer(article))[article]
    if len(path) == 1 and isinstance(path[0], str) and path[0].isidentifier():
        return f"d{path[0]}"
    return "grads" + "".join(f"[{p!r}]" for p in path)


def _layer(article: str) -> int:
    return int(article[1:])


def _names(conv: Conventions, depth: int) -> dict[str, Path]:
    return _resolve_cached(conv.names, depth, conv.no_bias)


def _grad_names(conv: Conventions, depth: int) -> dict[str, Path]:
    return _resolve_cached(conv.grad_names if conv.grad_names is not None else conv.names, depth, conv.no_bias)


def _freeze(spec: NameSpec) -> Any:
    return tuple(sorted(spec.items())) if isinstance(spec, Mapping) else spec


@lru_cache(maxsize=256)
def _resolve_frozen(frozen: Any, is_mapping: bool, depth: int, no_bias: tuple[int, ...]) -> dict[str, Path]:
    return resolve_names(dict(frozen) if is_mapping else frozen, depth, no_bias)


def _resolve_cached(spec: NameSpec, depth: int, no_bias: tuple[int, ...]) -> dict[str, Path]:
    # depth is at least the layer asked about; extra layers are harmless for a lookup.
    return dict(_resolve_frozen(_freeze(spec), isinstance(spec, Mapping), max(depth, 1), no_bias))


def _build(leaves: Mapping[Path, Any]) -> dict[Any, Any]:
    """Nested dicts from paths; a dict whose keys are exactly 0..n-1 becomes a list."""
    root: dict[Any, Any] = {}
    for path, value in leaves.items():
        node = root
        for p in path[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"the names use {_show(path)} and a shorter key that holds a tensor")
        node[path[-1]] = value

    def lists(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        out = {k: lists(v) for k, v in node.items()}
        if out and all(isinstance(k, int) for k in out) and sorted(out) == list(range(len(out))):
            return [out[k] for k in range(len(out))]
        return out

    return lists(root)


def _is_leaf(x: object) -> bool:
    return isinstance(x, np.ndarray) or hasattr(x, "__array__") or not isinstance(x, Mapping | list | tuple)


def _leaves(tree: object, expected: frozenset[Path] = frozenset(), prefix: Path = ()) -> Iterator[Path]:
    """Every leaf path of a nested structure; a path in ``expected`` is a leaf whatever it holds (a
    list where an array belongs is then reported as a list, not as its elements)."""
    if _is_leaf(tree) or prefix in expected:
        yield prefix
    elif isinstance(tree, Mapping):
        for k, v in tree.items():
            yield from _leaves(v, expected, (*prefix, k))
    else:
        for i, v in enumerate(tree):  # type: ignore[arg-type]
            yield from _leaves(v, expected, (*prefix, i))


def _get(tree: object, path: Path) -> object:
    node = tree
    for p in path:
        if isinstance(node, Mapping):
            if p not in node:
                raise KeyError(p)
            node = node[p]
        elif isinstance(node, list | tuple) and isinstance(p, int) and 0 <= p < len(node):
            node = node[p]
        else:
            raise KeyError(p)
    return node


# ---------------------------------------------------------------------------------------------
# Shapes and elements.
# ---------------------------------------------------------------------------------------------

def _bias_kind(conv: Conventions) -> str:
    if conv.bias_shape is not None:
        return conv.bias_shape
    return "column" if conv.layout == "columns" else "vector"


def user_shape(article: str, article_shape: Sequence[int], conv: Conventions) -> tuple[int, ...]:
    """The shape of an article tensor in the user's layout: ``W1`` (3, 2) is (2, 3) in rows."""
    rows, cols = (int(s) for s in article_shape)
    if article[0] == "W":
        return (cols, rows) if conv.layout == "rows" else (rows, cols)
    kind = _bias_kind(conv)
    return {"vector": (rows,), "column": (rows, 1), "row": (1, rows)}[kind]


def user_index(article: str, index: Sequence[int], conv: Conventions) -> tuple[int, ...]:
    """The user's index of an article element: ``W1[4, 3]`` is ``W1[3, 4]`` in rows; ``B1[2, 0]`` is
    ``b1[2]`` as a vector."""
    i, j = (int(k) for k in index)
    if article[0] == "W":
        return (j, i) if conv.layout == "rows" else (i, j)
    return {"vector": (i,), "column": (i, 0), "row": (0, i)}[_bias_kind(conv)]


def user_element_label(tensor: str, index: Sequence[int], conv: Conventions | None = None) -> str:
    """An element of a *gradient* named the user's way with the article's beside it.

    ``tensor`` and ``index`` are the article's (``"W1"``, 0-based ``(4, 3)``, what the referee's
    mismatches hold): ``dW1[3, 4] (the article's w_54^(1))`` in rows layout.
    """
    conv = conv if conv is not None else Conventions()
    idx = user_index(tensor, index, conv)
    return f"{grad_label(tensor, conv)}[{', '.join(map(str, idx))}] (the article's {element_name(tensor, index)})"


def _to_user_tensor(article: str, value: np.ndarray, conv: Conventions) -> np.ndarray:
    if article[0] == "W":
        out = value.T if conv.layout == "rows" else value
    else:
        out = value.reshape(user_shape(article, value.shape, conv))
    return np.array(out, order="C", copy=True)


def _from_user_tensor(article: str, value: np.ndarray, article_shape: tuple[int, int],
                      conv: Conventions) -> np.ndarray:
    if article[0] == "W":
        out = value.T if conv.layout == "rows" else value
    else:
        out = value.reshape(article_shape)
    return np.array(out, order="C", copy=True)


def as_exact_array(x: object, name: str, shape: tuple[int, ...], dtype: np.dtype | None = None,
                   *, theirs: str = "") -> np.ndarray:
    """``x`` as a numpy array when it is one, or an array-like (``__array__``: JAX, torch on CPU, ...)
    whose shape and dtype are exactly right; never broadcast, reshaped or converted.

    Args:
      name: what to call ``x`` in a message (``"dW1"``).
      shape: the exact shape required.
      dtype: the exact dtype required; ``None`` accepts any floating dtype (a float32 result in a
        float64 run is then the diagnosis's business, not a structure error).
      theirs: the sentence's comparison, e.g. ``"your W1 is (4, 6)"``.
    """
    if not isinstance(x, np.ndarray):
        if not hasattr(x, "__array__"):
            raise UserGradsError(f"{name} is a {type(x).__name__}; return a numpy array (or an array-like "
                                 f"with __array__) of shape {shape}")
        x = np.asarray(x)
    assert isinstance(x, np.ndarray)
    if x.shape != tuple(shape):
        want = theirs or f"expected {tuple(shape)}"
        hint = ""
        if x.shape == tuple(shape)[::-1] and len(shape) == 2:
            hint = " (transposed?)"
        elif x.size == int(np.prod(shape)):
            hint = f" (same number of elements: reshape it to {tuple(shape)}; nothing is broadcast)"
        raise UserGradsError(f"{name} has shape {x.shape} but {want}{hint}")
    if dtype is not None and x.dtype != dtype:
        raise UserGradsError(f"{name} has dtype {x.dtype} but expected {np.dtype(dtype)}")
    if x.dtype.kind != "f":
        raise UserGradsError(f"{name} has dtype {x.dtype}; expected a floating dtype")
    return x


# ---------------------------------------------------------------------------------------------
# Labels.
# ---------------------------------------------------------------------------------------------

def _check_onehot(Y: np.ndarray, what: str) -> None:
    ok = np.isin(Y, (0, 1)).all() and np.all(np.sum(Y, axis=0) == 1)
    if not ok:
        bad = int(np.flatnonzero(~(np.isin(Y, (0, 1)).all(axis=0) & (np.sum(Y, axis=0) == 1)))[0])
        raise ValueError(f"labels={what!r} needs one-hot targets (one 1 per sample, zeros elsewhere); "
                         f"sample {bad} is {Y[:, bad].tolist()}: draw labels of the declared kind")


def _labels_to_user(Y: np.ndarray, conv: Conventions) -> np.ndarray:
    kind = conv.labels
    if kind in ("integer", "onehot"):
        _check_onehot(Y, kind)
    if kind == "integer":
        return np.argmax(Y, axis=0).astype(np.int64)
    if kind == "binary" and not np.isin(Y, (0, 1)).all():
        raise ValueError("labels='binary' needs targets that are exactly 0 or 1; got "
                         f"{Y[~np.isin(Y, (0, 1))][:3].tolist()}...: draw labels of the declared kind")
    if conv.flat_targets:
        if Y.shape[0] != 1:
            raise ValueError(f"flat_targets=True needs a one-output net; this one has {Y.shape[0]} outputs")
        return np.array(Y[0], copy=True)
    return np.array(Y.T if conv.layout != "columns" else Y, order="C", copy=True)


def _labels_from_user(Y: np.ndarray, conv: Conventions, n_out: int, dtype: np.dtype) -> np.ndarray:
    Y = np.asarray(Y)
    if conv.labels == "integer":
        if Y.ndim != 1 or Y.dtype.kind not in "iu":
            raise ValueError(f"labels='integer' takes a 1-D integer array, got {Y.dtype} of shape {Y.shape}")
        if Y.size and (Y.min() < 0 or Y.max() >= n_out):
            raise ValueError(f"integer labels must lie in 0..{n_out - 1}, got values in [{Y.min()}, {Y.max()}]")
        out = np.zeros((n_out, Y.size), dtype=dtype)
        out[Y, np.arange(Y.size)] = 1
        return out
    if conv.flat_targets:
        return np.asarray(Y, dtype=dtype).reshape(1, -1).copy()
    return np.array(Y.T if conv.layout != "columns" else Y, dtype=dtype, order="C", copy=True)


# ---------------------------------------------------------------------------------------------
# The translation, both ways.
# ---------------------------------------------------------------------------------------------

def _depth(params: Mapping[str, Any]) -> int:
    layers = [int(k[1:]) for k in params if hg.notation.is_parameter_name(k)]
    if not layers:
        raise ValueError(f"params must be keyed W1, B1, ... (the article's names), got {list(params)}")
    return max(layers)


def to_user(params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray,
            conv: Conventions) -> tuple[dict[Any, Any], np.ndarray, np.ndarray]:
    """The article's case (params ``W1, B1, ...``, X ``(n0, m)``, Y ``(nL, m)``) in the user's
    conventions: fresh C-contiguous copies, transposed and reshaped only.

    A layer in ``conv.no_bias`` must have ``B == 0`` (its function would differ otherwise).
    """
    depth = _depth(params)
    names = _names(conv, depth)
    for l in conv.no_bias:
        B = params.get(f"B{l}")
        if B is not None and np.any(B != 0):
            raise ValueError(f"layer {l} is declared without a bias but the case has a non-zero B{l}; "
                             "draw B = 0 for it")
    leaves = {names[k]: _to_user_tensor(k, np.asarray(params[k]), conv) for k in names}
    Xu = np.array(X.T if conv.layout != "columns" else X, order="C", copy=True)
    return _build(leaves), Xu, _labels_to_user(np.asarray(Y), conv)


def from_user_params(params_user: object, conv: Conventions, net: Network) -> Params:
    """The user's params back in the article's names and layout (zero B for ``no_bias`` layers)."""
    names = _names(conv, net.depth)
    out: Params = {}
    for k, shape in net.param_shapes.items():
        if k not in names:
            out[k] = np.zeros(shape, dtype=out[f"W{k[1:]}"].dtype)
            continue
        try:
            value = _get(params_user, names[k])
        except KeyError:
            raise ValueError(f"params has no {_show(names[k])}") from None
        arr = as_exact_array(value, _show(names[k]), user_shape(k, shape, conv))
        out[k] = _from_user_tensor(k, arr, shape, conv)
    return out


def from_user_data(X_user: np.ndarray, Y_user: np.ndarray, conv: Conventions,
                   net: Network) -> tuple[np.ndarray, np.ndarray]:
    """The user's X and labels in the article's layout (integer labels become one-hot columns)."""
    X = np.asarray(X_user)
    Xa = np.array(X.T if conv.layout != "columns" else X, order="C", copy=True)
    return Xa, _labels_from_user(Y_user, conv, net.sizes[-1], Xa.dtype)


def from_user_grads(grads_user: object, conv: Conventions, net: Network,
                    dtype: np.dtype | None = None) -> Params:
    """The user's gradients, validated in *their* names and layout, in the article's.

    Raises :class:`UserGradsError` with a sentence in the user's terms (``dW1 has shape (6, 4) but
    your W1 is (4, 6)``). Transposes and reshapes only; any floating dtype passes unless ``dtype``
    is given. Layers in ``no_bias`` get no B gradient (the returned dict lacks it).
    """
    depth = net.depth
    gnames = _grad_names(conv, depth)
    pnames = _names(conv, depth)
    if not isinstance(grads_user, Mapping | list | tuple) or _is_leaf(grads_user):
        raise UserGradsError(f"backward returned {type(grads_user).__name__}; expected your gradients keyed like "
                             f"your params: {', '.join(_show(gnames[k]) for k in gnames)}")
    expected = {gnames[k] for k in gnames}
    got = set(_leaves(grads_user, frozenset(expected)))
    missing = [_show(gnames[k]) for k in gnames if gnames[k] not in got]
    extra = sorted(_show(p) for p in got - expected)
    if missing or extra:
        parts = ([f"lack {', '.join(missing)}"] if missing else []) + \
                ([f"have unexpected {', '.join(extra)}"] if extra else [])
        bias_hint = ""
        if any(p.lower().startswith(("b", "db")) for p in missing) and not conv.no_bias:
            bias_hint = "; declare no_bias=(...) for layers without a bias"
        raise UserGradsError(f"your backward's gradients {' and '.join(parts)} (expected exactly "
                             f"{', '.join(_show(gnames[k]) for k in gnames)}){bias_hint}")
    out: Params = {}
    for k in gnames:
        shape = net.param_shapes[k]
        ushape = user_shape(k, shape, conv)
        label = grad_label(k, conv)
        arr = as_exact_array(_get(grads_user, gnames[k]), label, ushape, dtype,
                             theirs=f"your {_show(pnames[k])} is {ushape}")
        out[k] = _from_user_tensor(k, arr, shape, conv)
    return out


# ---------------------------------------------------------------------------------------------
# Wrapping a user's backward or model.
# ---------------------------------------------------------------------------------------------

GRAD_METHODS = ("loss_and_grads", "backward", "gradients", "grads", "grad", "loss")
"""Method names tried on a model object, in this order (``loss`` is CS231n's ``loss(X, y) -> (loss, grads)``)."""
PARAMS_ATTRS = ("params", "parameters")


def _grads_of(result: object) -> object:
    """``grads`` from ``grads`` or ``(loss, grads)``."""
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Mapping | list | tuple) \
            and np.ndim(result[0]) == 0 and not isinstance(result[0], Mapping | list | tuple):
        return result[1]
    return result


def _model_parts(model: object, method: str | None) -> tuple[str, Callable[..., Any], int]:
    attr = next((a for a in PARAMS_ATTRS if isinstance(getattr(model, a, None), Mapping)), None)
    if attr is None:
        raise TypeError(f"{type(model).__name__} is not callable and has no params dict "
                        f"(looked for {', '.join(PARAMS_ATTRS)}); pass backward(params, X, Y) or a model with one")
    names = (method,) if method is not None else GRAD_METHODS
    for name in names:
        fn = getattr(model, name, None)
        if callable(fn):
            try:
                sig = inspect.signature(fn)
                required = sum(1 for p in sig.parameters.values()
                               if p.default is inspect.Parameter.empty
                               and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
                n_args = max(2, required) if required <= 3 else -1
                if required < 2 and len(sig.parameters) >= 2:
                    n_args = 2  # CS231n: loss(X, y=None)
            except (TypeError, ValueError):
                n_args = 2
            if n_args in (2, 3):
                return attr, fn, n_args
    raise TypeError(f"{type(model).__name__} has no gradient method taking (X, Y) or (params, X, Y) "
                    f"(looked for {', '.join(names)})")


def wrap_backward(user: object, conv: Conventions, net: Network, *,
                  method: str | None = None) -> Callable[[Params, np.ndarray, np.ndarray], Params]:
    """``backward(params, X, Y)`` in the article's conventions around a user's code.

    Args:
      user: ``backward(params, X, Y)`` in the user's conventions, returning their gradients or
        ``(loss, grads)``; or a model object with a params dict (``params``/``parameters``) and a
        method of :data:`GRAD_METHODS` taking ``(X, Y)`` (it reads its own params, which are set to
        the case's for the call and restored after) or ``(params, X, Y)``.
      conv: the user's conventions; net: the architecture (for shapes and names).
      method: the model's method name, when none of the usual ones fits.

    The returned function translates the case with :func:`to_user`, calls the user's code and
    brings the gradients back with :func:`from_user_grads` (a :class:`UserGradsError` in the user's
    terms when their structure is wrong). It carries ``conv`` as its ``conventions`` attribute:
    the referee reads it to name elements the user's way, to leave out the B of a layer declared
    without a bias, and to word its diagnoses.
    """
    if not isinstance(conv, Conventions):
        raise TypeError(f"conv must be a Conventions, got {type(conv).__name__}")
    if callable(user) and not any(isinstance(getattr(user, a, None), Mapping) for a in PARAMS_ATTRS):
        call = user

        def backward(params: Params, X: np.ndarray, Y: np.ndarray) -> Params:
            pu, Xu, Yu = to_user(params, X, Y, conv)
            return from_user_grads(_grads_of(call(pu, Xu, Yu)), conv, net)

        backward.__qualname__ = getattr(user, "__qualname__", type(user).__name__)
        backward.conventions = conv  # type: ignore[attr-defined]  # the referee speaks them
        return backward
    attr, fn, n_args = _model_parts(user, method)

    def model_backward(params: Params, X: np.ndarray, Y: np.ndarray) -> Params:
        pu, Xu, Yu = to_user(params, X, Y, conv)
        if n_args == 3:
            return from_user_grads(_grads_of(fn(pu, Xu, Yu)), conv, net)
        saved = getattr(user, attr)
        setattr(user, attr, pu)
        try:
            result = fn(Xu, Yu)
        finally:
            setattr(user, attr, saved)
        return from_user_grads(_grads_of(result), conv, net)

    model_backward.__qualname__ = f"{type(user).__name__}.{fn.__name__}"
    model_backward.conventions = conv  # type: ignore[attr-defined]
    return model_backward


# ---------------------------------------------------------------------------------------------
# The declared loss (Note [Declared loss] in the module docstring).
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeclaredLoss(hg.Loss):
    r"""A per-sample loss :math:`c\,\ell` (``scale`` c from ``half`` and ``mean_all``) with the
    conventions that are not per-sample: the batch ``reduction`` and an L2 ``penalty``.

    The objective every oracle must differentiate:

    .. math::
       L = w_m \sum_{s=1}^m c\,\ell(\hat y_s, y_s) + \rho\,\lambda \sum_l \sum_{ij} (w_{ij}^{(l)})^2
           \;[+\; \rho\,\lambda \sum_l \sum_i (b_i^{(l)})^2],

    with :math:`w_m = 1/m` (``mean``, ``mean_all``) or 1 (``sum``), :math:`\rho = 1/2` when
    ``l2_half``, else 1. ``definition``, ``value``, ``grad`` and the fused rules are those of
    :math:`c\,\ell`: handgrad's network and every oracle already take them.
    """

    base: hg.Loss | None = None
    scale: Fraction = Fraction(1)
    reduction: str = "mean"
    l2: float = 0.0
    l2_half: bool = False
    l2_biases: bool = False

    def sample_weight(self, m: int) -> float:
        """:math:`w_m`: the weight of each sample's loss in the batch loss."""
        return 1.0 if self.reduction == "sum" else 1.0 / m

    @property
    def has_penalty(self) -> bool:
        return self.l2 > 0

    def penalized(self, name: str) -> bool:
        """Whether the penalty covers the tensor ``name`` (``W1``, ``B1``, ...)."""
        return self.has_penalty and (name[0] == "W" or self.l2_biases)

    def penalty_terms(self, v: Any, ops: Any) -> Any:
        r"""The penalty's term of each element, :math:`\rho\lambda v^2`, elementwise (the finite-difference
        witness differences it element by element: the penalty is a sum of such terms)."""
        t = v * v * self.l2
        return t / 2 if self.l2_half else t

    def penalty(self, params: Mapping[str, Any], ops: Any) -> Any:
        r"""The L2 term as a ``(1, 1)`` value, written against ``ops`` (numpy, jax.numpy, SymPy object
        arrays, the finite-difference witness's bounded values): each oracle differentiates it."""
        total: Any = 0
        for name in sorted(params, key=lambda k: (int(k[1:]), k[0] != "W")):
            if self.penalized(name):
                total = total + ops.colsum(ops.colsum(self.penalty_terms(params[name], ops)).T)
        return total

    def penalty_coefficient(self) -> float:
        r"""The penalty's gradient is this times the tensor: :math:`\lambda` with the 1/2, else :math:`2\lambda`."""
        return self.l2 if self.l2_half else 2 * self.l2


def _scaled(fn: Callable[..., Any], scale: Fraction) -> Callable[..., Any]:
    num, den = scale.numerator, scale.denominator

    def scaled(*args: Any) -> Any:
        v = fn(*args)
        v = v * num if num != 1 else v
        return v / den if den != 1 else v

    scaled.__name__ = f"{getattr(fn, '__name__', 'loss')}_x{num}_{den}"
    scaled.__doc__ = f"{scale} times :func:`{getattr(fn, '__qualname__', fn)}`."
    return scaled


def _scaled_rule(rule: hg.FusedRule, scale: Fraction) -> hg.FusedRule:
    return hg.FusedRule(_scaled(rule.definition, scale), _scaled(rule.value, scale), _scaled(rule.delta, scale))


def declared_loss(loss: str | hg.Loss, conv: Conventions, n_out: int) -> hg.Loss:
    """The loss the oracles must differentiate for a user's conventions.

    The article's convention (``mean``, no 1/2, no L2) returns ``loss`` itself. Otherwise a
    :class:`DeclaredLoss` named after what it declares (``"squared_error[1/2]"``,
    ``"squared_error[1/2, mean over 3 outputs]"``, ``"cross_entropy[sum, l2=0.001]"``), the same
    object for the same arguments (the oracles' caches key on it).
    """
    base = hg.get_loss(loss)
    hg.validation.check_positive_int("n_out", n_out)
    if conv.half and base.name != "squared_error":
        raise ValueError(f"half=True declares the 1/2 of a squared error; loss {base.name!r} has none")
    scale = Fraction(1, 2) if conv.half else Fraction(1)
    if conv.reduction == "mean_all":
        scale /= n_out
    reduction = "sum" if conv.reduction == "sum" else "mean"
    if scale == 1 and reduction == "mean" and conv.l2 == 0:
        return base
    key = (id(base), conv.half, conv.reduction, conv.l2, conv.l2_half, conv.l2_biases, n_out)
    cached = _DECLARED.get(key)
    if cached is None or cached.base is not base:
        cached = _DECLARED[key] = _declared(base, scale, reduction, conv, n_out)
    return cached


_DECLARED: dict[tuple[Any, ...], DeclaredLoss] = {}


def _declared(base: hg.Loss, scale: Fraction, reduction: str, conv: Conventions, n_out: int) -> DeclaredLoss:
    parts = (["1/2"] if conv.half else []) + ([f"mean over {n_out} outputs"] if conv.reduction == "mean_all" else [])
    if reduction == "sum":
        parts.append("sum")
    l2, l2_half, l2_biases = conv.l2, conv.l2_half, conv.l2_biases
    if l2:
        parts.append(f"l2={l2:g}{'/2' if l2_half else ''}{' with biases' if l2_biases else ''}")
    name = f"{base.name}[{', '.join(parts)}]"
    return DeclaredLoss(
        name, _scaled(base.definition, scale), _scaled(base.value, scale), _scaled(base.grad, scale),
        fused={k: _scaled_rule(r, scale) for k, r in base.fused.items()},
        target_range=base.target_range, prediction_range=base.prediction_range, target_kind=base.target_kind,
        base=base, scale=scale, reduction=reduction, l2=l2, l2_half=l2_half, l2_biases=l2_biases,
    )


_FOLLOWERS = {"sympy": "..oracles.sympy_oracle", "jax": "..oracles.jax_oracle", "fd": "..oracles.finite_diff",
              "budget": ".tolerance"}


def check_oracles_support(loss: hg.Loss, oracles: Sequence[str] = ("sympy", "jax", "fd")) -> None:
    """Refuse, with the reason, a declared loss that the oracles (or the budgets) do not follow.

    Every oracle reads ``definition``, so ``half`` and ``mean_all`` are always differentiated. The
    batch ``reduction`` and the L2 ``penalty`` are followed by a module that says so with
    ``FOLLOWS_DECLARED_LOSS = True`` (what each does is listed in ``docs/users-code.md``); until every
    one in use does, such a loss is refused rather than certified against the wrong objective.
    """
    if not isinstance(loss, DeclaredLoss):
        return
    parts = (["reduction='sum'"] if loss.reduction == "sum" else []) + \
            ([f"l2={loss.l2:g}"] if loss.has_penalty else [])
    if not parts:
        return
    import importlib

    behind = [name for name in (*oracles, "budget") if name in _FOLLOWERS and not getattr(
        importlib.import_module(_FOLLOWERS[name], __package__), "FOLLOWS_DECLARED_LOSS", False)]
    if behind:
        raise NotImplementedError(
            f"{' and '.join(parts)}: {', '.join(behind)} do not differentiate this part of the declared loss "
            "yet (it would have to be rescaled after the fact, which the suite never does)")


@contextmanager
def registered_loss(loss: hg.Loss) -> Iterator[hg.Loss]:
    """Register ``loss`` for the duration of a ``with`` block if it is not registered (the case
    design names losses); leave the registry as it was."""
    names = hg.loss_names()
    if loss.name in names:
        if hg.get_loss(loss.name) is not loss:
            raise ValueError(f"another loss named {loss.name!r} is registered")
        yield loss
        return
    hg.register_loss(loss)
    try:
        yield loss
    finally:
        hg.unregister_loss(loss.name)



# ---------------------------------------------------------------------------------------------
# Command line: the same declarations as options (the CLI adds them with two calls).
# ---------------------------------------------------------------------------------------------

def add_convention_arguments(parser: Any) -> None:
    """Add ``--layout --names --grad-names --no-bias --labels --flat-targets --reduction --half --l2
    --l2-half --l2-biases`` to an ``argparse`` parser (or argument group)."""
    parser.add_argument("--layout", choices=LAYOUTS, default="columns",
                        help="your arrays: columns (the article's), rows (X @ W + b, W (in, out)) "
                             "or torch (W (out, in))")
    parser.add_argument("--names", default=None,
                        help=f"your parameter names: one of {', '.join(NAME_SCHEMES)}, or 'WEIGHT,BIAS' templates "
                             "with {l} (1-based layer) or {i} (0-based), e.g. 'layers[{i}][W],layers[{i}][b]'")
    parser.add_argument("--grad-names", default=None, help="the names of your returned gradients (same forms)")
    parser.add_argument("--no-bias", default="", metavar="LAYERS", help="layers without a bias, e.g. '2' or '1,3'")
    parser.add_argument("--labels", choices=LABELS, default="distribution", help="how your labels are passed")
    parser.add_argument("--flat-targets", action="store_true", help="a one-output net's targets as a vector (N,)")
    parser.add_argument("--reduction", choices=REDUCTIONS, default="mean",
                        help="mean over the batch (default), sum, or mean_all (over batch and outputs, as MSELoss)")
    parser.add_argument("--half", action="store_true", help="squared error with the 1/2")
    parser.add_argument("--l2", type=float, default=0.0, metavar="LAMBDA",
                        help="L2 penalty LAMBDA * sum W^2 in your loss")
    parser.add_argument("--l2-half", action="store_true", help="the penalty is LAMBDA/2 * sum W^2")
    parser.add_argument("--l2-biases", action="store_true", help="the penalty covers the biases too")


def _names_option(option: str, text: str | None) -> NameSpec:
    if text is None or text in NAME_SCHEMES:
        return text
    weight, sep, bias = text.partition(",")
    if not sep:
        raise ValueError(f"{option} {text!r} is neither a scheme ({', '.join(NAME_SCHEMES)}) "
                         "nor 'WEIGHT,BIAS' templates")
    return (weight.strip(), bias.strip() or None)


def conventions_from_args(ns: Any) -> Conventions:
    """The :class:`Conventions` of the options :func:`add_convention_arguments` added (``ValueError``
    naming the option for a bad value)."""
    try:
        no_bias = tuple(int(k) for k in str(ns.no_bias).replace(" ", "").split(",") if k)
    except ValueError:
        raise ValueError(f"--no-bias takes layer numbers such as '2' or '1,3', got {ns.no_bias!r}") from None
    return Conventions(layout=ns.layout, names=_names_option("--names", ns.names),
                       grad_names=_names_option("--grad-names", ns.grad_names), no_bias=no_bias,
                       labels=ns.labels, flat_targets=ns.flat_targets, reduction=ns.reduction, half=ns.half,
                       l2=ns.l2, l2_half=ns.l2_half, l2_biases=ns.l2_biases)


def describe_user_case(params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray, conv: Conventions) -> str:
    """One line for a report: the case's shapes and labels as the user's code receives them, e.g.
    ``your call: W1 (4, 6), b1 (6,), W2 (6, 3), b2 (3,); X (5, 4); y = [0, 2, 1, 1, 0] (integer labels)``."""
    pu, Xu, Yu = to_user(params, X, Y, conv)
    names = _names(conv, _depth(params))
    shapes = ", ".join(f"{_show(p)} {_get(pu, p).shape}" for p in names.values())  # type: ignore[union-attr]
    if conv.labels == "integer":
        labels = f"y = {Yu.tolist()} (integer labels)"
    elif Yu.size <= 12:
        labels = f"Y {Yu.shape} = {np.array2string(Yu, separator=', ', precision=4).replace(chr(10), '')}"
    else:
        labels = f"Y {Yu.shape} ({conv.labels})"
    return f"your call: {shapes}; X {Xu.shape}; {labels}"
