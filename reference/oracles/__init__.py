"""The independent oracles: each computes the gradient of the loss without handgrad's backward.

``sympy_oracle`` (closed forms of the composite loss), ``jax_oracle`` (``jax.grad`` of its own
forward), ``finite_diff`` (differences of the loss with running error bounds), ``optax_oracle``
(optimizer trajectories), the ``Ops`` namespaces they plug into the shared definitions (``ops``),
and their shared input checks (``inputs``).
"""
