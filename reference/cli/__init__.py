r"""The ``handgrad`` command: certify, derive, handout, prove, demo.

::

    handgrad certify                      # every registered activation and loss, < 1 minute
    handgrad certify --backward mybp:backward --arch 2-3-3-1 --activation sigmoid --loss squared_error
    handgrad derive --arch 2-3-3-1 --activation sigmoid --weight "w_11^(3)" --latex
    handgrad handout --arch 2-4-4-1 --activation tanh,tanh,sigmoid --loss bce --lang zh --format tex
    handgrad prove --arch 2-3-3-1 --activation sigmoid
    handgrad demo

Arguments are *parsed*, never evaluated (:mod:`.args`): architectures are matched by
``\d+(-\d+)+``, weight names read by :func:`handgrad.notation.parse_element`
(:func:`parse_weight`), activation and loss names looked up in the registry, oracles in the oracle
table, ``module:function`` imported with :mod:`importlib`. A bad argument gets one line on stderr
(``handgrad certify: error: ...``) and exit code 2, never a traceback; what a run may ask of the
machine is in :mod:`.limits`.

Exit codes: 0 success (everything certified / proved), 1 a certification or proof failed,
2 bad arguments (or report files that could not be written at the end, after the results were
printed), 130 interrupted, 141 the reader of the output went away (``| head``).

The rooms: :mod:`.args` (parsing), :mod:`.certify_cmd` (plan, run, render), :mod:`.runner` (jobs and
worker processes), :mod:`.progress`, :mod:`.limits`, :mod:`.report_files`, :mod:`.plot`,
:mod:`.commands` (derive, prove, demo); this module keeps :func:`main` and :func:`build_parser`.
Heavy imports (JAX, SymPy, hypothesis, matplotlib) happen inside the subcommands, so ``--help``
is quick.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import handgrad as hg

from ..docgen.handout_cli import add_handout_parser
from ..oracles.latex_text import latex_to_text
from ..oracles.table import MIN_REFERENCES, ORACLES
from .args import (
    UsageError,
    _Formatter,
    _Parser,
    _positive_int,
    _rate,
    _seed,
    load_backward,
    parse_activations,
    parse_sizes,
    parse_weight,
)
from .certify_cmd import DEFAULT_BACKWARD_EXAMPLES, DEFAULT_EXAMPLES, _cmd_certify
from .commands import _cmd_demo, _cmd_derive, _cmd_prove
from .declarations import add_declaration_arguments
from .limits import MAX_CASES, MAX_DEMO_STEPS
from .report_files import REPORT_STEM

__all__ = [
    "EXIT_BROKEN_PIPE",
    "UsageError",
    "build_parser",
    "latex_to_text",
    "load_backward",
    "main",
    "parse_activations",
    "parse_sizes",
    "parse_weight",
]


# ---------------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------------

_CERTIFY_EPILOG = """\
examples:
  handgrad certify
      every registered activation and loss, each on a small pool of architectures: the traps
      (batch sizes, duplicated samples, zeros, kinks...) and 4 drawn cases per architecture;
      writes handgrad-report.md/.json/.png here
  handgrad certify --activations relu,gelu --examples 20 --dtype float32
  handgrad certify --losses bce --report-dir build/reports
  handgrad certify --backward mybackprop:backward --arch 2-3-3-1 --activation sigmoid --loss squared_error
      your own backward(params, X, Y) -> grads, imported from ./mybackprop.py
  handgrad certify --backward mybackprop:backward --arch 4-8-8-2 --activation tanh,tanh,identity --vary-shapes
  handgrad certify --backward cs231n:loss --arch 4-10-3 --activation relu,softmax --loss cross_entropy
                   --layout rows --names W1/b1 --labels integer --l2 0.05
      a CS231n-style net in its own conventions: X (N, D), W1 (D, H), b1 (H,), integer labels,
      reg * sum W^2 in the loss; loss(params, X, y) may return (loss, grads)
  handgrad certify --backward mynet:model --arch 2-3-1 --activation sigmoid --method backward
      a model object with a params dict and backward(X, Y)

