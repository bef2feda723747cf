"""The reports module: one dict per report, every rendering from it, provenance and a content hash."""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import pytest
from handgrad.reference.judge.reports import (
    Certificate,
    Mismatch,
    Report,
    RunSummary,
    SubjectResult,
    TensorCheck,
    architecture_label,
    content_hash,
    jsonable,
    worst_ratios,
)


def _report(verdict: str = "certified", ratio: float = 0.25) -> Report:
    ok = ratio <= 1
    checks = [TensorCheck("hand vs JAX", k, 1e-17, 1e-16, ratio if k == "W1" else 0.1, "w_1,13^(1)", ok or k != "W1",
                          0 if ok or k != "W1" else 1) for k in ("W1", "B1")]
    r = Report("2-13-1 sigmoid/sigmoid, squared_error", "float64", 3, verdict, checks,
               reproduce="handgrad.reference.build_case(...)", seed=7)
    if not ok:
        r.mismatches.append(Mismatch("hand vs JAX", "W1", (0, 12), "w_1,13^(1)",
                                     {"hand": 0.5, "JAX": 0.25, "finite differences": float("inf")},
                                     1e-15, ratio, 1))
    return r


def _certificate(failing: bool = False) -> Certificate:
    c = Certificate("my_backward", "2-13-1 sigmoid/sigmoid, squared_error", "float64", ("jax", "fd"),
                    call="certify_backward(my_backward, ...)", seed=3)
    c.add(_report())
    if failing:
        bad = _report("mismatch", ratio=12.5)
        c.add(bad)
        c.failure = bad
    return c


def test_jsonable_converts_numpy_tuples_and_nonfinite() -> None:
    got = jsonable({1: (np.float32(0.5), np.int64(3)), "a": np.arange(2), "b": [float("nan"), -np.inf]})
    assert got == {"1": [0.5, 3], "a": [0, 1], "b": ["nan", "-inf"]}
    json.dumps(got, allow_nan=False)


@pytest.mark.parametrize("make", [_report, _certificate, lambda: _certificate(failing=True)],
                         ids=["report", "certificate", "failing-certificate"])
def test_every_dict_carries_provenance_and_its_own_hash(make) -> None:
    obj = make()
    d = obj.to_dict()
    prov = d["provenance"]
    assert prov["versions"]["handgrad"] == importlib.metadata.version("handgrad")
    assert prov["versions"]["numpy"] == np.__version__
    assert prov["versions"]["sympy"] == importlib.metadata.version("sympy")
    assert prov["versions"]["jax"] == importlib.metadata.version("jax")
    assert prov["seed"] in (3, 7) and prov["call"]
    assert d["sha256"] == content_hash(d) and len(d["sha256"]) == 64
    edited = json.loads(json.dumps(d))
    edited["dtype"] = "float32"
    assert content_hash(edited) != d["sha256"]
    # JSON is the dict; Markdown shows the provenance and the hash.
    assert json.loads(obj.to_json()) == d
    md = obj.markdown()
    assert d["sha256"] in md and f"handgrad {prov['versions']['handgrad']}" in md
    assert obj._repr_markdown_() == md


def test_report_renderings_read_the_dict() -> None:
    r = _report("mismatch", ratio=12.5)
    d = r.to_dict()
    assert d["ok"] is False and d["mismatches"][0]["index"] == [0, 12]
    assert d["mismatches"][0]["values"]["finite differences"] == "inf"
    sentence = ("hand vs JAX disagree on dL/dw_1,13^(1) (W1[0, 12]): hand = 0.5, JAX = 0.25, "
                "finite differences = inf; |difference| is 12.5 x its budget 1e-15 (1 element of W1 over budget)")
    assert r.mismatches[0].sentence() == sentence
    assert "  error: " + sentence in r.text()
    assert r.markdown().startswith("### mismatch: `2-13-1") and f"- **error**: {sentence}" in r.markdown()
    assert r.markdown(level=5).startswith("##### mismatch")
    with pytest.raises(ValueError, match="level must be >= 1, got 0"):
        r.markdown(level=0)
    with pytest.raises(ValueError, match=r"level must be a Markdown heading level 1\.\.6, got 7"):
        r.markdown(level=7)


