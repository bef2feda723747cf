"""reference: the independent oracles (SymPy, JAX, finite differences) and the referee."""

__all__: list[str] = []
