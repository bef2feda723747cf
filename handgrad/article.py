r"""The article's worked example: a 2-3-3-1 sigmoid net trained on one sample.

x = [5, 7]^T, label 0.6, squared-error loss :math:`L = (\hat y - 0.6)^2`, learning rate 0.1,
100 steps of plain gradient descent. Each step, as in the article's ``Net.train``: forward,
loss, backward, update; every 20 steps (and at step 99) it prints the iteration, the prediction
and the loss *computed before that step's update*.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from .network import Network, Params
from .validation import check_positive_int, check_real

__all__ = ["ARTICLE_SIZES", "ARTICLE_X", "ARTICLE_LABEL", "ArticleStep", "article_network", "train_article"]

ARTICLE_SIZES = (2, 3, 3, 1)
ARTICLE_X = np.array([[5.0], [7.0]])
ARTICLE_LABEL = np.array([[0.6]])


class ArticleStep(NamedTuple):
    """One row of the trajectory: the iteration, the prediction and loss before its update."""

    iteration: int
    prediction: float
    loss: float


def article_network() -> Network:
    """The article's 2-3-3-1 sigmoid network with squared error."""
    return Network(ARTICLE_SIZES, "sigmoid", "squared_error")


def train_article(
    params: Mapping[str, np.ndarray] | None = None,
    *,
    seed: int = 0,
    steps: int = 100,
    rate: float = 0.1,
    print_every: int = 20,
    out: Callable[[str], object] | None = print,
) -> tuple[list[ArticleStep], Params]:
    """Run the article's example and return its trajectory and the final parameters.

    Args:
      params: initial weights ``W1, B1, W2, B2, W3, B3`` (copied, never modified). Default: the
        article's uniform [0, 1) initialization from ``np.random.default_rng(seed)``.
      seed: seed for the default initialization.
      steps: number of gradient steps (the article: 100).
      rate: learning rate :math:`\\alpha` in :math:`w \\leftarrow w - \\alpha\\,\\partial L/\\partial w`.
      print_every: print every this many steps, and the last one (article: 20); ``out=None`` is silent.
    """
    steps = check_positive_int("steps", steps)
    rate = check_real("rate", rate, low=0.0)
    print_every = check_positive_int("print_every", print_every)
    net = article_network()
    if params is None:
        params = net.article_init(np.random.default_rng(seed))
    net.check_params(params)
    p: Params = {k: np.array(v, copy=True) for k, v in params.items()}
    dtype = p["W1"].dtype
    x, y = ARTICLE_X.astype(dtype), ARTICLE_LABEL.astype(dtype)
    trajectory: list[ArticleStep] = []
    for i in range(steps):
        loss, grads = net.loss_and_grads(p, x, y)
        pred = float(net.forward_unchecked(p, x).a[-1][0, 0])
        trajectory.append(ArticleStep(i, pred, float(loss)))
        for k in p:
            p[k] = p[k] - rate * grads[k]
        if out is not None and (i % print_every == 0 or i == steps - 1):
            out(f"iteration {i:3d}  prediction {pred:.8f}  loss {float(loss):.8f}")
    return trajectory, p
