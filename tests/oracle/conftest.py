"""Fixtures for the differential tests against Debian's real libxlutil (see libxlutil_ctypes).

The library is part of what these tests need, not an optional extra: when it is
missing the tests fail with a message naming the Debian package to install.
"""

from __future__ import annotations

import pytest

import libxlutil_ctypes


@pytest.fixture(scope="session")
def libxlutil() -> libxlutil_ctypes.LibXlUtil:
    """The loaded libxlutil binding (session-wide: loading and the layout check run once)."""
    try:
        return libxlutil_ctypes.load()
    except libxlutil_ctypes.LibraryUnavailable as err:
        pytest.fail(str(err), pytrace=False)
