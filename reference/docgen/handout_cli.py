r"""The ``handgrad handout`` subcommand: a certified derivation handout for any small net.

Interface for the CLI (which wires it; this module does not import the CLI)::

    add_handout_parser(subparsers)          # adds "handout" to an argparse subparsers object
    run_handout(args, out, err) -> int      # 0 written, 2 bad arguments, 1 a formula failed a check

Examples::

    handgrad handout --arch 2-3-3-1 --activation sigmoid
    handgrad handout --arch 2-4-4-1 --activation tanh,tanh,sigmoid --loss bce --lang zh --format tex --out h.tex
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import handgrad as hg

if TYPE_CHECKING:
    from .handout import HandoutSpec

# Parsing the arguments stays light (``handgrad --help`` imports neither SymPy nor SymEngine):
# the generator is imported when the command runs.
LANGUAGES = ("en", "zh")
FORMATS = ("md", "tex")

__all__ = ["add_handout_parser", "parse_arch", "run_handout", "spec_from_args"]

_EPILOG = """examples:
  handgrad handout --arch 2-3-3-1 --activation sigmoid                (the article's net, Markdown)
  handgrad handout --arch 2-4-4-1 --activation tanh,tanh,sigmoid --loss bce --lang zh
  handgrad handout --arch 2-3-2 --activation relu,softmax --loss cross_entropy --format tex --out h.tex

exit status: 0 written; 2 bad arguments or a net the handout cannot display; 1 a generated
formula failed its exact check (the handout is not written)."""


def add_handout_parser(subparsers: Any) -> None:
    """Add the ``handout`` subcommand to ``subparsers`` (from ``ArgumentParser.add_subparsers()``)."""
    p = subparsers.add_parser(
        "handout", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_EPILOG,
        help="write a certified derivation handout (Markdown or .tex, English or Chinese)",
        description="Every gradient of a small net in the article's factored chain-rule form, from the "
                    "output layer down, with dL/dx passed down and the matrix forms; every formula is "
                    "generated and checked exactly against SymPy's derivative of the composite loss.")
    p.add_argument("--arch", required=True, metavar="N0-N1-...", help="layer widths, e.g. 2-3-3-1")
    p.add_argument("--activation", default="sigmoid", metavar="NAME[,NAME...]",
                   help="one activation for every layer, or one per layer separated by commas")
    p.add_argument("--loss", default="squared_error", help="registered loss (squared_error, bce, cross_entropy)")
    p.add_argument("--no-fuse", dest="fuse", action="store_false",
                   help="take the generic path through the last activation's derivative instead of the fused "
                        "rule (sigmoid + bce)")
    p.add_argument("--lang", choices=LANGUAGES, default="en", help="language of the prose")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="md",
                   help="md: Markdown with $$ blocks (GitHub); tex: a LaTeX fragment to \\input")
    p.add_argument("--out", type=Path, default=None, metavar="PATH", help="write here instead of standard output")
    p.set_defaults(func=run_handout)


def parse_arch(text: str) -> tuple[int, ...]:
    """``"2-3-3-1"`` -> ``(2, 3, 3, 1)``; ``ValueError`` naming ``--arch`` otherwise."""
    parts = str(text).split("-")
    if len(parts) < 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"--arch must be layer widths joined by '-', each at least 1, such as 2-3-3-1; got {text!r}")
    return tuple(int(p) for p in parts)


def spec_from_args(args: argparse.Namespace) -> HandoutSpec:
    """The :class:`HandoutSpec` the arguments ask for (``ValueError`` naming the bad argument)."""
    from .handout import HandoutSpec

    sizes = parse_arch(args.arch)
    acts = [a.strip() for a in str(args.activation).split(",") if a.strip()]
    depth = len(sizes) - 1
    if len(acts) == 1:
        acts = acts * depth
    if len(acts) != depth:
        raise ValueError(f"--activation lists {len(acts)} activations but --arch {args.arch} has {depth} layers "
                         "(give one for all, or one per layer)")
    for a in acts:
        hg.get_activation(a)
    hg.get_loss(args.loss)
    spec = HandoutSpec(sizes, tuple(acts), args.loss, bool(getattr(args, "fuse", True)))
    spec.network()  # validates the combination (e.g. bce after tanh)
    return spec


def run_handout(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run ``handgrad handout``: 0 written, 2 bad arguments or unsupported net, 1 a check failed."""
    from .derivation import UnsupportedNetwork
    from .handout import HandoutError, render

    try:
        spec = spec_from_args(args)
    except (ValueError, TypeError, KeyError) as exc:
        print(f"handgrad handout: error: {' '.join(str(exc).split())}", file=err)
        return 2
    prefix = ""
    if args.out is not None:
        prefix = "../" if Path(args.out).resolve().parent.name == "handouts" else ""
    try:
        text = render(spec, lang=args.lang, fmt=args.fmt, link_prefix=prefix)
    except UnsupportedNetwork as exc:
        print(f"handgrad handout: error: {exc}", file=err)
        return 2
    except HandoutError as exc:
        print(f"handgrad handout: a generated formula failed its check, nothing written: {exc}", file=err)
        return 1
    if args.out is None:
        out.write(text)
        return 0
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path} ({spec.slug}, {args.lang}, {args.fmt})", file=err)
    return 0
