"""The amd64 reference target: its machine (qemux86-64 names, PVH and PV guests), its cache folder
beside arm64's, and its qemuboot.conf as xenboot writes it and the harness reads it back."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import xenboot
from reftarget_helpers import record
from test_reftarget_build import FakeApt, assembled  # noqa: F401  (the fixture)
from xenqemu.cmdline import RunPaths, build_argv
from xenqemu.target import load_target
from xenreftarget import build, machine_for
from xenreftarget.packages import Distro

AMD64 = machine_for("amd64")
MiB = 1 << 20


def test_amd64_imitates_the_qemux86_64_deploy_folder():
    assert AMD64.machine == "qemux86-64"
    assert (AMD64.xen_binary, AMD64.kernel) == ("xen-qemux86-64", "bzImage")
    assert AMD64.host_rootfs == "xen-image-minimal-qemux86-64.rootfs.ext4"
    assert AMD64.qemuboot_conf == "xen-image-minimal-qemux86-64.qemuboot.conf"
    assert "virtio_pci" in AMD64.extra_modules
    # no dom0less on x86's Xen; the meta-virtualization forms' guests are arm64's
    assert not AMD64.dom0less and not AMD64.compat_guests
    assert build.all_guests(AMD64) == AMD64.guests and len(build.all_guests()) > len(build.GUESTS)


def test_amd64_has_pvh_and_pv_guests_one_autostarted_and_every_bundling_form():
    types = {g.type for g in AMD64.guests}
    assert {"pvh", "pv"} <= types
    assert [g.autostart for g in AMD64.guests].count(True) == 1
    assert {g.form for g in AMD64.guests} == {g.form for g in build.GUESTS}
    assert all(g.name.endswith("qemux86-64") or "-qemux86-64." in g.disk or g.form == "deploy-config"
               for g in AMD64.guests)


def test_guest_configs_carry_the_type_kernel_and_initrd_of_the_architecture():
    pv = next(g for g in AMD64.guests if g.type == "pv" and g.form == "deploy-config")
    text = build.deploy_config_text(pv, "third party", AMD64)
    assert 'type = "pv"' in text and 'kernel = "bzImage"' in text and AMD64.initrd in text
    pvh = next(g for g in AMD64.guests if g.form == "auto-bundle")
    assert build.guest_settings(pvh.name, AMD64).type == "pvh"
    assert [g.type for g in AMD64.guests].count("pvh") == 1, "one PVH guest (docs/reference-target.md)"
    assert build.guest_settings(build.GUESTS[0].name).type is None   # arm64: xl's default
    assert 'type = "pvh"' in build.deploy_config_text(build.GUESTS[1], "arm64")


def test_an_unknown_architecture_is_refused_naming_the_known_ones(tmp_path):
    with pytest.raises(build.BuildError, match="known: arm64, amd64"):
        build.current_reference_target(tmp_path, Distro("bookworm", "riscv64"))


def test_building_amd64_keeps_the_arm64_target(tmp_path, assembled):  # noqa: F811
    arm = build.build_target(tmp_path, apt=FakeApt([record("linux-image-6.1.0-56-arm64", "6.1")]), log=lambda m: None)
    amd = build.build_target(tmp_path, apt=FakeApt([record("linux-image-6.1.0-57-amd64", "6.1")]),
                             log=lambda m: None, distro=Distro("bookworm", "amd64"))
    assert (tmp_path / "target").resolve() == arm.deploy_dir.resolve()
    amd_home = build.distro_dir(tmp_path, Distro("bookworm", "amd64"))
    assert amd_home == tmp_path / "bookworm-amd64"
    assert (amd_home / "target").resolve() == amd.deploy_dir.resolve() != arm.deploy_dir.resolve()
    assert arm.qemuboot_conf.is_file() and amd.qemuboot_conf.name == AMD64.qemuboot_conf
    assert not (amd.deploy_dir / "xen-dom0less-only-qemuarm64.qemuboot.conf").exists()
    assert build.current_reference_target(tmp_path, Distro("bookworm", "amd64")).manifest["distro"]["arch"] == "amd64"
    assert build.current_reference_target(tmp_path).manifest["distro"]["arch"] == "arm64"
    # the main job (run-lifecycle) leaves out the poweroff step where QEMU does not exit after it
    assert amd.manifest["poweroff_ends_qemu"] is False and arm.manifest["poweroff_ends_qemu"] is True
    rebuilt = build.build_target(tmp_path, apt=FakeApt([record("linux-image-6.1.0-57-amd64", "6.1")]),
                                 log=lambda m: None, distro=Distro("bookworm", "amd64"), force=True)
    assert rebuilt.rebuilt and (tmp_path / "target").resolve().is_dir()
    assert len(list((tmp_path / "builds").iterdir())) == 1 and len(list((amd_home / "builds").iterdir())) == 1


def test_no_amd64_target_yet_says_how_to_build_it(tmp_path):
    with pytest.raises(build.BuildError, match="xen-ref-target build --arch amd64"):
        build.current_reference_target(tmp_path, Distro("bookworm", "amd64"))


@pytest.fixture
def x86_conf(tmp_path: Path) -> Path:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for name, size in ((AMD64.xen_binary, MiB), (AMD64.kernel, 8 * MiB), (AMD64.initrd, 2 * MiB),
                       (AMD64.host_rootfs, MiB)):
        with open(deploy / name, "wb") as f:
            f.truncate(size)
    return xenboot.write_qemuboot(deploy / AMD64.qemuboot_conf, AMD64.boot.variables())


def test_x86_qemuboot_boots_xen_by_multiboot_with_dom0_as_modules(x86_conf: Path):
    values = xenboot.read_qemuboot(x86_conf).values
    assert values["QB_SYSTEM_NAME"] == "qemu-system-x86_64"
    assert values["QB_DEFAULT_KERNEL"] == "xen-qemux86-64"
    assert values["QB_CPU"] == f"-cpu {xenboot.X86_TCG_CPU}"
    assert values["QB_KERNEL_CMDLINE_APPEND"].endswith("com1=115200,8n1 console=com1")
    assert values["QB_XEN_CONSOLE"] == xenboot.X86_XEN_CONSOLE
    modules = xenboot.multiboot_modules(shlex.split(values["QB_OPT_APPEND"]))
    # runqemu (and the harness) replace the placeholder with the conf file's folder
    assert modules == [("@DEPLOY_DIR_IMAGE@/bzImage", "console=hvc0 root=/dev/vda rw quiet"),
                       (f"@DEPLOY_DIR_IMAGE@/{AMD64.initrd}", "")]
    assert "virtio-blk-pci" in values["QB_ROOTFS_OPT"] and "guest-loader" not in values["QB_OPT_APPEND"]


def test_the_harness_reads_it_back_without_arm_machine_options(x86_conf: Path, tmp_path: Path):
    target = load_target(x86_conf)
    assert target.is_xen and target.kernel is not None and target.kernel.name == "xen-qemux86-64"
    argv = build_argv(target, RunPaths.in_dir(tmp_path))
    text = " ".join(argv)
    assert argv[0] == "qemu-system-x86_64"
    assert "virtualization=on" not in text and "gic-version" not in text
    assert argv[argv.index("-machine") + 1] == "q35"
    assert argv[argv.index("-append") + 1].endswith("console=com1")
    initrd = argv[argv.index("-initrd") + 1]
    assert initrd.endswith(f"/{AMD64.initrd}") and " console=hvc0 root=/dev/vda" in initrd
    assert "-device" in argv and "virtio-net-pci,netdev=net0,mac=52:54:00:12:35:02" in argv


def test_a_missing_multiboot_module_is_named(x86_conf: Path):
    (x86_conf.parent / AMD64.initrd).unlink()
    with pytest.raises(ValueError, match=r"QB_OPT_APPEND.*multiboot module .*cpio.gz \(-initrd\) does not exist"):
        load_target(x86_conf)


def test_the_warm_start_key_covers_dom0s_multiboot_modules(x86_conf: Path):
    from xenqemu.warm import image_files

    roles = image_files(load_target(x86_conf))
    assert roles["multiboot:bzImage"].name == "bzImage"
    assert roles[f"multiboot:{AMD64.initrd}"].name == AMD64.initrd
