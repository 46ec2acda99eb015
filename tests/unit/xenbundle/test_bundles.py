"""Tests of bundle packages: the tree xenbundle.bundletree writes and the merge of
installed bundles (ours and meta-virtualization's layout) by the host's bundling.

Each hostile or broken staging tree must stop the merge with a message naming the
bundle, the file and the line, and leave the rootfs as it was.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from xenbundle import BundleError, bundle_guests, plan_bundle
from xenbundle.bundles import BUNDLES_DIR
from xenbundle.bundletree import build_bundle_tree
from xenbundle.recipeguests import RecipeGuests
from xenbundle.settings import MappingVariables
from xenbundle.xlcfg import parse

MiB = 1 << 20
STAGING = BUNDLES_DIR.lstrip("/")


def sparse(path: Path, size: int, data: bytes = b"data") -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(size)


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    d = tmp_path / "deploy"
    d.mkdir()
    for recipe in ("web", "db"):
        sparse(d / f"{recipe}-qemuarm64.rootfs-1.ext4", 16 * MiB, recipe.encode())
        (d / f"{recipe}-qemuarm64.rootfs.ext4").symlink_to(f"{recipe}-qemuarm64.rootfs-1.ext4")
    (d / "Image").write_bytes(b"kernel")
    return d


def tree_of(tmp_path: Path, deploy: Path, name: str, value: str, flags=None) -> Path:
    variables = MappingVariables({"XEN_GUEST_BUNDLES": value}, flags)
    guests = RecipeGuests(variables, "XEN_GUEST_BUNDLES", machine="qemuarm64",
                          kernel_imagetype="Image")
    tree = tmp_path / "packages" / name
    build_bundle_tree(str(tree), str(deploy), guests, log=lambda _m: None)
    return tree


@pytest.fixture
def host(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / STAGING).mkdir(parents=True)
    (r / "etc").mkdir()
    return r


def install(host: Path, tree: Path) -> Path:
    """What the package manager does: the bundle's files below the staging folder."""
    dest = host / STAGING / tree.name
    shutil.copytree(tree, dest, symlinks=True)
    return dest


def snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def merge(host: Path, deploy: Path, **kwargs):
    return bundle_guests(str(host), str(deploy), bundles_dir=BUNDLES_DIR, log=lambda _m: None,
                         **kwargs)


def merge_problems(host: Path, deploy: Path) -> list[str]:
    before = snapshot(host)
    with pytest.raises(BundleError) as info:
        merge(host, deploy)
    assert snapshot(host) == before, "a failed merge must leave the rootfs as it was"
    return info.value.problems


# ------------------------------------------------------------------ the tree


def test_tree_layout(tmp_path, deploy):
    tree = tree_of(tmp_path, deploy, "pair", "web:autostart db",
                   {"XEN_GUEST_MEMORY": {"db": "128"}})
    assert sorted(os.listdir(tree)) == ["checksums", "configs", "images", "manifest"]
    assert (tree / "manifest").read_text() == (
        "web:web-qemuarm64.rootfs.ext4:Image:autostart\ndb:db-qemuarm64.rootfs.ext4:Image:\n")
    assert sorted(os.listdir(tree / "images")) == [
        "Image", "db-qemuarm64.rootfs.ext4", "web-qemuarm64.rootfs.ext4"]
    db = parse((tree / "configs/db.cfg").read_text()).settings()
    assert db["memory"] == "128"
    assert db["disk"] == ["file:/var/lib/xen/images/db-qemuarm64.rootfs.ext4,xvda,rw"]
    assert db["kernel"] == "/var/lib/xen/images/Image"
    sums = (tree / "checksums").read_text().splitlines()
    assert [line.split("  ")[1] for line in sums] == [
        "images/Image", "images/db-qemuarm64.rootfs.ext4", "images/web-qemuarm64.rootfs.ext4",
        "configs/db.cfg", "configs/web.cfg", "manifest"]
    image = tree / "images/web-qemuarm64.rootfs.ext4"
    assert image.stat().st_blocks * 512 < MiB, "images in the bundle stay sparse"


