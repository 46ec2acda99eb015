"""The kas files of the other machines (qemuarm, qemux86-64) are the release files with another
machine: kas's own include handler resolves them to the same repositories, branches and local.conf
lines as qemuarm64's, and only ``machine`` differs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from kas.context import create_global_context
from kas.includehandler import IncludeHandler

KAS_DIR = Path(__file__).resolve().parents[2] / "kas"
RELEASES = ("scarthgap", "wrynose")
MACHINES = ("qemuarm", "qemux86-64")


@pytest.fixture(scope="module", autouse=True)
def kas_global_context(tmp_path_factory: pytest.TempPathFactory) -> None:
    """kas's include handler asks git for the repository root through its global context."""
    os.environ["KAS_WORK_DIR"] = str(tmp_path_factory.mktemp("kas-work"))
    create_global_context(argparse.Namespace(no_color=True))


def merged(name: str) -> dict:
    config, missing = IncludeHandler([str(KAS_DIR / name)], use_lock=False).get_config()
    assert missing == [], f"{name}: unresolved includes {missing}"
    return config


def test_every_machine_has_a_file_per_release() -> None:
    names = {p.name for p in KAS_DIR.glob("*.yml")} - {"xen-ref-common.yml"}
    assert names == {f"{m}-{r}.yml" for m in ("qemuarm64", *MACHINES) for r in RELEASES}


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("machine", MACHINES)
def test_machine_file_is_the_release_file_with_its_machine(release: str, machine: str) -> None:
    config, reference = merged(f"{machine}-{release}.yml"), merged(f"qemuarm64-{release}.yml")
    assert config["machine"] == machine and reference["machine"] == "qemuarm64"
    ignored = ("machine", "header")   # header: each file names its own includes
    assert {k: v for k, v in config.items() if k not in ignored} == \
        {k: v for k, v in reference.items() if k not in ignored}
