"""Build orchestration: reuse when current, rebuild on changes, atomic publication."""

import os

import pytest
from reftarget_helpers import record
from xenreftarget import build, compatguests, stamp


class FakeApt:
    """Stands in for the private apt state: fixed records, downloads are empty files."""

    def __init__(self, records):
        self.records = records

    def ensure_lists(self):
        pass

    def resolve(self):
        return list(self.records)

    def download(self, records, debs_dir):
        debs_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for r in records:
            (debs_dir / r.deb_name).write_bytes(b"")
            paths[r.name] = debs_dir / r.deb_name
        return paths


@pytest.fixture
def assembled(monkeypatch):
    """Replace the real assembly with one that writes small files and counts its calls."""
    calls = []

    def fake_assemble(work, deploy, records, debs, boot, timer, log, distro, machine=build.ARM64):
        calls.append(deploy)
        if getattr(fake_assemble, "fail", False):
            (deploy / machine.kernel).write_bytes(b"half")
            raise RuntimeError("mkfs.ext4 killed")
        (deploy / machine.kernel).write_bytes(b"kernel")
        (deploy / machine.host_rootfs).write_bytes(b"rootfs")
        return [{"name": "g1", "config": "/etc/xen/g1.cfg", "files": [], "origin": "x", "autostart": False},
                {"name": "g2", "config": "/etc/xen/g2.cfg", "files": [], "origin": "y", "autostart": True}]

    monkeypatch.setattr(build, "_assemble", fake_assemble)
    monkeypatch.setattr(build, "missing_host_tools", lambda arch="arm64": [])
    # the dom0less device tree needs QEMU and the real files (tests/unit/xenreftarget/test_reftarget_dom0less.py)
    monkeypatch.setattr(build.dom0less, "boot_variables", lambda boot, deploy, work: {})
    monkeypatch.setattr(build.dom0less, "no_dom0_variables", lambda boot, deploy, work: {"QB_ROOTFS": "none"})
    return fake_assemble, calls


def _records(sha="a" * 64):
    return [record("busybox-static", "1", sha), record("linux-image-6.1.0-56-arm64", "6.1")]


def _build(cache, records=None, **kw):
    return build.build_target(cache, apt=FakeApt(records or _records()), log=lambda m: None, **kw)


def test_first_build_publishes_a_complete_deploy_folder(tmp_path, assembled):
    target = _build(tmp_path)
    assert target.rebuilt
    link = tmp_path / "target"
    assert link.is_symlink()
    assert target.qemuboot_conf.read_text().startswith("[config_bsp]")
    assert os.readlink(link / build.QEMUBOOT_CONF_LINK) == build.QEMUBOOT_CONF
    manifest = stamp.read_manifest(link)
    assert manifest["guests"][0]["name"] == "g1"
    assert manifest["autostart"] == ["g2"]
    assert manifest["dom0_init"] == "systemd"
    assert manifest["shutdown_marker"] == "/var/log/xen-ref-shutdown"
    assert manifest["distro"] == {"suite": "bookworm", "arch": "arm64", "xen": "4.17"}
    assert manifest["kernel_release"] == "6.1.0-56-arm64"
    assert set(manifest["files"]) == {build.KERNEL, build.HOST_ROOTFS, build.QEMUBOOT_CONF,
                                      build.dom0less.NO_DOM0_QEMUBOOT_CONF}


def test_unchanged_inputs_reuse_the_build(tmp_path, assembled):
    _, calls = assembled
    _build(tmp_path)
    again = _build(tmp_path)
    assert not again.rebuilt and len(calls) == 1
    forced = _build(tmp_path, force=True)
    assert forced.rebuilt and len(calls) == 2


def test_changed_package_rebuilds_and_drops_the_old_build(tmp_path, assembled):
    _, calls = assembled
    first = (tmp_path / "target").resolve()
    _build(tmp_path)
    first = (tmp_path / "target").resolve()
    _build(tmp_path, records=_records(sha="b" * 64))
    assert len(calls) == 2
    assert (tmp_path / "target").resolve() != first
    assert not first.exists()
    assert len(list((tmp_path / "builds").iterdir())) == 1


