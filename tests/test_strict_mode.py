"""Strict mode (tests/strict.py): with HERALD_STRICT_TESTS=1 a test that does not run fails the run.

Each test runs a small suite in a bare pytest (pytester, in process) with only the strict-mode plugin loaded:
no Django (`-p no:django`), so the inner run neither reads this project's settings nor touches its database.
"""

from __future__ import annotations

import pytest

from tests.strict import ENV

pytest_plugins = ["pytester"]

SKIPS = """
import pytest

def test_runs():
    pass

def test_needs_a_browser():
    pytest.skip("chromium is not installed")

@pytest.mark.skipif(True, reason="sipp is not installed")
def test_needs_sipp():
    pass

def test_needs_a_module():
    pytest.importorskip("herald_no_such_module")

@pytest.mark.xfail(run=False, reason="never run")
def test_not_run():
    pass

@pytest.mark.xfail(reason="fails on purpose")
def test_expected_to_fail():
    assert False

@pytest.mark.xfail(reason="fixed since")
def test_stale_xfail():
    pass
"""

SKIPPED_MODULE = """
import pytest

pytest.importorskip("herald_no_such_module")

def test_never_collected():
    pass
"""


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *, strict: bool, **modules: str):
    if strict:
        monkeypatch.setenv(ENV, "1")
    else:
        monkeypatch.delenv(ENV, raising=False)
    pytester.makepyfile(**modules)
    return pytester.runpytest("-p", "tests.strict", "-p", "no:django", "-p", "no:cacheprovider", "-ra")


def test_every_kind_of_skip_fails_the_run_in_strict_mode_and_is_named(pytester, monkeypatch):
    result = run(pytester, monkeypatch, strict=True, test_inner=SKIPS)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # A skip in the test body fails it; one decided before the body (skipif, xfail(run=False)) fails its setup.
    result.assert_outcomes(passed=1, failed=4, errors=2)
    result.stdout.fnmatch_lines([
        f"*{ENV}=1: 6 skipped, each fails the run*",
        "test_inner.py::test_needs_a_browser: Skipped: chromium is not installed*",
        "test_inner.py::test_needs_sipp: Skipped: sipp is not installed*",
        "test_inner.py::test_needs_a_module: Skipped: could not import 'herald_no_such_module'*",
        "test_inner.py::test_not_run: xfail: [[]NOTRUN[]] never run",
        "test_inner.py::test_expected_to_fail: xfail: fails on purpose",
        "test_inner.py::test_stale_xfail: XPASS, the xfail marker is stale: fixed since",
    ])


def test_without_strict_mode_the_same_skips_pass(pytester, monkeypatch):
    result = run(pytester, monkeypatch, strict=False, test_inner=SKIPS)

    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=3, xfailed=2, xpassed=1)
    assert ENV not in result.stdout.str()


def test_a_module_skipped_at_collection_fails_the_run_in_strict_mode(pytester, monkeypatch):
    result = run(pytester, monkeypatch, strict=True, test_skipped=SKIPPED_MODULE, test_fine="def test_ok(): pass")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=1)  # the other module still ran
    result.stdout.fnmatch_lines([
        f"*{ENV}=1: 1 skipped, each fails the run*",
        "test_skipped.py: Skipped: could not import 'herald_no_such_module'*",
    ])


def test_without_strict_mode_a_module_skipped_at_collection_passes(pytester, monkeypatch):
    result = run(pytester, monkeypatch, strict=False, test_skipped=SKIPPED_MODULE, test_fine="def test_ok(): pass")

    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=1)


def test_a_run_that_skips_nothing_passes_in_strict_mode(pytester, monkeypatch):
    result = run(pytester, monkeypatch, strict=True, test_fine="def test_ok(): pass")

    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1)
    assert ENV not in result.stdout.str()
