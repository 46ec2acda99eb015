"""Fixtures for the differential tests against Debian's real libxlutil (see libxlutil_ctypes).

The library is part of what these tests need, not an optional extra: when it is
missing the tests fail with a message naming the Debian package to install.
"""

from __future__ import annotations

from collections.abc import Iterator

import libxlutil_ctypes
import pytest


@pytest.fixture(scope="session")
def libxlutil() -> Iterator[libxlutil_ctypes.Oracle]:
    """libxlutil in its child process, for the whole session (loaded and layout-checked once)."""
    problem = None
    try:
        oracle = libxlutil_ctypes.load()
    except (libxlutil_ctypes.LibraryUnavailable, libxlutil_ctypes.LibxlutilDied) as err:
        problem = str(err)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    yield oracle
    oracle.close()
