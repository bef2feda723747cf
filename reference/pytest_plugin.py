r"""The handgrad pytest plugin: certification failures read as reports, and a profile option.

Installed as the ``pytest11`` entry point ``handgrad`` (or loaded with
``pytest -p handgrad.reference.pytest_plugin``), it does two things in a user's test run:

* A test that fails because ``certify_backward`` (or ``certify_network``) raised
  :class:`~handgrad.reference.judge.certify.CertificationError` shows the user's own line that
  called it, then the certificate's report -- the failing pair, tensor and element, every
  source's value, the budget and the reproduction line -- instead of pytest's long traceback
  through the suite's source (about 90 lines of library code before the message).
  ``--handgrad-full-trace`` keeps pytest's own traceback.
* ``--handgrad-profile ci|thorough|random`` sets ``HANDGRAD_PROFILE`` for the run, before any
  ``conftest.py`` is loaded: the suite's ``examples(n)`` (:mod:`handgrad.reference.cases.strategies`)
  and the test suite's hypothesis profiles read it. The previous value is restored at the end.

The plugin imports nothing of the suite until a test fails, so it costs nothing in runs that do
not use handgrad.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
from _pytest._code.code import ReprFileLocation, TerminalRepr

__all__ = [
    "PROFILES",
    "pytest_addoption",
    "pytest_configure",
    "pytest_load_initial_conftests",
    "pytest_runtest_makereport",
    "pytest_unconfigure",
    "short_failure",
]

PROFILES = ("ci", "thorough", "random")
_ENV = "HANDGRAD_PROFILE"
_SAVED = "_handgrad_saved_profile"
_SUITE = Path(__file__).resolve().parent  # handgrad.reference's folder


def _library_dirs() -> tuple[Path, ...]:
    """handgrad, its suite and hypothesis: the frames a user need not read (found without importing)."""
    dirs = [_SUITE]
    for name in ("handgrad", "hypothesis"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            dirs.append(Path(spec.origin).resolve().parent)
    return tuple(dirs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("handgrad", "handgrad: certify hand-written backpropagation")
    group.addoption("--handgrad-profile", choices=PROFILES, default=None, dest="handgrad_profile",
                    help="example budget of the handgrad suite: ci (default), thorough (10x), random "
                         "(ci with fresh randomness); sets HANDGRAD_PROFILE for the run")
    group.addoption("--handgrad-full-trace", action="store_true", default=False, dest="handgrad_full_trace",
                    help="show pytest's full traceback for handgrad certification failures")


def _apply_profile(config: pytest.Config, profile: str | None) -> None:
    if profile is None or hasattr(config, _SAVED):
        return
    setattr(config, _SAVED, os.environ.get(_ENV))
    os.environ[_ENV] = profile


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """Set the profile before the first conftest reads it (entry-point and ``-p`` plugins only)."""
    _apply_profile(early_config, getattr(early_config.known_args_namespace, "handgrad_profile", None))


def pytest_configure(config: pytest.Config) -> None:
    _apply_profile(config, config.getoption("handgrad_profile"))


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, _SAVED):
        return
    saved = getattr(config, _SAVED)
    delattr(config, _SAVED)
    if saved is None:
        os.environ.pop(_ENV, None)
    else:
        os.environ[_ENV] = saved


def _is_certification_error(exc: BaseException) -> bool:
    if not type(exc).__module__.startswith("handgrad.reference"):
        return False
    from handgrad.reference.judge.certify import CertificationError

    return isinstance(exc, CertificationError)


def _in_library(path: Path, dirs: tuple[Path, ...]) -> bool:
    p = path.resolve()
    return any(p.is_relative_to(d) for d in dirs)


class _ShortFailure(TerminalRepr):
    """The short failure text; ``reprcrash`` gives pytest's summary line (``FAILED ... - NOT CERTIFIED: ...``)."""

    def __init__(self, text: str, crash: ReprFileLocation) -> None:
        self.text = text
        self.reprcrash = crash

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:  # what pytest-xdist sends back from a worker
        return self.text


def short_failure(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """The user's calling line, then the certificate's report (with its reproduction line)."""
    return _short(excinfo)[0]


def _short(excinfo: pytest.ExceptionInfo[BaseException]) -> tuple[str, ReprFileLocation]:
    dirs = _library_dirs()
    entries = [e for e in excinfo.traceback if not _in_library(Path(str(e.path)), dirs)]
    lines = []
    message = f"{type(excinfo.value).__name__}: {excinfo.value}"
    crash = ReprFileLocation(str(excinfo.traceback[-1].path) if excinfo.traceback else "?",
                             excinfo.traceback[-1].lineno + 1 if excinfo.traceback else 0, str(excinfo.value))
    if entries:
        e = entries[-1]
        crash = ReprFileLocation(str(e.path), e.lineno + 1, str(excinfo.value))
        try:
            source = str(e.statement).strip()
        except Exception:  # source not available (a notebook, an exec)
            source = ""
        lines.append(f"{e.path}:{e.lineno + 1}: in {e.name}")
        if source:
            lines.append(f"    {source}")
        lines.append("")
    lines.append(message)
    lines.append("")
    lines.append("(handgrad: the suite's own frames are hidden; --handgrad-full-trace shows them)")
    return "\n".join(lines), crash


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if call.excinfo is None or report.when != "call" or item.config.getoption("handgrad_full_trace"):
        return report
    if _is_certification_error(call.excinfo.value):
        report.longrepr = _ShortFailure(*_short(call.excinfo))
    return report
