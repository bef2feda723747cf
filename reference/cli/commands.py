"""The ``handgrad derive``, ``prove`` and ``demo`` commands."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

import numpy as np

import handgrad as hg
from handgrad.notation import element_name

from ..oracles.latex_text import latex_to_text
from .args import UsageError, _imports, _network, parse_weight
from .limits import check_demo_steps

__all__: list[str] = []


def _cmd_derive(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _imports(args)
    net = _network(args, fuse=not args.no_fuse)
    selected = parse_weight(args.weight, net.sizes)
    if args.expanded and not args.latex:
        raise UsageError("--expanded goes with --latex (the plain-text form is always the expanded one)")
    if args.latex:
        return _derive_latex(net, selected, args, out, err)
    from ..oracles.sympy_oracle import get_sympy_oracle

    try:
        oracle = get_sympy_oracle(net)
    except ValueError as exc:  # SympyTooLarge: beyond the oracle's size limit
        raise UsageError(" ".join(str(exc).split())) from None
    legend = [f"dL/dw for {net.describe()}: closed forms from the SymPy oracle (the composite loss "
              "differentiated symbol by symbol), for one sample; the batch gradient is their mean.",
              "x_1j: input j; x_ki (k >= 2): output of unit i of layer k-1, f(z_i^(k-1)); z_i^(l): pre-activation "
              "of unit i of layer l; yhat: the output; y: the label."]
    for line in legend:
        print(("% " + line.replace("yhat", r"\hat y")) if args.latex else ("# " + line), file=out)
    for name, (i, j) in selected:
        tex = oracle.latex(name, i + 1, j + 1)
        if args.latex:
            print(tex, file=out)
            continue
        text = latex_to_text(tex)
        if text is None:  # a construct the text rendering does not know: show the LaTeX
            print(f"{_article_name(name, i, j)} (LaTeX): {tex}", file=out)
        else:
            print(text, file=out)
    return 0


def _derive_latex(net: hg.Network, selected: list[tuple[str, tuple[int, int]]], args: argparse.Namespace,
                  out: TextIO, err: TextIO) -> int:
    """``derive --latex``: lecture-ready LaTeX (docgen.derive_format), with a progress line on stderr."""
    from ..docgen.derivation import DerivationError
    from ..docgen.derive_format import format_derivation

    try:
        out.write(format_derivation(net, selected, expanded=args.expanded, progress=err))
    except DerivationError as exc:
        print(f"handgrad derive: a generated formula failed its exact check: {exc}", file=err)
        return 1
    except ValueError as exc:  # SympyTooLarge and other nets beyond the display
        raise UsageError(" ".join(str(exc).split())) from None
    return 0


def _article_name(name: str, i: int, j: int) -> str:
    return f"dL/d{element_name(name, (i, j))}"




def _cmd_prove(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``handgrad prove``: every proof is computed first, then printed, so an activation the exact
    arithmetic cannot evaluate gives one line (exit 2) and no half-printed result."""
    _imports(args)
    net = _network(args, fuse=not args.no_fuse)
    from ..proofs import prove_network

    try:
        proof = _exact(f"the network {net.describe()}", lambda: prove_network(
            net, method=args.method, trials=args.trials, seed=args.seed, batch=args.batch))
    except ValueError as exc:  # e.g. method='symbolic' on an architecture it does not support
        raise UsageError(" ".join(str(exc).split())) from None
    rules = [] if args.network_only else _local_rules(net)
    print(proof, file=out)
    ok = bool(proof.ok)
    if rules:
        print("", file=out)
        print("The local rules it relies on:", file=out)
        for r in rules:
            print(r, file=out)
            ok = ok and bool(r.ok)
    print("", file=out)
    print(f"{'PROVED' if ok else 'NOT PROVED'}: handgrad's backward for {net.describe()}", file=out)
    return 0 if ok else 1


def _local_rules(net: hg.Network) -> list[Any]:
    """The proofs of the local rules ``net`` relies on: each activation, then the loss gradient or
    the fused output rule."""
    from ..proofs import prove_activation, prove_fused_rule, prove_loss

    rules = [_exact(f"activation {a!r}", lambda a=a: prove_activation(a))
             for a in dict.fromkeys(a.name for a in net.activations)]
    if net.fused_rule is not None:
        loss, head = net.loss.name, net.activations[-1].name
        rules.append(_exact(f"the fused rule of {loss} with {head}", lambda: prove_fused_rule(loss, head)))
    else:
        rules.append(_exact(f"loss {net.loss.name!r}", lambda: prove_loss(net.loss.name)))
    return rules


_T = TypeVar("_T")


def _exact(what: str, proof: Callable[[], _T]) -> _T:
    """Run ``proof``; a ``TypeError`` from its exact arithmetic (``UnsupportedOperation`` included:
    a function with no exact meaning, such as ``np.arcsinh`` in a user's definition) or an
    ``AttributeError`` from a numpy function that expects floats (``np.sinc``) becomes one line
    naming the function (exit 2), not a traceback that would read as "not proved"."""
    try:
        return proof()
    except (TypeError, AttributeError) as exc:
        raise UsageError(_unsupported(what, exc)) from None


def _numpy_function(exc: BaseException) -> str | None:
    """The numpy function that failed: named by a ufunc's message ("no callable arcsinh method"),
    or the outermost frame of the traceback inside numpy's package (``np.sinc``)."""
    m = re.search(r"no callable (\w+) method", str(exc))
    if m is not None:
        return m.group(1)
    root = os.path.dirname(np.__file__) + os.sep
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(root):
            return tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    return None


def _unsupported(what: str, exc: BaseException) -> str:
    from ..proofs.network import UnsupportedOperation

    msg = " ".join(str(exc).split())
    if isinstance(exc, UnsupportedOperation):  # the proofs name the function and what they support
        return f"cannot prove {what}: {msg}"
    fn = _numpy_function(exc)
    if fn is not None:
        used = f"np.{fn}, which the proof's exact arithmetic does not support ({type(exc).__name__}: {msg})"
    else:
        used = f"an operation the proof's exact arithmetic does not support ({type(exc).__name__}: {msg})"
    return (f"cannot prove {what}: its definition uses {used}; write it with the functions of the ops "
            "namespace it is given (ops.exp, ops.log, ops.tanh, ops.sqrt, ...)")


def _cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    check_demo_steps(args.steps)

    def emit(line: str) -> None:
        print(line, file=out)

    hg.train_article(seed=args.seed, steps=args.steps, rate=args.rate, print_every=args.print_every, out=emit)
    return 0

