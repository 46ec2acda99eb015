"""Fixtures for the tests that use oe-core's own machinery (tests/oe).

These tests load this layer's OEQA cases with oe-core's loader and import them the way testimage
and oe-selftest do, so they need an openembedded-core checkout (only its files, nothing is built):

* ``XEN_REF_OECORE``: one or more oe-core checkouts, separated by ``:``. BitBake's ``bb`` is taken
  from a ``bitbake`` checkout next to each (the layout ``setup-oe-env`` creates), else from the
  ``bb`` package installed in the venv (bitbake-setup).
* without it, the checkouts ``setup-oe-env`` made (``/opt/oe-env/*/openembedded-core``) are used.

With neither, the tests fail (they do not skip) and say how to provide one: the layer's OEQA
integration is part of the product. ``pytest -m "not oecore"`` leaves them out deliberately.
"""
from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

import pytest

LAYER = Path(__file__).resolve().parents[2]

HOW_TO = (
    "tests/oe needs an openembedded-core checkout: set XEN_REF_OECORE=/path/to/openembedded-core "
    "(several separated by ':'), or create one with "
    "/work/shared/tools/setup-oe-env --mirrors <DIR> [--release wrynose] (gives /opt/oe-env/<release>/"
    "openembedded-core). Deselect these tests explicitly with -m 'not oecore'."
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "oecore: needs an openembedded-core checkout (XEN_REF_OECORE)")


def find_oecore_checkouts() -> list[Path]:
    """oe-core checkouts from XEN_REF_OECORE, else those setup-oe-env created."""
    value = os.environ.get("XEN_REF_OECORE", "")
    candidates = [Path(p) for p in value.split(":") if p] if value else \
        [Path(p) for p in sorted(glob.glob("/opt/oe-env/*/openembedded-core"))]
    found = []
    for path in candidates:
        if not (path / "meta" / "lib" / "oeqa" / "core" / "loader.py").is_file():
            if value:
                raise pytest.UsageError(f"XEN_REF_OECORE entry {path} is not an openembedded-core "
                                        "checkout (no meta/lib/oeqa/core/loader.py)")
            continue
        found.append(path.resolve())
    return found


@pytest.fixture(scope="session")
def oecore_checkouts() -> list[Path]:
    found = find_oecore_checkouts()
    if not found:
        pytest.fail(HOW_TO, pytrace=False)
    return found


@pytest.fixture(scope="session")
def oeqa_on_path(oecore_checkouts: list[Path]) -> Path:
    """Put the first checkout's meta/lib (and its BitBake's lib) on sys.path; return the checkout."""
    oecore = oecore_checkouts[0]
    bitbake_lib = oecore.parent / "bitbake" / "lib"
    for path in (bitbake_lib, oecore / "meta" / "lib"):
        if path.is_dir() and str(path) not in sys.path:
            sys.path.insert(0, str(path))
    return oecore
