"""handgrad: the article's hand-written backpropagation, generalized (numpy only).

The system under test of the handgrad verification suite. ``reference`` holds the independent
oracles and the referee that certify it.
"""

from . import optim, training
from .activations import (
    NUMPY_OPS,
    Activation,
    Ops,
    activation_names,
    elu,
    get_activation,
    iter_activations,
    leaky_relu,
    register_activation,
    unregister_activation,
)
from .article import ARTICLE_LABEL, ARTICLE_SIZES, ARTICLE_X, ArticleStep, article_network, train_article
from .losses import FusedRule, Loss, get_loss, iter_losses, loss_names, register_loss, unregister_loss
from .network import Cache, Network, Params, param_names

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "ARTICLE_LABEL",
    "ARTICLE_SIZES",
    "ARTICLE_X",
    "ArticleStep",
    "Cache",
    "FusedRule",
    "Loss",
    "Network",
    "NUMPY_OPS",
    "Ops",
    "Params",
    "activation_names",
    "article_network",
    "elu",
    "get_activation",
    "get_loss",
    "iter_activations",
    "iter_losses",
    "leaky_relu",
    "loss_names",
    "optim",
    "param_names",
    "register_activation",
    "register_loss",
    "train_article",
    "training",
    "unregister_activation",
    "unregister_loss",
]
