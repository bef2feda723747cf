"""The oracles name elements through handgrad.notation only (comma once an index has two digits)."""

from __future__ import annotations

import numpy as np
from handgrad.reference.oracles import inputs, optax_oracle
from handgrad.reference.oracles.sympy_composite import _make_symbols

import handgrad as hg
from handgrad.notation import element_latex, parse_element


def test_sympy_symbols_are_the_article_latex_names_at_widths_beyond_ten() -> None:
    net = hg.Network((13, 11, 2), "identity")
    sym = _make_symbols(net)
    for tensor, shape in net.param_shapes.items():
        for index in np.ndindex(*shape):
            assert sym[tensor][index].name == element_latex(tensor, index)
    assert sym["W1"][0, 12].name != sym["W1"][10, 2].name
    assert sym["X"][12, 0].name == "x_{1,13}" and sym["A1"][10, 0].name == "x_{2,11}"


def test_optax_labels_use_the_one_rule() -> None:
    labels = optax_oracle._labels(["W1", "B1", "mu"], [(11, 13), (11, 1), (2,)])
    assert "W1[0, 12] (w_1,13^(1))" in labels and "W1[10, 2] (w_11,3^(1))" in labels
    assert "B1[10, 0] (b_11^(1))" in labels and labels[-1] == "mu[1]"
    assert len(set(labels)) == len(labels)
    assert parse_element(labels[12].split(" (")[1][:-1]) == ("W1", (0, 12))
    # a key that only looks like an article tensor keeps its code name
    assert optax_oracle._labels(["B1"], [(1, 2)]) == ["B1[0, 0] (b_1^(1))", "B1[0, 1]"]


def test_no_local_copy_of_the_naming_rule_is_left() -> None:
    assert not hasattr(optax_oracle, "element_label") or optax_oracle.element_label is hg.notation.element_label
    assert not hasattr(inputs, "element_name")
