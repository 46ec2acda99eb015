"""The ``Xl`` helpers the lifecycle check is built on: shared round trips, backed-off polls, detach.

``run_parts``, ``wait_state`` and ``destroy`` run against the simulated host of
test_xenqemu_lifecycle.py (the commands and their outputs are what matters); ``attach`` and
``detach`` run against a real shell with the harness tests' stand-in for ``xl console``
(tests/harness/fake_console.py: raw terminal, Ctrl-] alone detaches, glued to other bytes it
is passed on, as xenconsole does), so the event-driven detach is tested on real terminal timing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pexpect
import pytest
from test_xenqemu_lifecycle import FakeChannel, FakeXen, Guest
from xenqemu.console import ConsoleChannel
from xenqemu.xl import Xl, XlError, backoff, run_parts

FAKE_CONSOLE = Path(__file__).resolve().parents[2] / "harness" / "fake_console.py"


def test_run_parts_returns_each_output_and_names_the_failed_command() -> None:
    xen = FakeXen()
    channel = FakeChannel(xen)
    listing, info = run_parts(channel, ["xl list", "xl info"], 30)  # type: ignore[arg-type]
    assert listing.startswith("Name") and "Domain-0" in listing
    assert "free_memory" in info and "Domain-0" not in info
    assert len(xen.log) == 2, "both commands ran"
    with pytest.raises(XlError, match="'xl destroy nobody' failed with status 1:\ndestroy failed"):
        run_parts(channel, ["xl list", "xl destroy nobody", "xl info"], 30)  # type: ignore[arg-type]
    assert xen.log[-1] == "xl destroy nobody", "the command after the failed one did not run"


def test_backoff_starts_short_and_doubles_to_the_cap() -> None:
    pauses = backoff(first=0.1, cap=1.0)
    assert [next(pauses) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_wait_state_checks_at_once_then_backs_off() -> None:
    xen = FakeXen()
    xen.guests["g"] = Guest("g", 1, 128, "", "g", state="------")
    xl = Xl(FakeChannel(xen))  # type: ignore[arg-type]
    calls: list[float] = []
    original = xen.dom0

    def counting(command: str) -> tuple[int, str]:
        calls.append(time.monotonic())
        if len(calls) == 3:
            xen.guests["g"].state = "-b----"
        return original(command)

    xen.dom0 = counting  # type: ignore[method-assign]
    started = time.monotonic()
    assert xl.wait_state("g", ("r", "b"), timeout=10).state == "-b----"
    assert len(calls) == 3 and calls[0] - started < 0.05
    assert time.monotonic() - started < 0.5, "0.1 + 0.2 s of pauses, not the old 2 s interval"
    with pytest.raises(XlError, match="did not reach state r/b within 0s .state ------"):
        xen.guests["g"].state = "------"
        xl.wait_state("g", ("r", "b"), timeout=0.2)


def test_destroy_shares_one_round_trip_and_checks_memory() -> None:
    xen = FakeXen()
    xen.guests["g"] = Guest("g", 1, 128, "", "g")
    xen.free -= 129
    channel = FakeChannel(xen)
    xl = Xl(channel)  # type: ignore[arg-type]
    xl.destroy("g", domain=xl.find("g"))
    assert xen.log[-4:] == ["xl info", "xl destroy g", "xl list", "xl info"]
    assert len(xen.log) == 5, "one xl list (find), then one round trip"


def test_destroy_reports_memory_that_does_not_come_back() -> None:
    xen = FakeXen(faults={"memory-leak"})
    xen.guests["g"] = Guest("g", 1, 128, "", "g")
    with pytest.raises(XlError, match="memory of 'g' not returned: free_memory 622 -> 622 MiB"):
        Xl(FakeChannel(xen)).destroy("g", timeout=0.3)  # type: ignore[arg-type]


def test_destroy_reports_a_domain_still_listed() -> None:
    xen = FakeXen(faults={"zombie"})
    xen.guests["g"] = Guest("g", 1, 128, "", "g")
    with pytest.raises(XlError, match="still listed"):
        Xl(FakeChannel(xen)).destroy("g", timeout=0.3, check_memory=False)  # type: ignore[arg-type]


@pytest.fixture
def dom0(tmp_path: Path) -> ConsoleChannel:
    child = pexpect.spawn("sh", ["-i"], timeout=30, cwd=str(tmp_path), encoding="utf-8",
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PS1": "root@host:~# "})
    channel = ConsoleChannel(child, name="dom0", default_timeout=30)
    channel.login(timeout=30)
    yield channel
    child.close(force=True)


def test_attach_then_detach_returns_to_dom0_without_fixed_sleeps(dom0: ConsoleChannel) -> None:
    xl = Xl(dom0)
    outer = dom0.run("echo $$").output.strip()
    for round_ in range(3):
        guest = xl.attach(f"{sys.executable} {FAKE_CONSOLE} --login sh -i", "fake", boot_timeout=30)
        assert guest.run("echo $$").output.strip() != outer
        assert guest.run(f"echo guest-{round_}").output == f"guest-{round_}\n"
        started = time.monotonic()
        xl.detach(guest)
        assert time.monotonic() - started < 1.0, "0.15 s quiet + the prompt, not 0.5 s + 0.5 s of sleeps"
        assert not guest.ready
        assert dom0.run("echo $$").output.strip() == outer


def test_detach_from_a_console_that_is_not_nested_is_an_error(dom0: ConsoleChannel) -> None:
    with pytest.raises(Exception, match="not a nested console"):
        Xl(dom0).detach(dom0)


def test_idle_configs_leave_out_the_domains_that_already_run() -> None:
    """An autostarted or dom0less domain is running at boot: 'xl create' on its config would fail."""
    xen = FakeXen()
    autostarted = xen.add_config("started-at-boot")
    idle = xen.add_config("waiting")
    xen.guests["started-at-boot"] = Guest("started-at-boot", 1, 128, "", "started-at-boot")
    xl = Xl(FakeChannel(xen))  # type: ignore[arg-type]
    assert xl.idle_configs() == [(idle, "waiting")]
    assert autostarted not in dict(xl.idle_configs())
    del xen.guests["started-at-boot"]
    assert xl.idle_configs() == [(autostarted, "started-at-boot"), (idle, "waiting")]
    assert Xl(FakeChannel(FakeXen())).idle_configs() == []  # type: ignore[arg-type]
