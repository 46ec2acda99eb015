"""The private apt state: sources derived from the machine's, options, stand-ins, resolution, download."""

import hashlib
import os
from pathlib import Path

import pytest
from reftarget_helpers import record, without_options
from xenreftarget import apt
from xenreftarget.apt import PrivateApt
from xenreftarget.packages import Distro, PackageError, parse_control_stanzas

#: This build machine's own /etc/apt/sources.list.d/debian.sources (Debian 12's default form).
MACHINE_SOURCES = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def test_deb822_sources_are_parsed_with_comments_and_options():
    entries = apt.parse_deb822_sources(MACHINE_SOURCES, "debian.sources")
    assert [e.suites for e in entries] == [("bookworm", "bookworm-updates"), ("bookworm-security",)]
    assert entries[0].uris == ("http://deb.debian.org/debian",)
    assert entries[1].option("signed-by") == "/usr/share/keyrings/debian-archive-keyring.gpg"
    assert entries[1].origin == "debian.sources:8"


def test_disabled_stanzas_are_skipped_and_broken_ones_name_the_line():
    text = "Types: deb\nURIs: http://x/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n" \
           "Types: deb\nSuites: bookworm\n"
    with pytest.raises(PackageError, match=r"f.sources:7: the source lacks uris"):
        apt.parse_deb822_sources(text, "f.sources")
    assert apt.parse_deb822_sources(text.split("\n\n")[0], "f.sources") == []
    with pytest.raises(PackageError, match="f.sources:2: 'no colon here' is not 'Field: value'"):
        apt.parse_deb822_sources("Types: deb\nno colon here\n", "f.sources")


def test_one_line_sources_keep_their_options():
    text = ("# comment\n"
            "deb [arch=amd64,arm64 signed-by=/k.gpg] http://deb.debian.org/debian bookworm main contrib\n"
            "deb-src http://deb.debian.org/debian bookworm main  # trailing comment\n")
    entries = apt.parse_one_line_sources(text, "sources.list")
    assert entries[0].types == ("deb",) and entries[0].components == ("main", "contrib")
    assert entries[0].option("Signed-By") == "/k.gpg"
    assert entries[0].option("Architectures") == "amd64 arm64"
    assert entries[1].types == ("deb-src",) and entries[1].origin == "sources.list:3"
    with pytest.raises(PackageError, match="sources.list:1: .* needs a URI and a suite"):
        apt.parse_one_line_sources("deb http://x/debian\n", "sources.list")


