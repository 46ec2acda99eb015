"""xen-ref-bundle.bbclass and xen-ref-guest.bbclass under real BitBake.

The host's do_rootfs post-process function and the guest's config task are run
with ``bb.build.exec_func`` on temporary deploy dirs and root filesystems; the
parse-time wiring (task dependencies, vardeps, file-checksums) is read from the
parsed recipe and fed through BitBake's own signature code.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import bb
import bb.build
import bb.data
import pytest
from xenbundle import xlcfg
from xenref_bbtest import GUEST, GUEST_LINK, HOST, MiB, make_sparse


def deploy_listing(deploy):
    """Names, sizes and mtimes of everything in the deploy dir (to prove it is not written)."""
    out = {}
    for root, dirs, files in os.walk(deploy):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            out[os.path.relpath(path, deploy)] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def read_settings(path):
    return xlcfg.XlConfig(Path(path).read_text(), str(path)).settings()


def run_guest_task(project, local_conf=""):
    """Parse the guest recipe and run its config task; return (datastore, cfg path)."""
    d = project.parse("xen-guest-image-minimal", GUEST, local_conf)
    os.makedirs(d.getVar("IMGDEPLOYDIR"), exist_ok=True)
    bb.build.exec_func("do_xen_guest_bundle_config", d)
    return d, os.path.join(d.getVar("IMGDEPLOYDIR"), f"xen-guest-bundle-{GUEST_LINK}.cfg")


# --------------------------------------------------------------------------- guest


def test_guest_task_writes_deterministic_config(project):
    d, cfg = run_guest_task(project, 'XEN_GUEST_AUTO_BUNDLE = "yes"\nXEN_GUEST_MEMORY = "256"\n')
    assert os.path.basename(cfg) == "xen-guest-bundle-xen-guest-image-minimal-qemuarm64.rootfs.cfg"
    assert os.listdir(d.getVar("IMGDEPLOYDIR")) == [os.path.basename(cfg)]
    settings = read_settings(cfg)
    assert settings["name"] == "xen-guest-image-minimal"
    assert settings["memory"] == "256"
    assert settings["vcpus"] == "1"
    assert settings["kernel"] == "Image"
    assert settings["disk"] == [f"file:{GUEST_LINK}.ext4,xvda,rw"]
    assert settings["vif"] == ["bridge=xenbr0"]
    assert settings["extra"] == "root=/dev/xvda ro console=hvc0 ip=dhcp"
    first = Path(cfg).read_text()
    bb.build.exec_func("do_xen_guest_bundle_config", d)
    assert Path(cfg).read_text() == first, "the config must not depend on when it was built"


@pytest.mark.parametrize("value", ["1", "yes", "true", "True", "y"])
def test_guest_auto_bundle_accepts_true_words(project, value):
    _d, cfg = run_guest_task(project, f'XEN_GUEST_AUTO_BUNDLE = "{value}"\n')
    assert os.path.exists(cfg)


def test_guest_settings_per_domain_and_name(project):
    _d, cfg = run_guest_task(project, """\
        XEN_GUEST_AUTO_BUNDLE = "1"
        XEN_GUEST_NAME = "web"
        XEN_GUEST_MEMORY = "256"
        XEN_GUEST_MEMORY[web] = "768"
        XEN_GUEST_VCPUS[web] = "2"
        XEN_GUEST_VIF[web] = "bridge=xenbr0,mac=00:16:3e:00:00:01 bridge=xenbr1"
        XEN_GUEST_EXTRA[web] = "root=/dev/xvda rw console=hvc0"
        """)
    settings = read_settings(cfg)
    assert settings["name"] == "web"
    assert settings["memory"] == "768"
    assert settings["vcpus"] == "2"
    assert settings["vif"] == ["bridge=xenbr0,mac=00:16:3e:00:00:01", "bridge=xenbr1"]
    assert settings["extra"] == "root=/dev/xvda rw console=hvc0"


def test_guest_auto_bundle_off_removes_old_config(project):
    d, cfg = run_guest_task(project, 'XEN_GUEST_AUTO_BUNDLE = "1"\n')
    assert os.path.exists(cfg)
    d.setVar("XEN_GUEST_AUTO_BUNDLE", "0")
    bb.build.exec_func("do_xen_guest_bundle_config", d)
    assert not os.path.exists(cfg)
    assert os.listdir(d.getVar("IMGDEPLOYDIR")) == []


def test_guest_auto_bundle_default_is_off(project):
    d, cfg = run_guest_task(project)
    assert d.getVar("XEN_GUEST_AUTO_BUNDLE") == "0"
    assert not os.path.exists(cfg)


def test_guest_task_order_and_signature_inputs(project):
    d = project.parse("xen-guest-image-minimal", GUEST,
                      'XEN_GUEST_AUTO_BUNDLE = "1"\nXEN_GUEST_MEMORY[xen-guest-image-minimal] = "300"\n')
    assert "do_image" in d.getVarFlag("do_xen_guest_bundle_config", "deps")
    assert "do_xen_guest_bundle_config" in d.getVarFlag("do_image_complete", "deps")
    vardeps = d.getVarFlag("do_xen_guest_bundle_config", "vardeps").split()
    for name in ("XEN_GUEST_AUTO_BUNDLE", "XEN_GUEST_NAME", "XEN_GUEST_MEMORY",
                 "XEN_GUEST_MEMORY[xen-guest-image-minimal]", "IMAGE_LINK_NAME", "KERNEL_IMAGETYPE"):
        assert name in vardeps


def test_guest_bad_values_fail_clearly(project, bblog):
    d = project.parse("xen-guest-image-minimal", GUEST, 'XEN_GUEST_AUTO_BUNDLE = "maybe"\n')
    os.makedirs(d.getVar("IMGDEPLOYDIR"), exist_ok=True)
    with pytest.raises(bb.BBHandledException):
        bb.build.exec_func("do_xen_guest_bundle_config", d)
    assert 'XEN_GUEST_AUTO_BUNDLE = "maybe" is not a yes/no value' in bblog.text(logging.ERROR)

    d.setVar("XEN_GUEST_AUTO_BUNDLE", "1")
    d.setVarFlag("XEN_GUEST_MEMORY", "xen-guest-image-minimal", "lots")
    with pytest.raises(bb.BBHandledException):
        bb.build.exec_func("do_xen_guest_bundle_config", d)
    assert 'XEN_GUEST_MEMORY[xen-guest-image-minimal] = "lots" is not a positive whole number' \
        in bblog.text(logging.ERROR)

    d.setVarFlag("XEN_GUEST_MEMORY", "xen-guest-image-minimal", "256")
    d.setVar("XEN_GUEST_NAME", "Domain-0")
    with pytest.raises(bb.BBHandledException):
        bb.build.exec_func("do_xen_guest_bundle_config", d)
    assert "Domain-0" in bblog.text(logging.ERROR)

    d.setVar("XEN_GUEST_NAME", "ok-name")
    d.setVar("IMAGE_FSTYPES", "tar.zst")
    with pytest.raises(bb.BBHandledException):
        bb.build.exec_func("do_xen_guest_bundle_config", d)
    assert 'IMAGE_FSTYPES of xen-guest-image-minimal has no "ext4"' in bblog.text(logging.ERROR)
    assert os.listdir(d.getVar("IMGDEPLOYDIR")) == []


# --------------------------------------------------------------------------- host


@pytest.fixture
def deploy(project):
    """A deploy dir with a guest image (link + real file), a kernel and a third-party guest."""
    dep = project.deploy
    real = GUEST_LINK + "-20261126120000.ext4"
    make_sparse(dep / real, 64 * MiB)
    os.symlink(real, dep / (GUEST_LINK + ".ext4"))
    (dep / "Image--6.6-r0-qemuarm64-20261126.bin").write_bytes(b"\x00ARM64 kernel" * 1000)
    os.symlink("Image--6.6-r0-qemuarm64-20261126.bin", dep / "Image")
    make_sparse(dep / "pair-guest-qemuarm64.rootfs.ext4", 16 * MiB, b"pair guest disk")
    make_sparse(dep / "vendor-appliance.img", 32 * MiB, b"third party disk")
    (dep / "vendor-kernel").write_bytes(b"vendor kernel")
    (dep / "xen-guest-bundle-vendor.cfg").write_text(
        "# Vendor appliance, hand-written\n"
        'name = "vendor"\n'
        "memory = 128   # small\n"
        "disk = [ 'format=raw, vdev=xvda, access=rw, target=vendor-appliance.img' ]\n"
        'kernel = "vendor-kernel"\n'
        'vendor_key = "kept"\n')
    return dep


def test_host_bundles_all_three_forms(project, deploy):
    # Form 3: the guest image deploys its config (as sstate would copy IMGDEPLOYDIR).
    _gd, cfg = run_guest_task(project, 'XEN_GUEST_AUTO_BUNDLE = "1"\nXEN_GUEST_NAME = "auto-guest"\n')
    shutil.copy(cfg, deploy)
    before = deploy_listing(deploy)

    d = project.parse("xen-image-minimal", HOST, """\
        XEN_BUNDLED_GUESTS = "pair-guest-qemuarm64.rootfs.ext4:Image"
        XEN_GUEST_EXTERNAL = "pair-guest"
        XEN_GUEST_MEMORY[pair-guest-qemuarm64] = "384"
        XEN_GUEST_AUTOSTART = "vendor"
        """)
    rootfs = d.getVar("IMAGE_ROOTFS")
    os.makedirs(rootfs)
    bb.build.exec_func("do_rootfs", d)

    assert deploy_listing(deploy) == before, "the host must never write into DEPLOY_DIR_IMAGE"
    etc_xen = os.path.join(rootfs, "etc/xen")
    configs = sorted(n for n in os.listdir(etc_xen) if n.endswith(".cfg"))
    assert configs == [
        "xen-guest-bundle-pair-guest-qemuarm64.cfg",
        "xen-guest-bundle-vendor.cfg",
        "xen-guest-bundle-xen-guest-image-minimal-qemuarm64.rootfs.cfg",
    ]
    images = os.path.join(rootfs, "var/lib/xen/images")
    for name in sorted(os.listdir(images)):
        path = os.path.join(images, name)
        assert not os.path.islink(path)

    # Form 1: generated from XEN_BUNDLED_GUESTS with the per-domain varflag.
    generated = read_settings(os.path.join(etc_xen, "xen-guest-bundle-pair-guest-qemuarm64.cfg"))
    assert generated["name"] == "pair-guest-qemuarm64"
    assert generated["memory"] == "384"
    assert generated["kernel"].startswith("/var/lib/xen/images/")
    disk_target = generated["disk"][0].split(",")[0].split(":", 1)[1]
    assert disk_target.startswith("/var/lib/xen/images/")
    copied = os.path.join(rootfs, disk_target.lstrip("/"))
    assert os.path.getsize(copied) == 16 * MiB
    assert os.stat(copied).st_blocks * 512 < 1 * MiB, "the guest disk must stay sparse"

    # Form 2: the hand-written config keeps comments and unknown keys.
    vendor_text = Path(etc_xen, "xen-guest-bundle-vendor.cfg").read_text()
    assert "# Vendor appliance, hand-written" in vendor_text
    assert "# small" in vendor_text
    vendor = read_settings(os.path.join(etc_xen, "xen-guest-bundle-vendor.cfg"))
    assert vendor["vendor_key"] == "kept"
    assert vendor["kernel"] == "/var/lib/xen/images/vendor-kernel"
    assert "/var/lib/xen/images/vendor-appliance.img" in vendor["disk"][0]
    assert os.path.exists(os.path.join(images, "vendor-appliance.img"))

    # Form 3: the auto-bundled config, under its own domain name.
    auto = read_settings(os.path.join(etc_xen, "xen-guest-bundle-xen-guest-image-minimal-qemuarm64.rootfs.cfg"))
    assert auto["name"] == "auto-guest"

    # Autostart: only the guest asked for.
    auto_dir = os.path.join(etc_xen, "auto")
    assert os.listdir(auto_dir) == ["xen-guest-bundle-vendor.cfg"]


def test_host_without_guests_installs_nothing(project, bblog):
    d = project.parse("xen-image-minimal", HOST)
    rootfs = d.getVar("IMAGE_ROOTFS")
    os.makedirs(rootfs)
    bb.build.exec_func("do_rootfs", d)
    assert os.listdir(rootfs) == []
    assert "no guests to bundle" in bblog.text()


@pytest.mark.parametrize("conf, expected", [
    ('XEN_BUNDLED_GUESTS = "guest.ext4"', "XEN_BUNDLED_GUESTS entry 1 'guest.ext4' has no ':'"),
    (f'XEN_BUNDLED_GUESTS = "{GUEST_LINK}.ext4:zImage"', "zImage"),
    (f'XEN_BUNDLED_GUESTS = "{GUEST_LINK}.ext4:Image"\nXEN_GUEST_VCPUS = "two"',
     'XEN_GUEST_VCPUS = "two" is not a positive whole number'),
    ('XEN_BUNDLED_GUESTS = "../escape.ext4:Image"', "escape.ext4"),
])
def test_host_bad_input_stops_with_message(project, deploy, bblog, conf, expected):
    d = project.parse("xen-image-minimal", HOST, conf + "\n")
    rootfs = d.getVar("IMAGE_ROOTFS")
    os.makedirs(rootfs)
    with pytest.raises(bb.BBHandledException):
        bb.build.exec_func("do_rootfs", d)
    errors = bblog.text(logging.ERROR)
    assert expected in errors, errors
    assert os.listdir(rootfs) == [], "nothing of a failed bundle may be left in the rootfs"


def test_host_bad_third_party_config_names_file_and_line(project, deploy, bblog):
    (deploy / "xen-guest-bundle-broken.cfg").write_text('name = "broken"\nmemory = = 3\n')
    d = project.parse("xen-image-minimal", HOST)
    os.makedirs(d.getVar("IMAGE_ROOTFS"))
    with pytest.raises(bb.BBHandledException):
        bb.build.exec_func("do_rootfs", d)
    errors = bblog.text(logging.ERROR)
    assert "xen-guest-bundle-broken.cfg" in errors and ":2" in errors, errors