def test_tree_of_no_guests_is_an_error(tmp_path, deploy):
    with pytest.raises(BundleError, match="XEN_GUEST_BUNDLES names no guest"):
        tree_of(tmp_path, deploy, "empty", "")


def test_tree_needs_an_empty_folder(tmp_path, deploy):
    (tmp_path / "packages/full").mkdir(parents=True)
    (tmp_path / "packages/full/x").write_text("x")
    with pytest.raises(BundleError, match="is not empty"):
        tree_of(tmp_path, deploy, "full", "web")


# ------------------------------------------------------------------ the merge


def test_two_bundles_merge_and_the_staging_folder_goes(tmp_path, deploy, host):
    install(host, tree_of(tmp_path, deploy, "first", "web:autostart"))
    install(host, tree_of(tmp_path, deploy, "second", "db"))
    result = merge(host, deploy)
    assert [g.name for g in result.guests] == ["web", "db"]
    assert not (host / STAGING).exists()
    assert (host / "usr/share").is_dir()
    assert sorted(os.listdir(host / "var/lib/xen/images")) == [
        "Image", "db-qemuarm64.rootfs.ext4", "web-qemuarm64.rootfs.ext4"]
    assert os.readlink(host / "etc/xen/auto/web.cfg") == "../web.cfg"
    assert not (host / "etc/xen/auto/db.cfg").exists()
    web = parse((host / "etc/xen/web.cfg").read_text()).settings()
    assert web["disk"] == ["file:/var/lib/xen/images/web-qemuarm64.rootfs.ext4,xvda,rw"]


def test_meta_virtualization_layout_without_checksums(tmp_path, deploy, host):
    """Their do_install's tree: manifest, images/, configs/ with final paths, no checksums."""
    bundle = host / STAGING / "theirs"
    (bundle / "images").mkdir(parents=True)
    (bundle / "configs").mkdir()
    shutil.copy(deploy / "web-qemuarm64.rootfs.ext4", bundle / "images")
    (bundle / "images/Image").write_bytes(b"kernel")
    (bundle / "configs/web.cfg").write_text(
        'name = "web"\nmemory = 1024\nvcpus = 1\n'
        "disk = ['file:/var/lib/xen/images/web-qemuarm64.rootfs.ext4,xvda,rw']\n"
        "vif = ['bridge=xenbr0']\n"
        'kernel = "/var/lib/xen/images/Image"\nextra = "root=/dev/xvda ro ip=dhcp"\n')
    (bundle / "manifest").write_text("web:web-qemuarm64.rootfs.ext4:Image:autostart\n")
    (result,) = merge(host, deploy).guests
    assert result.autostart_link == "etc/xen/auto/web.cfg"
    # Their configs already use the final paths: installed exactly as packaged.
    assert (host / "etc/xen/web.cfg").read_text() == (
        'name = "web"\nmemory = 1024\nvcpus = 1\n'
        "disk = ['file:/var/lib/xen/images/web-qemuarm64.rootfs.ext4,xvda,rw']\n"
        "vif = ['bridge=xenbr0']\n"
        'kernel = "/var/lib/xen/images/Image"\nextra = "root=/dev/xvda ro ip=dhcp"\n')
    assert not (host / STAGING).exists()


def test_shared_kernel_of_two_bundles_is_copied_once(tmp_path, deploy, host):
    install(host, tree_of(tmp_path, deploy, "a", "web"))
    install(host, tree_of(tmp_path, deploy, "b", "db"))
    merge(host, deploy)
    assert (host / "var/lib/xen/images/Image").read_bytes() == b"kernel"