def test_damaged_output_rebuilds(tmp_path, assembled):
    _, calls = assembled
    _build(tmp_path)
    (tmp_path / "target" / build.KERNEL).unlink()
    assert _build(tmp_path).rebuilt and len(calls) == 2


def test_interrupted_build_leaves_the_previous_target_untouched(tmp_path, assembled):
    fake, _ = assembled
    _build(tmp_path)
    before = (tmp_path / "target").resolve()
    kernel = (before / build.KERNEL).read_bytes()
    fake.fail = True
    with pytest.raises(RuntimeError, match="mkfs.ext4 killed"):
        _build(tmp_path, records=_records(sha="c" * 64))
    assert (tmp_path / "target").resolve() == before
    assert (before / build.KERNEL).read_bytes() == kernel
    assert [p.name for p in (tmp_path / "builds").iterdir()] == [before.name]


def test_interrupted_first_build_leaves_no_target(tmp_path, assembled):
    fake, _ = assembled
    fake.fail = True
    with pytest.raises(RuntimeError):
        _build(tmp_path)
    assert not (tmp_path / "target").exists()
    assert list((tmp_path / "builds").iterdir()) == []
    with pytest.raises(build.BuildError, match="xen-ref-target build"):
        build.current_reference_target(tmp_path)


def test_white_space_in_the_cache_path_is_refused(tmp_path, assembled):
    with pytest.raises(build.BuildError, match="white space"):
        _build(tmp_path / "my cache")


def test_missing_host_tools_stop_the_build(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "missing_host_tools",
                        lambda arch="arm64": ["mkfs.ext4 is missing: install it with 'apt-get install e2fsprogs'"])
    with pytest.raises(build.BuildError, match="apt-get install e2fsprogs"):
        _build(tmp_path)


