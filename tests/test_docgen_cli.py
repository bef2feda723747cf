"""``handgrad handout`` through its own parser hook (the CLI wires add_handout_parser/run_handout)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
from handgrad.reference.docgen import handout
from handgrad.reference.docgen.handout import ARTICLE, HANDOUT_PATH, render
from handgrad.reference.docgen.handout_cli import add_handout_parser, parse_arch, run_handout


def _run(argv: list[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="handgrad")
    add_handout_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["handout", *argv])
    out, err = io.StringIO(), io.StringIO()
    assert args.func is run_handout
    code = run_handout(args, out, err)
    return code, out.getvalue(), err.getvalue()


def test_the_articles_net_prints_the_committed_page() -> None:
    code, out, err = _run(["--arch", "2-3-3-1", "--activation", "sigmoid"])
    assert code == 0 and err == ""
    assert out == HANDOUT_PATH.read_text(encoding="utf-8")


def test_chinese_tex_to_a_file(tmp_path: Path) -> None:
    path = tmp_path / "h.zh.tex"
    code, out, err = _run(["--arch", "2-4-4-1", "--activation", "tanh,tanh,sigmoid", "--loss", "bce",
                           "--lang", "zh", "--format", "tex", "--out", str(path)])
    assert code == 0 and out == ""
    assert "wrote" in err
    text = path.read_text(encoding="utf-8")
    assert text.startswith("% ") and r"\subsection*{输出层}" in text


@pytest.mark.parametrize(("argv", "needle"), [
    (["--arch", "2-x-1"], "--arch"),
    (["--arch", "2-3-1", "--activation", "tanh,tanh,tanh"], "--activation lists 3"),
    (["--arch", "2-3-1", "--activation", "nope"], "nope"),
    (["--arch", "2-3-1", "--activation", "tanh", "--loss", "bce"], "bce"),
    (["--arch", "2-2-1", "--activation", "leaky_relu"], "no handout display rule"),
    (["--arch", "2-3-2", "--activation", "relu,softmax", "--loss", "cross_entropy", "--no-fuse"], "softmax"),
], ids=["arch", "count", "unknown-activation", "bce-after-tanh", "no-rule", "unfused-softmax"])
def test_bad_arguments_exit_2_with_a_sentence(argv: list[str], needle: str) -> None:
    code, out, err = _run(argv)
    assert code == 2 and out == ""
    assert err.startswith("handgrad handout: error:") and needle in err


def test_a_failed_check_exits_1_and_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(self, l, i, j):  # a wrong formula: the input factor dropped
        return handout.Formula(self.dl_db(l, i).tex, self.dl_db(l, i).expr)

    monkeypatch.setattr(handout.Derivation, "dl_dw", broken)
    path = tmp_path / "h.md"
    code, _, err = _run(["--arch", "2-2-1", "--activation", "sigmoid", "--out", str(path)])
    assert code == 1 and not path.exists()
    assert "failed its check" in err and "[D]" in err


def test_parse_arch() -> None:
    assert parse_arch("2-3-3-1") == (2, 3, 3, 1)
    with pytest.raises(ValueError, match="--arch"):
        parse_arch("3")


def test_render_matches_the_cli() -> None:
    code, out, _ = _run(["--arch", "2-3-3-1", "--activation", "sigmoid", "--lang", "zh"])
    assert code == 0 and out == render(ARTICLE, lang="zh")
