r"""What a ``handgrad certify`` run declares beyond the architecture: the user's conventions
(``--layout --names --grad-names --no-bias --labels --flat-targets --reduction --half --l2
--l2-half --l2-biases``, the options of
:func:`handgrad.reference.judge.conventions.add_convention_arguments`) and the certificate's
settings (``--policy``, ``--quorum``, ``--nondeterminism-tolerance``).

Note [Declarations cross the pool]: a job may run in a spawned worker process, so what it declares
travels as plain values (:class:`Declared`: strings, numbers and tuples of them) and the worker
rebuilds the :class:`~handgrad.reference.judge.conventions.Conventions` and the
:class:`~handgrad.reference.judge.tolerance.TolerancePolicy` from them
(:meth:`Declared.certify_options`). Nothing else in a job refers to an object of this process.

The conventions describe *a user's* code, so they apply with ``--backward`` only; handgrad's own
backward (the registry run) is written in the article's conventions, and declaring others for it
is refused in one line naming the options. ``--policy``, ``--quorum`` and
``--nondeterminism-tolerance`` apply to every run.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import handgrad as hg

from .args import UsageError, _argument_type

__all__ = ["DEFAULT_QUORUM", "Declared", "add_declaration_arguments", "declared_from_args"]

DEFAULT_QUORUM = 0.8
"""The fraction of ``--examples`` that must be decided (``certify_backward``'s ``quorum`` default)."""

_OPTION_OF_FIELD = {
    "layout": "--layout", "names": "--names", "grad_names": "--grad-names", "no_bias": "--no-bias",
    "labels": "--labels", "flat_targets": "--flat-targets", "reduction": "--reduction", "half": "--half",
    "l2": "--l2", "l2_half": "--l2-half", "l2_biases": "--l2-biases",
}
"""The command-line option of each :class:`Conventions` field."""

_LOSSES_OF_LABELS = {"integer": ("distribution",), "onehot": ("distribution",), "binary": ("unit",),
                     "soft": ("unit", "distribution"), "distribution": ("real", "unit", "distribution")}
"""The ``Loss.target_kind`` each declared label kind fits: class indices and one-hot rows are
labels of the cross entropies, exact 0/1 labels those of BCE."""


class Declared(NamedTuple):
    """A run's declarations as plain, picklable values (Note [Declarations cross the pool]).

    ``conventions`` is ``None`` for code in the article's conventions (handgrad's own, or a user's
    backward that declares nothing), else the :class:`Conventions` fields as ``(name, value)``
    pairs; ``policy`` a level name of :data:`handgrad.reference.judge.tolerance.LEVELS`.
    """

    conventions: tuple[tuple[str, Any], ...] | None = None
    policy: str = "textbook"
    quorum: float = DEFAULT_QUORUM
    nondeterminism_tolerance: float = 0.0

    def rebuild_conventions(self) -> Any:
        """The :class:`Conventions` (or ``None``), built again from the plain values."""
        from ..judge.conventions import Conventions

        return None if self.conventions is None else Conventions(**dict(self.conventions))

    def certify_options(self) -> dict[str, Any]:
        """The keyword arguments of ``certify_backward`` these declarations stand for."""
        from ..judge.tolerance import resolve_policy

        return {"conventions": self.rebuild_conventions(), "policy": resolve_policy(self.policy, "--policy"),
                "quorum": self.quorum, "nondeterminism_tolerance": self.nondeterminism_tolerance}

    def in_article_conventions(self) -> Declared:
        """The same declarations with the article's conventions stated explicitly (a model object
        is always called through the conventions' wrapper, which reads its params)."""
        from ..judge.conventions import Conventions

        return self._replace(conventions=tuple(_fields(Conventions())))

    def is_default(self) -> bool:
        return self == Declared()

    def describe(self) -> str:
        """One line of what was declared, the defaults left out (empty when nothing was):
        ``layout rows, names W1/b1, labels integer, l2 0.001; policy strict``."""
        conv = ", ".join(f"{_OPTION_OF_FIELD[k][2:]} {_value_text(v)}" for k, v in self._changed_fields())
        settings = []
        if self.policy != "textbook":
            settings.append(f"policy {self.policy}")
        if self.quorum != DEFAULT_QUORUM:
            settings.append(f"quorum {self.quorum:g}")
        if self.nondeterminism_tolerance:
            settings.append(f"nondeterminism tolerance {self.nondeterminism_tolerance:g}")
        return "; ".join(p for p in (conv, ", ".join(settings)) if p)

    def to_dict(self) -> dict[str, Any]:
        """For the report files: every convention (the article's where none was declared) and setting."""
        from ..judge.conventions import Conventions

        conv = self.rebuild_conventions() or Conventions()
        return {"conventions": {k: _json_value(v) for k, v in _fields(conv)}, "policy": self.policy,
                "quorum": self.quorum, "nondeterminism_tolerance": self.nondeterminism_tolerance}

    def _changed_fields(self) -> list[tuple[str, Any]]:
        from ..judge.conventions import Conventions

        default = dict(_fields(Conventions()))
        return [(k, v) for k, v in (self.conventions or ()) if default[k] != v]


def _fields(conv: Any) -> list[tuple[str, Any]]:
    return [(f.name, getattr(conv, f.name)) for f in dataclasses.fields(conv)]


def _value_text(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, tuple):
        return ",".join(str(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def _json_value(v: Any) -> Any:
    return list(_json_value(x) for x in v) if isinstance(v, tuple) else v


# ---------------------------------------------------------------------------------------------
# The options
# ---------------------------------------------------------------------------------------------

_quorum = _argument_type(float, lambda v: 0 < v <= 1, "a fraction in (0, 1] (of --examples to be decided)",
                         unparsed="a fraction in (0, 1]", name="quorum")
_tolerance = _argument_type(float, lambda v: math.isfinite(v) and v >= 0,
                            "a finite number >= 0 (0: two calls bitwise equal)", unparsed="a number >= 0",
                            name="tolerance")


def add_declaration_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the convention options (a group "your code's conventions") and the certificate's
    settings (a group "the certificate") to the ``certify`` parser."""
    from ..judge.conventions import add_convention_arguments
    from ..judge.tolerance import LEVELS

    conv = parser.add_argument_group(
        "your code's conventions (with --backward)",
        "how your backward is written; every oracle differentiates the loss you declare and every message "
        "uses your names and shapes (docs/users-code.md)")
    add_convention_arguments(conv)
    cert = parser.add_argument_group("the certificate")
    cert.add_argument("--policy", choices=LEVELS, default="textbook",
                      help="accuracy level: textbook (the article's a(1-a) passes) or strict (every derivative "
                           "accurate relative to its own size: a clipped derivative is caught)")
    cert.add_argument("--quorum", type=_quorum, default=DEFAULT_QUORUM, metavar="FRACTION",
                      help="the fraction of --examples that must be decided for a certificate")
    cert.add_argument("--nondeterminism-tolerance", type=_tolerance, default=0.0, metavar="REL",
                      help="how far two calls of the backward on the same input may differ, relative "
                           "(0: bitwise equal)")


def declared_from_args(args: argparse.Namespace, net: hg.Network | None,
                       oracles: Sequence[str]) -> Declared:
    """The run's :class:`Declared`, every declaration checked against the run (``UsageError``, one
    sentence naming the option): conventions only with ``--backward`` (``net`` its architecture;
    ``None`` for the registry run), labels that fit the loss, layers of ``--no-bias`` that exist,
    names that resolve, the 1/2 only on a squared error, and a loss the oracles and the budget follow
    (:func:`~handgrad.reference.judge.conventions.check_oracles_support`)."""
    from ..judge.conventions import Conventions, conventions_from_args

    _check_l2(args.l2)
    try:
        conv = conventions_from_args(args)
    except (TypeError, ValueError) as exc:
        raise UsageError(_named_as_option(_one_line(exc))) from None
    changed = [_OPTION_OF_FIELD[k] for k, v in _fields(conv) if getattr(Conventions(), k) != v]
    settings = Declared(None, args.policy, args.quorum, args.nondeterminism_tolerance)
    if not changed:
        return settings
    if net is None:
        raise UsageError(f"{', '.join(changed)} declare{'s' if len(changed) == 1 else ''} the conventions of "
                         "your backward (with --backward MODULE:FUNCTION); handgrad's own backward, certified "
                         "without it, is written in the article's (columns, W1/B1, mean over the batch, "
                         "no 1/2, no L2)")
    _check_against_network(conv, net, oracles)
    return settings._replace(conventions=tuple(_fields(conv)))


def _check_l2(l2: float) -> None:
    if not (math.isfinite(l2) and l2 >= 0):
        raise UsageError(f"--l2 must be a finite number >= 0 (the penalty's lambda), got {l2:g}")


def _check_against_network(conv: Any, net: hg.Network, oracles: Sequence[str]) -> None:
    from ..judge.conventions import check_oracles_support, declared_loss, resolve_names

    kind = net.loss.target_kind
    if kind not in _LOSSES_OF_LABELS[conv.labels]:
        fitting = [n for n in hg.loss_names() if hg.get_loss(n).target_kind in _LOSSES_OF_LABELS[conv.labels]]
        raise UsageError(f"--labels {conv.labels} does not fit loss {net.loss.name!r} ({kind} targets); "
                         f"it fits {', '.join(fitting) or 'no registered loss'}")
    bad = [k for k in conv.no_bias if k > net.depth]
    if bad:
        raise UsageError(f"--no-bias names layer {bad[0]}, but the architecture has layers 1..{net.depth}")
    if conv.flat_targets and net.sizes[-1] != 1:
        raise UsageError(f"--flat-targets needs a one-output net; {'-'.join(map(str, net.sizes))} has "
                         f"{net.sizes[-1]} outputs")
    if conv.half and net.loss.name != "squared_error":
        raise UsageError(f"--half declares the 1/2 of a squared error; loss {net.loss.name!r} has none")
    try:
        for option, spec in (("--names", conv.names), ("--grad-names", conv.grad_names)):
            try:
                resolve_names(spec, net.depth, conv.no_bias)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"{option}: {_one_line(exc)}") from None
        decl = declared_loss(net.loss, conv, net.sizes[-1])
    except (TypeError, ValueError) as exc:
        raise UsageError(_one_line(exc)) from None
    try:
        check_oracles_support(decl, oracles)
    except NotImplementedError as exc:
        raise UsageError(f"this declared loss cannot be certified yet: {_one_line(exc)}") from None


def _named_as_option(message: str) -> str:
    """A :class:`Conventions` error names its field (``names templates need ...``); on the command
    line the option is named instead (``--names templates need ...``)."""
    for field_name, option in sorted(_OPTION_OF_FIELD.items(), key=lambda kv: -len(kv[0])):
        if message.startswith((f"{field_name} ", f"{field_name}[")):
            return option + message[len(field_name):]
    return message


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