def test_machine_sources_come_from_every_enabled_file(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://ftp.de.debian.org/debian bookworm main\n")
    (tmp_path / "sources.list.d/debian.sources").write_text(MACHINE_SOURCES)
    (tmp_path / "sources.list.d/other.list.disabled-by-farm").write_text("deb http://x/y z main\n")
    entries = apt.read_machine_sources(tmp_path)
    assert [e.uris[0] for e in entries] == ["http://ftp.de.debian.org/debian",
                                            "http://deb.debian.org/debian",
                                            "http://deb.debian.org/debian-security"]


@pytest.mark.parametrize("suite, expected", [
    ("bookworm", "trixie"), ("bookworm-updates", "trixie-updates"),
    ("bookworm-security", "trixie-security"), ("bookworm/updates", "trixie/updates"),
    ("stable", None), ("sid", None), ("bookwormish", None),
])
def test_only_the_suite_name_changes(suite, expected):
    assert apt.retarget_suite(suite, "bookworm", "trixie") == expected


def test_derived_sources_keep_uris_and_keyring_and_change_only_suite_and_architecture():
    entries = apt.parse_deb822_sources(MACHINE_SOURCES, "debian.sources")
    text = apt.derive_sources(entries, "bookworm", "trixie", "arm64")
    derived = apt.parse_deb822_sources(text, "derived")
    assert [(e.uris, e.suites, e.components) for e in derived] == [
        (("http://deb.debian.org/debian",), ("trixie", "trixie-updates"), ("main",)),
        (("http://deb.debian.org/debian-security",), ("trixie-security",), ("main",))]
    for entry in derived:
        assert entry.option("Architectures") == "arm64"
        assert entry.option("Signed-By") == "/usr/share/keyrings/debian-archive-keyring.gpg"
    assert "# derived from debian.sources:1" in text
    # No address appears that the machine's sources do not have.
    assert {u for e in derived for u in e.uris} <= {u for e in entries for u in e.uris}


def test_derivation_skips_foreign_archives_and_source_entries():
    entries = apt.parse_one_line_sources(
        "deb https://deb.nodesource.com/node_20.x bookworm main\n"
        "deb-src http://deb.debian.org/debian bookworm main\n"
        "deb http://deb.debian.org/debian bookworm contrib\n"
        "deb http://mirror.example.org/debian/ bookworm main\n", "sources.list")
    text = apt.derive_sources(entries, "bookworm", "bookworm", "arm64")
    assert [e.uris for e in apt.parse_deb822_sources(text, "d")] == [("http://mirror.example.org/debian/",)]
    with pytest.raises(PackageError, match="name no Debian 'bookworm' suite"):
        apt.derive_sources(entries[:3], "bookworm", "bookworm", "arm64")


def test_inline_keys_survive_derivation():
    key = "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBF\n -----END PGP PUBLIC KEY BLOCK-----\n"
    text = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n" + key
    derived = apt.derive_sources(apt.parse_deb822_sources(text, "k.sources"), "bookworm", "trixie", "arm64")
    assert key in derived
    again = apt.parse_deb822_sources(derived, "d")[0]
    assert again.option("Signed-By") == apt.parse_deb822_sources(text, "k")[0].option("Signed-By")


def test_os_release_codename():
    assert apt.os_release_codename('NAME="Debian"\nVERSION_CODENAME=bookworm\n') == "bookworm"
    assert apt.os_release_codename('VERSION_CODENAME="trixie"\n') == "trixie"
    assert apt.os_release_codename("ID=debian\n") == ""


def test_options_confine_apt_to_the_state_folder(tmp_path):
    options = apt.apt_options(tmp_path, "arm64")
    pairs = dict(o.split("=", 1) for o in options[1::2])
    assert all(options[i] == "-o" for i in range(0, len(options), 2))
    for key, value in pairs.items():
        if key.startswith("Dir::"):
            assert value.startswith(str(tmp_path)), key
    for key in ("Dir::State::status", "Dir::Etc::sourcelist", "Dir::Etc::sourceparts", "Dir::Cache",
                "Dir::State::Lists", "Dir::Etc::preferencesparts"):
        assert key in pairs
    assert pairs["APT::Architecture"] == pairs["APT::Architectures"] == "arm64"
    assert pairs["APT::Install-Recommends"] == "false"


def test_stand_ins_are_declared_installed_with_multiarch_and_provides():
    text = apt.stub_status([record("python3", "3.11.2-1+b1"), record("debconf", "1.5.82")],
                           {"python3": {"Multi-Arch": "allowed"}, "debconf": {"Provides": "debconf-2.0"}})
    stanzas = parse_control_stanzas(text)
    assert [s["Package"] for s in stanzas] == ["python3", "debconf"]
    assert all(s["Status"] == "install ok installed" for s in stanzas)
    assert stanzas[0]["Multi-Arch"] == "allowed" and stanzas[0]["Version"] == "3.11.2-1+b1"
    assert stanzas[1]["Provides"] == "debconf-2.0" and "Multi-Arch" not in stanzas[1]
    assert apt.stub_status([], {}) == ""


def test_print_uris_give_names_and_versions_with_epochs():
    output = ("'http://deb.debian.org/debian/pool/main/g/gcc-12/gcc-12-base_12.2.0-14%2bdeb12u1_arm64.deb' "
              "gcc-12-base_12.2.0-14+deb12u1_arm64.deb 37624 MD5Sum:c5d7\n"
              "'http://deb.debian.org/debian/pool/main/b/busybox/busybox-static_1.35.0-4_arm64.deb' "
              "busybox-static_1%3a1.35.0-4_arm64.deb 822236 MD5Sum:0a\n"
              "Reading package lists...\n")
    assert apt.parse_print_uris(output) == [("gcc-12-base", "12.2.0-14+deb12u1"),
                                            ("busybox-static", "1:1.35.0-4")]
    with pytest.raises(PackageError, match="unexpected package file name"):
        apt.parse_print_uris("'http://x/a.deb' a.deb 1 MD5Sum:0\n")


# ---------------------------------------------------------------------- PrivateApt, apt faked


@pytest.fixture
def machine(tmp_path):
    etc = tmp_path / "etc-apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d/debian.sources").write_text(MACHINE_SOURCES)
    os_release = tmp_path / "os-release"
    os_release.write_text("ID=debian\nVERSION_CODENAME=bookworm\n")
    return etc, os_release


