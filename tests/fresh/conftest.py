"""The fresh-machine check's step results, printed at the end of the session (CI logs show them)."""

from __future__ import annotations

import pytest

#: Lines of the fresh-machine check's summary, filled by tests/fresh/test_fresh_machine.py.
FRESH_SUMMARY: list[str] = []


@pytest.fixture
def fresh_summary() -> list[str]:
    return FRESH_SUMMARY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FRESH_SUMMARY:
        terminalreporter.section("fresh-machine check (scripts/check-fresh-machine)")
        for line in FRESH_SUMMARY:
            terminalreporter.write_line(line)
