r"""The case as the user's code sees it: their declared conventions, names and diagnosis.

Shared by the three referees (:func:`~handgrad.reference.judge.referee.referee`, the scale path's
:func:`~handgrad.reference.judge.scale.scale_referee` and the outside-the-domain
:func:`~handgrad.reference.judge.outside.referee_outside`), so that a case is restricted to the
declared model, a mismatch named, diagnosed and described the same way whichever decides it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from handgrad import Network, Params

from .reports import Report

__all__ = ["conventions_of", "describe_for_user", "diagnose_report", "diagnosis_budgets", "user_names",
           "without_declared_biases"]


def conventions_of(conventions: Any, grads: object) -> Any:
    """The declared conventions: given, or carried by a wrapped backward, or None (the article's)."""
    if conventions is None:
        conventions = getattr(grads, "conventions", None) if callable(grads) else None
        if conventions is None:
            return None
    from .conventions import Conventions

    if not isinstance(conventions, Conventions):
        raise TypeError(f"conventions must be a Conventions, got {type(conventions).__name__}")
    return conventions


def without_declared_biases(net: Network, params: Mapping[str, np.ndarray],
                             conv: Any) -> tuple[Mapping[str, np.ndarray], list[str], str]:
    """Step 1 for layers declared without a bias: the case restricted to the declared model (their
    B set to 0), the tensors the provider must return (those B left out), and a note saying so."""
    if conv is None or not conv.no_bias:
        return params, list(net.param_names), ""
    beyond = [l for l in conv.no_bias if l > net.depth]
    if beyond:
        raise ValueError(f"conventions.no_bias names layer(s) {beyond} but the network has {net.depth} layers")
    dropped = [f"B{l}" for l in conv.no_bias]
    out = {k: (np.zeros_like(v) if k in dropped else v) for k, v in params.items()}
    keys = [k for k in net.param_names if k not in dropped]
    layers = ", ".join(str(l) for l in conv.no_bias)
    return out, keys, (f"layer{'s' if len(dropped) > 1 else ''} {layers} declared without a bias: "
                       f"{', '.join(dropped)} = 0 in this case and not checked")


def user_names(tensor: str, index: tuple[int, ...], conv: Any) -> tuple[str, str]:
    """The user's name of a gradient element with the article's beside it, and of its tensor
    (``("dW1[3, 4] (the article's w_54^(1))", "dW1")``); empty strings without conventions."""
    if conv is None:
        return "", ""
    from .conventions import grad_label, user_element_label

    return user_element_label(tensor, index, conv), grad_label(tensor, conv)


def describe_for_user(params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray, conv: Any,
                       report: Report) -> None:
    """After a failure in the user's conventions: the case as their code received it (a note)."""
    if conv is None:
        return
    from .conventions import describe_user_case

    try:
        report.notes.append(describe_user_case(params, X, Y, conv))
    except (ValueError, KeyError) as exc:  # a case their labels cannot express: say so, do not crash
        report.notes.append(f"the case cannot be shown in your conventions: {exc}")


def diagnosis_budgets(used: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """The budgets a diagnosis holds a hypothesis to: those of the comparison, infinite where a
    kink inside the finite-difference step decided the element (it constrains nothing there)."""
    return {src: {k: (bud if bracket is None else np.where(bracket, np.inf, bud)) for k, (bud, bracket) in per.items()}
            for src, per in used.items()}


def diagnose_report(net: Network, hand: Params, refs: Mapping[str, Params], used: Mapping[str, Mapping[str, Any]],
              params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray, conv: Any,
              report: Report) -> None:
    """After a mismatch: the likely causes that explain it within the budgets (``report.diagnoses``)."""
    from .diagnosis import diagnose

    base = getattr(getattr(net.loss, "base", None), "name", None) or net.loss.name
    try:
        found = diagnose(hand, refs, diagnosis_budgets(used), params=params, X=X, Y=Y, conventions=conv, loss=base)
    except (ValueError, TypeError, ArithmeticError) as exc:
        report.notes.append(f"no diagnosis: the hypotheses could not be tested ({type(exc).__name__}: {exc})")
        return
    report.diagnoses = tuple(found)
