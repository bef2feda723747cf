"""Bad input to every public function: one parametrized table, each with the error it must raise."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import handgrad as hg

NET = hg.Network((2, 3, 1))
P = NET.init(np.random.default_rng(0))
X = np.ones((2, 4))
Y = np.zeros((1, 4))


def _with(**changes: np.ndarray | None) -> dict:
    p = dict(P)
    for k, v in changes.items():
        if v is None:
            del p[k]
        else:
            p[k] = v
    return p


CASES: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("label (m,) vs output (1, m)", lambda: NET.backward(P, X, np.zeros(4)), ValueError,
     r"Y has shape \(4,\) but expected shape \(1, 4\).*never broadcast"),
    ("label (m, 1) transposed", lambda: NET.backward(P, X, np.zeros((4, 1))), ValueError,
     r"Y has shape \(4, 1\) but expected shape \(1, 4\)"),
    ("X wrong rows", lambda: NET.backward(P, np.ones((3, 4)), Y), ValueError,
     r"X has shape \(3, 4\) but expected shape \(2, \?\)"),
    ("X 1-D", lambda: NET.predict(P, np.ones(2)), ValueError, r"X has shape \(2,\) but expected shape \(2, \?\)"),
    ("empty batch", lambda: NET.predict(P, np.ones((2, 0))), ValueError, "the batch is empty"),
    ("X int dtype", lambda: NET.predict(P, np.ones((2, 1), dtype=int)), TypeError, "X has dtype int64"),
    ("X list", lambda: NET.predict(P, [[1.0], [2.0]]), TypeError, "X must be a numpy.ndarray, got list"),
    ("X NaN", lambda: NET.predict(P, np.array([[1.0], [np.nan]])), ValueError, "X contains a non-finite"),
    ("X float32 vs params float64", lambda: NET.predict(P, np.ones((2, 1), np.float32)), TypeError,
     "X has dtype float32 but expected dtype float64"),
    ("missing key", lambda: NET.predict(_with(B2=None), X), ValueError, r"missing \['B2'\]"),
    ("extra key", lambda: NET.predict(_with(W9=np.ones((1, 1))), X), ValueError, r"unexpected \['W9'\]"),
    ("W transposed", lambda: NET.predict(_with(W1=np.ones((2, 3))), X), ValueError,
     r"params\['W1'\] has shape \(2, 3\) but expected shape \(3, 2\)"),
    ("B as 1-D", lambda: NET.predict(_with(B1=np.ones(3)), X), ValueError,
     r"params\['B1'\] has shape \(3,\) but expected shape \(3, 1\)"),
    ("params not a dict", lambda: NET.predict([P["W1"]], X), TypeError, "params must be a dict"),
    ("inf in weights", lambda: NET.predict(_with(W2=np.full((1, 3), np.inf)), X), ValueError,
     r"params\['W2'\] contains a non-finite"),
    ("zero-width layer", lambda: hg.Network((2, 0, 1)), ValueError, r"sizes\[1\] is 0"),
    ("one size only", lambda: hg.Network((2,)), ValueError, "at least an input and an output"),
    ("size not int", lambda: hg.Network((2, 3.0, 1)), TypeError, r"sizes\[1\] must be an int"),
    ("sizes a string", lambda: hg.Network("2-3-1"), TypeError, "sizes must be a sequence"),
    ("wrong number of activations", lambda: hg.Network((2, 3, 1), ["relu"]), ValueError, "has 1 entries"),
    ("unknown activation", lambda: hg.Network((2, 1), "swishy"), ValueError, "unknown activation 'swishy'"),
    ("unknown loss", lambda: hg.Network((2, 1), "sigmoid", "hinge"), ValueError, "unknown loss 'hinge'"),
    ("bce after identity", lambda: hg.Network((2, 1), "identity", "bce"), ValueError,
     "expects predictions in"),
    ("bce label outside [0,1]", lambda: hg.Network((2, 1), "sigmoid", "bce").backward(
        {"W1": np.ones((1, 2)), "B1": np.ones((1, 1))}, np.ones((2, 1)), np.array([[1.5]])), ValueError,
     r"Y must lie in \[0.0, 1.0\]"),
    ("init with legacy RandomState", lambda: NET.init(np.random.RandomState(0)), TypeError,
     "rng must be a numpy.random.Generator"),
    ("init negative weight scale", lambda: NET.init(np.random.default_rng(0), weight_scale=-1.0), ValueError,
     "weight_scale must be > 0.0"),
    ("init NaN bias scale", lambda: NET.init(np.random.default_rng(0), bias_scale=float("nan")), ValueError,
     "bias_scale must be finite"),
    ("init dtype int", lambda: NET.init(np.random.default_rng(0), dtype=np.int32), TypeError,
     "dtype must be float32 or float64"),
    ("activation on 1-D", lambda: hg.get_activation("tanh")(np.ones(3)), ValueError,
     r"z has shape \(3,\) but expected shape 2-D"),
    ("activation backward shape mismatch", lambda: hg.get_activation("tanh").backward(
        np.ones((2, 1)), np.ones((2, 1)), np.ones((1, 2))), ValueError, r"grad_a has shape \(1, 2\)"),
    ("loss yhat/y mismatch", lambda: hg.get_loss("squared_error")(np.ones((1, 3)), np.ones(3)), ValueError,
     r"y has shape \(3,\) but expected shape \(1, 3\)"),
    ("register non-activation", lambda: hg.register_activation("relu"), TypeError, "must be an Activation"),
    ("register duplicate", lambda: hg.register_activation(hg.get_activation("relu")), ValueError,
     "already registered"),
    ("activation needs a derivative", lambda: hg.Activation("x", lambda z, ops: z), ValueError,
     "exactly one of derivative"),
    ("article steps 0", lambda: hg.train_article(steps=0, out=None), ValueError, "steps must be >= 1"),
    ("article negative rate", lambda: hg.train_article(rate=-0.1, out=None), ValueError, "rate must be >= 0"),
]


@pytest.mark.parametrize(("call", "error", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error(call: Callable[[], object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()
