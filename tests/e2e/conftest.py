"""Fixtures of the end-to-end tests: the reference target, built once and booted once per session.

``reference_target`` builds the target with :func:`xenreftarget.build_target` (cached: a warm
build only checks its inputs) and points the harness's ``--xenqemu-target`` at its
``qemuboot.conf`` and turns on ``--xenqemu-warm``; ``xen_host`` then is the harness plugin's
session fixture (one start per session, from the harness's saved snapshot of the booted target:
the first session, or the first after the target changed, boots cold and saves it).
``http_server`` is the lifecycle check's :class:`~xenqemu.lifecycle.LoopbackHttpServer`: files of
random content on 127.0.0.1 only; the guests reach it as 10.0.2.2.
Timings of the build, the boot phases and every lifecycle step are printed at the end of the run
and written to ``e2e-timings.json`` in the harness's run directory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from xenqemu.lifecycle import LoopbackHttpServer
from xenreftarget import build_target

_TIMINGS: dict[str, object] = {}
_RUN_DIR: list[Path] = []


@pytest.fixture(scope="session")
def e2e_timings() -> dict[str, object]:
    """Timings of this session, keyed by what was measured (seconds)."""
    return _TIMINGS


@pytest.fixture(scope="session")
def reference_target(request: pytest.FixtureRequest, e2e_timings):  # type: ignore[no-untyped-def]
    """The built reference target (``xenreftarget.ReferenceTarget``); the harness boots it."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def log(message: str) -> None:
        if reporter is not None:
            reporter.write_line(f"xen-ref-target: {message}")

    started = time.monotonic()
    target = build_target(log=log)
    e2e_timings["build (s)"] = round(time.monotonic() - started, 1)
    e2e_timings["build rebuilt"] = target.rebuilt
    # The plugin's xen_host reads these options when it boots.
    request.config.option.xenqemu_target = str(target.qemuboot_conf)
    request.config.option.xenqemu_warm = True
    return target


@pytest.fixture(scope="session")
def xen_host(reference_target, xen_host, e2e_timings):  # type: ignore[no-untyped-def]
    """The harness's booted host, booted from the reference target (overrides only the target)."""
    booted = Path(xen_host.machine.target.source).resolve()
    assert booted == reference_target.qemuboot_conf.resolve(), (
        f"the harness booted {booted}, not the reference target; do not pass --xenqemu-target "
        "to the end-to-end tests")
    _RUN_DIR[:] = [xen_host.run_dir]
    e2e_timings["boot: warm start"] = xen_host.machine.warm_result
    for phase in xen_host.machine.phases:
        e2e_timings[f"boot: {phase.description} (s)"] = round(phase.elapsed, 1)
    return xen_host


@pytest.fixture(scope="session")
def http_server() -> Iterator[LoopbackHttpServer]:
    """The session's HTTP server on 127.0.0.1 (the guests reach it as 10.0.2.2)."""
    with LoopbackHttpServer() as server:
        yield server


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    """Print the measured timings and store them next to the harness's logs."""
    if not _TIMINGS:
        return
    terminalreporter.section("reference target timings")
    for key, value in _TIMINGS.items():
        terminalreporter.write_line(f"{key}: {value}")
    if _RUN_DIR:
        (_RUN_DIR[0] / "e2e-timings.json").write_text(json.dumps(_TIMINGS, indent=2) + "\n")
        terminalreporter.write_line(f"written to {_RUN_DIR[0] / 'e2e-timings.json'}")
