"""Settings every test needs, whatever started pytest.

A test run started under ``nohup`` or as a background job of a non-interactive shell (CI wrappers
do both) inherits SIGHUP, SIGINT and SIGQUIT ignored, and every program a test spawns inherits
that too, across exec.  The console stand-ins then break in ways no user sees: the fake
``xl console`` ends its guest shell with SIGHUP, and the channel interrupts a timed-out command
with Ctrl-C (SIGINT from the terminal).  The ignored dispositions are reset here, once, before any
test spawns anything; tests/test_signal_dispositions.py checks what a spawned program gets.
"""

from __future__ import annotations

import signal


def pytest_configure() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
