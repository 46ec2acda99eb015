"""``xl`` helpers over a :class:`~xenqemu.console.ConsoleChannel` in dom0.

:class:`Xl` parses ``xl list`` into :class:`Domain` records and ``xl info`` into a dict, creates
guests (detached, or attached with ``-c`` as a context manager yielding a logged-in nested
console that is detached with Ctrl-] on exit), attaches to a running guest's console, waits for a
domain state, and destroys a guest checking that it is gone and that its memory came back to Xen
(``xl info`` ``free_memory``).  Every failure raises :class:`XlError` with the command, its status
and its output.
"""

from __future__ import annotations

import builtins
import re
import shlex
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .console import ConsoleChannel, ConsoleError

__all__ = ["Domain", "Xl", "XlError", "config_domain_name", "parse_xl_info", "parse_xl_list"]


class XlError(ConsoleError):
    """An ``xl`` command failed or a domain did not behave as expected."""


@dataclass(frozen=True)
class Domain:
    """One row of ``xl list``; ``state`` is the six-letter flags field such as ``-b----``."""

    name: str
    id: int
    mem: int
    vcpus: int
    state: str
    time: float

    def in_state(self, letters: Iterable[str]) -> bool:
        """True if any of ``letters`` (r, b, p, s, c, d) is set in the state flags."""
        return any(letter in self.state for letter in letters)


_ROW = re.compile(r"^(?P<name>.+?)\s+(?P<id>\d+)\s+(?P<mem>\d+)\s+(?P<vcpus>\d+)\s+"
                  r"(?P<state>[rbpscd-]{6})\s+(?P<time>[\d.]+)\s*$")


def parse_xl_list(output: str) -> list[Domain]:
    """Parse ``xl list`` output (header line, then one row per domain)."""
    domains = []
    for line in output.splitlines():
        m = _ROW.match(line.strip())
        if m:
            domains.append(Domain(m["name"], int(m["id"]), int(m["mem"]), int(m["vcpus"]),
                                  m["state"], float(m["time"])))
    return domains


def parse_xl_info(output: str) -> dict[str, str]:
    """Parse ``xl info`` output (``key : value`` lines) into a dict of strings."""
    info: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            info[key.strip()] = value.strip()
    return info


