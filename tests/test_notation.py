"""The article's element names: one rule, both ways, unambiguous at widths of 10 and more."""

from __future__ import annotations

import pytest

from handgrad import Network
from handgrad.notation import (
    NotationError,
    element_label,
    element_latex,
    element_name,
    parse_element,
)


@pytest.mark.parametrize("sizes", [(12, 12, 12), (3, 12, 1), (12, 10, 9, 2)])
def test_every_element_round_trips(sizes: tuple[int, ...]) -> None:
    net = Network(sizes, "tanh", "squared_error")
    seen: dict[str, tuple[str, tuple[int, int]]] = {}
    for tensor, shape in net.param_shapes.items():
        for i in range(shape[0]):
            for j in range(shape[1]):
                name = element_name(tensor, (i, j))
                assert name not in seen, f"{name} names both {seen[name]} and {(tensor, (i, j))}"
                seen[name] = (tensor, (i, j))
                assert parse_element(name) == (tensor, (i, j))
                assert parse_element(element_latex(tensor, (i, j))) == (tensor, (i, j))
                assert parse_element(f"{tensor}[{i}, {j}]") == (tensor, (i, j))


@pytest.mark.parametrize(("index", "plain", "latex"), [
    ((0, 12), "w_1,13^(1)", "w_{1,13}^{(1)}"),
    ((10, 2), "w_11,3^(1)", "w_{11,3}^{(1)}"),
    ((0, 1), "w_12^(1)", "w_{12}^{(1)}"),
    ((9, 9), "w_10,10^(1)", "w_{10,10}^{(1)}"),
])
def test_two_digit_indices_are_separated(index: tuple[int, int], plain: str, latex: str) -> None:
    assert element_name("W1", index) == plain
    assert element_latex("W1", index) == latex
    assert element_label("W1", index) == f"W1[{index[0]}, {index[1]}] ({plain})"


def test_bias_and_non_parameter_labels() -> None:
    assert element_name("B3", (1, 0)) == "b_2^(3)"
    assert parse_element("b_{12}^{(2)}") == ("B2", (11, 0))
    assert parse_element("B2[4]") == ("B2", (4, 0))
    assert element_label("mu", (0, 1)) == "mu[0, 1]"
    assert element_label("B1", (0, 1)) == "B1[0, 1]"  # a key that only looks like a bias
    assert element_label("W1", (0, 1, 2)) == "W1[0, 1, 2]"


@pytest.mark.parametrize("text", ["w_113^(1)", "w_1^(1)", "b_1,2^(1)", "W1[3]", "v_12^(1)", "w_01^(1)", "W0[0, 0]"])
def test_ambiguous_or_malformed_names_are_refused(text: str) -> None:
    with pytest.raises(NotationError):
        parse_element(text)


@pytest.mark.parametrize(("tensor", "index"), [("X1", (0, 0)), ("W1", (0,)), ("B1", (0, 1)), ("W1", (-1, 0))])
def test_bad_tensor_or_index(tensor: str, index: tuple[int, ...]) -> None:
    with pytest.raises(NotationError):
        element_name(tensor, index)
