r"""The one error of the exact proofs for code they cannot run: :class:`UnsupportedOperation`.

The proofs run handgrad's (or the user's) numpy code on exact values: SymPy expressions
(:mod:`~handgrad.reference.proofs.exact`), SymEngine symbols, or residues modulo a prime
(:mod:`~handgrad.reference.proofs.modular`). A numpy function the exact arithmetic has no meaning
for raises :class:`UnsupportedOperation` with a sentence naming it, never numpy's own
``TypeError`` from deep inside an object loop.
"""

from __future__ import annotations

import re

__all__ = ["UnsupportedOperation", "numpy_function_in"]


class UnsupportedOperation(TypeError):
    """An operation the exact arithmetic of a proof cannot carry out (``np.floor`` on symbols, ``exp``
    or ``<`` modulo p, ...). A ``TypeError``: the code is fine, it is the wrong kind of value for it."""


_NUMPY_MESSAGES = (
    re.compile(r"has no callable (\w+) method"),
    re.compile(r"ufunc '(\w+)' not supported"),
    re.compile(r"object has no attribute '(\w+)'"),
)


def numpy_function_in(exc: BaseException) -> str | None:
    """The numpy function named by numpy's error for an object array it cannot loop over, e.g.
    ``"np.cosh"`` for "loop of ufunc does not support argument 0 of type Symbol which has no callable
    cosh method"; None when the message names none."""
    for pattern in _NUMPY_MESSAGES:
        m = pattern.search(str(exc))
        if m is not None:
            return f"np.{m.group(1)}"
    return None