def test_two_bundles_with_one_domain_name_both_named(tmp_path, deploy, host):
    install(host, tree_of(tmp_path, deploy, "a", "web"))
    install(host, tree_of(tmp_path, deploy, "b", "db", {"XEN_GUEST_NAME": {"db": "web"}}))
    found = merge_problems(host, deploy)
    assert any("domain name 'web' is also used by guest 'web' (bundle 'a'" in p
               and "bundle 'b'" in p for p in found), found


def test_bundle_and_entry_naming_one_guest(tmp_path, deploy, host):
    install(host, tree_of(tmp_path, deploy, "a", "web"))
    variables = MappingVariables({"BUNDLED_XEN_GUESTS": "web"})
    with pytest.raises(BundleError) as info:
        merge(host, deploy, recipe_guests=RecipeGuests(variables, machine="qemuarm64",
                                                       kernel_imagetype="Image"))
    assert any("domain name 'web'" in p and "BUNDLED_XEN_GUESTS entry 1 'web'" in p
               and "bundle 'a'" in p for p in info.value.problems)


def test_no_staging_folder_is_no_bundle(deploy, tmp_path):
    rootfs = tmp_path / "plain"
    rootfs.mkdir()
    plan = plan_bundle(str(rootfs), str(deploy), bundles_dir=BUNDLES_DIR)
    assert plan.guests == [] and plan.staging_dir is None


# ------------------------------------------------------------------ broken bundles


@pytest.fixture
def staged(tmp_path, deploy, host) -> Path:
    """One valid bundle of ours, installed in the host's staging folder."""
    return install(host, tree_of(tmp_path, deploy, "mine", "web:autostart"))


def drop_checksums(bundle: Path) -> None:
    (bundle / "checksums").unlink()


def test_a_changed_image_fails_its_checksum(staged, host, deploy):
    with open(staged / "images/Image", "ab") as f:
        f.write(b"!")
    (problem,) = merge_problems(host, deploy)
    assert problem.startswith(f"bundle 'mine' ({BUNDLES_DIR}/mine/images/Image) does not match "
                              "its checksum (checksums:1)")


def test_a_file_without_checksum(staged, host, deploy):
    (staged / "configs/extra.cfg").write_text('name = "x"\n')
    found = merge_problems(host, deploy)
    assert any("configs/extra.cfg) has no checksum in checksums" in p for p in found)


@pytest.mark.parametrize("line, message", [
    ("web:web-qemuarm64.rootfs.ext4:Image", "has 3 fields, not 4"),
    ("web:../../etc/shadow:Image:", "is not a file name in images/ (it would leave the bundle"),
    ("web:web-qemuarm64.rootfs.ext4:Image:yes", "flag 'yes' is neither 'autostart' nor empty"),
    ("web:missing.ext4:Image:", "rootfs 'missing.ext4' is not in images/"),
    ("../x:web-qemuarm64.rootfs.ext4:Image:", "guest name '../x' is not a plain name"),
    ("web:web-qemuarm64.rootfs.ext4:::", "has 5 fields"),
])
def test_malformed_manifest_lines_name_bundle_file_and_line(staged, host, deploy, line, message):
    drop_checksums(staged)
    (staged / "manifest").write_text("\n" + line + "\n")
    found = merge_problems(host, deploy)
    assert any(p.startswith(f"bundle 'mine' ({BUNDLES_DIR}/mine/manifest:2): ") and message in p
               for p in found), found


def test_a_guest_listed_twice(staged, host, deploy):
    drop_checksums(staged)
    line = "web:web-qemuarm64.rootfs.ext4:Image:autostart\n"
    (staged / "manifest").write_text(line * 2)
    found = merge_problems(host, deploy)
    assert any("manifest:2): guest 'web' is already listed on line 1" in p for p in found)