def _private(tmp_path, machine, runner, clock=lambda: 1e9):
    etc, os_release = machine
    return PrivateApt(tmp_path / "apt", Distro(), run=runner, log=lambda m: None, etc_apt=etc,
                      os_release=os_release, clock=clock)


def test_lists_are_updated_when_missing_stale_or_of_other_sources(tmp_path, machine, runner):
    runner.on(["apt-get", "update"])
    now = [1e9]
    private = _private(tmp_path, machine, runner, clock=lambda: now[0])
    private.ensure_lists()
    assert [without_options(c) for c in runner.calls] == [["apt-get", "update"]]
    stamp = private.state / "state/updated"
    os.utime(stamp, (now[0], now[0]))
    private.ensure_lists()
    assert len(runner.calls) == 1                      # fresh: no update
    now[0] += apt.LISTS_MAX_AGE_S + 1
    private.ensure_lists()
    assert len(runner.calls) == 2                      # stale: updated
    os.utime(stamp, (now[0], now[0]))
    (machine[0] / "sources.list.d/debian.sources").write_text(MACHINE_SOURCES.replace("deb.debian", "ftp.debian"))
    private.ensure_lists()
    assert len(runner.calls) == 3                      # the machine's sources changed
    assert "ftp.debian.org" in (private.state / "sources.list.d/debian.sources").read_text()


def test_every_apt_call_carries_the_private_options(tmp_path, machine, runner):
    runner.on(["apt-get", "update"])
    private = _private(tmp_path, machine, runner)
    private.ensure_lists()
    options = runner.calls[0][1:-2]                  # apt-get OPTIONS -q update
    assert options == private.options()
    assert f"Dir::State::status={private.state}/status" in options
    assert (private.state / "status").read_text() == ""


def _show(names, version="1"):
    return "\n".join(f"Package: {n}\nVersion: {version}\nArchitecture: arm64\n"
                     f"Filename: pool/{n}_{version}_arm64.deb\nSHA256: {'ab' * 32}\n"
                     + ("Multi-Arch: allowed\n" if n == "python3" else "")
                     + ("Depends: linux-image-6.1.0-56-arm64 (= 1)\n" if n == "linux-image-arm64" else "")
                     for n in names)


def test_resolve_declares_stand_ins_then_takes_apts_closure_and_the_kernel(tmp_path, machine, runner):
    distro = Distro()
    stand_ins = list(distro.stand_ins())
    closure = ["libc6", "systemd", "xen-utils-4.17"]
    runner.on(["apt-cache", "show", "--no-all-versions", *stand_ins], stdout=_show(stand_ins))
    runner.on(["apt-get", "install", "--print-uris"], stdout="".join(
        f"'http://deb.debian.org/debian/pool/{n}_1_arm64.deb' {n}_1_arm64.deb 10 MD5Sum:0\n" for n in closure))
    runner.on(["apt-cache", "show", "--no-all-versions", "libc6=1"], stdout=_show(closure))
    runner.on(["apt-cache", "show", "--no-all-versions", "linux-image-arm64"], stdout=_show(["linux-image-arm64"]))
    runner.on(["apt-cache", "show", "--no-all-versions", "linux-image-6.1.0-56-arm64"],
              stdout=_show(["linux-image-6.1.0-56-arm64"]))
    private = _private(tmp_path, machine, runner)
    private.prepare()
    records = private.resolve()
    assert [r.name for r in records] == closure + ["linux-image-6.1.0-56-arm64"]
    status = parse_control_stanzas((private.state / "status").read_text())
    assert [s["Package"] for s in status] == stand_ins
    assert status[stand_ins.index("python3")]["Multi-Arch"] == "allowed"
    install = next(without_options(c) for c in runner.calls if "--print-uris" in c)
    assert install[-len(distro.root_packages()):] == list(distro.root_packages())


