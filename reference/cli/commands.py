"""The ``handgrad derive``, ``prove`` and ``demo`` commands."""

from __future__ import annotations

import argparse
from typing import TextIO

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


def _article_name(name: str, i: int, j: int) -> str:
    return f"dL/d{element_name(name, (i, j))}"




def _cmd_prove(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _imports(args)
    net = _network(args, fuse=not args.no_fuse)
    from ..proofs import prove_activation, prove_fused_rule, prove_loss, prove_network

    try:
        proof = prove_network(net, method=args.method, trials=args.trials, seed=args.seed, batch=args.batch)
    except ValueError as exc:  # e.g. method='symbolic' on an architecture it does not support
        raise UsageError(" ".join(str(exc).split())) from None
    print(proof, file=out)
    ok = bool(proof.ok)
    if not args.network_only:
        print("", file=out)
        print("The local rules it relies on:", file=out)
        rules = [prove_activation(a) for a in dict.fromkeys(a.name for a in net.activations)]
        if net.fused_rule is not None:
            rules.append(prove_fused_rule(net.loss.name, net.activations[-1].name))
        else:
            rules.append(prove_loss(net.loss.name))
        for r in rules:
            print(r, file=out)
            ok = ok and bool(r.ok)
    print("", file=out)
    print(f"{'PROVED' if ok else 'NOT PROVED'}: handgrad's backward for {net.describe()}", file=out)
    return 0 if ok else 1


def _cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    check_demo_steps(args.steps)

    def emit(line: str) -> None:
        print(line, file=out)

    hg.train_article(seed=args.seed, steps=args.steps, rate=args.rate, print_every=args.print_every, out=emit)
    return 0

