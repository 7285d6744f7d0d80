"""Strict mode (HERALD_STRICT_TESTS=1, exported by .ci/run): a test that does not run fails the run.

Without it a missing browser, sipp or Redis turns into a skip, and a run that never reached the tests needing
them still passes. In strict mode every skip (pytest.skip, skipif, importorskip, xfail, xfail(run=False))
is reported as a failure that names the reason, a stale xfail marker (XPASS) fails too, and a module skipped
at collection makes the run fail; the end of the run lists them all.

A plugin of its own, with no Django import, so that tests/test_strict_mode.py can load it into a bare pytest
run (`-p tests.strict`); tests/conftest.py hands pytest its `pytest_configure`.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

ENV = "HERALD_STRICT_TESTS"


def enabled() -> bool:
    """Strict mode is on: HERALD_STRICT_TESTS is set to anything but "" or "0"."""
    return os.environ.get(ENV, "") not in ("", "0")


def why_not_run(report: pytest.TestReport | pytest.CollectReport) -> str:
    """Why a skipped (or xfail-marked) report's test did not run, or "" for a test that ran."""
    if hasattr(report, "wasxfail"):
        if report.skipped:
            return f"xfail: {report.wasxfail}"
        return f"XPASS, the xfail marker is stale: {report.wasxfail}" if report.passed else ""
    if not report.skipped:
        return ""
    if isinstance(report.longrepr, tuple):  # (path, line, "Skipped: reason")
        path, line, message = report.longrepr
        return f"{message} ({path}:{line})"
    return str(report.longrepr)


class StrictMode:
    """Turns each skipped test report into a failure, and fails a run in which a module was skipped."""

    def __init__(self) -> None:
        self.not_run: list[tuple[str, str]] = []  # (node id, why), in the order they happened

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: sees the report after the skipping plugin's xfail
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        why = why_not_run(report)
        if why:
            self.not_run.append((report.nodeid, why))
            report.outcome = "failed"
            report.longrepr = f"{why}; with {ENV}=1 a test that does not run fails the run"
            if hasattr(report, "wasxfail"):
                del report.wasxfail  # otherwise reported as xfailed/xpassed again
        return report

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # Left a skip: a failed collect report would stop the whole session before any test ran.
        why = why_not_run(report)
        if why:
            self.not_run.append((report.nodeid, why))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.not_run:
            terminalreporter.section(f"{ENV}=1: {len(self.not_run)} skipped, each fails the run", sep="=", red=True)
            for nodeid, why in self.not_run:
                terminalreporter.line(f"{nodeid}: {why}", red=True)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.not_run and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config: pytest.Config) -> None:
    if enabled():
        config.pluginmanager.register(StrictMode(), "herald-strict-mode")