@pytest.mark.parametrize("config, message", [
    ('name = "web"\nmemory = = 1\n', "configs/web.cfg:2): "),
    (('name = "web"\nkernel = "/etc/passwd"\n'
     "disk = ['file:/var/lib/xen/images/web-qemuarm64.rootfs.ext4,xvda,rw']\n"),
     "'/etc/passwd' is not a file of the bundle (it leaves /var/lib/xen/images)"),
    (('name = "web"\nkernel = "/var/lib/xen/images/../../../etc/passwd"\n'
     "disk = ['file:/var/lib/xen/images/web-qemuarm64.rootfs.ext4,xvda,rw']\n"),
     "is not a file of the bundle (it leaves /var/lib/xen/images)"),
    (('name = "web"\nkernel = "/var/lib/xen/images/vmlinuz"\n'
     "disk = ['file:/var/lib/xen/images/web-qemuarm64.rootfs.ext4,xvda,rw']\n"),
     "is not carried by the bundle (no images/vmlinuz)"),
    (('name = "web"\nkernel = "/var/lib/xen/images/Image"\n'
     "disk = ['file:/var/lib/xen/images/Image,xvda,rw']\n"),
     "the rootfs 'web-qemuarm64.rootfs.ext4' is not a disk of configs/web.cfg"),
])
def test_config_problems_name_bundle_file_and_line(staged, host, deploy, config, message):
    drop_checksums(staged)
    (staged / "configs/web.cfg").write_text(config)
    found = merge_problems(host, deploy)
    assert any(message in p for p in found), found
    assert all(p.startswith("bundle 'mine' (") for p in found), found


@pytest.mark.parametrize("where", ["images/evil", "configs/evil.cfg", "evil"])
def test_a_symlink_in_the_staging_tree_is_an_error(staged, host, deploy, where):
    os.symlink("/etc/shadow", staged / where)
    found = merge_problems(host, deploy)
    assert any(f"({BUNDLES_DIR}/mine/{where}) is a symlink" in p for p in found), found


def test_a_symlinked_bundle_folder_is_refused(tmp_path, host, deploy):
    os.symlink(tmp_path, host / STAGING / "link")
    (problem,) = merge_problems(host, deploy)
    assert f"{BUNDLES_DIR}/link is a symlink" in problem


def test_a_symlinked_staging_folder_is_refused(tmp_path, deploy):
    rootfs = tmp_path / "r"
    (rootfs / "usr/share").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", rootfs / STAGING)
    with pytest.raises(BundleError, match="is reached through a symlink in the rootfs"):
        plan_bundle(str(rootfs), str(deploy), bundles_dir=BUNDLES_DIR)


def test_special_files_and_unexpected_entries(staged, host, deploy):
    os.mkfifo(staged / "images/fifo")
    (staged / "README").write_text("x")
    (staged / "images/sub").mkdir()
    found = merge_problems(host, deploy)
    assert any("images/fifo) is a special file" in p for p in found)
    assert any("mine/README) is not part of the bundle layout" in p for p in found)
    assert any("images/sub) is a folder" in p for p in found)


def test_a_bundle_without_manifest(staged, host, deploy):
    (staged / "manifest").unlink()
    drop_checksums(staged)
    found = merge_problems(host, deploy)
    assert any("has no manifest: it is not a guest bundle" in p for p in found)


def test_an_unused_image(staged, host, deploy):
    drop_checksums(staged)
    (staged / "images/leftover.img").write_bytes(b"x")
    (problem,) = merge_problems(host, deploy)
    assert "images/leftover.img) is used by no guest of the manifest" in problem


def test_a_file_in_the_staging_folder_itself(host, deploy):
    (host / STAGING / "stray").write_text("x")
    (problem,) = merge_problems(host, deploy)
    assert problem.startswith(f"{BUNDLES_DIR}/stray is a file")