your backward: params is a dict W1, B1, W2, ... (W<l> of shape (n_l, n_{l-1}), B<l> of shape
(n_l, 1)); X has shape (n0, m), samples as columns; Y has shape (nL, m). It returns a dict with
the same keys and shapes: the gradients of the MEAN over the batch of the per-sample loss.
Written otherwise? Declare it: --layout, --names, --labels, --reduction, --half, --l2 (below).

limits: --jobs is capped to the usable cores; more than 100,000 cases in all needs --long.

exit status: 0 everything certified, 1 something was not (the failing report is printed), 2 bad arguments
(checked before the run, --report-dir included), 141 the output's reader went away.
"""

_DERIVE_EPILOG = """\
examples:
  handgrad derive --arch 2-3-3-1 --activation sigmoid --weight "w_11^(3)"
  handgrad derive --arch 2-3-3-1 --activation sigmoid --weight "W3[0,0]" --latex
  handgrad derive --arch 2-2-1 --activation tanh,sigmoid --loss bce --weight b_1^(1)
  handgrad derive --arch 2-3-1                     (the article's sigmoid, the default; every weight and bias)

weights: all; article notation, 1-based: w_ij^(l), w_{i,j}^{(l)}, b_i^(l);
code names, 0-based: W<l>[i,j], B<l>[i], or a whole tensor W<l> / B<l>.
"""

_PROVE_EPILOG = """\
examples:
  handgrad prove --arch 2-3-3-1 --activation sigmoid
  handgrad prove --arch 4-8-8-3 --activation tanh,tanh,softmax --loss cross_entropy --method modular
  handgrad prove --arch 3-3-1 --activation relu,identity --network-only

exit status: 0 proved, 1 not proved, 2 bad arguments.
"""

_DEMO_EPILOG = """\
examples:
  handgrad demo                        the article's run: 100 steps, rate 0.1, x = [5, 7]^T, label 0.6
  handgrad demo --steps 1000 --rate 0.5 --print-every 200
"""


DEFAULT_ACTIVATION = "sigmoid"
"""The article's activation: the default of ``derive`` and ``prove``, as of every other entry point."""


def _arch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", "--sizes", dest="arch", required=True, default=None, metavar="N0-N1-...",
                   help="layer widths from input to output, e.g. 2-3-3-1 (the article's network)")
    p.add_argument("--activation", default=DEFAULT_ACTIVATION, metavar="NAME[,NAME...]",
                   help="one registered activation for every layer, or one per layer (comma-separated)")
    p.add_argument("--no-fuse", action="store_true",
                   help="do not use the loss's fused output rule (e.g. sigmoid + bce), differentiate them apart")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (repeatable): a package that registers its own activations or losses")