def test_default_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("XEN_REF_CACHE", str(tmp_path / "explicit"))
    assert build.default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("XEN_REF_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build.default_cache_dir() == tmp_path / "xdg" / "meta-xen-ref" / "reftarget"


def test_every_guest_has_its_own_disk_and_name():
    assert len({g.disk for g in build.GUESTS}) == len(build.GUESTS)
    assert len({g.name for g in build.GUESTS}) == len(build.GUESTS)
    assert {g.form for g in build.GUESTS} == {"XEN_BUNDLED_GUESTS", "deploy-config", "auto-bundle"}


def test_one_dedicated_guest_starts_at_boot():
    autostart = [g for g in build.GUESTS if g.autostart]
    assert len(autostart) == 1 and autostart[0].form == "XEN_BUNDLED_GUESTS"
    # one guest per bundling form is left for the lifecycle check's xl create -c
    assert {g.form for g in build.GUESTS if not g.autostart} == {
        "XEN_BUNDLED_GUESTS", "deploy-config", "auto-bundle"}


def test_the_bundler_links_the_autostart_guest_and_the_manifest_says_so(tmp_path, monkeypatch):
    # meta-virtualization's forms alone: test_reftarget_compatguests.py (all guests together)
    monkeypatch.setattr(compatguests, "bundle_arguments", dict)
    deploy, root = tmp_path / "deploy", tmp_path / "dom0"
    deploy.mkdir()
    root.mkdir()
    for name in (build.KERNEL, build.INITRD) + tuple(g.disk for g in build.GUESTS):
        (deploy / name).write_bytes(b"x" * 4096)
    for spec in build.GUESTS:
        if spec.form == "deploy-config":
            (deploy / spec.config).write_text(build.deploy_config_text(spec, "test"))
        elif spec.form == "auto-bundle":
            (deploy / spec.config).write_text(build._auto_bundle_config(spec))
    guests = {g["name"]: g for g in build._bundle(root, deploy, lambda m: None, "4.17")}
    assert set(guests) == {g.name for g in build.GUESTS}
    for spec in build.GUESTS:
        guest = guests[spec.name]
        assert guest["autostart"] is spec.autostart
        assert guest["disk"] == f"/var/lib/xen/images/{spec.disk}"
        assert (root / guest["disk"].lstrip("/")).is_file()
        if spec.autostart:
            link = root / guest["autostart_link"].lstrip("/")
            assert guest["autostart_link"].startswith("/etc/xen/auto/")
            assert os.readlink(link) == "../" + os.path.basename(guest["config"])
        else:
            assert guest["autostart_link"] is None
    assert len(list((root / "etc/xen/auto").iterdir())) == 1


def test_third_party_config_carries_ramdisk_extra_vif_and_memory():
    spec = next(g for g in build.GUESTS if g.form == "deploy-config")
    from xenbundle import xlcfg
    settings = xlcfg.parse(build.deploy_config_text(spec, "test")).settings()
    assert settings["ramdisk"] == build.INITRD
    assert settings["extra"] == build.GUEST_EXTRA
    assert settings["vif"] == ["bridge=xenbr0"]
    assert settings["memory"] == str(build.GUEST_MEMORY_MB)
    assert settings["disk"] == [f"file:{spec.disk},xvda,rw"]


TRIXIE = build.Distro("trixie", "arm64")


def test_each_suite_keeps_its_own_target(tmp_path, assembled):
    _, calls = assembled
    bookworm = _build(tmp_path)
    trixie = _build(tmp_path, distro=TRIXIE)
    assert len(calls) == 2
    assert bookworm.deploy_dir == tmp_path / "target"
    assert trixie.deploy_dir == tmp_path / "trixie-arm64" / "target"
    assert trixie.manifest["distro"] == {"suite": "trixie", "arch": "arm64", "xen": "4.20"}
    assert bookworm.deploy_dir.resolve().exists(), "building trixie must not drop bookworm's build"
    assert not _build(tmp_path).rebuilt and not _build(tmp_path, distro=TRIXIE).rebuilt
    assert build.current_reference_target(tmp_path).manifest["distro"]["xen"] == "4.17"
    assert build.current_reference_target(tmp_path, TRIXIE).manifest["distro"]["xen"] == "4.20"
    assert len(calls) == 2


def test_a_missing_trixie_target_names_the_build_command(tmp_path, assembled):
    _build(tmp_path)
    with pytest.raises(build.BuildError, match="no Debian trixie/arm64 reference target .* "
                                              "'xen-ref-target build --debian trixie'"):
        build.current_reference_target(tmp_path, TRIXIE)


def test_a_target_of_another_suite_is_not_taken_for_this_one(tmp_path, assembled):
    _build(tmp_path, distro=TRIXIE)
    (tmp_path / "target").symlink_to(os.readlink(tmp_path / "trixie-arm64/target").replace(
        "builds", "trixie-arm64/builds", 1))
    with pytest.raises(build.BuildError, match="holds a Debian trixie/arm64 build, not bookworm/arm64"):
        build.current_reference_target(tmp_path)


def _deploy_with_a_trusted_disk(tmp_path):
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for name in [spec.disk for spec in build.GUESTS] + [build.KERNEL, build.INITRD, "x.ext4"]:
        (deploy / name).write_bytes(b"\0" * 4096)
    # 'trusted' is a disk keyword of Xen 4.19: bookworm's xl 4.17 says "target respecified".
    (deploy / "xen-guest-bundle-x.cfg").write_text(
        'name = "x"\ntype = "pvh"\nmemory = 64\nkernel = "Image"\n'
        "disk = [ 'format=raw,vdev=xvda,access=rw,trusted,target=x.ext4' ]\n")
    return deploy


@pytest.mark.parametrize("distro, accepted", [(build.Distro(), False), (TRIXIE, True)])
def test_the_bundler_checks_configs_for_the_suites_xen(tmp_path, monkeypatch, distro, accepted):
    deploy = _deploy_with_a_trusted_disk(tmp_path)
    # only the deploy-dir config here: meta-virtualization's forms have their own tests
    from xenreftarget import compatguests
    monkeypatch.setattr(compatguests, "bundle_arguments", dict)
    dom0_root = tmp_path / "dom0"
    (dom0_root / "etc/xen/auto").mkdir(parents=True)
    if accepted:
        guests = build._bundle(dom0_root, deploy, lambda m: None, distro.xen_version)
        assert "x" in [g["name"] for g in guests]
    else:
        with pytest.raises(build.BuildError, match=r"trusted.*4\.19.*4\.17"):
            build._bundle(dom0_root, deploy, lambda m: None, distro.xen_version)
