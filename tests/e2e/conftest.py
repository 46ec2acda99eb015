"""Fixtures of the end-to-end tests: the reference target, built once and booted once per session.

``reference_target`` builds the target with :func:`xenreftarget.build_target` (cached: a warm
build only checks its inputs) and points the harness's ``--xenqemu-target`` at its
``qemuboot.conf`` and turns on ``--xenqemu-warm``; ``xen_host`` then is the harness plugin's
session fixture (one start per session, from the harness's saved snapshot of the booted target:
the first session, or the first after the target changed, boots cold and saves it). ``http_server`` serves files on 127.0.0.1 only; the guests reach it as 10.0.2.2.
Timings of the build, the boot phases and every lifecycle step are printed at the end of the run
and written to ``e2e-timings.json`` in the harness's run directory.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
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


class _Handler(http.server.SimpleHTTPRequestHandler):
    served: list[tuple[str, str]] = []

    def log_message(self, format: str, *args) -> None:  # type: ignore[override]
        pass

    def do_GET(self) -> None:
        type(self).served.append((self.client_address[0], self.path))
        super().do_GET()


class HttpServer:
    """A static file server on 127.0.0.1 (never a public address) for the guests' fetches."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_Handler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, label: str) -> tuple[str, str, str]:
        """A new file with unique content: returns (path, content, URL as the guest sees it)."""
        token = uuid.uuid4().hex
        path = f"/{label}-{token[:8]}.txt"
        content = f"meta-xen-ref {label} {token}\n"
        (self.root / path.lstrip("/")).write_text(content)
        return path, content, f"http://10.0.2.2:{self.port}{path}"

    def served(self) -> list[tuple[str, str]]:
        """(client address, path) of every GET so far."""
        return list(_Handler.served)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def http_server(tmp_path_factory) -> Iterator[HttpServer]:  # type: ignore[no-untyped-def]
    """The session's HTTP server on 127.0.0.1."""
    server = HttpServer(tmp_path_factory.mktemp("www"))
    yield server
    server.close()


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
