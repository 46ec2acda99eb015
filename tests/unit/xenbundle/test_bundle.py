"""Tests of planning and installing guest bundles against temporary deploy dirs and rootfs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xenbundle.install as install_mod
from xenbundle import BundleError, GuestSettings, bundle_guests, plan_bundle
from xenbundle.disk import parse_disk
from xenbundle.plan import resolve_in_root
from xenbundle.sparse import allocated_bytes, copy_sparse
from xenbundle.xlcfg import parse

MiB = 1 << 20

THIRD_PARTY = """# A third-party guest, kept as written
name = "web"            # domain name
memory = 256
kernel = "Image"
ramdisk = 'initrd.img'  # initramfs
device_tree = "guest.dtb"
disk = [
    'file:web.ext4,xvda,rw',          # root disk
    "format=qcow2, vdev=xvdb, access=rw, target=data,1.qcow2",
    'phy:/dev/sdb,xvdc,w',            # a device: untouched
    ',,hdc:cdrom,r',                  # empty cdrom: untouched
]
vif = [ 'bridge=xenbr0' ]
on_crash = "preserve"   # unknown to us, kept
"""

AUTO = """# Xen guest auto, deployed by its image build for automatic bundling
name = "auto-guest"
memory = 512
vcpus = 1
kernel = "Image"
extra = "root=/dev/xvda ro console=hvc0 ip=dhcp"
disk = [ 'file:auto-guest-qemuarm64.rootfs.ext4,xvda,rw' ]
vif = ['bridge=xenbr0']
"""


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything observable about a tree: type, mode, size, content digest, link target."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                out[str(p.relative_to(root))] = ("l", os.readlink(p))
            elif p.is_dir():
                out[str(p.relative_to(root))] = ("d", st.st_mode)
            else:
                out[str(p.relative_to(root))] = ("f", st.st_mode, st.st_size, st.st_mtime_ns,
                                                 hash(p.read_bytes()))
    return out


def sparse_file(path: Path, size: int, data_at=(0,)) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for off in data_at:
            f.seek(off)
            f.write(os.urandom(4096))


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    d = tmp_path / "deploy"
    d.mkdir()
    (d / "Image-6.6-r0.bin").write_bytes(b"kernel" * 100)
    (d / "Image").symlink_to("Image-6.6-r0.bin")
    sparse_file(d / "xen-guest-image-minimal-qemuarm64.rootfs-2024.ext4", 256 * MiB, (0, 100 * MiB))
    (d / "xen-guest-image-minimal-qemuarm64.rootfs.ext4").symlink_to(
        "xen-guest-image-minimal-qemuarm64.rootfs-2024.ext4")
    sparse_file(d / "web.ext4", 64 * MiB, (0,))
    sparse_file(d / "auto-guest-qemuarm64.rootfs.ext4", 16 * MiB, (0,))
    sparse_file(d / "data,1.qcow2", 8 * MiB, (0,))
    (d / "initrd.img").write_bytes(b"initrd")
    (d / "guest.dtb").write_bytes(b"dtb")
    return d


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "hostname").write_text("host\n")
    return r


def write(deploy: Path, name: str, text: str) -> Path:
    p = deploy / name
    p.write_text(text)
    return p


# ------------------------------------------------------------------ the three forms

def test_all_three_forms_install_and_leave_deploy_dir_untouched(deploy, rootfs):
    write(deploy, "xen-guest-bundle-web.cfg", THIRD_PARTY)
    write(deploy, "xen-guest-bundle-auto.cfg", AUTO)
    before = snapshot(deploy)
    logs = []
    result = bundle_guests(
        str(rootfs), str(deploy), "xen-guest-image-minimal-qemuarm64.rootfs.ext4:Image",
        settings=lambda n: GuestSettings(name="from-var", memory=384),
        autostart=["web"], log=logs.append)
    assert snapshot(deploy) == before
    assert [g.name for g in result.guests] == ["from-var", "auto-guest", "web"]

    # Form 1: generated config, named after the domain.
    gen = rootfs / "etc/xen/xen-guest-bundle-from-var.cfg"
    s = parse(gen.read_text()).settings()
    assert s["memory"] == "384"
    assert s["kernel"] == "/var/lib/xen/images/Image"
    assert parse_disk(s["disk"][0]).target == \
        "/var/lib/xen/images/xen-guest-image-minimal-qemuarm64.rootfs.ext4"
    assert oct(gen.stat().st_mode & 0o777) == "0o644"

    # Form 2: third-party config rewritten in place, everything else as written.
    web = (rootfs / "etc/xen/xen-guest-bundle-web.cfg").read_text()
    expected = (THIRD_PARTY
                .replace('"Image"', '"/var/lib/xen/images/Image"')
                .replace("'initrd.img'", "'/var/lib/xen/images/initrd.img'")
                .replace('"guest.dtb"', '"/var/lib/xen/images/guest.dtb"')
                .replace("'file:web.ext4,xvda,rw'", "'file:/var/lib/xen/images/web.ext4,xvda,rw'")
                .replace("target=data,1.qcow2", "target=/var/lib/xen/images/data,1.qcow2"))
    assert web == expected

    # Form 3: auto-bundle config.
    auto = parse((rootfs / "etc/xen/xen-guest-bundle-auto.cfg").read_text()).settings()
    assert auto["disk"] == ["file:/var/lib/xen/images/auto-guest-qemuarm64.rootfs.ext4,xvda,rw"]

    images = rootfs / "var/lib/xen/images"
    assert sorted(os.listdir(images)) == sorted([
        "Image", "initrd.img", "guest.dtb", "web.ext4", "data,1.qcow2",
        "xen-guest-image-minimal-qemuarm64.rootfs.ext4", "auto-guest-qemuarm64.rootfs.ext4"])
    assert (images / "Image").read_bytes() == b"kernel" * 100
    # Autostart link, relative.
    link = rootfs / "etc/xen/auto/xen-guest-bundle-web.cfg"
    assert os.readlink(link) == "../xen-guest-bundle-web.cfg"
    assert result.guests[2].autostart_link == "etc/xen/auto/xen-guest-bundle-web.cfg"
    assert result.guests[0].config == "etc/xen/xen-guest-bundle-from-var.cfg"
    # Sparse: the 256 MiB disk keeps its holes.
    big = images / "xen-guest-image-minimal-qemuarm64.rootfs.ext4"
    assert big.stat().st_size == 256 * MiB
    assert big.stat().st_blocks * 512 <= 64 * 1024
    assert result.apparent_bytes > 256 * MiB
    assert result.allocated_bytes < 1 * MiB
    assert any("web" in line and "autostart" in line for line in logs)


def test_plan_reports_inputs_and_sizes_without_writing(deploy, rootfs):
    write(deploy, "xen-guest-bundle-web.cfg", THIRD_PARTY)
    before_root, before_deploy = snapshot(rootfs), snapshot(deploy)
    plan = plan_bundle(str(rootfs), str(deploy), "xen-guest-image-minimal-qemuarm64.rootfs.ext4:Image")
    assert snapshot(rootfs) == before_root and snapshot(deploy) == before_deploy
    inputs = plan.inputs()
    for name in ("xen-guest-bundle-web.cfg", "Image", "Image-6.6-r0.bin", "web.ext4",
                 "xen-guest-image-minimal-qemuarm64.rootfs.ext4",
                 "xen-guest-image-minimal-qemuarm64.rootfs-2024.ext4", "data,1.qcow2",
                 "initrd.img", "guest.dtb"):
        assert str(deploy / name) in inputs
    assert plan.apparent_bytes >= (256 + 64 + 8) * MiB
    assert plan.allocated_bytes < 2 * MiB
    copies = {c.destination: c for c in plan.copies()}
    assert copies["/var/lib/xen/images/Image"].source == str(deploy / "Image-6.6-r0.bin")


def test_no_guests_is_fine(deploy, rootfs):
    before = snapshot(rootfs)
    assert bundle_guests(str(rootfs), str(deploy), "", log=lambda m: None).guests == []
    assert snapshot(rootfs) == before


# ------------------------------------------------------------------- bad input

def problems_of(deploy: Path, rootfs: Path, bundled: str = "", **kw) -> str:
    before = snapshot(rootfs), snapshot(deploy)
    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(deploy), bundled, log=lambda m: None, **kw)
    assert (snapshot(rootfs), snapshot(deploy)) == before
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_missing_kernel_in_cfg_names_guest_file_line_and_fix(deploy, rootfs):
    cfg = write(deploy, "xen-guest-bundle-x.cfg", 'name = "x"\n\nkernel = "NoSuchImage"\n')
    msg = problems_of(deploy, rootfs)
    assert f"guest 'x' ({cfg}:3): kernel file 'NoSuchImage' not found" in msg
    assert "build it first" in msg


def test_missing_entry_files_name_the_entry(deploy, rootfs):
    msg = problems_of(deploy, rootfs, "missing.rootfs.ext4:Image xen-guest-image-minimal-qemuarm64.rootfs.ext4:NoKernel")
    assert "guest 'missing' (XEN_BUNDLED_GUESTS entry 1 'missing.rootfs.ext4:Image'): rootfs file 'missing.rootfs.ext4' not found" in msg
    assert "(XEN_BUNDLED_GUESTS entry 2 'xen-guest-image-minimal-qemuarm64.rootfs.ext4:NoKernel'): kernel file 'NoKernel' not found" in msg


def test_malformed_entry_and_unparsable_config_are_all_reported(deploy, rootfs):
    cfg = write(deploy, "xen-guest-bundle-bad.cfg", 'name = "bad"\nmemory = 1.5\nkernel = Image\n')
    msg = problems_of(deploy, rootfs, "a:b:c")
    assert "XEN_BUNDLED_GUESTS entry 1 'a:b:c'" in msg
    assert f"{cfg}:2: " in msg and f"{cfg}:3: " in msg
    assert "fix it or remove it" in msg


def test_dangling_symlink(deploy, rootfs):
    (deploy / "gone.ext4").symlink_to("nothing-here.ext4")
    msg = problems_of(deploy, rootfs, "gone.ext4:Image")
    assert "dangling symlink" in msg and "gone.ext4" in msg


def test_paths_escaping_the_deploy_dir(deploy, rootfs, tmp_path):
    outside = tmp_path / "outside.img"
    outside.write_bytes(b"x")
    (deploy / "sneaky.img").symlink_to(outside)
    cfg = write(deploy, "xen-guest-bundle-esc.cfg",
                'name = "esc"\nkernel = "../outside.img"\n'
                'disk = [ "file:sneaky.img,xvda,rw", "file:/etc/passwd,xvdb,rw" ]\n')
    msg = problems_of(deploy, rootfs)
    assert f"guest 'esc' ({cfg}:2): kernel file '../outside.img' resolves to" in msg
    assert f"({cfg}:3): disk 1 target 'sneaky.img' resolves to {outside}, outside the deploy" in msg
    assert "disk 2 target '/etc/passwd' is outside the deploy directory" in msg


def test_device_paths_and_empty_cdrom_stay_untouched(deploy, rootfs):
    write(deploy, "xen-guest-bundle-dev.cfg",
          'name = "dev"\nkernel = "Image"\ndisk = [ "phy:/dev/vg/root,xvda,w", "vdev=hdc,devtype=cdrom,target=" ]\n')
    bundle_guests(str(rootfs), str(deploy), log=lambda m: None)
    s = parse((rootfs / "etc/xen/xen-guest-bundle-dev.cfg").read_text()).settings()
    assert s["disk"] == ["phy:/dev/vg/root,xvda,w", "vdev=hdc,devtype=cdrom,target="]


def test_duplicate_domain_names(deploy, rootfs):
    a = write(deploy, "xen-guest-bundle-a.cfg", 'name = "same"\nkernel = "Image"\n')
    b = write(deploy, "xen-guest-bundle-b.cfg", 'name = "same"\nkernel = "Image"\n')
    msg = problems_of(deploy, rootfs)
    assert f"guest 'same' ({b}): domain name 'same' is also used by guest 'same' ({a})" in msg
    assert "another name" in msg


def test_same_destination_from_different_sources(deploy, rootfs):
    sub = deploy / "other"
    sub.mkdir()
    (sub / "Image").write_bytes(b"different kernel")
    write(deploy, "xen-guest-bundle-a.cfg", 'name = "a"\nkernel = "Image"\n')
    b = write(deploy, "xen-guest-bundle-b.cfg", 'name = "b"\nkernel = "other/Image"\n')
    msg = problems_of(deploy, rootfs)
    assert f"guest 'b' ({b}): kernel 'other/Image'" in msg
    assert "would both be installed as /var/lib/xen/images/Image" in msg
    assert "rename one of the files" in msg


def test_config_without_name(deploy, rootfs):
    cfg = write(deploy, "xen-guest-bundle-anon.cfg", 'kernel = "Image"\n')
    msg = problems_of(deploy, rootfs)
    assert f"guest ({cfg}): the config has no name: add name = " in msg


def test_invalid_domain_name_in_config(deploy, rootfs):
    cfg = write(deploy, "xen-guest-bundle-n.cfg", '\nname = "42"\nkernel = "Image"\n')
    msg = problems_of(deploy, rootfs)
    assert f"({cfg}:2): domain name '42' is all digits" in msg


def test_bad_disk_spec_names_line(deploy, rootfs):
    cfg = write(deploy, "xen-guest-bundle-d.cfg",
                'name = "d"\nkernel = "Image"\ndisk = [\n  "web.ext4,raw,xvda",\n  "web.ext4,bogus,xvdb",\n]\n')
    msg = problems_of(deploy, rootfs)
    assert f"guest 'd' ({cfg}:5): disk entry 2: unknown value for format" in msg


def test_autostart_of_unknown_guest(deploy, rootfs):
    write(deploy, "xen-guest-bundle-web.cfg", THIRD_PARTY)
    msg = problems_of(deploy, rootfs, autostart=["nope"])
    assert "autostart names guest 'nope', which is not bundled (bundled: web)" in msg


def test_several_problems_are_reported_together(deploy, rootfs):
    write(deploy, "xen-guest-bundle-anon.cfg", 'kernel = "Image"\n')
    msg = problems_of(deploy, rootfs, "bad-entry", autostart=["ghost"])
    assert msg.startswith("3 problems with the bundled Xen guests:")


@pytest.mark.parametrize("images_dir", ["var/lib/xen/images", "/var/lib/xen/../../etc"])
def test_images_dir_must_be_absolute_without_dotdot(deploy, rootfs, images_dir):
    msg = problems_of(deploy, rootfs, "xen-guest-image-minimal-qemuarm64.rootfs.ext4:Image",
                      images_dir=images_dir)
    assert "images_dir" in msg and "absolute path without '..'" in msg


def test_symlink_in_rootfs_redirecting_images_dir_is_refused(deploy, rootfs, tmp_path):
    (rootfs / "var/lib/xen").mkdir(parents=True)
    (rootfs / "var/lib/xen/images").symlink_to("/etc")          # chroot-style: <rootfs>/etc
    msg = problems_of(deploy, rootfs, "xen-guest-image-minimal-qemuarm64.rootfs.ext4:Image")
    assert ("destination /var/lib/xen/images/Image would land at /etc/Image in the rootfs, "
            "outside /var/lib/xen/images") in msg
    assert not (tmp_path / "etc" / "Image").exists() and not os.path.exists("/etc/Image")
    # A link climbing out of the rootfs is refused too:
    (rootfs / "var/lib/xen/images").unlink()
    (rootfs / "var/lib/xen/images").symlink_to("../../../../outside")
    msg = problems_of(deploy, rootfs, "xen-guest-image-minimal-qemuarm64.rootfs.ext4:Image")
    assert "points outside the rootfs" in msg
    assert "XEN_BUNDLED_GUESTS entry 1" in msg


def test_symlinked_file_in_images_dir_pointing_elsewhere_is_refused(deploy, rootfs):
    images = rootfs / "var/lib/xen/images"
    images.mkdir(parents=True)
    (rootfs / "var/lib/xen/images/Image").symlink_to("/etc/hostname")
    msg = problems_of(deploy, rootfs, "xen-guest-image-minimal-qemuarm64.rootfs.ext4:Image")
    assert "destination /var/lib/xen/images/Image would land at /etc/hostname" in msg


def test_existing_file_in_rootfs_is_not_overwritten(deploy, rootfs):
    (rootfs / "etc/xen").mkdir()
    (rootfs / "etc/xen/xen-guest-bundle-web.cfg").write_text("mine")
    write(deploy, "xen-guest-bundle-web.cfg", THIRD_PARTY)
    msg = problems_of(deploy, rootfs)
    assert "config /etc/xen/xen-guest-bundle-web.cfg already exists in the rootfs" in msg


def test_resolve_in_root_is_chroot_style(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "abs").symlink_to("/b")
    (tmp_path / "a" / "rel").symlink_to("../c")
    (tmp_path / "a" / "loop").symlink_to("loop")
    assert resolve_in_root(str(tmp_path), "/a/abs/x") == "/b/x"
    assert resolve_in_root(str(tmp_path), "/a/rel/x") == "/c/x"
    with pytest.raises(ValueError):
        resolve_in_root(str(tmp_path), "/a/loop/x")
    with pytest.raises(ValueError):
        resolve_in_root(str(tmp_path), "/../x")


# ------------------------------------------------------------------- rollback

def test_failure_midway_leaves_rootfs_exactly_as_before(deploy, rootfs, monkeypatch):
    write(deploy, "xen-guest-bundle-web.cfg", THIRD_PARTY)
    (rootfs / "var").mkdir()       # an existing directory must survive the rollback
    before = snapshot(rootfs)
    calls = []
    real_copy = install_mod.copy_sparse_to_fd

    def failing_copy(src, fd):
        calls.append(src)
        if len(calls) == 2:
            real_copy(src, fd)      # leave a half-written temporary file behind
            raise OSError(28, "No space left on device")
        return real_copy(src, fd)

    monkeypatch.setattr(install_mod, "copy_sparse_to_fd", failing_copy)
    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(deploy), "xen-guest-image-minimal-qemuarm64.rootfs.ext4:Image",
                      log=lambda m: None)
    assert len(calls) == 2
    assert snapshot(rootfs) == before
    assert "ENOSPC, No space left on device" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


def test_failure_while_writing_configs_rolls_back_copies(deploy, rootfs, monkeypatch):
    write(deploy, "xen-guest-bundle-web.cfg", THIRD_PARTY)
    before = snapshot(rootfs)

    def broken_symlink(self, target, final):
        raise PermissionError(13, "Permission denied", final)

    monkeypatch.setattr(install_mod.RootfsWriter, "symlink", broken_symlink)
    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(deploy), autostart=["web"], log=lambda m: None)
    assert snapshot(rootfs) == before
    assert "guest 'web'" in str(info.value) and "/etc/xen/auto/xen-guest-bundle-web.cfg" in str(info.value)
    assert "EACCES, Permission denied" in str(info.value)


# ------------------------------------------------------------------- sparse copy

def test_copy_sparse_keeps_holes_mode_and_content(tmp_path):
    src = tmp_path / "disk.img"
    size = 1 << 30
    with open(src, "wb") as f:
        f.truncate(size)
        for off in (0, 300 * MiB, size - 4096):
            f.seek(off)
            f.write(b"\xaa" * 4096)
        f.seek(500 * MiB)
        f.write(bytes(1 * MiB))         # explicit zeros: allocated in src, a hole in dst
    os.chmod(src, 0o640)
    dst = tmp_path / "copy.img"
    copy_sparse(str(src), str(dst))
    assert dst.stat().st_size == size
    assert oct(dst.stat().st_mode & 0o777) == "0o640"
    assert dst.stat().st_blocks * 512 <= 3 * 4096 + 64 * 1024
    assert allocated_bytes(str(dst)) < allocated_bytes(str(src))
    with open(src, "rb") as a, open(dst, "rb") as b:
        for off in (0, 300 * MiB, 500 * MiB, size - 4096):
            a.seek(off)
            b.seek(off)
            assert a.read(8192) == b.read(8192)


def test_copy_sparse_fallback_without_seek_data(tmp_path, monkeypatch):
    import errno

    import xenbundle.sparse as sparse_mod

    def no_seek_data(fd, size):
        raise OSError(errno.EINVAL, "SEEK_DATA unsupported")
        yield  # pragma: no cover

    monkeypatch.setattr(sparse_mod, "data_ranges", no_seek_data)
    src = tmp_path / "a"
    sparse_file(src, 64 * MiB, (10 * MiB,))
    dst = tmp_path / "b"
    sparse_mod.copy_sparse(str(src), str(dst))
    assert dst.read_bytes() == src.read_bytes()
    assert dst.stat().st_blocks * 512 <= 64 * 1024


def test_settings_callable_errors_are_reported_with_the_entry(deploy, rootfs):
    def settings(domain):
        raise BundleError([f"guest '{domain}': XEN_GUEST_MEMORY = \"lots\" is not a number"])

    msg = problems_of(deploy, rootfs, "xen-guest-image-minimal-qemuarm64.rootfs.ext4:Image",
                      settings=settings)
    assert ("guest 'xen-guest-image-minimal-qemuarm64': XEN_GUEST_MEMORY = \"lots\" is not a "
            "number (XEN_BUNDLED_GUESTS entry 1 ") in msg