def test_trixie_resolves_in_its_own_state_from_the_machines_bookworm_source(tmp_path, machine, runner):
    """The trixie closure as apt printed it (t64 renames, Xen 4.20 libraries, kernel 6.12)."""
    distro = Distro("trixie", "arm64")
    stand_ins = list(distro.stand_ins())
    closure = ["libc6", "libssl3t64", "libext2fs2t64", "libxenmisc4.20", "xen-hypervisor-4.20-arm64",
               "xen-utils-4.20", "systemd"]
    kernel = "linux-image-6.12.118+deb13-arm64"
    runner.on(["apt-get", "update"])
    runner.on(["apt-cache", "show", "--no-all-versions", *stand_ins], stdout=_show(stand_ins))
    runner.on(["apt-get", "install", "--print-uris"], stdout="".join(
        f"'http://deb.debian.org/debian/pool/{n}_1_arm64.deb' {n}_1_arm64.deb 10 SHA256:0\n" for n in closure))
    runner.on(["apt-cache", "show", "--no-all-versions", "libc6=1"], stdout=_show(closure))
    runner.on(["apt-cache", "show", "--no-all-versions", "linux-image-arm64"],
              stdout=_show(["linux-image-arm64"]).replace("6.1.0-56-arm64", "6.12.118+deb13-arm64"))
    runner.on(["apt-cache", "show", "--no-all-versions", kernel], stdout=_show([kernel]))
    etc, os_release = machine
    private = PrivateApt(tmp_path / "apt", distro, run=runner, log=lambda m: None, etc_apt=etc,
                         os_release=os_release)
    private.ensure_lists()
    records = private.resolve()
    assert private.state == tmp_path / "apt" / "trixie-arm64"
    assert [r.name for r in records] == closure + [kernel]
    sources = (private.state / "sources.list.d/debian.sources").read_text()
    assert "Suites: trixie trixie-updates" in sources and "bookworm" not in sources.replace(
        "# derived from", "")
    assert "trixie-security" in sources and "Architectures: arm64" in sources
    install = next(without_options(c) for c in runner.calls if "--print-uris" in c)
    assert "xen-utils-4.20" in install and "xen-utils-4.17" not in install
    assert (machine[0] / "sources.list.d/debian.sources").read_text() == MACHINE_SOURCES


def test_unknown_package_is_named(tmp_path, machine, runner):
    runner.on(["apt-cache", "show"], stdout="", returncode=100, stderr="E: No packages found")
    with pytest.raises(PackageError, match="no bookworm/arm64 package busybox-static .*No packages found"):
        _private(tmp_path, machine, runner).show(["busybox-static"])


def test_a_failed_resolution_quotes_apt(tmp_path, machine, runner):
    runner.on(["apt-cache", "show"], stdout=_show(list(Distro().stand_ins())))
    runner.on(["apt-get", "install"], returncode=100,
              stderr="E: Unable to correct problems, you have held broken packages.")
    private = _private(tmp_path, machine, runner)
    private.prepare()
    with pytest.raises(PackageError, match="resolving the dependencies of .*held broken packages"):
        private.resolve()


def test_machine_without_codename_is_explained(tmp_path, machine, runner):
    machine[1].write_text("ID=debian\n")
    with pytest.raises(PackageError, match="no VERSION_CODENAME"):
        _private(tmp_path, machine, runner).prepare()


def test_an_unsupported_distribution_is_refused_before_apt_runs(tmp_path, machine, runner):
    with pytest.raises(PackageError, match="not supported"):
        PrivateApt(tmp_path, Distro("forky", "arm64"), run=runner)
    assert runner.calls == []


def _deb(content: bytes):
    return content, hashlib.sha256(content).hexdigest()


