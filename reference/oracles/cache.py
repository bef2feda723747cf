"""One architecture key and one least-recently-used cache for the oracles that build per network.

Building an oracle is the expensive part (SymPy derives and compiles the closed forms, JAX traces
and compiles), and it depends only on the architecture, never on the point. So the SymPy and JAX
oracles keep one built oracle per :func:`architecture_key` in an :class:`OracleCache`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from handgrad import Network

from .inputs import check_network

__all__ = ["OracleCache", "architecture_key"]

T = TypeVar("T")


def architecture_key(net: Network) -> Hashable:
    """What makes two networks compute the same function of (params, X, Y).

    Sizes; each activation's name *and* definition object; the loss's name and definition; the
    fused rule's definition (or None); the ``fuse`` flag. Definitions are compared by identity, so
    re-registering a different activation under an old name never reuses a stale oracle.
    """
    rule = net.fused_rule
    return (
        net.sizes,
        tuple((a.name, a.definition) for a in net.activations),
        net.loss.name,
        net.loss.definition,
        rule.definition if rule is not None else None,
        net.fuse,
    )


class OracleCache(Generic[T]):
    """Built oracles keyed by :func:`architecture_key`, the least recently used out beyond ``size``.

    ``build(net)`` makes the oracle on a miss. A build that raises one of ``remember`` (an
    architecture the oracle declines) is remembered too, and raised again, as a fresh exception of
    the same type and arguments, on every later request: a declined network costs its build once.

    Example:
      >>> import handgrad as hg
      >>> cache = OracleCache(lambda net: net.describe(), size=2)
      >>> cache.get(hg.article_network()) == hg.article_network().describe(), len(cache)
      (True, 1)
    """

    def __init__(self, build: Callable[[Network], T], size: int,
                 remember: tuple[type[Exception], ...] = ()) -> None:
        self._build = build
        self._size = size
        self._remember = remember
        self._entries: OrderedDict[Hashable, T | Exception] = OrderedDict()

    def get(self, net: Network, who: str = "get_oracle") -> T:
        """The oracle for ``net``'s architecture, built on the first request."""
        check_network(net, who)
        key = architecture_key(net)
        if key in self._entries:
            self._entries.move_to_end(key)
            entry = self._entries[key]
        else:
            try:
                entry = self._build(net)
            except self._remember as exc:
                entry = exc
            self._entries[key] = entry
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        if isinstance(entry, Exception):
            raise type(entry)(*entry.args)
        return entry

    def peek(self, net: Network) -> T | Exception | None:
        """What is cached for ``net``'s architecture (a remembered exception included), or None;
        the order of use is left unchanged."""
        return self._entries.get(architecture_key(check_network(net, "OracleCache.peek")))

    def forget(self, net: Network) -> None:
        """Drop ``net``'s architecture from the cache (no error if it is absent)."""
        self._entries.pop(architecture_key(check_network(net, "OracleCache.forget")), None)

    def clear(self) -> None:
        """Empty the cache."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
