"""handgrad: the article's hand-written backpropagation, generalized (numpy only).

The system under test of the handgrad verification suite. ``handgrad.reference`` (the
``reference/`` folder) holds the independent oracles and the referee that certify it; importing
``handgrad`` does not import it, so ``handgrad`` itself depends on numpy only.
"""

from importlib import metadata as _metadata

from . import notation, optim, training, validation
from .activations import (
    NUMPY_OPS,
    Activation,
    Ops,
    activation_names,
    at_kink,
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

try:
    __version__ = _metadata.version("handgrad")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

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
    "at_kink",
    "elu",
    "get_activation",
    "get_loss",
    "iter_activations",
    "iter_losses",
    "leaky_relu",
    "loss_names",
    "notation",
    "optim",
    "param_names",
    "register_activation",
    "register_loss",
    "train_article",
    "training",
    "unregister_activation",
    "unregister_loss",
    "validation",
]
