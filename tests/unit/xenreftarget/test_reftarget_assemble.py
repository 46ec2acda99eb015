"""Root file system assembly: merged /usr, package filtering, module order, ext4 images."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from xenreftarget import assemble, initscripts


@pytest.mark.parametrize("path, merged", [
    ("bin/bash", "usr/bin/bash"), ("sbin/losetup", "usr/sbin/losetup"),
    ("lib/aarch64-linux-gnu/libc.so.6", "usr/lib/aarch64-linux-gnu/libc.so.6"),
    ("lib", "usr/lib"), ("./etc/xen/xl.conf", "etc/xen/xl.conf"), ("usr/lib/x", "usr/lib/x"),
    ("library/x", "library/x"),
])
def test_merged_usr_paths(path, merged):
    assert assemble.merged_usr_path(path) == merged


def test_documentation_and_boot_files_are_left_out():
    assert assemble.is_excluded("usr/share/doc/bash/copyright")
    assert assemble.is_excluded("usr/lib/xen-4.17/lib/python/xen/util.py")
    assert assemble.is_excluded("usr/lib/xen-4.20/lib/python")          # any Xen generation
    assert assemble.is_excluded("usr/lib/aarch64-linux-gnu/gconv/UTF-16.so")
    assert assemble.is_excluded("usr/lib/x86_64-linux-gnu/gconv")       # any architecture
    assert assemble.is_excluded("usr/lib/udev/hwdb.d/20-pci-vendor-model.hwdb")
    assert assemble.is_excluded("etc/init.d/xendomains")
    assert not assemble.is_excluded("usr/lib/xen-4.17/bin/xl")
    assert not assemble.is_excluded("usr/lib/udev/rules.d/99-systemd.rules")
    assert assemble.is_excluded("boot/xen-4.17-arm64")
    assert not assemble.is_excluded("usr/share/udhcpc/default.script")
    assert not assemble.is_excluded("usr/share/documents")


def test_show_depends_output_becomes_relative_module_paths():
    out = ("builtin crc32c\n"
           "insmod /k/lib/modules/6.1/kernel/fs/jbd2/jbd2.ko \n"
           "insmod /k/./lib/modules/6.1/kernel/fs/ext4/ext4.ko  \n")
    assert assemble.parse_show_depends(out, "/k/lib/modules/6.1") == [
        "kernel/fs/jbd2/jbd2.ko", "kernel/fs/ext4/ext4.ko"]
    with pytest.raises(assemble.AssembleError, match="outside"):
        assemble.parse_show_depends("insmod /elsewhere/x.ko\n", "/k/lib/modules/6.1")


def test_unique_keeps_first_occurrence():
    assert assemble.unique(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def _package(tmp_path: Path, name: str, files: dict) -> Path:
    root = tmp_path / "pkgs" / name
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith("->"):
            path.symlink_to(content[2:])
        else:
            path.write_text(content)
    return root


def test_package_trees_are_merged_filtered_and_symlinks_kept(tmp_path):
    root = tmp_path / "root"
    assemble.base_tree(root)
    bash = _package(tmp_path, "bash", {"bin/bash": "ELF", "usr/share/doc/bash/README": "doc",
                                       "bin/rbash": "->bash"})
    util = _package(tmp_path, "util-linux", {"usr/bin/flock": "ELF", "bin/mount": "ELF",
                                             "usr/bin/lsblk": "ELF"})
    assemble.install_package_tree("bash", bash, root)
    assemble.install_package_tree("util-linux", util, root)
    assert (root / "bin/bash").read_text() == "ELF"  # through the bin -> usr/bin link
    assert os.readlink(root / "usr/bin/rbash") == "bash"
    assert not (root / "usr/share/doc").exists()
    assert (root / "usr/bin/flock").exists() and (root / "usr/bin/lsblk").exists()
    assert (root / "usr/bin/mount").exists()


def test_base_tree_has_root_with_empty_password_and_init_files(tmp_path):
    root = tmp_path / "root"
    assemble.base_tree(root, hostname="guest1")
    assert (root / "etc/passwd").read_text().startswith("root::0:0:")
    assert (root / "etc/hostname").read_text() == "guest1\n"
    assert os.readlink(root / "var/lock") == "../run/lock"
    assert os.readlink(root / "bin") == "usr/bin"
    script = root / initscripts.UDHCPC_SCRIPT.lstrip("/")
    assert os.access(script, os.X_OK)


def test_install_busybox_provides_init_and_sh(tmp_path):
    unpacked = _package(tmp_path, "busybox-static", {"bin/busybox": "ELF"})
    root = tmp_path / "root"
    assemble.base_tree(root)
    assemble.install_busybox(unpacked, root)
    assert (root / "sbin/init").resolve() == (root / "usr/bin/busybox").resolve()
    assert os.readlink(root / "usr/bin/sh") == "busybox"


@pytest.mark.skipif(not (shutil.which("mkfs.ext4") or os.path.exists("/usr/sbin/mkfs.ext4")),
                    reason="e2fsprogs is a declared host requirement; checked by the CLI")
def test_make_ext4_contains_the_tree(tmp_path):
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("guest1\n")
    (tree / "bin").symlink_to("usr/bin")
    image = tmp_path / "root.ext4"
    size = assemble.make_ext4(tree, image, label="test", size_bytes=16 << 20)
    assert image.stat().st_size == size == 16 << 20
    debugfs = shutil.which("debugfs") or "/usr/sbin/debugfs"
    cat = subprocess.run([debugfs, "-R", "cat /etc/hostname", str(image)], check=False, capture_output=True,
                         text=True)
    assert cat.stdout == "guest1\n"
    link = subprocess.run([debugfs, "-R", "stat /bin", str(image)], check=False, capture_output=True,
                          text=True)
    assert "Type: symlink" in link.stdout and 'Fast link dest: "usr/bin"' in link.stdout


def test_default_ext4_size_leaves_room_for_the_content(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "big").write_bytes(b"x" * (3 << 20))
    content = assemble.apparent_size(tree)
    assert content >= 3 << 20
    size = assemble.make_ext4(tree, tmp_path / "img.ext4", label="t")
    assert size >= content + content // 4


def test_a_packaged_folder_does_not_replace_a_layout_link(tmp_path):
    # base-files ships var/lock and var/run as folders; the layout keeps them links into /run.
    root = tmp_path / "root"
    assemble.base_layout(root)
    base_files = tmp_path / "pkgs/base-files"
    (base_files / "var/lock").mkdir(parents=True)
    (base_files / "var/run").mkdir(parents=True)
    (base_files / "etc").mkdir()
    (base_files / "etc/profile").write_text("Debian's profile\n")
    assemble.install_package_tree("base-files", base_files, root)
    assert os.readlink(root / "var/lock") == "../run/lock"
    assert os.readlink(root / "var/run") == "../run"
    assemble.base_config(root, "dom0", init="systemd")
    assert (root / "etc/profile").read_text().startswith("export PATH=")   # ours wins
    assert "systemd" in (root / "etc/fstab").read_text()


def test_trixie_base_files_usrmerge_links_keep_the_trees_folders(tmp_path):
    # Since trixie base-files ships bin -> usr/bin, lib -> usr/lib, sbin -> usr/sbin itself.
    root = tmp_path / "root"
    assemble.base_layout(root)
    base_files = _package(tmp_path, "base-files", {"bin": "->usr/bin", "lib": "->usr/lib",
                                                   "sbin": "->usr/sbin", "etc/debian_version": "13.2"})
    assemble.install_package_tree("base-files", base_files, root)
    assert (root / "usr/bin").is_dir() and not (root / "usr/bin").is_symlink()
    assert (root / "usr/lib").is_dir() and not (root / "usr/lib").is_symlink()
    assert os.readlink(root / "bin") == "usr/bin"
    assert (root / "etc/debian_version").read_text() == "13.2"
    other = _package(tmp_path, "odd", {"bin": "->elsewhere"})
    assert not assemble.is_usrmerge_alias(other / "bin", other)


def test_busybox_is_found_below_usr_in_trixies_package(tmp_path):
    unpacked = _package(tmp_path, "busybox-static", {"usr/bin/busybox": "ELF 1.37"})
    assert assemble.package_file(unpacked, "bin/busybox") == unpacked / "usr/bin/busybox"
    root = tmp_path / "root"
    assemble.base_tree(root)
    assemble.install_busybox(unpacked, root)
    assert (root / "usr/bin/busybox").read_text() == "ELF 1.37"
    bookworm = _package(tmp_path / "b", "busybox-static", {"bin/busybox": "ELF 1.35"})
    assert assemble.package_file(bookworm, "bin/busybox") == bookworm / "bin/busybox"
    with pytest.raises(assemble.AssembleError, match="no bin/busybox or usr/bin/busybox"):
        assemble.install_busybox(tmp_path / "empty", root)


def test_trixie_kernel_modules_below_usr_lib(tmp_path):
    tree = assemble.KernelTree(tmp_path, "6.12.118+deb13-arm64", tmp_path / "usr")
    assert tree.modules_dir == tmp_path / "usr/lib/modules/6.12.118+deb13-arm64"
    assert tree.image == tmp_path / "boot/vmlinuz-6.12.118+deb13-arm64"
    bookworm = assemble.KernelTree(tmp_path, "6.1.0-56-arm64")
    assert bookworm.modules_dir == tmp_path / "lib/modules/6.1.0-56-arm64"