def build_parser() -> argparse.ArgumentParser:
    """The ``handgrad`` argument parser (subcommands certify, derive, handout, prove, demo)."""
    parser = _Parser(prog="handgrad", formatter_class=_Formatter,
                     description="Certify hand-written backpropagation against independent oracles "
                                 "(SymPy closed forms, JAX, finite differences).",
                     epilog="examples:\n  handgrad certify\n  handgrad derive --arch 2-3-3-1 --activation sigmoid "
                            "--weight 'w_11^(3)'\n  handgrad prove --arch 2-3-3-1 --activation sigmoid\n"
                            "  handgrad demo\n\nrun 'handgrad COMMAND --help' for each command's options.")
    parser.add_argument("--version", action="version", version=f"handgrad {hg.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("certify", formatter_class=_Formatter, epilog=_CERTIFY_EPILOG,
                       help="certify handgrad's backward (every activation and loss) or your own",
                       description="Certify a backward pass over hypothesis-drawn shapes and inputs: every "
                                   "gradient element must agree with SymPy, JAX and finite differences within "
                                   "its derived rounding budget. Without --backward: handgrad's own backward "
                                   "for every registered activation and loss.")
    p.add_argument("--examples", type=_positive_int, default=None, metavar="N",
                   help=f"cases per architecture (default {DEFAULT_EXAMPLES}; "
                        f"{DEFAULT_BACKWARD_EXAMPLES} with --backward)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision of the backward under test; the budget is derived for it")
    p.add_argument("--activations", default=None, metavar="A,B",
                   help="certify only these activations (alone: no losses)")
    p.add_argument("--losses", default=None, metavar="L1,L2", help="certify only these losses (alone: no activations)")
    p.add_argument("--seed", type=_seed, default=0, help="hypothesis seed: the same seed replays the same cases")
    p.add_argument("--oracles", default=",".join(ORACLES), metavar="O1,O2",
                   help=f"references to compare with, at least {MIN_REFERENCES} of {', '.join(ORACLES)}")
    p.add_argument("--jobs", "-j", type=_positive_int, default=None, metavar="N",
                   help="worker processes, one architecture at a time each, at most one per core (more is "
                        "capped, with a warning); the results do not depend on it. Default: up to 2 for the "
                        "registry run (51 architectures), 1 with --backward. Each worker starts in ~2 s and "
                        "compiles its own oracles: worth it on idle cores only")
    p.add_argument("--long", action="store_true",
                   help=f"allow a run of more than {MAX_CASES:,} cases in all (examples x architectures); "
                        "without it such a run is refused with an estimate of its time")
    p.add_argument("--yes", action="store_true",
                   help="go ahead when one architecture is estimated above a minute (without it such a run "
                        "is refused, exit 2, with its estimate)")
    p.add_argument("--jax-cache", default=None, metavar="DIR",
                   help="keep the JAX oracle's compiled functions in DIR between runs (default: $HANDGRAD_JAX_CACHE, "
                        "else ~/.cache/handgrad/jax); 'off' for none. A later run loads them instead of compiling "
                        "again (most of a first run's time); what is computed does not change")
    p.add_argument("--report-dir", default=".", metavar="DIR",
                   help=f"where to write {REPORT_STEM}.md, .json and .png (created if missing)")
    p.add_argument("--no-report", action="store_true", help="write no report files")
    noise = p.add_mutually_exclusive_group()
    noise.add_argument("--quiet", action="store_true", help="no progress bar and no table: failures and the verdict")
    noise.add_argument("--progress", action="store_true",
                       help="show the progress bar on stderr even when it is not a terminal")
    g = p.add_argument_group("your own backward")
    g.add_argument("--backward", default=None, metavar="MODULE:FUNCTION",
                   help="certify FUNCTION(params, X, Y) -> grads from MODULE (importable from the current folder)")
    g.add_argument("--arch", "--sizes", dest="arch", default=None, metavar="N0-N1-...",
                   help="its architecture, e.g. 2-3-3-1")
    g.add_argument("--activation", default=None, metavar="NAME[,NAME...]",
                   help="one activation for every layer, or one per layer")
    g.add_argument("--loss", default=None, metavar="NAME", help="its loss (default squared_error)")
    g.add_argument("--no-fuse", action="store_true", help="compare with the unfused loss (no fused output rule)")
    g.add_argument("--vary-shapes", action="store_true",
                   help="also draw the hidden widths (1..--max-width): for a backward written for any width")
    g.add_argument("--max-width", type=_positive_int, default=8, metavar="N", help="largest hidden width drawn")
    g.add_argument("--method", default=None, metavar="NAME",
                   help="when --backward names a model object (a params dict and a gradient method): the "
                        "method to call, if none of loss_and_grads, backward, gradients, grads, grad, loss fits")
    add_declaration_arguments(p)
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (repeatable): a package that registers its own activations or losses")
    p.set_defaults(func=_cmd_certify)

    p = sub.add_parser("derive", formatter_class=_Formatter, epilog=_DERIVE_EPILOG,
                       help="print the closed-form gradient of a weight (SymPy), as text or LaTeX",
                       description="Print dL/dw for a chosen weight (default: all) of an architecture, as the "
                                   "SymPy oracle derives it by differentiating the whole composite loss.")
    _arch_options(p)
    p.add_argument("--loss", default="squared_error", help="registered loss")
    p.add_argument("--weight", default="all", metavar="NAME",
                   help="w_ij^(l) (article, 1-based), W<l>[i,j] / B<l>[i] (code, 0-based), W<l>, or all")
    p.add_argument("--latex", action="store_true",
                   help="print LaTeX for lecture notes: $$ blocks, long formulas broken into aligned lines, the "
                        "article's factored chain-rule form (checked exactly before it is printed)")
    p.add_argument("--expanded", action="store_true",
                   help="with --latex: the SymPy oracle's expanded closed form instead of the factored form")
    p.set_defaults(func=_cmd_derive)

    add_handout_parser(sub)

    p = sub.add_parser("prove", formatter_class=_Formatter, epilog=_PROVE_EPILOG,
                       help="exact certificate: handgrad's backward equals the derivative, as formulas",
                       description="Prove that handgrad's backward for an architecture equals the derivative of "
                                   "the composite loss for every parameter (handgrad.reference.proofs), and prove the "
                                   "local rules (activation derivatives, loss gradient) it relies on.")
    _arch_options(p)
    p.add_argument("--loss", default="squared_error", help="registered loss")
    p.add_argument("--method", choices=("auto", "symbolic", "modular"), default="auto",
                   help="symbolic (deterministic), modular (exact randomized identity test), or auto")
    p.add_argument("--trials", type=_positive_int, default=None, metavar="N",
                   help="modular trials (default: until the miss probability is below the target)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the modular method's random points")
    p.add_argument("--batch", type=_positive_int, default=2, metavar="M", help="samples per batch in the proof")
    p.add_argument("--network-only", action="store_true", help="skip the proofs of the local rules")
    p.set_defaults(func=_cmd_prove)

    p = sub.add_parser("demo", formatter_class=_Formatter, epilog=_DEMO_EPILOG,
                       help="the article's example run (2-3-3-1 sigmoid net, one sample)",
                       description="Train the article's 2-3-3-1 sigmoid network on x = [5, 7]^T, label 0.6, with "
                                   "squared error and plain gradient descent, printing the iteration, prediction "
                                   "and loss (before that step's update).")
    p.add_argument("--steps", type=_positive_int, default=100,
                   help=f"gradient steps, at most {MAX_DEMO_STEPS:,}")
    p.add_argument("--rate", type=_rate, default=0.1, help="learning rate")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the article's uniform [0, 1) initialization")
    p.add_argument("--print-every", type=_positive_int, default=20, metavar="N",
                   help="print every N steps and the last one")
    p.set_defaults(func=_cmd_demo)
    return parser


