"""pytest plugin (entry point ``pytest11: xenqemu``): a booted Xen host and guests as fixtures.

Options (each also read from an environment variable):

``--xenqemu-target PATH``         qemuboot.conf or YAML target (``XENQEMU_TARGET``)
``--xenqemu-run-dir DIR``         base folder for run directories (``XENQEMU_RUN_BASE``)
``--xenqemu-timeout-scale X``     multiply every boot timeout (``XENQEMU_TIMEOUT_SCALE``)
``--xenqemu-command-timeout S``   default per-command timeout (``XENQEMU_COMMAND_TIMEOUT``)
``--xenqemu-password PW``         dom0/guest root password (``XENQEMU_PASSWORD``; default none)
``--xenqemu-warm``                start from a saved snapshot of the booted host (``XENQEMU_WARM=1``)
``--xenqemu-snapshot-cache DIR``  folder of warm-start snapshots (``XENQEMU_SNAPSHOT_CACHE``)
``--xenqemu-rebuild-snapshot``    build the snapshot again before using it

Fixtures:

``xen_host`` (session)   a :class:`XenHost`: the booted machine, its dom0 console and :class:`Xl`.
                         Booted once per session, powered off at the end.
``xen_guest`` (function) a :class:`GuestFactory`: ``xen_guest(cfg)`` creates a guest (detached),
                         ``with xen_guest.attach(cfg) as shell:`` creates it with ``-c``; every
                         guest created through it is destroyed after the test.

A test that requests these fixtures without a target configured fails with a message saying how
to configure one (it is not skipped).  When a test using them fails, the report gets a section
with the run directory and the last lines of the serial log.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .boot import BootTimeouts, serial_tail
from .console import ConsoleChannel, ConsoleError
from .errors import XenqemuError
from .machine import QemuMachine
from .target import TargetError, load_target
from .warm import WarmStartWarning
from .xl import Domain, Xl

__all__ = ["GuestFactory", "XenHost"]

_STATE_KEY = "xenqemu_host"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``--xenqemu-*`` options."""
    group = parser.getgroup("xenqemu", "Xen host in QEMU (xenqemu harness)")
    group.addoption("--xenqemu-target", default=os.environ.get("XENQEMU_TARGET"),
                    help="qemuboot.conf or YAML target to boot (env XENQEMU_TARGET)")
    group.addoption("--xenqemu-run-dir", default=os.environ.get("XENQEMU_RUN_BASE"),
                    help="base folder for run directories (env XENQEMU_RUN_BASE)")
    group.addoption("--xenqemu-timeout-scale", type=float,
                    default=float(os.environ.get("XENQEMU_TIMEOUT_SCALE", "1.0")),
                    help="multiply every boot timeout by this factor")
    group.addoption("--xenqemu-command-timeout", type=float,
                    default=float(os.environ.get("XENQEMU_COMMAND_TIMEOUT", "300")),
                    help="default timeout of one console command in seconds")
    group.addoption("--xenqemu-password", default=os.environ.get("XENQEMU_PASSWORD"),
                    help="root password for dom0 and guests (default: none)")
    group.addoption("--xenqemu-warm", action="store_true",
                    default=os.environ.get("XENQEMU_WARM", "") not in ("", "0", "no", "false"),
                    help="start the host from a saved snapshot of it booted (built on first use; "
                    "env XENQEMU_WARM=1)")
    group.addoption("--xenqemu-snapshot-cache", default=os.environ.get("XENQEMU_SNAPSHOT_CACHE"),
                    help="folder of warm-start snapshots (env XENQEMU_SNAPSHOT_CACHE; default "
                    "~/.cache/meta-xen-ref/xenqemu-snapshots)")
    group.addoption("--xenqemu-rebuild-snapshot", action="store_true", default=False,
                    help="with --xenqemu-warm: build the snapshot again before using it")


@dataclass
class XenHost:
    """A booted Xen host: the machine, dom0's console channel, and ``xl`` on it."""

    machine: QemuMachine
    console: ConsoleChannel
    xl: Xl

    @property
    def run_dir(self) -> Path:
        """The run directory with serial log, QMP events and transcript."""
        return self.machine.run_dir

    def run(self, command: str, timeout: float | None = None):  # type: ignore[no-untyped-def]
        """Shortcut for ``console.run``; returns a CommandResult."""
        return self.console.run(command, timeout=timeout)