def test_certificate_nests_its_failure_one_level_down() -> None:
    c = _certificate(failing=True)
    md = c.markdown()
    assert md.startswith("## my_backward: **NOT certified**")
    assert "\n### mismatch: `2-13-1" in md
    assert c.to_dict()["failure"]["sha256"] == c.failure.to_dict()["sha256"]
    text = c.text()
    assert text.startswith("NOT CERTIFIED: my_backward on 2-13-1") and "    MISMATCH: 2-13-1" in text
    assert c.ratios() == {"W1": 12.5, "B1": 0.1}


def test_worst_ratios_orders_tensors_by_layer() -> None:
    c = Certificate("s", "a", "float64", ("jax", "fd"))
    c.per_tensor = {k: {"max_abs": 0.0, "max_rel": 0.0, "ratio": r}
                    for k, r in (("B2", 0.5), ("W10", 0.1), ("W2", float("nan")), ("W1", 0.3))}
    assert list(worst_ratios([c]).items()) == [("W1", 0.3), ("W2", 0.0), ("B2", 0.5), ("W10", 0.1)]


def _summary() -> RunSummary:
    arch_ok = ((2, 13, 1), ("sigmoid", "sigmoid"), "squared_error", True)
    arch_bad = ((2, 13, 1), ("sigmoid", "sigmoid"), "squared_error", False)
    good = SubjectResult("activation sigmoid", "activation", [arch_ok], [_certificate()])
    bad = SubjectResult("my_backward", "backward", [arch_bad], [_certificate(failing=True)])
    return RunSummary([good, bad], "handgrad certify --examples 2", 0, 2, ("jax", "fd"), 1.25,
                      chart="handgrad-report.png")


def test_architecture_label() -> None:
    assert architecture_label(((2, 3, 1), ("tanh", "sigmoid"), "bce", False)) == "2-3-1 tanh/sigmoid, bce (unfused)"


def test_run_summary_dict_keeps_the_cli_report_keys() -> None:
    s = _summary()
    d = s.to_dict()
    assert d["ok"] is False and d["command"] == "handgrad certify --examples 2"
    assert d["settings"] == {"dtype": "float64", "examples_per_architecture": 2, "seed": 0,
                             "oracles": ["jax", "fd"], "vary_shapes": False}
    good, bad = d["subjects"]
    assert good["status"] == "certified" and bad["status"] == "FAILED"
    assert bad["architectures"] == ["2-13-1 sigmoid/sigmoid, squared_error (unfused)"]
    assert bad["worst_ratio"] == 12.5 and bad["per_tensor_ratio"] == {"W1": 12.5, "B1": 0.1}
    assert bad["certificates"][0]["failure"]["mismatches"][0]["tensor"] == "W1"
    assert d["provenance"]["call"] == d["command"] and d["sha256"] == content_hash(d)
    assert json.loads(s.to_json()) == d


def test_run_summary_text_and_markdown() -> None:
    s = _summary()
    text = s.text()
    assert text.startswith("NOT CERTIFIED: my_backward on 2-13-1")  # the failing certificate first
    assert "activation sigmoid      1      1          1             0              0.25  certified" in text
    assert "worst err/budget: the largest |hand - reference|" in text
    assert text.endswith("NOT CERTIFIED: 1 of 2 subject(s) (my_backward); 3 cases, 1.2 s")
    md = s.markdown()
    assert md.startswith("# handgrad certification report")
    assert "| my_backward | 1 | 2 | 1 | 0 | 12.5 | **FAILED** |" in md
    assert "![worst error-to-budget ratio per tensor](handgrad-report.png)" in md
    # Levels: subject ##, certificate ### titled by its architecture, its failing case ####.
    assert "\n## my_backward\n" in md
    assert "\n### `2-13-1 sigmoid/sigmoid, squared_error`: **NOT certified**\n" in md
    assert "\n#### mismatch: `2-13-1" in md
    assert md.rstrip().endswith(f"sha256 `{s.to_dict()['sha256']}`.")

