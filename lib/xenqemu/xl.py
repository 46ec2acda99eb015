"""``xl`` helpers over a :class:`~xenqemu.console.ConsoleChannel` in dom0.

:class:`Xl` parses ``xl list`` into :class:`Domain` records and ``xl info`` into a dict, creates
guests (detached, or attached with ``-c`` as a context manager yielding a logged-in nested
console that is detached with Ctrl-] on exit), attaches to a running guest's console, waits for a
domain state, and destroys a guest checking that it is gone and that its memory came back to Xen
(``xl info`` ``free_memory``).  Every failure raises :class:`XlError` with the command, its status
and its output.

Waits are event-driven or poll with a short first interval that doubles (``backoff``): under TCG
one ``xl`` invocation costs 0.1-1 s, so a fixed sleep of a second or two after ``xl destroy`` or
between state checks was most of the harness's overhead over a bare script.
"""

from __future__ import annotations

import builtins
import re
import shlex
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Literal, overload

from .console import CTRL_RIGHT_BRACKET, NOISE_LINE, ConsoleChannel, ConsoleError
from .errors import XenqemuError

__all__ = ["Domain", "Xl", "XlError", "backoff", "config_domain_name", "parse_xl_info", "parse_xl_list",
           "run_parts"]


class XlError(XenqemuError):
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


def free_memory_of(info: dict[str, str]) -> int:
    """``free_memory`` (MiB) of parsed ``xl info`` output; :class:`XlError` when it is missing."""
    value = info.get("free_memory")
    if value is None or not value.isdigit():
        raise XlError(f"'xl info' has no numeric free_memory (got {value!r})")
    return int(value)