_NAME = re.compile(r"""^\s*name\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.MULTILINE)


def config_domain_name(config_text: str) -> str | None:
    """The ``name = "..."`` of an xl config (the last assignment wins, as in xl)."""
    names = [a or b for a, b in _NAME.findall(config_text)]
    return names[-1] if names else None


class Xl:
    """Drive the ``xl`` toolstack through a dom0 console channel."""

    def __init__(self, channel: ConsoleChannel, timeout: float = 300.0, guest_boot_timeout: float = 600.0) -> None:
        self.channel = channel
        self.timeout = timeout
        self.guest_boot_timeout = guest_boot_timeout

    def _xl(self, args: str, timeout: float | None = None) -> str:
        command = f"xl {args}"
        result = self.channel.run(command, timeout=timeout or self.timeout)
        if result.status != 0:
            raise XlError(f"'{command}' failed with status {result.status}:\n{result.output.strip()}")
        return result.output

    # ------------------------------------------------------------------ queries

    def list(self) -> builtins.list[Domain]:
        """All domains (``xl list``), Domain-0 first."""
        return parse_xl_list(self._xl("list"))

    def info(self) -> dict[str, str]:
        """``xl info`` as a dict of strings (e.g. ``info()["free_memory"]``)."""
        return parse_xl_info(self._xl("info"))

    def free_memory(self) -> int:
        """Xen's free memory in MiB (``xl info`` ``free_memory``)."""
        value = self.info().get("free_memory")
        if value is None or not value.isdigit():
            raise XlError(f"'xl info' has no numeric free_memory (got {value!r})")
        return int(value)

    def find(self, name: str) -> Domain | None:
        """The domain called ``name``, or None."""
        return next((d for d in self.list() if d.name == name), None)

    def domid(self, name: str) -> int:
        """The domain id of ``name`` (``xl domid``)."""
        output = self._xl(f"domid {shlex.quote(name)}").strip()
        if not output.isdigit():
            raise XlError(f"'xl domid {name}' printed {output!r}, not a domain id")
        return int(output)

    def wait_state(self, name: str, states: Iterable[str] = ("r", "b"), timeout: float = 120.0,
                   interval: float = 2.0) -> Domain:
        """Poll ``xl list`` until ``name`` has one of ``states`` (letters r b p s c d)."""
        wanted = list(states)
        end = time.monotonic() + timeout
        seen: Domain | None = None
        while True:
            seen = self.find(name)
            if seen is not None and seen.in_state(wanted):
                return seen
            if time.monotonic() > end:
                now = f"state {seen.state}" if seen else "not listed"
                raise XlError(f"domain {name!r} did not reach state {'/'.join(wanted)} within "
                              f"{timeout:.0f}s ({now})")
            time.sleep(interval)

    # ------------------------------------------------------------------ create / console

    def config_name(self, config: str) -> str:
        """Read the domain name from a config file in dom0."""
        result = self.channel.run(f"cat {shlex.quote(config)}", timeout=self.timeout)
        if result.status != 0:
            raise XlError(f"cannot read {config} in dom0: {result.output.strip()}")
        name = config_domain_name(result.output)
        if not name:
            raise XlError(f"{config} has no name = \"...\" setting")
        return name

    def create(self, config: str, console: bool = False, *, extra: str = "", user: str = "root",
               password: str | None = None, boot_timeout: float | None = None):  # type: ignore[no-untyped-def]
        """Create a domain from ``config`` (a path in dom0).

        Without ``console``: runs ``xl create`` and returns the new :class:`Domain`.  With
        ``console=True``: returns a context manager that runs ``xl create -c``, logs in on the
        guest console and yields the nested :class:`ConsoleChannel`; leaving it detaches (Ctrl-])
        back to dom0.  ``extra`` is appended to the command (e.g. ``'extra="..."'`` overrides).
        """
        args = f"create {shlex.quote(config)}" + (f" {extra}" if extra else "")
        if console:
            name = self.config_name(config)
            return self._attached(f"xl create -c {shlex.quote(config)}" + (f" {extra}" if extra else ""),
                                  name, user, password, boot_timeout)
        name = self.config_name(config)
        self._xl(args)
        return self.wait_state(name, ("r", "b", "p"), timeout=self.timeout)

    def console(self, name: str, *, user: str = "root", password: str | None = None,
                boot_timeout: float | None = None):  # type: ignore[no-untyped-def]
        """Context manager: ``xl console NAME``, log in, yield the nested channel, detach on exit."""
        return self._attached(f"xl console {shlex.quote(name)}", name, user, password, boot_timeout)

    @contextmanager
    def _attached(self, command: str, name: str, user: str, password: str | None,
                  boot_timeout: float | None) -> Iterator[ConsoleChannel]:
        self.channel.start(command)
        guest = self.channel.nested(f"guest:{name}")
        try:
            limit = boot_timeout or self.guest_boot_timeout
            guest.login(user, password, timeout=limit, await_prompt=limit * 0.8)
        except ConsoleError:
            self._leave(guest)
            raise
        try:
            yield guest
        finally:
            self._leave(guest)

    def _leave(self, guest: ConsoleChannel) -> None:
        try:
            guest.detach()
        except ConsoleError:
            self.channel.resync()

    # ------------------------------------------------------------------ destroy

    def destroy(self, name: str, timeout: float = 180.0, check_memory: bool = True,
                slack_mib: int = 4) -> None:
        """``xl destroy NAME``; check the domain is gone and its memory is free again.

        The memory check compares ``xl info`` ``free_memory`` before and after with the domain's
        ``xl list`` memory (allowing ``slack_mib`` for per-domain overhead still in use).
        """
        domain = self.find(name)
        if domain is None:
            raise XlError(f"cannot destroy {name!r}: no such domain in 'xl list'")
        free_before = self.free_memory() if check_memory else 0
        self._xl(f"destroy {shlex.quote(name)}", timeout=timeout)
        end = time.monotonic() + timeout
        while self.find(name) is not None:
            if time.monotonic() > end:
                raise XlError(f"domain {name!r} still listed {timeout:.0f}s after 'xl destroy'")
            time.sleep(1.0)
        if not check_memory:
            return
        while True:
            free_after = self.free_memory()
            if free_after - free_before >= domain.mem - slack_mib:
                return
            if time.monotonic() > end:
                raise XlError(f"memory of {name!r} not returned: free_memory {free_before} -> {free_after} MiB, "
                              f"expected about +{domain.mem} MiB")
            time.sleep(2.0)
