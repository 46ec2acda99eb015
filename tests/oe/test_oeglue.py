"""scripts/oe/oeglue.py: the pure helpers behind render-qemuboot, runqemu-reftarget, oeqa-reftarget."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LAYER = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(LAYER / "scripts" / "oe"))
import oeglue

CONF = """[config_bsp]
deploy_dir_image = .
image_link_name = xen-image-minimal-qemuarm64.rootfs
image_name = xen-image-minimal-qemuarm64.rootfs-20261126
qb_default_kernel = xen-qemuarm64
qb_default_fstype = ext4
qb_opt_append = -device "guest-loader,addr=0x49000000,kernel=@DEPLOY_DIR_IMAGE@/Image,bootargs=console=hvc0 root=/dev/vda" -device "guest-loader,addr=0x4c000000,initrd=@DEPLOY_DIR_IMAGE@/initrd.cpio.gz"
qb_kernel_cmdline_append = dom0_mem=512M,max:512M console=dtuart
"""


def test_local_conf_lines_come_from_the_kas_file() -> None:
    lines = oeglue.local_conf_lines()
    assert 'DISTRO_FEATURES:append = " xen systemd virtualization"' in lines
    assert 'XEN_GUEST_AUTO_BUNDLE:pn-xen-guest-image-minimal = "1"' in lines
    assert "TEST_SUITES" not in lines, "testimage lines are not part of the parse configuration"
    with pytest.raises(oeglue.GlueError, match="no section nope"):
        oeglue.local_conf_lines(("nope",))


def test_build_conf_lists_the_layers_and_settings(tmp_path: Path) -> None:
    env = oeglue.OeEnvironment(tmp_path / "env")
    oeglue.write_build_conf(tmp_path / "build", env.layers(), "qemuarm64", env, 'EXTRA = "1"\n')
    bblayers = (tmp_path / "build/conf/bblayers.conf").read_text()
    for layer in env.layers():
        assert f"    {layer} \\\n" in bblayers
    assert str(LAYER) in bblayers and "meta-filesystems" in bblayers
    local = (tmp_path / "build/conf/local.conf").read_text()
    assert 'MACHINE ??= "qemuarm64"' in local and local.endswith('EXTRA = "1"\n')
    assert 'BB_NO_NETWORK = "1"' in local


def test_missing_environment_names_the_setup_command(tmp_path: Path) -> None:
    with pytest.raises(oeglue.GlueError, match="setup-oe-env --mirrors <DIR> --release scarthgap"):
        oeglue.oe_environment("scarthgap", root=tmp_path)


def test_native_sysroot_stand_in(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    qemu = fake_bin / "qemu-system-aarch64"
    qemu.write_text("#!/bin/sh\n")
    qemu.chmod(0o755)
    sysroot = oeglue.make_native_sysroot(tmp_path / "sysroot", search_path=str(fake_bin))
    assert (sysroot / "usr/bin/qemu-system-aarch64").resolve() == qemu
    # QemuRunner does: sys.path.append(<sysroot>/usr/lib/qemu-python); from qmp.legacy import ...
    probe = ("import sys; sys.path.append(sys.argv[1]); import qmp, qmp.legacy; "
             "print(qmp.legacy.QEMUMonitorProtocol.__module__, qmp.legacy.QMPError.__name__)")
    out = subprocess.run([sys.executable, "-c", probe, str(sysroot / "usr/lib/qemu-python")],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["qemu.qmp.legacy", "QMPError"]
    with pytest.raises(oeglue.GlueError, match="not found on PATH"):
        oeglue.make_native_sysroot(tmp_path / "other", search_path=str(tmp_path / "empty"))


def test_tmpdir_sysroot_link_for_scarthgap_runqemu(tmp_path: Path) -> None:
    link = oeglue.link_tmpdir_sysroot(tmp_path, tmp_path / "sysroot")
    uname = os.uname()
    assert link == tmp_path / "sysroots" / f"{uname.machine}-{uname.sysname.lower()}"
    assert os.readlink(link) == str(tmp_path / "sysroot")


def test_read_qemuboot_and_the_files_it_names(tmp_path: Path) -> None:
    conf = tmp_path / "x.qemuboot.conf"
    conf.write_text(CONF)
    values = oeglue.read_qemuboot(conf)
    assert values["QB_DEFAULT_KERNEL"] == "xen-qemuarm64"
    assert oeglue.files_named_by_qemuboot(values) == [
        "xen-qemuarm64", "xen-image-minimal-qemuarm64.rootfs.ext4", "Image", "initrd.cpio.gz"]
    bad = tmp_path / "bad.conf"
    bad.write_text("[other]\na = 1\n")
    with pytest.raises(oeglue.GlueError, match="no \\[config_bsp\\]"):
        oeglue.read_qemuboot(bad)


def test_prepare_deploy_links_the_reference_files_and_checks_names(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    reference.mkdir()
    for name in ("xen-qemuarm64", "xen-image-minimal-qemuarm64.rootfs.ext4", "Image", "initrd.cpio.gz",
                 "xen-image-minimal-qemuarm64.qemuboot.conf"):
        (reference / name).write_text(name)
    rendered = tmp_path / "rendered.qemuboot.conf"
    rendered.write_text(CONF)
    deploy = tmp_path / "deploy"
    rootfs = oeglue.prepare_deploy(rendered, reference, deploy)
    assert rootfs == deploy / "xen-image-minimal-qemuarm64.rootfs.ext4"
    assert os.readlink(rootfs) == str(reference / rootfs.name)
    assert (deploy / "xen-image-minimal-qemuarm64.rootfs.qemuboot.conf").read_text() == CONF
    assert not (deploy / "xen-image-minimal-qemuarm64.qemuboot.conf").exists(), \
        "the reference target's own conf must not be picked up by runqemu"
    (reference / "initrd.cpio.gz").unlink()
    with pytest.raises(oeglue.GlueError, match="names initrd.cpio.gz, which the reference target"):
        oeglue.prepare_deploy(rendered, reference, deploy)
