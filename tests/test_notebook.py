"""docs/notebooks/article.ipynb: committed without outputs (the documented rule), and it runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "article.ipynb"


def _read():
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(NOTEBOOK, as_version=4)


def test_committed_notebook_is_valid_and_has_no_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = _read()
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 8
    stale = [k for k, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not stale, f"cells {stale} have outputs: clear them before committing (docs/notebooks/README.md)"


def test_notebook_covers_the_walk() -> None:
    text = "\n".join(c.source for c in _read().cells)
    for needle in ("def forward", "def my_backward", "certify_backward(my_backward", "printed_sign_backward",
                   "prove_network", "training.batch_gd", "training.sgd", "training.minibatch_gd",
                   "optim.momentum", "optim.adagrad", "optim.adam", "ax.plot"):
        assert needle in text, needle


def _outputs(cell) -> str:
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            parts.append(o.data.get("text/markdown") or o.data.get("text/plain", ""))
        elif o.output_type == "error":
            parts.append(f"ERROR {o.ename}: {o.evalue}")
    return "\n".join(parts)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_notebook_runs_and_says_what_its_text_claims(tmp_path: Path) -> None:
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = _read()
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in (*env, "MPLBACKEND")}
    os.environ.update(env)
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend draws the curves
    try:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out = "\n".join(_outputs(c) for c in nb.cells if c.cell_type == "code")
    assert "ERROR" not in out
    assert "my_backward: certified" in out
    assert "printed_sign_backward: **NOT certified**" in out and "W1[" in out
    assert "PROVED" in out
    assert sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if o.output_type == "display_data" and "image/png" in o.data) == 2