def _prog(argv: Sequence[str]) -> str:
    """``handgrad`` and the subcommand named in ``argv`` (for error messages)."""
    cmd = next((a for a in argv if a in ("certify", "derive", "prove", "demo", "handout")), None)
    return "handgrad" if cmd is None else f"handgrad {cmd}"


EXIT_BROKEN_PIPE = 141
"""Exit code when the reader of the output goes away (``handgrad ... | head``): 128 + SIGPIPE, as
a shell reports a process ended by that signal; nothing is printed."""


def main(argv: list[str] | None = None) -> int:
    """Run the ``handgrad`` command with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    When the output is a pipe whose reader has gone (``handgrad derive ... | head -3``), the command
    stops quietly with :data:`EXIT_BROKEN_PIPE`: the output is flushed inside the handler, then
    standard output is pointed at the null device so that Python's own flush at exit cannot fail
    again (the recipe of the Python documentation on SIGPIPE).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _dispatch(argv, sys.stdout, sys.stderr)
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    return code


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (an in-process capture): nothing left to flush
        pass


def _dispatch(argv: list[str], out: TextIO, err: TextIO) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("handgrad: error: choose a command: certify, derive, handout, prove or demo "
                             "(see 'handgrad --help')")
        args.argv = argv
        return int(args.func(args, out, err))
    except UsageError as exc:
        msg = " ".join(str(exc).split())
        if not msg.startswith("handgrad"):
            msg = f"{_prog(argv)}: error: {msg}"
        print(msg, file=err)
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print("handgrad: interrupted", file=err)
        return 130
