"""Note [JAX compilation cache] (handgrad.reference.cli.runner): where the command keeps the JAX
oracle's compiled functions, and when it keeps none. The pool and the console script writing into
it are tested in tests/test_cli_conventions.py (the runs there name a temporary folder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from handgrad.reference.cli.runner import JAX_CACHE_ENV, jax_cache_dir, use_jax_cache


def test_the_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(JAX_CACHE_ENV, str(tmp_path / "env"))
    assert jax_cache_dir(str(tmp_path / "opt")) == str(tmp_path / "opt")
    assert jax_cache_dir() == str(tmp_path / "env")


@pytest.mark.parametrize("value", ["off", "OFF", "none", "0", "no", ""])
def test_off_keeps_no_cache(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert jax_cache_dir(value) is None
    monkeypatch.setenv(JAX_CACHE_ENV, value)
    assert jax_cache_dir() is None


def test_the_default_is_the_users_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(JAX_CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jax_cache_dir() == str(tmp_path / "handgrad" / "jax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert jax_cache_dir() == str(tmp_path / "home" / ".cache" / "handgrad" / "jax")


def test_a_folder_that_cannot_be_made_turns_nothing_on(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    assert use_jax_cache(None) is False
    assert use_jax_cache(str(blocker / "cache")) is False


def test_a_jax_cache_named_on_the_command_line_must_be_usable(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from handgrad.reference.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    rc = main(["certify", "--losses", "bce", "--no-report", "--jax-cache", str(blocker / "cache")])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and "--jax-cache" in captured.err and "cannot be made" in captured.err
