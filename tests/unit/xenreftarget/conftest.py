"""Fixtures of the xenreftarget unit tests (no network, no apt, no QEMU)."""

import pytest
from reftarget_helpers import FakeRunner


@pytest.fixture
def runner() -> FakeRunner:
    """A fake command runner that records calls and answers from rules."""
    return FakeRunner()