def test_download_reuses_verified_files_and_fetches_the_rest(tmp_path, machine, runner):
    good, good_sha = _deb(b"cached")
    new, new_sha = _deb(b"fresh")
    cached = record("bash", "5.2", good_sha)
    missing = record("zlib1g", "1:1.2", new_sha)
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / cached.deb_name).write_bytes(good)

    def fetch(cmd, kwargs):
        # apt-get download writes the epoch as %3a into the file name
        Path(kwargs["cwd"], "zlib1g_1%3a1.2_arm64.deb").write_bytes(new)

    runner.on(["apt-get", "download"], action=fetch)
    private = _private(tmp_path, machine, runner)
    paths = private.download([cached, missing], debs)
    assert [without_options(c) for c in runner.calls] == [["apt-get", "download", "zlib1g=1:1.2"]]
    assert runner.calls[0][1:-3] == private.options()    # apt-get OPTIONS -q download SPEC
    assert paths["zlib1g"].read_bytes() == new
    assert paths["zlib1g"].name == missing.deb_name
    assert sorted(p.name for p in debs.iterdir()) == sorted([cached.deb_name, missing.deb_name])


def test_download_rejects_a_checksum_mismatch_and_keeps_nothing(tmp_path, machine, runner):
    wanted = record("bash", "5.2", "1" * 64)
    runner.on(["apt-get", "download"],
              action=lambda cmd, kw: Path(kw["cwd"], "bash_5.2_arm64.deb").write_bytes(b"evil"))
    debs = tmp_path / "debs"
    with pytest.raises(PackageError, match="checksum .* differs from apt's index"):
        _private(tmp_path, machine, runner).download([wanted], debs)
    assert list(debs.iterdir()) == []


def test_download_failure_reports_apts_message(tmp_path, machine, runner):
    runner.on(["apt-get", "download"], returncode=100, stderr="E: Unable to locate package foo")
    with pytest.raises(PackageError, match="Unable to locate package foo"):
        _private(tmp_path, machine, runner).download([record("foo")], tmp_path / "debs")


def test_amd64_resolution_asks_for_amd64_packages_and_takes_the_amd64_kernel(tmp_path, machine, runner):
    distro = Distro("bookworm", "amd64")
    stand_ins = list(distro.stand_ins())
    closure = ["libc6", "xen-hypervisor-4.17-amd64", "xen-utils-4.17"]
    show = _show(stand_ins + closure).replace("arm64", "amd64")
    runner.on(["apt-cache", "show", "--no-all-versions", *stand_ins], stdout=show)
    runner.on(["apt-get", "install", "--print-uris"], stdout="".join(
        f"'http://deb.debian.org/debian/pool/{n}_1_amd64.deb' {n}_1_amd64.deb 10 MD5Sum:0\n" for n in closure))
    runner.on(["apt-cache", "show", "--no-all-versions", "libc6=1"], stdout=show)
    runner.on(["apt-cache", "show", "--no-all-versions", "linux-image-amd64"],
              stdout=_show(["linux-image-amd64"]).replace("Architecture: arm64", "Architecture: amd64")
              + "Depends: linux-image-6.1.0-57-amd64 (= 1)\n")
    runner.on(["apt-cache", "show", "--no-all-versions", "linux-image-6.1.0-57-amd64"],
              stdout=_show(["linux-image-6.1.0-57-amd64"]).replace("arm64", "amd64"))
    etc, os_release = machine
    private = PrivateApt(tmp_path / "apt", distro, run=runner, log=lambda m: None, etc_apt=etc,
                         os_release=os_release)
    private.prepare()
    records = private.resolve()
    assert [r.name for r in records] == closure + ["linux-image-6.1.0-57-amd64"]
    assert private.state.name == "bookworm-amd64"
    assert "APT::Architecture=amd64" in private.options()
    assert "Architectures: amd64" in (private.state / "sources.list.d/debian.sources").read_text()
    install = next(without_options(c) for c in runner.calls if "--print-uris" in c)
    assert install[-len(distro.root_packages()):] == list(distro.root_packages())
