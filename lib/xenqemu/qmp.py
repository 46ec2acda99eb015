"""QMP for one machine: a ``qemu.qmp`` client on its own asyncio loop in a thread.

Every command sent and every event received goes to a JSON-lines file in the run directory
(``qmp-events.jsonl``).  QMP allows one client per socket; the machine connects it while QEMU is
still paused, before the boot starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["QmpThread"]


class QmpThread:
    """A qemu.qmp ``QMPClient`` on its own asyncio loop in a thread; events go to a JSON-lines file."""

    def __init__(self, socket_path: Path, events_file: Path) -> None:
        from qemu.qmp import (
            QMPClient,  # imported here: the rest of the module works without it
        )

        self.socket_path = socket_path
        self.events_file = events_file
        self.loop = asyncio.new_event_loop()
        self.client = QMPClient("xenqemu")
        self._events_task: asyncio.Task[None] | None = None
        self._log = open(events_file, "a", encoding="utf-8")  # noqa: SIM115  (closed by close())
        self._log_lock = threading.Lock()
        self.thread = threading.Thread(target=self.loop.run_forever, name="xenqemu-qmp", daemon=True)
        self.thread.start()

    def _call(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def connect(self, timeout: float = 10.0) -> None:
        """Connect, negotiate, and start logging events."""
        self._call(self.client.connect(str(self.socket_path)), timeout)
        self._events_task = self._call(self._spawn_event_logger(), timeout)

    async def _spawn_event_logger(self) -> asyncio.Task[None]:
        return asyncio.ensure_future(self._log_events())

    async def _cancel_event_logger(self) -> None:
        if self._events_task is not None:
            self._events_task.cancel()
            await asyncio.gather(self._events_task, return_exceptions=True)

    def _write(self, record: dict[str, Any]) -> None:
        with self._log_lock:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()

    async def _log_events(self) -> None:
        async for event in self.client.events:
            self._write(dict(event))

    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        """Run one QMP command and return its result."""
        self._write({"command": command, "arguments": arguments or {}, "time": time.time()})
        return self._call(self.client.execute(command, arguments), timeout)

    def close(self) -> None:
        """Disconnect and stop the loop thread."""
        # Whatever goes wrong here, QEMU is gone or going: the client may already be disconnected,
        # the loop stuck on a dead socket (the thread is a daemon). Nothing is left to report.
        with contextlib.suppress(Exception):
            self._call(self.client.disconnect(), 5.0)
        with contextlib.suppress(Exception):
            self._call(self._cancel_event_logger(), 5.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)
        with self._log_lock:
            self._log.close()
