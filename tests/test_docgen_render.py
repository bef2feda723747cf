r"""Every math block of every committed handout passes a real parser (and, where installed, KaTeX
and a TeX engine).

* KaTeX (npm ``katex``), the strict renderer: each formula is rendered with ``throwOnError`` and
  ``strict: "error"`` by ``reference/docgen/katex_check.js``. It runs when node is on the PATH and
  the katex package is found: ``$HANDGRAD_KATEX_DIR`` (a ``node_modules`` folder), else
  ``~/.cache/handgrad-katex/node_modules`` or ``/tmp/katex/node_modules``. In CI:
  ``npm install --no-audit --no-fund --prefix "$RUNNER_TEMP/katex" katex@0.16`` and
  ``HANDGRAD_KATEX_DIR=$RUNNER_TEMP/katex/node_modules``.
* latex2mathml (PyPI): each formula converts to MathML, and no command is left unknown (it would
  come out as a literal ``<mi>\name</mi>``).
* pdflatex (Debian ``texlive-latex-base``): every English .tex handout compiles inside a minimal
  document; skipped when pdflatex is absent.
* xelatex with xeCJK and a CJK font (Debian ``texlive-xetex``, ``texlive-lang-chinese``,
  ``fonts-noto-cjk``): every Chinese .tex handout compiles the same way, and its PDF holds the
  Chinese text (``pdftotext``, when installed); skipped when any of them is absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from handgrad.reference.docgen.handout import HANDOUTS

KATEX_SCRIPT = Path(__file__).resolve().parents[1] / "reference" / "docgen" / "katex_check.js"


def _md_math(text: str) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    lines = text.splitlines()
    k = 0
    prose = []
    while k < len(lines):
        if lines[k] == "$$":
            end = lines.index("$$", k + 1)
            out.append(("\n".join(lines[k + 1:end]), True))
            k = end + 1
            continue
        prose.append(lines[k])
        k += 1
    for line in prose:
        line = re.sub(r"`[^`]*`", "", line)
        out += [(m, False) for m in re.findall(r"\$([^$]+)\$", line)]
    return out


def _tex_math(text: str) -> list[tuple[str, bool]]:
    out = [(m, True) for m in re.findall(r"\\begin\{equation\*\}\n(.*?)\n\\end\{equation\*\}", text, re.S)]
    prose = re.sub(r"\\begin\{equation\*\}.*?\\end\{equation\*\}", "", text, flags=re.S)
    prose = "\n".join(line for line in prose.splitlines() if not line.startswith("%"))
    prose = re.sub(r"\\texttt\{[^}]*\}", "", prose)
    out += [(m, False) for m in re.findall(r"(?<!\\)\$([^$]+)\$", prose)]
    return out


def all_math() -> list[tuple[str, str, bool]]:
    """(file name, formula, display) for every formula of every committed handout."""
    items = []
    for c in HANDOUTS:
        text = c.path.read_text(encoding="utf-8")
        for tex, display in (_md_math(text) if c.fmt == "md" else _tex_math(text)):
            items.append((c.path.name, tex, display))
    return items


def test_the_math_is_found() -> None:
    items = all_math()
    per_file = {name for name, _, _ in items}
    assert len(per_file) == len(HANDOUTS)
    assert len(items) > 500
    assert all(tex.strip() for _, tex, _ in items)


def _katex_dir() -> Path | None:
    candidates = [os.environ.get("HANDGRAD_KATEX_DIR", ""), str(Path.home() / ".cache/handgrad-katex/node_modules"),
                  "/tmp/katex/node_modules"]
    for c in candidates:
        if c and (Path(c) / "katex" / "package.json").exists():
            return Path(c)
    return None


def katex_failures(items: list[tuple[str, bool]]) -> list[dict]:
    """KaTeX's verdict on ``(tex, display)`` items: the failures (empty: all rendered)."""
    node, kdir = shutil.which("node"), _katex_dir()
    if node is None or kdir is None:
        pytest.skip("KaTeX not installed (node and the npm katex package; see this module's docstring)")
    payload = json.dumps([{"tex": t, "display": d} for t, d in items])
    run = subprocess.run([node, str(KATEX_SCRIPT)], input=payload, capture_output=True, text=True, check=True,
                         env={**os.environ, "NODE_PATH": str(kdir)}, timeout=120)
    return json.loads(run.stdout)