@dataclass
class GuestFactory:
    """Creates guests on a :class:`XenHost`; the fixture destroys them after the test."""

    host: XenHost
    password: str | None = None
    created: list[str] = field(default_factory=list)

    def __call__(self, config: str, extra: str = "") -> Domain:
        """``xl create CONFIG`` (detached); returns the running domain."""
        name = self.host.xl.config_name(config)
        self.created.append(name)
        return self.host.xl.create(config, extra=extra)

    @contextmanager
    def attach(self, config: str, extra: str = "") -> Iterator[ConsoleChannel]:
        """``xl create -c CONFIG``: yields the logged-in guest console; detaches on exit."""
        name = self.host.xl.config_name(config)
        self.created.append(name)
        with self.host.xl.create(config, console=True, extra=extra, password=self.password) as shell:
            yield shell

    @contextmanager
    def console(self, name: str) -> Iterator[ConsoleChannel]:
        """``xl console NAME``: yields the logged-in guest console; detaches on exit."""
        with self.host.xl.console(name, password=self.password) as shell:
            yield shell

    def cleanup(self) -> None:
        """Destroy every guest created through this factory that still exists."""
        errors = []
        for name in dict.fromkeys(self.created):
            try:
                if self.host.xl.find(name) is not None:
                    self.host.xl.destroy(name)
            except (XenqemuError, ConsoleError) as err:  # report all, then fail
                errors.append(f"{name}: {err}")
        self.created.clear()
        if errors:
            raise RuntimeError("destroying guests after the test failed:\n" + "\n".join(errors))


@pytest.fixture(scope="session")
def xen_host(request: pytest.FixtureRequest) -> Iterator[XenHost]:
    """The booted Xen host of this session (booted on first use, powered off at the end)."""
    config = request.config
    path = config.getoption("--xenqemu-target")
    if not path:
        pytest.fail("xenqemu: no target configured. Pass --xenqemu-target PATH (a "
                    "<image>.qemuboot.conf or a YAML target) or set XENQEMU_TARGET.", pytrace=False)
    try:
        target = load_target(path)
    except TargetError as err:
        pytest.fail(f"xenqemu: {err}", pytrace=False)
    timeouts = BootTimeouts().scaled(config.getoption("--xenqemu-timeout-scale"))
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def progress(phase: str, description: str, elapsed: float) -> None:
        if reporter is not None:
            reporter.write_line(f"xenqemu: [{elapsed:7.1f}s] {description}")

    def warn(message: str) -> None:
        if reporter is not None:
            reporter.write_line(f"xenqemu: WARNING: {message}")
        warnings.warn(message, WarmStartWarning)

    machine = QemuMachine(target, timeouts=timeouts, base_dir=config.getoption("--xenqemu-run-dir"),
                          password=config.getoption("--xenqemu-password"), progress=progress,
                          command_timeout=config.getoption("--xenqemu-command-timeout"),
                          warm=config.getoption("--xenqemu-warm"),
                          snapshot_cache=config.getoption("--xenqemu-snapshot-cache"),
                          rebuild_snapshot=config.getoption("--xenqemu-rebuild-snapshot"), warn=warn)
    config.stash[_host_key] = machine
    if reporter is not None:
        reporter.write_line(f"xenqemu: run directory {machine.run_dir}")
    with machine:
        console = machine.boot()
        yield XenHost(machine, console, Xl(console))


@pytest.fixture
def xen_guest(xen_host: XenHost, request: pytest.FixtureRequest) -> Iterator[GuestFactory]:
    """Factory creating guests on ``xen_host``; all are destroyed after the test."""
    factory = GuestFactory(xen_host, password=request.config.getoption("--xenqemu-password"))
    yield factory
    factory.cleanup()


_host_key = pytest.StashKey[QemuMachine]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    """Attach the run directory and the serial log's tail to failed tests that used the host."""
    outcome = yield
    report = outcome.get_result()
    if report.passed or report.skipped:
        return
    machine = item.config.stash.get(_host_key, None)
    fixtures = getattr(item, "fixturenames", ())
    if machine is None or not ({"xen_host", "xen_guest"} & set(fixtures)):
        return
    report.sections.append((
        "xenqemu",
        (f"run directory: {machine.run_dir}\n"
         "(serial.log, console.log, transcript.log, qmp-events.jsonl, qemu-stderr.log)\n"
         f"last lines of the serial log:\n{serial_tail(machine.paths.serial_log)}"),
    ))
