"""dom0's tree: what the builder does instead of Debian's maintainer scripts and systemctl."""

import os
from pathlib import Path

import pytest
from xenreftarget import dom0, units
from xenreftarget.packages import Distro

NETWORKD = ("[Service]\nExecStart=/lib/systemd/systemd-networkd\n\n[Install]\n"
            "WantedBy=multi-user.target\nAlso=systemd-networkd.socket\n")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A dom0 tree as the unpacked packages leave it (the parts systemd_config reads)."""
    root = tmp_path / "root"
    unit_dir = root / units.UNIT_DIR.lstrip("/")
    unit_dir.mkdir(parents=True)
    (unit_dir / "systemd-networkd.service").write_text(NETWORKD)
    (unit_dir / "systemd-networkd.socket").write_text("[Install]\nWantedBy=sockets.target\n")
    (unit_dir / "serial-getty@.service").write_text("[Service]\nExecStart=-/sbin/agetty\n")
    sysusers = root / "usr/lib/sysusers.d"
    sysusers.mkdir(parents=True)
    (sysusers / "basic.conf").write_text("g tty 5 -\nu root 0 - /root /bin/bash\n")
    (sysusers / "systemd-network.conf").write_text('u systemd-network - "systemd Network Management"\n')
    (root / "etc").mkdir()
    (root / "etc/profile").write_text("export PS1='# '\n")
    return root


def test_units_are_written_enabled_and_masked(tree):
    dom0.systemd_config(tree, Distro(), "qemuarm64")
    etc = tree / units.ETC_UNIT_DIR.lstrip("/")
    for unit in ("xenstored.service", "xen-init-dom0.service", "xenconsoled.service",
                 "xendomains.service", "systemd-networkd.service"):
        assert os.readlink(etc / "multi-user.target.wants" / unit) == f"{units.UNIT_DIR}/{unit}"
    assert os.readlink(etc / "sockets.target.wants/systemd-networkd.socket") == \
        f"{units.UNIT_DIR}/systemd-networkd.socket"
    assert os.readlink(etc / "sysinit.target.wants/busybox-applets.service")
    assert os.readlink(etc / "getty.target.wants/serial-getty@hvc0.service") == \
        f"{units.UNIT_DIR}/serial-getty@.service"
    for unit in dom0.MASKED_UNITS:
        assert os.readlink(etc / unit) == "/dev/null"
    for generator in dom0.MASKED_GENERATORS:
        assert os.readlink(tree / "etc/systemd/system-generators" / generator) == "/dev/null"
    assert "systemd-getty-generator" in dom0.MASKED_GENERATORS     # replaced by the link above
    assert (tree / "etc/systemd/network/10-xenbr0.netdev").is_file()
    assert os.access(tree / units.XENDOMAINS.lstrip("/"), os.X_OK)
    assert os.readlink(tree / "usr/sbin/xendomains") == "../lib/xen-ref/xendomains"


def test_masks_say_why():
    for reasons in (dom0.MASKED_UNITS, dom0.MASKED_GENERATORS, dom0.MASKED_TMPFILES):
        assert all(len(reason) >= 10 for reason in reasons.values())
    # Nothing dom0 needs is masked.
    needed = set(dom0.ENABLED_UNITS) | {"systemd-udevd.service", "systemd-udev-trigger.service",
                                        "systemd-journald.service", "systemd-modules-load.service",
                                        "systemd-tmpfiles-setup.service"}
    assert not needed & set(dom0.MASKED_UNITS)


def test_accounts_machine_id_and_the_shells_init_commands(tree):
    dom0.systemd_config(tree, Distro(), "qemuarm64")
    passwd = (tree / "etc/passwd").read_text()
    assert passwd.startswith("root::0:0::/root:/bin/sh\n")
    assert "systemd-network:*:999:999:" in passwd
    assert "kvm:x:" in (tree / "etc/group").read_text()             # named by udev's rules
    machine_id = (tree / "etc/machine-id").read_text().strip()
    assert len(machine_id) == 32 and int(machine_id, 16) >= 0
    assert machine_id == dom0.machine_id("qemuarm64") != dom0.machine_id("other")
    profile = (tree / "etc/profile").read_text()
    assert profile.startswith("export PS1") and "alias poweroff=/usr/sbin/poweroff" in profile
    assert "passwd: files" in (tree / "etc/nsswitch.conf").read_text()


def test_update_stamps_are_newer_than_usr(tmp_path):
    for folder in ("usr", "etc", "var"):
        (tmp_path / folder).mkdir()
    os.utime(tmp_path / "usr", (1_700_000_000, 1_700_000_000))
    dom0.mark_updated(tmp_path)
    for folder in ("etc", "var"):
        stamp = tmp_path / folder / ".updated"
        assert stamp.stat().st_mtime == 1_700_000_001
        assert "TIMESTAMP_NSEC=1700000001000000000" in stamp.read_text()


def test_xen_tools_are_linked_past_debians_wrapper(tmp_path):
    distro = Distro()
    tools = tmp_path / distro.xen_bin_dir.lstrip("/")
    tools.mkdir(parents=True)
    (tools / "xl").write_text("ELF")
    (tmp_path / "usr/sbin").mkdir(parents=True)
    (tmp_path / "usr/sbin/xl").symlink_to("../lib/xen-common/bin/xen-utils-wrapper")
    dom0.link_xen_tools(tmp_path, distro)
    assert os.readlink(tmp_path / "usr/sbin/xl") == "../lib/xen-4.17/bin/xl"
