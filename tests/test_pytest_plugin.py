"""The pytest plugin: a failing certify_backward in a user's test reads as its report, and
--handgrad-profile sets the profile before any conftest reads it. Each case is a user's own pytest
run in a subprocess (pytester's in-process runs drop and re-import numpy, which aborts)."""

from __future__ import annotations

from importlib import metadata

import pytest

pytest_plugins = ("pytester",)

_LOADED_BY_ENTRY_POINT = any(ep.value == "handgrad.reference.pytest_plugin"
                             for ep in metadata.entry_points(group="pytest11"))
PLUGIN = () if _LOADED_BY_ENTRY_POINT else ("-p", "handgrad.reference.pytest_plugin")

USER_TEST = '''
import numpy as np
from handgrad.reference import certify_backward
import handgrad as hg

NET = hg.Network((2, 2, 1), "sigmoid", "squared_error")

def my_backward(params, X, Y):
    grads = NET.backward(params, X, Y)
    grads["B2"] = grads["B2"] * X.shape[1]   # a sum where the mean belongs
    return grads

def test_my_backward():
    certify_backward(my_backward, (2, 2, 1), "sigmoid", "squared_error", examples=3, oracles=("sympy", "fd"))
'''


@pytest.fixture
def user_run(pytester):
    pytester.makepyfile(test_user=USER_TEST)

    def run(*args):
        return pytester.runpytest_subprocess(*PLUGIN, "-p", "no:cacheprovider", *args)

    return run


def test_a_failing_certificate_shows_the_report_not_the_suites_source(user_run):
    result = user_run()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "NOT CERTIFIED: my_backward" in out
    assert "test_user.py:" in out and "certify_backward(my_backward" in out  # the user's own line
    assert "reproduce: handgrad.reference.build_case(" in out
    assert "FAILED test_user.py::test_my_backward - NOT CERTIFIED: my_backward" in out  # the summary line
    assert "w_" in out or "b_1^(2)" in out  # the element in the article's notation
    assert "likely cause: dB2 is exactly m = " in out  # the diagnosis, in the report pytest shows
    assert "def certify_backward" not in out and "@settings" not in out  # no library source
    failure = out[out.index("___ test_my_backward ___"):out.index("short test summary")]
    assert len(failure.splitlines()) < 40, failure


def test_full_trace_keeps_pytests_traceback(user_run):
    out = user_run("--handgrad-full-trace").stdout.str()
    assert "def certify_backward" in out and "NOT CERTIFIED" in out


def test_the_profile_option_sets_the_environment_before_conftests(pytester):
    pytester.makeconftest("import os\nSEEN = os.environ.get('HANDGRAD_PROFILE')\n")
    pytester.makepyfile(test_profile='''
import os
import conftest
from handgrad.reference.cases.strategies import examples

def test_profile():
    assert conftest.SEEN == "thorough"
    assert os.environ["HANDGRAD_PROFILE"] == "thorough"
    assert examples(3) == 30
''')
    result = pytester.runpytest_subprocess(*PLUGIN, "-p", "no:cacheprovider", "--handgrad-profile", "thorough")
    result.assert_outcomes(passed=1)


def test_an_unknown_profile_is_refused(pytester):
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess(*PLUGIN, "--handgrad-profile", "fast")
    assert result.ret != 0 and "invalid choice: 'fast'" in result.stderr.str()


def test_other_failures_are_left_alone(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    x = 1\n    assert x == 2\n")
    result = pytester.runpytest_subprocess(*PLUGIN, "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "assert x == 2" in result.stdout.str() and "handgrad:" not in result.stdout.str()