_NAME = re.compile(r"""^\s*name\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.MULTILINE)


def config_domain_name(config_text: str) -> str | None:
    """The ``name = "..."`` of an xl config (the last assignment wins, as in xl)."""
    names = [a or b for a, b in _NAME.findall(config_text)]
    return names[-1] if names else None


def backoff(first: float = 0.1, cap: float = 2.0) -> Iterator[float]:
    """Poll intervals: ``first``, doubling up to ``cap`` (a result usually comes at once)."""
    interval = first
    while True:
        yield interval
        interval = min(cap, interval * 2)


_PART = "--xq-part--"
_PART_LINE = re.compile(r"\n?" + re.escape(_PART) + r"(?:\n|\Z)")


def run_parts(channel: ConsoleChannel, commands: Sequence[str], timeout: float) -> list[str]:
    """Run shell ``commands`` joined with ``&&`` in one console round trip; return each output.

    Every round trip through the serial console costs typing and echo time, so related queries
    share one.  When a command fails the later ones do not run: :class:`XlError` names the failed
    command with its status and output.
    """
    result = channel.run(f" && echo {_PART} && ".join(commands), timeout=timeout)
    parts = _PART_LINE.split(result.output)
    if result.status != 0 or len(parts) != len(commands):
        failed = commands[min(len(parts), len(commands)) - 1]
        raise XlError(f"'{failed}' failed with status {result.status}:\n{parts[-1].strip()[-2000:]}")
    return parts


#: The end of a shell prompt (dom0's, once the console client has exited).
_PROMPT_END = re.compile(r"[#$>][ \t]*$")


class Xl:
    """Drive the ``xl`` toolstack through a dom0 console channel."""

    def __init__(self, channel: ConsoleChannel, timeout: float = 300.0, guest_boot_timeout: float = 600.0) -> None:
        self.channel = channel
        self.timeout = timeout
        self.guest_boot_timeout = guest_boot_timeout

    def _xl(self, args: str, timeout: float | None = None) -> str:
        return run_parts(self.channel, [f"xl {args}"], timeout or self.timeout)[0]

    # ------------------------------------------------------------------ queries

    def list(self) -> builtins.list[Domain]:
        """All domains (``xl list``), Domain-0 first."""
        return parse_xl_list(self._xl("list"))

    def info(self) -> dict[str, str]:
        """``xl info`` as a dict of strings (e.g. ``info()["free_memory"]``)."""
        return parse_xl_info(self._xl("info"))

    def free_memory(self) -> int:
        """Xen's free memory in MiB (``xl info`` ``free_memory``)."""
        return free_memory_of(self.info())

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
        """Poll ``xl list`` until ``name`` has one of ``states`` (letters r b p s c d).

        The first check is immediate; later ones back off from 0.1 s up to ``interval``.
        """
        wanted = builtins.list(states)
        end = time.monotonic() + timeout
        pauses = backoff(cap=interval)
        while True:
            seen = self.find(name)
            if seen is not None and seen.in_state(wanted):
                return seen
            if time.monotonic() > end:
                now = f"state {seen.state}" if seen else "not listed"
                raise XlError(f"domain {name!r} did not reach state {'/'.join(wanted)} within "
                              f"{timeout:.0f}s ({now})")
            time.sleep(min(next(pauses), max(0.0, end - time.monotonic())))

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

    def idle_configs(self, pattern: str = "/etc/xen/*.cfg") -> builtins.list[tuple[str, str]]:
        """``(config, domain name)`` for each config in dom0 whose domain is not running.

        A host that autostarts guests or boots dom0less domains already runs some of its configs'
        domains; ``xl create`` on those fails with "already exists", so callers that want a fresh
        guest pick from these.
        """
        listing = self.channel.run(f"ls -1 {pattern} 2>/dev/null", timeout=self.timeout).output
        configs = [line.strip() for line in listing.splitlines() if line.strip().endswith(".cfg")]
        running = {domain.name for domain in self.list()}
        named = [(config, self.config_name(config)) for config in configs]
        return [(config, name) for config, name in named if name not in running]

    @overload
    def create(self, config: str, console: Literal[False] = False, *, extra: str = "", user: str = "root",
               password: str | None = None, boot_timeout: float | None = None,
               name: str | None = None) -> Domain: ...

    @overload
    def create(self, config: str, console: Literal[True], *, extra: str = "", user: str = "root",
               password: str | None = None, boot_timeout: float | None = None,
               name: str | None = None) -> AbstractContextManager[ConsoleChannel]: ...

    def create(self, config: str, console: bool = False, *, extra: str = "", user: str = "root",
               password: str | None = None, boot_timeout: float | None = None,
               name: str | None = None) -> Domain | AbstractContextManager[ConsoleChannel]:
        """Create a domain from ``config`` (a path in dom0).

        Without ``console``: runs ``xl create`` and returns the new :class:`Domain`.  With
        ``console=True``: returns a context manager that runs ``xl create -c``, logs in on the
        guest console and yields the nested :class:`ConsoleChannel`; leaving it detaches (Ctrl-])
        back to dom0.  ``extra`` is appended to the command (e.g. ``'extra="..."'`` overrides).
        ``name`` is the domain's name when the caller knows it (saves reading the config).
        """
        name = name or self.config_name(config)
        tail = f" {extra}" if extra else ""
        if console:
            return self._attached(f"xl create -c {shlex.quote(config)}{tail}", name, user, password, boot_timeout)
        self._xl(f"create {shlex.quote(config)}{tail}")
        return self.wait_state(name, ("r", "b", "p"), timeout=self.timeout)

    def console(self, name: str, *, user: str = "root", password: str | None = None,
                boot_timeout: float | None = None) -> AbstractContextManager[ConsoleChannel]:
        """Context manager: ``xl console NAME``, log in, yield the nested channel, detach on exit."""
        return self._attached(f"xl console {shlex.quote(name)}", name, user, password, boot_timeout)

    def attach(self, command: str, name: str, *, user: str = "root", password: str | None = None,
               boot_timeout: float | None = None) -> ConsoleChannel:
        """Run a console ``command`` (``xl console NAME``, ``xl create -c CFG``), log in on the guest.

        Returns the logged-in nested channel; :meth:`detach` returns to dom0.  On failure the
        console is left (detached or resynchronised) before the error is raised.
        """
        self.channel.start(command)
        guest = self.channel.nested(f"guest:{name}")
        try:
            limit = boot_timeout or self.guest_boot_timeout
            guest.login(user, password, timeout=limit, await_prompt=limit * 0.8)
        except ConsoleError:
            self._leave(guest)
            raise
        return guest

    def detach(self, guest: ConsoleChannel, timeout: float = 60.0) -> None:
        """Leave a guest console with Ctrl-] and check that dom0's shell answers again.

        Event-driven: the guest's last prompt is let through first (Ctrl-] must reach the
        console client alone, in its own read), then Ctrl-] is sent and the channel waits for
        dom0's prompt, which the shell prints as soon as the client has exited, before it sends
        anything else.  Raises :class:`~xenqemu.console.ConsoleError` when dom0 does not answer.
        """
        parent = guest.parent
        if parent is None:
            raise ConsoleError(f"{guest.name}: not a nested console, nothing to detach from")
        end = time.monotonic() + timeout
        last: Exception | None = None
        for attempt in range(3):
            guest.stream.drain(quiet=0.15 if attempt == 0 else 0.5, limit=2.0)
            guest.stream.send(CTRL_RIGHT_BRACKET)
            self._await_prompt(guest, min(2.0, max(0.1, end - time.monotonic())))
            try:
                parent.sync(timeout=max(5.0, min(30.0, end - time.monotonic())))
            except ConsoleError as err:
                last = err
                if time.monotonic() >= end:
                    break
                continue
            guest.ready = False
            if guest.transcript:
                guest.transcript.record(guest.name, "<Ctrl-]>", 0, 0.0, "", "detached")
            return
        raise ConsoleError(f"{guest.name}: detach with Ctrl-] did not return to {parent.name}: {last}")

    @staticmethod
    def _await_prompt(guest: ConsoleChannel, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        stream = guest.stream
        while not _PROMPT_END.search(NOISE_LINE.sub("", stream.buffer[-400:])):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            stream.fill(min(0.2, remaining))

    @contextmanager
    def _attached(self, command: str, name: str, user: str, password: str | None,
                  boot_timeout: float | None) -> Iterator[ConsoleChannel]:
        guest = self.attach(command, name, user=user, password=password, boot_timeout=boot_timeout)
        try:
            yield guest
        finally:
            self._leave(guest)

    def _leave(self, guest: ConsoleChannel) -> None:
        try:
            self.detach(guest)
        except ConsoleError:
            self.channel.resync()

    # ------------------------------------------------------------------ destroy

    def destroy(self, name: str, timeout: float = 180.0, check_memory: bool = True,
                slack_mib: int = 4, domain: Domain | None = None) -> None:
        """``xl destroy NAME``; check the domain is gone and its memory is free again.

        The memory check compares ``xl info`` ``free_memory`` before and after with the domain's
        ``xl list`` memory (allowing ``slack_mib`` for per-domain overhead still in use).
        ``domain`` is the domain as last listed, when the caller has it (saves an ``xl list``).
        ``xl info``, ``xl destroy``, ``xl list`` and ``xl info`` share one console round trip
        (``xl destroy`` returns when the domain is gone); only a domain still listed or memory
        not yet back is polled, backing off from 0.1 s.
        """
        quoted = shlex.quote(name)
        if domain is None:
            domain = self.find(name)
            if domain is None:
                raise XlError(f"cannot destroy {name!r}: no such domain in 'xl list'")
        before: int | None = None
        if check_memory:
            info, _, listing, after = run_parts(self.channel, ["xl info", f"xl destroy {quoted}", "xl list", "xl info"],
                                                timeout)
            before = free_memory_of(parse_xl_info(info))
        else:
            _, listing = run_parts(self.channel, [f"xl destroy {quoted}", "xl list"], timeout)
            after = ""
        end = time.monotonic() + timeout
        pauses = backoff()
        while not self._destroyed(name, listing, after, before, domain.mem - slack_mib):
            if time.monotonic() > end:
                if any(d.name == name for d in parse_xl_list(listing)):
                    raise XlError(f"domain {name!r} still listed {timeout:.0f}s after 'xl destroy'")
                raise XlError(f"memory of {name!r} not returned: free_memory {before} -> "
                              f"{free_memory_of(parse_xl_info(after))} MiB, expected about +{domain.mem} MiB")
            time.sleep(next(pauses))
            listing, after = run_parts(self.channel, ["xl list", "xl info"], timeout) if check_memory \
                else (self._xl("list", timeout=timeout), "")

    @staticmethod
    def _destroyed(name: str, listing: str, info: str, free_before: int | None, wanted_mib: int) -> bool:
        if any(d.name == name for d in parse_xl_list(listing)):
            return False
        return free_before is None or free_memory_of(parse_xl_info(info)) - free_before >= wanted_mib
