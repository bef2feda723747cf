r"""Argument types and parsing for the ``handgrad`` command.

Arguments are *parsed*, never evaluated: architectures are matched by ``\d+(-\d+)+``, weight
names by regular expressions (:func:`parse_weight`), activation and loss names looked up in the
registry, ``module:function`` imported with :mod:`importlib`. A bad argument raises
:class:`UsageError`, which :func:`handgrad.reference.cli.main` prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import handgrad as hg
from handgrad.notation import NotationError, is_parameter_name, parse_element

__all__ = ["UsageError", "is_model", "load_backward", "parse_activations", "parse_sizes", "parse_weight"]


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
        if action.default not in (None, False, [], "", argparse.SUPPRESS) and "default" not in help_ \
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


def parse_weight(text: str, sizes: Sequence[int]) -> list[tuple[str, tuple[int, int]]]:
    r"""Which parameters ``text`` names, as ``[(tensor, (row, col)), ...]`` with 0-based indices.

    Accepted (spaces ignored): ``all``; a whole tensor, ``W2`` or ``B1``; one element in any form
    :func:`handgrad.notation.parse_element` reads: the article's notation, 1-based, ``w_11^(3)``,
    ``w_{12}^{(2)}``, ``w_{1,12}^{(2)}``, ``w_1,12^(2)``, ``b_2^(1)``, or the code's names, 0-based,
    ``W3[0,0]``, ``B2[1]``, ``B2[1,0]``. The element must exist in the architecture ``sizes``.

    >>> parse_weight("w_12^(3)", (2, 3, 3, 1))
    [('W3', (0, 1))]
    >>> parse_weight("B1", (2, 3, 1))
    [('B1', (0, 0)), ('B1', (1, 0)), ('B1', (2, 0))]
    """
    depth = len(sizes) - 1
    t = "".join(str(text).split())
    if t.lower() == "all":
        return [(f"{k}{l}", idx) for l in range(1, depth + 1) for k in "WB" for idx in _indices(k, sizes, l)]
    if is_parameter_name(t):
        layer = int(t[1:])
        _check_layer(layer, depth, t)
        return [(t, idx) for idx in _indices(t[0], sizes, layer)]
    article = "[" not in t  # the code's names index with brackets
    try:  # the article's capital W_12^(2) reads as w_12^(2)
        tensor, (i, j) = parse_element(t[:1].lower() + t[1:] if article else t)
    except NotationError as exc:
        raise UsageError(f"--weight: {exc} (also: all, or a whole tensor such as W2)") from None
    layer = int(tensor[1:])
    _check_layer(layer, depth, t)
    rows, cols = sizes[layer], (sizes[layer - 1] if tensor[0] == "W" else 1)
    if i < rows and j < cols:
        return [(tensor, (i, j))]
    if not article:
        raise UsageError(f"{t} is out of range: {tensor} has shape ({rows}, {cols}) "
                         "(0-based indices; in article notation use w_ij^(l), 1-based)")
    sym = "w_ij" if tensor[0] == "W" else "b_i"
    raise UsageError(f"{t} is out of range: {sym}^({layer}) has i in 1..{rows}"
                     + (f", j in 1..{cols}" if tensor[0] == "W" else "") + " (article indices are 1-based)")


def _indices(kind: str, sizes: Sequence[int], layer: int) -> list[tuple[int, int]]:
    cols = sizes[layer - 1] if kind == "W" else 1
    return [(i, j) for i in range(sizes[layer]) for j in range(cols)]


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
    ``function`` may be a dotted attribute path) and return it; it must be callable, or a model
    object with a params dict (``params`` or ``parameters``) and a gradient method, as
    :func:`handgrad.reference.judge.conventions.wrap_backward` takes."""
    m = re.fullmatch(r"([^:]+):([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)", spec or "")
    if m is None:
        raise UsageError(f"--backward must be module:function, like mybackprop:backward; got {spec!r}")
    module = _import_module(m.group(1), "--backward")
    obj: Any = module
    for part in m.group(2).split("."):
        if not hasattr(obj, part):
            raise UsageError(f"--backward: module {m.group(1)!r} has no attribute {m.group(2)!r}")
        obj = getattr(obj, part)
    if not callable(obj) and not is_model(obj):
        raise UsageError(f"--backward: {spec} is not callable (it is of type {type(obj).__name__}); "
                         "expected a function backward(params, X, Y) -> grads, or a model object with a "
                         "params dict and a gradient method")
    return obj


def is_model(obj: object) -> bool:
    """Whether ``obj`` is a model object (a params dict under one of
    :data:`~handgrad.reference.judge.conventions.PARAMS_ATTRS`) rather than a backward function."""
    from ..judge.conventions import PARAMS_ATTRS

    return any(isinstance(getattr(obj, a, None), Mapping) for a in PARAMS_ATTRS)


def _argument_type(convert: Callable[[str], Any], accept: Callable[[Any], bool], expected: str, *,
                   unparsed: str | None = None, name: str = "value") -> Callable[[str], Any]:
    """An argparse ``type``: ``convert(text)``, refused unless ``accept`` takes it, with one sentence
    ("expected {expected}, got '...'"; ``unparsed`` instead when ``convert`` itself fails)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {unparsed or expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = name
    return parse


_positive_int = _argument_type(int, lambda v: v >= 1, "a positive integer", name="positive_int")
_seed = _argument_type(int, lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)",
                       unparsed="a non-negative integer", name="seed")
_rate = _argument_type(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0",
                       unparsed="a number", name="rate")


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


def _parse_oracles(text: str) -> tuple[str, ...]:
    """``"sympy,jax"`` -> ``("sympy", "jax")``: names from the oracle table, at least
    :data:`~handgrad.reference.oracles.table.MIN_REFERENCES` distinct ones (one cannot decide a case)."""
    from ..oracles.table import check_oracles

    try:
        return tuple(dict.fromkeys(check_oracles(_names_list(text, "--oracles"), "--oracles")))
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None

