"""Hypothesis strategies for architectures, parameters, batches (filled in by the referee issue)."""

from __future__ import annotations

import os

__all__ = ["examples"]

_MULTIPLIER = {"ci": 1, "random": 1, "thorough": 10}


def examples(n: int) -> int:
    """``n`` examples under the default (ci) hypothesis profile, 10x under HANDGRAD_PROFILE=thorough."""
    return n * _MULTIPLIER.get(os.environ.get("HANDGRAD_PROFILE", "ci"), 1)
