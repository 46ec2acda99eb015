"""Reading the shell's identity out of a sync reply when console noise landed inside it."""

from __future__ import annotations

import pytest
from xenqemu.console import identify

TOKEN = "WETXFWGK"
PARENT = "QKMNBVCX"
KNOWN = ["", TOKEN, PARENT]
NOISE = [
    "(XEN) d0v1 Unhandled SMC/HVC: 0x84000050\n",
    "[  123.456789] xen-blkback: backend/vbd/3/51712: ready\n",
    "noise ab:c '$\n",
]


@pytest.mark.parametrize("noise", NOISE)
@pytest.mark.parametrize("position", range(len(TOKEN) + 1))
def test_noise_at_any_position_keeps_the_identity(noise: str, position: int) -> None:
    # a noise line starting mid-line runs to its own newline; the shell's text then continues
    region = TOKEN[:position] + noise + TOKEN[position:]
    assert identify(region, KNOWN) == TOKEN


def test_noise_right_after_the_identity_is_not_read_as_no_identity() -> None:
    # the flaky failure: "WETXFWGK(XEN) ...\n" also fits "empty identity + one noise line"
    assert identify(TOKEN + NOISE[0], KNOWN) == TOKEN


def test_two_noise_lines_around_the_identity() -> None:
    assert identify(NOISE[1] + TOKEN[:3] + NOISE[0] + TOKEN[3:] + NOISE[2], KNOWN) == TOKEN


def test_plain_identities() -> None:
    assert identify(TOKEN, KNOWN) == TOKEN
    assert identify(PARENT, KNOWN) == PARENT
    assert identify("", KNOWN) == ""


def test_empty_identity_with_noise_is_empty() -> None:
    assert identify(NOISE[0], KNOWN) == ""
    assert identify(NOISE[0] + NOISE[2], KNOWN) == ""


def test_unreadable_or_unknown_identity() -> None:
    assert identify("ZZZZZZZZ", KNOWN) is None
    assert identify(TOKEN[:4], KNOWN) is None            # a token cut short is not that token
    assert identify(TOKEN + "X", KNOWN) is None          # nor one with a stray character
    assert identify(TOKEN, ["", PARENT]) is None         # a token this channel does not know


def test_no_empty_identity_unless_known() -> None:
    assert identify("", [TOKEN]) is None
