"""How a long line reaches a shell behind Xen's console: chunked, with a bounded number in flight.

The stand-in console has a 128-byte receive ring, as Xen's serial input for dom0 has: bytes sent
while it is full are lost. Its shell takes up to 48 bytes per read and echoes them, the way a
line editor does; a read returns that echo, after a line-editor redraw where the test asks.
"""

from __future__ import annotations

import pexpect
import pytest
from xenqemu.console import ConsoleChannel

RING = 128


class RingConsole:
    """A console with a small receive ring and a shell that echoes what it reads."""

    def __init__(self, redraw: bool = False) -> None:
        self.ring = ""
        self.received = ""
        self.lost = 0
        self.most_in_ring = 0
        self.reads = 0
        self.redraw = redraw

    def send(self, text: str) -> int:
        room = RING - len(self.ring)
        self.lost += max(0, len(text) - room)
        self.ring += text[:room]
        self.most_in_ring = max(self.most_in_ring, len(self.ring))
        return len(text)

    def read_nonblocking(self, size: int, timeout: float) -> str:
        if not self.ring:
            raise pexpect.TIMEOUT("nothing to echo")
        self.reads += 1
        taken, self.ring = self.ring[:48], self.ring[48:]
        self.received += taken
        # a line editor that wraps redraws the line: a newline and spaces inside the echo
        return taken[:20] + "\r\n  " + taken[20:] if self.redraw else taken


@pytest.mark.parametrize("redraw", [False, True])
def test_a_long_line_arrives_whole_without_overflowing_the_ring(redraw: bool) -> None:
    console = RingConsole(redraw)
    channel = ConsoleChannel(console, echo_timeout=0.5)  # type: ignore[arg-type]
    line = "".join(f"word{n:03d};" for n in range(60))  # 480 bytes, 10 chunks
    channel.send_line(line)
    while console.ring:
        channel.stream.fill(0.0)
    assert console.lost == 0 and console.received == line + "\n"
    assert console.most_in_ring <= 2 * 48 + 1, "at most two chunks (and the newline) unechoed"


def test_two_chunks_travel_together_so_a_line_needs_half_the_echo_waits() -> None:
    console = RingConsole()
    channel = ConsoleChannel(console, echo_timeout=0.5)  # type: ignore[arg-type]
    channel.send_line("x" * 40 + "".join(f"-{n:02d}-" for n in range(88)))  # 392 bytes, 9 chunks
    # one echo read per awaited chunk: chunks 1..7 are awaited before chunks 3..9 go out
    assert console.reads == 7 and console.lost == 0


def test_without_an_echo_the_line_is_still_sent_after_the_timeout() -> None:
    class Silent(RingConsole):
        def read_nonblocking(self, size: int, timeout: float) -> str:
            raise pexpect.TIMEOUT("echo off")

    console = Silent()
    channel = ConsoleChannel(console, echo_timeout=0.05)  # type: ignore[arg-type]
    channel.send_line("y" * 100)
    assert console.ring == "y" * 100 + "\n"
