"""Input validation shared by every public function of handgrad.

Every check raises ``TypeError`` (wrong kind or dtype) or ``ValueError`` (wrong shape or
value) with a message that names the argument, what it got and what was expected. Nothing
is coerced or broadcast silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _fmt_shape(shape: Sequence[int | None]) -> str:
    parts = ["?" if s is None else str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def check_array(
    name: str,
    x: object,
    shape: Sequence[int | None] | None = None,
    *,
    ndim: int | None = None,
    dtype: np.dtype | None = None,
    finite: bool = True,
    allow_object: bool = False,
) -> np.ndarray:
    """Validate ``x`` and return it unchanged.

    ``shape`` may contain ``None`` for a free dimension. ``dtype``, when given, must match
    exactly; otherwise any of float32/float64 is accepted.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray, got {type(x).__name__}; "
            f"build it with numpy.asarray(..., dtype=float)"
        )
    if shape is not None:
        ndim = len(shape)
    if ndim is not None and x.ndim != ndim:
        expected = _fmt_shape(shape) if shape is not None else f"{ndim}-D"
        hint = ""
        if x.ndim == 1 and ndim == 2:
            hint = " (a 1-D array is never broadcast: reshape it to one row, e.g. y.reshape(1, -1))"
        raise ValueError(
            f"{name} has shape {_fmt_shape(x.shape)} but expected shape {expected}{hint}"
        )
    if shape is not None and x.shape != shape:  # equal shapes (most calls) need no axis by axis look
        for axis, (got, want) in enumerate(zip(x.shape, shape, strict=True)):
            if want is not None and got != want:
                raise ValueError(
                    f"{name} has shape {_fmt_shape(x.shape)} but expected shape "
                    f"{_fmt_shape(shape)} (axis {axis}: {got} != {want})"
                )
    if allow_object and x.dtype == object:
        return x
    if dtype is not None:
        if x.dtype != dtype:
            raise TypeError(f"{name} has dtype {x.dtype} but expected dtype {dtype}")
    elif x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} has dtype {x.dtype}; expected float32 or float64 "
            f"(convert explicitly, e.g. {name}.astype(numpy.float64))"
        )
    if finite and x.size and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(
            f"{name} contains a non-finite value ({x[tuple(bad)]!r} at index {tuple(int(i) for i in bad)})"
        )
    return x


def check_keys(name: str, d: object, expected: Sequence[str]) -> Mapping[str, np.ndarray]:
    """Check that ``d`` is a mapping with exactly the keys ``expected``."""
    if not isinstance(d, Mapping):
        raise TypeError(f"{name} must be a dict of arrays keyed {list(expected)}, got {type(d).__name__}")
    missing = [k for k in expected if k not in d]
    extra = [k for k in d if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unexpected {extra}")
        raise ValueError(f"{name} has wrong keys: {', '.join(parts)}; expected exactly {list(expected)}")
    return d


def check_positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_real(name: str, value: object, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """Check a real scalar hyperparameter against an interval and return it as float."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {v}")
    return v
