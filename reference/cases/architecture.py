"""One architecture: layer sizes, activation names, loss name and whether the output rule is fused.

The one definition of the tuple the pools, the strategies, ``certify_backward``, the CLI and the
soak pass around (``(sizes, activations, loss, fuse)``, the arguments of :class:`handgrad.Network`).
It is a :class:`~typing.NamedTuple`, so it still unpacks and compares like the plain tuple.
"""

from __future__ import annotations

from typing import NamedTuple

from handgrad import Network

__all__ = ["Architecture"]


class Architecture(NamedTuple):
    """``Architecture((2, 3, 1), ("tanh", "sigmoid"), "bce", True)``: widths :math:`n_0..n_L`, one
    activation name per layer, the loss name, and ``fuse`` (use the loss's fused output rule)."""

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    fuse: bool

    def network(self) -> Network:
        """The :class:`handgrad.Network` (validates the architecture)."""
        return Network(self.sizes, list(self.activations), self.loss, fuse=self.fuse)

    def label(self) -> str:
        """``"2-3-1 tanh/sigmoid, bce"``, with ``" (unfused)"`` when ``fuse`` is off."""
        return ("-".join(map(str, self.sizes)) + " " + "/".join(self.activations) + f", {self.loss}"
                + ("" if self.fuse else " (unfused)"))
