"""What a bundled guest boots from: HVM guests (x86) need no kernel, every other guest needs one.

xl refuses a PV or PVH config without ``kernel``, ``firmware`` or ``bootloader`` ("Neither kernel
nor bootloader specified"); an HVM guest boots its firmware from the device model. The plan
checks this before anything is installed, naming the config file and its ``type`` line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from xenbundle import BundleError, plan_bundle

DISK = "disk = [ 'format=raw, vdev=xvda, access=rw, target=guest.img' ]\n"


def deploy_with(tmp_path: Path, config: str) -> tuple[Path, Path]:
    deploy, rootfs = tmp_path / "deploy", tmp_path / "rootfs"
    deploy.mkdir()
    rootfs.mkdir()
    (deploy / "guest.img").write_bytes(b"disk")
    (deploy / "bzImage").write_bytes(b"kernel")
    (deploy / "xen-guest-bundle-g.cfg").write_text(config)
    return deploy, rootfs


@pytest.mark.parametrize("config", [
    'name = "hvm-guest"\ntype = "hvm"\n' + DISK,
    'name = "old-hvm"\nbuilder = "hvm"\n' + DISK,
    'name = "pvh-guest"\ntype = "pvh"\nkernel = "bzImage"\n' + DISK,
    'name = "pv-guest"\ntype = "pv"\nbootloader = "pygrub"\n' + DISK,
    'name = "pvgrub"\ntype = "pvh"\nfirmware = "pvgrub64"\n' + DISK,
    'name = "default-type"\nkernel = "bzImage"\n' + DISK,
])
def test_guests_with_something_to_boot_are_planned(tmp_path: Path, config: str) -> None:
    deploy, rootfs = deploy_with(tmp_path, config)
    plan = plan_bundle(str(rootfs), str(deploy))
    assert [g.name for g in plan.guests] == [config.split('"')[1]]
    # an HVM guest without kernel copies only its disk
    if "hvm" in config:
        assert [c.reference for c in plan.guests[0].copies] == ["guest.img"]


@pytest.mark.parametrize("config, line, what", [
    ('name = "pvh-guest"\ntype = "pvh"\n' + DISK, 2, 'type = "pvh"'),
    ('name = "pv-guest"\n\ntype = "pv"\nkernel = ""\n' + DISK, 3, 'type = "pv"'),
    ('name = "no-type"\n' + DISK, None, "no type (PV on x86, PVH on Arm)"),
])
def test_pv_and_pvh_guests_without_kernel_are_refused(tmp_path: Path, config: str, line: int | None,
                                                       what: str) -> None:
    deploy, rootfs = deploy_with(tmp_path, config)
    with pytest.raises(BundleError) as caught:
        plan_bundle(str(rootfs), str(deploy))
    message = str(caught.value)
    cfg = str(deploy / "xen-guest-bundle-g.cfg")
    assert f"{cfg}:{line}" in message if line else cfg in message
    assert what in message
    assert "Neither kernel nor bootloader specified" in message
    assert 'add kernel = "<file in the deploy directory>", or type = "hvm"' in message
    assert not any(rootfs.iterdir())   # nothing installed on a refused plan
