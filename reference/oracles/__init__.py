"""The independent oracles: each computes the gradient of the loss without handgrad's backward.

* ``table``: the oracle table (name, label, entry point) the referee, certify, the CLI and docs
  read; adding an oracle means writing its module and adding one entry there.
* ``sympy_oracle``: closed forms of the composite loss (built by ``sympy_composite``, compiled by
  ``sympy_codegen``, shown in the article's notation by ``sympy_display``).
* ``jax_oracle``: ``jax.grad`` of its own ``jax.numpy`` forward.
* ``finite_diff``: differences of the loss with error bounds (the arithmetic: ``running_error``).
* ``optax_oracle``: optimizer trajectories recomputed by optax.
* ``ops`` (the ``Ops`` namespaces plugged into the shared definitions), ``inputs`` (shared input
  checks and errors), ``cache`` (the architecture key and LRU cache of built oracles).

Importing this package, the table, ``ops``, ``inputs`` or ``cache`` loads none of SymPy, JAX,
mpmath or hypothesis.
"""

__all__: list[str] = []
