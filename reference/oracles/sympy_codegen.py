r"""Code generation for the SymPy oracle: the derivative DAG as one straight-line program.

:class:`_Program` gives every distinct node of a SymEngine DAG one assignment (complete common-
subexpression elimination, as ``lambdify(..., cse=True)`` would, but in one linear pass: SymPy's
``lambdify`` and SymEngine's ``Lambdify(cse=True)`` take minutes on the tens of thousands of nodes
of the largest accepted networks) and compiles it in two flavours: numpy (vectorized over the
batch, evaluated in :data:`_EVAL_DTYPE`) and mpmath (one sample at a time, any precision).
``log(1 + u)``, ``exp(u) - 1`` (how ``SYMPY_OPS`` spells log1p, expm1) and ``2 - erfc(u)`` (how
SymEngine rewrites the ``erfc(-u)`` of GELU's definition) are printed as ``log1p(u)``,
``expm1(u)`` and ``erfc(-u)``: the same value without the cancellation. erf and erfc are
:mod:`handgrad.reference.numerics`' (double precision, the one place longdouble is not carried).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..numerics import erf, erfc

__all__: list[str] = []


# ---------------------------------------------------------------------------------------------
# The compiled program: one assignment per distinct node (complete CSE)
# ---------------------------------------------------------------------------------------------

_FUNCS = {  # SymEngine function name -> (numpy namespace name, mpmath name)
    "log": ("log", "log"), "tanh": ("tanh", "tanh"), "erf": ("erf", "erf"), "erfc": ("erfc", "erfc"),
    "Abs": ("abs", "fabs"), "sign": ("sign", "sign"), "sinh": ("sinh", "sinh"), "cosh": ("cosh", "cosh"),
    "sin": ("sin", "sin"), "cos": ("cos", "cos"), "tan": ("tan", "tan"), "atan": ("arctan", "atan"),
    "asinh": ("arcsinh", "asinh"), "atanh": ("arctanh", "atanh"), "exp": ("exp", "exp"),
}
_RELATIONS = {"StrictLessThan": "<", "LessThan": "<=", "Equality": "==", "Unequality": "!="}


class _ProgramTooLarge(Exception):
    pass


class _Program:
    """Straight-line code for ``outputs`` as functions of ``inputs`` (SymEngine symbols).

    ``source(backend)`` is the text of ``def _program(_in): ...; return (...)``; every distinct
    node is computed once. ``backend`` is ``"np"`` (numpy arrays of any float dtype, vectorized)
    or ``"mp"`` (mpmath scalars at the current working precision).

    Phases: walk each output's DAG children first (:meth:`_walk`); write each new leaf
    (:meth:`_leaf`: an input, a number, a constant) or operation (:meth:`_node`, one writer per
    kind of node) as one assignment (:meth:`_emit`).
    """

    def __init__(self, outputs: Sequence[Any], inputs: Sequence[Any], *, max_nodes: int) -> None:
        import symengine as se

        self._se = se
        self._index = {s: k for k, s in enumerate(inputs)}
        self._name: dict[Any, str] = {}
        self._max_nodes = max_nodes
        self._one, self._two, self._minus_one = se.Integer(1), se.Integer(2), se.Integer(-1)
        self.n_outputs = len(outputs)
        self.np_lines: list[str] = []
        self.mp_lines: list[str] = []
        for root in outputs:
            self._walk(root)
        self.outputs = [self._name[r] for r in outputs]
        self.size = len(self._name)

    def _walk(self, root: Any) -> None:
        """Emit every node under ``root`` not yet named, children before parents (no recursion:
        the DAGs are deep)."""
        atoms = (self._se.Number, self._se.Symbol)
        name = self._name
        stack: list[tuple[Any, tuple[Any, ...] | None]] = [(root, None)]
        while stack:
            n, args = stack.pop()
            if n in name:
                continue
            if args is not None:
                self._node(n, args)
                continue
            args = n.args if not isinstance(n, atoms) else ()
            if not args or type(n).__name__ in ("Infinity", "NegativeInfinity"):
                self._leaf(n)
                continue
            stack.append((n, args))
            stack.extend((a, None) for a in args if a not in name)

    def _emit(self, node: Any, np_text: str, mp_text: str | None = None) -> None:
        v = f"t{len(self._name)}"
        self._name[node] = v
        self.np_lines.append(f"    {v} = {np_text}")
        self.mp_lines.append(f"    {v} = {np_text if mp_text is None else mp_text}")
        if len(self._name) > self._max_nodes:
            raise _ProgramTooLarge(len(self._name))

    def _leaf(self, n: Any) -> None:
        se, t = self._se, type(n).__name__
        if isinstance(n, se.Symbol):
            if n not in self._index:
                raise ValueError(f"internal: free symbol {n} is not an input")
            self._emit(n, f"_in[{self._index[n]}]")
        elif isinstance(n, se.Integer):
            self._emit(n, f"_num({int(n)}, 1)")
        elif isinstance(n, se.Rational):
            q = n._sympy_()
            self._emit(n, f"_num({int(q.p)}, {int(q.q)})")
        elif isinstance(n, se.RealDouble):
            self._emit(n, f"_flt({float(n)!r})")
        elif t == "Pi":
            self._emit(n, "_pi()")
        elif t == "Exp1":
            self._emit(n, "_e()")
        elif t in ("Infinity", "NegativeInfinity", "NaN", "ComplexInfinity"):
            v = {"Infinity": "inf", "NegativeInfinity": "-inf"}.get(t, "nan")
            self._emit(n, f"_flt(float('{v}'))")
        elif t == "BooleanTrue":
            self._emit(n, "True")
        elif t == "BooleanFalse":
            self._emit(n, "False")
        else:
            raise NotImplementedError(f"SymPy oracle: cannot evaluate the constant {n} ({t})")

    def _node(self, n: Any, args: tuple[Any, ...]) -> None:
        t = type(n).__name__
        c = [self._name[a] for a in args]
        writer = _WRITERS.get(t)
        if writer is not None:
            writer(self, n, args, c)
        elif t in _FUNCS:
            f_np, f_mp = _FUNCS[t]
            self._emit(n, f"{f_np}({', '.join(c)})", f"{f_mp}({', '.join(c)})")
        elif t in _RELATIONS:
            self._emit(n, f"({c[0]} {_RELATIONS[t]} {c[1]})")
        else:
            raise NotImplementedError(
                f"SymPy oracle: cannot evaluate {t} (in {str(n)[:80]}); the shared definitions may use "
                f"arithmetic, exp, log, log1p, expm1, tanh, erf, erfc, sqrt, where and colsum")

    def _add(self, n: Any, args: tuple[Any, ...], c: list[str]) -> None:
        minus_one, two = self._minus_one, self._two
        if len(args) == 2 and minus_one in args:  # exp(u) - 1 -> expm1(u)
            other = args[1] if args[0] == minus_one else args[0]
            if type(other).__name__ == "Pow" and type(other.args[0]).__name__ == "Exp1":
                self._emit(n, f"expm1({self._name[other.args[1]]})")
                return
        if len(args) == 2 and two in args:  # SymEngine's 2 - erfc(u) for erfc(-u): undo it
            other = args[1] if args[0] == two else args[0]
            if type(other).__name__ == "Mul" and len(other.args) == 2 and minus_one in other.args:
                f = other.args[1] if other.args[0] == minus_one else other.args[0]
                if type(f).__name__ == "erfc":
                    self._emit(n, f"erfc(-{self._name[f.args[0]]})")
                    return
        self._emit(n, " + ".join(c))

    def _mul(self, n: Any, args: tuple[Any, ...], c: list[str]) -> None:
        self._emit(n, " * ".join(c))

    def _pow(self, n: Any, args: tuple[Any, ...], c: list[str]) -> None:
        se = self._se
        base, ex = args
        if type(base).__name__ == "Exp1":
            self._emit(n, f"exp({c[1]})")
        elif isinstance(ex, se.Integer) and int(ex) >= 0:
            self._emit(n, f"{c[0]} ** {int(ex)}")
        elif isinstance(ex, se.Integer):  # mpmath raises on 1/0; numpy gives inf
            self._emit(n, f"{c[0]} ** {int(ex)}", f"_pow({c[0]}, {int(ex)})")
        elif ex == se.Rational(1, 2):
            self._emit(n, f"sqrt({c[0]})")
        else:
            self._emit(n, f"{c[0]} ** {c[1]}", f"_pow({c[0]}, {c[1]})")

    def _log(self, n: Any, args: tuple[Any, ...], c: list[str]) -> None:
        (arg,) = args
        if type(arg).__name__ == "Add" and self._one in arg.args:  # log(1 + u) -> log1p(u)
            rest = [self._name[k] for k in arg.args if k != self._one]
            self._emit(n, f"log1p({' + '.join(rest)})")
        else:
            self._emit(n, f"log({c[0]})")

    def _and(self, n: Any, args: tuple[Any, ...], c: list[str]) -> None:
        self._emit(n, "(" + " & ".join(c) + ")")

    def _or(self, n: Any, args: tuple[Any, ...], c: list[str]) -> None:
        self._emit(n, "(" + " | ".join(c) + ")")

    def _not(self, n: Any, args: tuple[Any, ...], c: list[str]) -> None:
        self._emit(n, f"logical_not({c[0]})", f"(not {c[0]})")

    def _max_min(self, n: Any, args: tuple[Any, ...], c: list[str]) -> None:
        t = type(n).__name__
        f = "maximum" if t == "Max" else "minimum"
        np_text = c[0]
        for v in c[1:]:
            np_text = f"{f}({np_text}, {v})"
        self._emit(n, np_text, f"{t.lower()}({', '.join(c)})")

    def _piecewise(self, n: Any, args: tuple[Any, ...], c: list[str]) -> None:
        pairs = [(c[2 * i], c[2 * i + 1]) for i in range(len(c) // 2)]
        np_text, mp_text = "_flt(float('nan'))", "_flt(float('nan'))"
        for value, cond in reversed(pairs):
            if cond == "t_true":
                np_text = mp_text = value
            np_text = f"where({cond}, {value}, {np_text})"
            mp_text = f"({value} if {cond} else {mp_text})"
        self._emit(n, np_text, mp_text)

    def source(self, backend: str) -> str:
        lines = self.np_lines if backend == "np" else self.mp_lines
        ret = ", ".join(self.outputs) + ("," if len(self.outputs) == 1 else "")
        return "def _program(_in):\n" + "\n".join(lines) + f"\n    return ({ret})\n"

    def compile(self, backend: str) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
        if backend == "np":
            ns = _numpy_namespace()
        else:
            ns = _mpmath_namespace()
        code = compile(self.source(backend), f"<sympy_oracle {backend} program>", "exec")
        exec(code, ns)
        return ns["_program"]


_WRITERS: dict[str, Callable[[_Program, Any, tuple[Any, ...], list[str]], None]] = {
    "Add": _Program._add, "Mul": _Program._mul, "Pow": _Program._pow, "log": _Program._log,
    "And": _Program._and, "Or": _Program._or, "Not": _Program._not, "Max": _Program._max_min,
    "Min": _Program._max_min, "Piecewise": _Program._piecewise,
}
"""SymEngine node type -> the :class:`_Program` method that writes it (the rest: :data:`_FUNCS`,
:data:`_RELATIONS`)."""

_EVAL_DTYPE = np.longdouble


def _numpy_namespace() -> dict[str, Any]:
    dt = _EVAL_DTYPE

    def special(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
        # numerics.erf / erfc (math.erf underneath) are double precision: the one place longdouble
        # is not carried.
        return lambda v: np.asarray(f(np.asarray(v, dtype=np.float64)), dtype=dt)

    ns: dict[str, Any] = {
        "_num": lambda p, q: dt(p) / dt(q), "_flt": lambda v: dt(v),
        "_pi": lambda: dt(np.pi) if dt is np.float64 else dt("3.14159265358979323846264338327950288"),
        "_e": lambda: np.exp(dt(1)),
        "erf": special(erf), "erfc": special(erfc), "where": np.where, "abs": np.abs,
        "logical_not": np.logical_not, "maximum": np.maximum, "minimum": np.minimum,
    }
    for f in ("exp", "log", "log1p", "expm1", "tanh", "sqrt", "sign", "sinh", "cosh", "sin", "cos", "tan",
              "arctan", "arcsinh", "arctanh"):
        ns[f] = getattr(np, f)
    return ns


def _mpmath_namespace() -> dict[str, Any]:
    import mpmath

    def _pow(base: Any, ex: Any) -> Any:
        # An untaken branch may divide by zero (softsign's z/(1 - z) at z = 1): give inf like
        # numpy instead of raising; a taken one then shows up as a non-finite result.
        if base == 0 and ex < 0:
            return mpmath.inf
        return base**ex

    ns: dict[str, Any] = {
        "_num": lambda p, q: mpmath.mpf(p) / q, "_flt": mpmath.mpf, "_pow": _pow,
        "_pi": lambda: +mpmath.pi, "_e": lambda: +mpmath.e,
        "max": max, "min": min,
    }
    for f in ("exp", "log", "log1p", "expm1", "tanh", "erf", "erfc", "sqrt", "fabs", "sign", "sinh", "cosh",
              "sin", "cos", "tan", "atan", "asinh", "atanh"):
        ns[f] = getattr(mpmath, f)
    return ns


def _mp_to_float(v: Any) -> float:
    """Round an mpmath number to the nearest float64 (``float(mpf)`` truncates)."""
    import mpmath

    if isinstance(v, bool | int | float):
        return float(v)
    if isinstance(v, mpmath.mpc):
        if v.imag != 0:
            return math.nan
        v = v.real
    return mpmath.libmp.to_float(mpmath.mpf(v)._mpf_, rnd="n")


def _mp_to_eval(v: Any) -> Any:
    """An mpmath number in the evaluation dtype (via a 25-digit decimal string; non-real -> nan)."""
    import mpmath

    if isinstance(v, mpmath.mpc):
        if v.imag != 0:
            return _EVAL_DTYPE("nan")
        v = v.real
    if isinstance(v, bool | int | float):
        return _EVAL_DTYPE(v)
    if not mpmath.isfinite(v):
        return _EVAL_DTYPE(float(v))
    with warnings.catch_warnings():  # beyond the dtype's range: inf or 0, as a float would give
        warnings.simplefilter("ignore", RuntimeWarning)
        return _EVAL_DTYPE(mpmath.nstr(mpmath.mpf(v), 25, min_fixed=1, max_fixed=0))