def test_every_formula_renders_in_katex() -> None:
    items = all_math()
    failures = katex_failures([(t, d) for _, t, d in items])
    assert not failures, "\n".join(f"{items[f['index']][0]}: {f['error']}\n  {f['tex'][:200]}" for f in failures[:5])


def test_katex_does_refuse_broken_latex() -> None:
    failures = katex_failures([(r"\frac{a}{", True), (r"\left( x", True), (r"\undefinedmacro x", False),
                               (r"\frac{\partial L}{\partial w_{11}^{(3)}}", True)])
    assert [f["index"] for f in failures] == [0, 1, 2]


def mathml_problem(tex: str, display: bool) -> str | None:
    converter = pytest.importorskip("latex2mathml.converter")
    try:
        mathml = converter.convert(tex, display="block" if display else "inline")
    except Exception as exc:  # latex2mathml raises its own exception classes
        return f"{type(exc).__name__}: {exc}"
    unknown = re.findall(r"<mi>(\\[A-Za-z]+)</mi>", mathml)
    return f"unknown commands {sorted(set(unknown))}" if unknown else None


def test_every_formula_converts_to_mathml() -> None:
    bad = [(name, tex, p) for name, tex, d in all_math() if (p := mathml_problem(tex, d)) is not None]
    assert not bad, "\n".join(f"{n}: {p}\n  {t[:200]}" for n, t, p in bad[:5])


def test_mathml_check_refuses_broken_latex() -> None:
    assert mathml_problem(r"\frac{a}{", True) is not None
    assert mathml_problem(r"\undefinedmacro x", False) is not None
    assert mathml_problem(r"\frac{\partial L}{\partial \hat y} = 2(\hat y - y)", True) is None


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (apt-get install texlive-latex-base)")
@pytest.mark.parametrize("entry", [c for c in HANDOUTS if c.fmt == "tex" and c.lang == "en"],
                         ids=lambda c: c.path.name)
def test_english_tex_handouts_compile(entry, tmp_path: Path) -> None:
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\usepackage[margin=2cm]{geometry}\n"
                   f"\\begin{{document}}\n\\input{{{entry.path}}}\n\\end{{document}}\n", encoding="utf-8")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "doc.pdf").exists()


def _cjk_font() -> str | None:
    """A Simplified Chinese font fontconfig knows (Noto first), or None."""
    if shutil.which("fc-list") is None:
        return None
    out = subprocess.run(["fc-list", ":lang=zh-cn", "family"], capture_output=True, text=True, timeout=60).stdout
    families = sorted({f.strip() for line in out.splitlines() for f in line.split(",") if f.strip()})
    for preferred in ("Noto Serif CJK SC", "Noto Sans CJK SC"):
        if preferred in families:
            return preferred
    return families[0] if families else None


def _xecjk_ready() -> bool:
    if shutil.which("xelatex") is None or shutil.which("kpsewhich") is None:
        return False
    found = subprocess.run(["kpsewhich", "xeCJK.sty"], capture_output=True, text=True, timeout=60).stdout.strip()
    return bool(found) and _cjk_font() is not None


@pytest.mark.skipif(not _xecjk_ready(), reason="xelatex, xeCJK or a CJK font not installed "
                    "(apt-get install texlive-xetex texlive-lang-chinese fonts-noto-cjk)")
@pytest.mark.parametrize("entry", [c for c in HANDOUTS if c.fmt == "tex" and c.lang == "zh"],
                         ids=lambda c: c.path.name)
def test_chinese_tex_handouts_compile(entry, tmp_path: Path) -> None:
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\usepackage[margin=2cm]{geometry}\n"
                   f"\\usepackage{{xeCJK}}\n\\setCJKmainfont{{{_cjk_font()}}}\n"
                   f"\\begin{{document}}\n\\input{{{entry.path}}}\n\\end{{document}}\n", encoding="utf-8")
    run = subprocess.run(["xelatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "doc.pdf").exists()
    assert "Missing character" not in (tmp_path / "doc.log").read_text(encoding="utf-8", errors="replace")
    if shutil.which("pdftotext") is not None:  # the Chinese prose made it into the PDF as text
        text = subprocess.run(["pdftotext", "doc.pdf", "-"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60).stdout
        typeset = [line for line in entry.path.read_text(encoding="utf-8").splitlines() if not line.startswith("%")]
        han = [ch for line in typeset for ch in line if "\u4e00" <= ch <= "\u9fff"]
        assert han, "the handout has no Chinese characters"
        assert sum(ch in text for ch in set(han)) == len(set(han)), "Chinese characters missing from the PDF"