def test_reference_target_path_without_bitbake(tmp_path, deploy, host):
    """What a builder without BitBake calls: import an archive, build the bundle tree,
    install it below the rootfs's staging folder, bundle it with a recipe entry."""
    import io
    import tarfile

    from xenbundle.imports import ImportTools, import_entries
    source = tmp_path / "sources"
    source.mkdir()
    with tarfile.open(source / "rootfs.tar", "w") as archive:
        info = tarfile.TarInfo("./etc/hostname")
        info.size = 6
        archive.addfile(info, io.BytesIO(b"guest\n"))
    variables = MappingVariables({"XEN_GUEST_BUNDLES": "imported:autostart"}, {
        "XEN_GUEST_SOURCE_TYPE": {"imported": "rootfs_dir"},
        "XEN_GUEST_SOURCE_FILE": {"imported": "rootfs.tar"}})
    tools = ImportTools(*(shutil.which(n, path="/usr/sbin:/sbin:/usr/bin")
                          for n in ("mkfs.ext4", "debugfs", "qemu-img")))
    import_entries(variables, "XEN_GUEST_BUNDLES", str(source), str(tmp_path / "imports"),
                   tools=tools, log=lambda _m: None)
    guests = RecipeGuests(variables, "XEN_GUEST_BUNDLES", machine="qemuarm64",
                          kernel_imagetype="Image", unpack_dir=str(source),
                          import_dir=str(tmp_path / "imports"), imports_allowed=True)
    tree = tmp_path / "packages" / "reference-guests"
    build_bundle_tree(str(tree), str(deploy), guests, log=lambda _m: None)
    install(host, tree)
    result = merge(host, deploy, recipe_guests=RecipeGuests(
        MappingVariables({"BUNDLED_XEN_GUESTS": "web:autostart"}), machine="qemuarm64",
        kernel_imagetype="Image"))
    assert sorted(g.name for g in result.guests) == ["imported", "web"]
    assert sorted(os.listdir(host / "etc/xen/auto")) == ["imported.cfg", "web.cfg"]
    assert not (host / STAGING).exists()


# ------------------------------------------------------------------ the Xen version


def test_bundle_configs_are_checked_for_the_hosts_xen(staged, host, deploy):
    """A bundle's config is checked with the grammar of the Xen the host installs: a disk
    keyword of Xen 4.19 fails a 4.17 host and merges on a 4.19 host."""
    drop_checksums(staged)
    cfg = staged / "configs/web.cfg"
    cfg.write_text(cfg.read_text().replace(",xvda,rw", ",xvda,rw,grant_usage=1"))
    before = snapshot(host)
    with pytest.raises(BundleError) as info:
        merge(host, deploy, xen_version="4.17")
    assert snapshot(host) == before
    assert any("grant_usage" in p and "4.19" in p for p in info.value.problems), info.value.problems
    result = merge(host, deploy, xen_version="4.19")
    assert [g.name for g in result.guests] == ["web"]


def test_recipe_entry_custom_config_is_checked_for_the_hosts_xen(tmp_path, deploy, host):
    """XEN_GUEST_CONFIG_FILE of a BUNDLED_XEN_GUESTS entry goes through the same version check."""
    custom = tmp_path / "web.cfg"
    custom.write_text('name = "web"\nkernel = "Image"\ntrap_unmapped_accesses = 1\n'
                      "disk = ['file:web.ext4,xvda,rw']\n")
    guests = RecipeGuests(MappingVariables({"BUNDLED_XEN_GUESTS": "web"},
                                           {"XEN_GUEST_CONFIG_FILE": {"web": str(custom)}}),
                          machine="qemuarm64", kernel_imagetype="Image")
    with pytest.raises(BundleError) as info:
        bundle_guests(str(host), str(deploy), recipe_guests=guests, xen_version="4.20",
                      log=lambda _m: None)
    assert any("trap_unmapped_accesses" in p and "4.21" in p for p in info.value.problems)
    result = bundle_guests(str(host), str(deploy), recipe_guests=guests, xen_version="4.21",
                           log=lambda _m: None)
    assert [g.name for g in result.guests] == ["web"]
