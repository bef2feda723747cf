"""The oracles' shared architecture key and LRU cache (``handgrad.reference.oracles.cache``)."""

from __future__ import annotations

import pytest
from handgrad.reference.oracles.cache import OracleCache, architecture_key

import handgrad as hg


class Declined(ValueError):
    pass


def _counting_cache(size: int, decline: int | None = None) -> tuple[OracleCache[str], list[str]]:
    built: list[str] = []

    def build(net: hg.Network) -> str:
        built.append(net.describe())
        if decline is not None and net.sizes[1] == decline:
            raise Declined(f"{net.describe()} declined")
        return net.describe()

    return OracleCache(build, size, remember=(Declined,)), built


def test_one_key_for_both_oracles() -> None:
    from handgrad.reference.oracles import jax_oracle, sympy_oracle

    assert sympy_oracle.architecture_key is architecture_key is jax_oracle.architecture_key
    assert isinstance(sympy_oracle._CACHE, OracleCache) and isinstance(jax_oracle._CACHE, OracleCache)


def test_key_separates_what_changes_the_function() -> None:
    base = hg.Network((2, 3, 1), "sigmoid", "bce")
    assert architecture_key(base) == architecture_key(hg.Network((2, 3, 1), "sigmoid", "bce"))
    for other in (hg.Network((2, 4, 1), "sigmoid", "bce"), hg.Network((2, 3, 1), ["tanh", "sigmoid"], "bce"),
                  hg.Network((2, 3, 1), "sigmoid", "squared_error"),
                  hg.Network((2, 3, 1), "sigmoid", "bce", fuse=False)):
        assert architecture_key(other) != architecture_key(base), other.describe()


def test_hits_do_not_rebuild_and_least_recently_used_goes_first() -> None:
    cache, built = _counting_cache(size=2)
    a, b, c = (hg.Network((2, n, 1), "sigmoid") for n in (1, 2, 3))
    cache.get(a)
    cache.get(b)
    cache.get(a)  # a is now the most recent
    assert built == [a.describe(), b.describe()] and len(cache) == 2
    cache.get(c)  # evicts b
    assert cache.peek(b) is None and cache.peek(a) == a.describe() and len(cache) == 2
    cache.get(b)
    assert built[-1] == b.describe() and cache.peek(a) is None


def test_declined_build_is_remembered_and_raised_fresh() -> None:
    cache, built = _counting_cache(size=4, decline=5)
    net = hg.Network((2, 5, 1), "sigmoid")
    errors = []
    for _ in range(2):
        with pytest.raises(Declined, match="declined") as info:
            cache.get(net)
        errors.append(info.value)
    assert len(built) == 1 and errors[0] is not errors[1]
    assert isinstance(cache.peek(net), Declined)
    cache.forget(net)
    assert cache.peek(net) is None
    cache.forget(net)  # absent: no error


def test_other_exceptions_are_not_cached() -> None:
    calls = []

    def build(net: hg.Network) -> str:
        calls.append(1)
        raise RuntimeError("boom")

    cache: OracleCache[str] = OracleCache(build, 4)
    net = hg.article_network()
    for _ in range(2):
        with pytest.raises(RuntimeError):
            cache.get(net)
    assert len(calls) == 2 and len(cache) == 0


def test_rejects_what_is_not_a_network() -> None:
    cache, _ = _counting_cache(size=1)
    with pytest.raises(TypeError, match=r"get_x: net must be a handgrad\.Network"):
        cache.get("2-3-1", "get_x")  # type: ignore[arg-type]
