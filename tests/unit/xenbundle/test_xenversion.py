"""The Xen version the grammar checks for: every versioned keyword, the version rules, the plumbing.

Each entry of ``xenbundle.xenversion.SYNTAX`` is written into a configuration (or a
disk spec) and checked at the release that added it (accepted), at the release
before (refused, with a message naming the keyword, that release and the version
being built), and for removed syntax on both sides of the removal.  The table's
sources are the man pages and xl sources of each release tag (cited in the table);
the 4.17 side of the disk keywords is compared with Debian's real libxlutil 4.17
in tests/oracle.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from xenbundle import BundleError, GuestSettings, bundle_guests, plan_bundle
from xenbundle.disk import DiskSpecError, parse_disk
from xenbundle.guests import generate_config
from xenbundle.xenversion import (
    CONFIG_KEY,
    CONFIG_VALUE,
    DEFAULT_XEN_VERSION,
    DISK_KEYWORD,
    NEWEST_KNOWN_XEN_VERSION,
    OLDEST_XEN_VERSION,
    P9_KEYWORD,
    SYNTAX,
    VIF_KEYWORD,
    VersionedSyntax,
    XenVersion,
    XenVersionError,
    as_xen_version,
    build_xen_version,
    parse_xen_version,
    pkgdata_version,
)
from xenbundle.xlcfg import XlConfigError, parse

LAYER = Path(__file__).resolve().parents[3]
LIB = str(LAYER / "lib")

# A configuration line (or disk spec) using each kind of versioned syntax.
SAMPLES = {
    DISK_KEYWORD: lambda e: {"grant_usage=": "vdev=xvda,grant_usage=1,target=/x",
                             "specification=": "vdev=xvda,specification=virtio,target=/x",
                             "backendtype=standalone": "vdev=xvda,backendtype=standalone,target=/x",
                             }.get(e.name, f"vdev=xvda,{e.name},target=/x"),
    CONFIG_KEY: lambda e: f"{e.name} = 1\n",
    CONFIG_VALUE: lambda e: f'{e.name} = "{e.value}"\n',
    VIF_KEYWORD: lambda e: f"vif = [ 'bridge=xenbr0,{e.name}10' ]\n",
    P9_KEYWORD: lambda e: f"p9 = [ 'tag=share, path=/srv, {e.name}1' ]\n",
}
PREAMBLE = 'name = "guest"\nmemory = 256\n'     # the sample is on line 3


def check(entry: VersionedSyntax, version: XenVersion) -> list[str]:
    """The problems of ``entry``'s sample for ``version`` ([] when accepted)."""
    sample = SAMPLES[entry.kind](entry)
    if entry.kind == DISK_KEYWORD:
        try:
            parse_disk(sample, xen_version=version)
        except DiskSpecError as err:
            return err.messages
        return []
    try:
        parse(PREAMBLE + sample, "guest.cfg", xen_version=version)
    except XlConfigError as err:
        assert [line for line, _ in err.errors] == [3], err
        assert err.newer_syntax_lines == frozenset({3})
        return [msg for _, msg in err.errors]
    return []


def before(version: XenVersion) -> XenVersion:
    return XenVersion(version.major, version.minor - 1)


def entry_id(entry: VersionedSyntax) -> str:
    return f"{entry.kind}:{entry.name}" + (f"={entry.value}" if entry.value else "")


ADDED = [e for e in SYNTAX if e.since is not None]
REMOVED = [e for e in SYNTAX if e.removed is not None]


def test_every_kind_has_a_sample_and_every_entry_a_version():
    assert {e.kind for e in SYNTAX} <= set(SAMPLES)
    for entry in SYNTAX:
        assert entry.since is None or OLDEST_XEN_VERSION < entry.since <= NEWEST_KNOWN_XEN_VERSION
        assert entry.removed is None or OLDEST_XEN_VERSION < entry.removed


@pytest.mark.parametrize("entry", SYNTAX, ids=entry_id)
def test_accepted_from_its_release_on(entry):
    first = entry.since or OLDEST_XEN_VERSION
    versions = ({first, before(entry.removed)} if entry.removed
                else {first, NEWEST_KNOWN_XEN_VERSION, XenVersion(4, 40)})
    for version in versions:
        assert check(entry, version) == [], (entry, version)


@pytest.mark.parametrize("entry", ADDED, ids=entry_id)
def test_refused_before_its_release_naming_keyword_and_versions(entry):
    assert entry.since is not None
    for version in {before(entry.since), OLDEST_XEN_VERSION}:
        problems = check(entry, version)
        assert len(problems) == 1, problems
        message = problems[0]
        assert entry.label in message
        assert f"was added in Xen {entry.since}" in message
        assert f"the Xen version being built is {version}" in message
        assert f"raise the Xen version or drop the {entry.noun}" in message


@pytest.mark.parametrize("entry", REMOVED, ids=entry_id)
def test_removed_syntax_is_refused_from_the_release_that_removed_it(entry):
    assert entry.removed is not None
    for version in (entry.removed, NEWEST_KNOWN_XEN_VERSION, XenVersion(5, 0)):
        problems = check(entry, version)
        assert len(problems) == 1 and f"was removed in Xen {entry.removed}" in problems[0]
        assert f"being built is {version}" in problems[0] and entry.removed_fix in problems[0]


def test_versions_after_the_newest_known_accept_what_it_accepts():
    future = XenVersion(4, 30)
    for entry in SYNTAX:
        assert (check(entry, future) == []) == (check(entry, NEWEST_KNOWN_XEN_VERSION) == [])
    # ... and no disk keyword it does not know.
    with pytest.raises(DiskSpecError, match="unknown parameter"):
        parse_disk("vdev=xvda,frobnicate=1,target=/x", xen_version=future)


def test_the_default_is_the_oldest_supported_xen():
    assert DEFAULT_XEN_VERSION == OLDEST_XEN_VERSION == XenVersion(4, 17)
    with pytest.raises(DiskSpecError, match="being built is 4.17"):
        parse_disk("vdev=xvda,grant_usage=1,target=/x")
    with pytest.raises(XlConfigError, match="being built is 4.17"):
        parse("virtio = [ 'type=virtio,device22' ]\n")


# ------------------------------------------------------------------ disk specifics

def test_disk_keyword_messages_replace_the_old_scanners_complaint():
    """xl 4.17 says "target respecified"; the message says what is really wrong."""
    with pytest.raises(DiskSpecError) as info:
        parse_disk("vdev=xvda,trusted,target=/x", xen_version="4.18")
    assert info.value.messages == [
        ("disk keyword `trusted' was added in Xen 4.19 (the disk scanner shipped with Xen 4.17 "
         "and 4.18 does not have it, although their xl-disk-configuration(5) lists it), but the "
         "Xen version being built is 4.18: near `trusted' in `vdev=xvda,trusted,target=/x' "
         "(raise the Xen version or drop the keyword)")]


def test_disk_keyword_problems_come_with_the_specs_other_problems_once_each():
    with pytest.raises(DiskSpecError) as info:
        parse_disk("vdev=xvda,untrusted,grant_usage=0,grant_usage=1,frob=1,target=/x")
    messages = info.value.messages
    assert [m.split(" was ")[0] for m in messages[:2]] == [
        "disk keyword `untrusted'", "disk keyword `grant_usage='"]
    assert len(messages) == 3 and messages[2].startswith("unknown parameter: near `frob=1,'")


def test_an_older_xl_reads_the_keyword_words_as_positional_values():
    """Without the rules, 'untrusted' is a plain word to xl 4.17 (here the vdev), as in libxlutil 4.17."""
    old = parse_disk("/x,raw,untrusted")
    assert (old.target, old.vdev, old.trusted) == ("/x", "untrusted", None)
    with pytest.raises(DiskSpecError, match="no vdev specified"):
        parse_disk("/x,raw,untrusted", xen_version="4.19")


def test_rewriting_a_disk_keeps_its_xen_version():
    spec = parse_disk("vdev=xvda, grant_usage=1, trusted, target=data.img", xen_version="4.21")
    moved = spec.with_target("/var/lib/xen/images/data.img")
    assert moved.xen_version == XenVersion(4, 21) and moved.grant_usage and moved.trusted
    assert moved.render() == "vdev=xvda, grant_usage=1, trusted, target=/var/lib/xen/images/data.img"
    assert "xen_version" not in moved.values()


# ------------------------------------------------------------------ config specifics

def test_values_and_spec_keywords_are_checked_on_the_final_value_and_its_line():
    text = ('tee = "optee"\ntee = "ffa"\n'
            "vif = [ 'bridge=xenbr0' ]\nvif += [\n  'bridge=xenbr1',\n  ' vlan=7' ]\n"
            "p9 = [ 'tag=a, path=/p, security_model=none' ]\n"
            "vif_note = 'vlan=1'\n")
    with pytest.raises(XlConfigError) as info:
        parse(text, "g.cfg", xen_version="4.17")
    assert [line for line, _ in info.value.errors] == [2, 6]
    assert 'vif spec " vlan=7": vif keyword `vlan=\' was added in Xen 4.19' in info.value.errors[1][1]
    parse(text, "g.cfg", xen_version="4.19")


def test_a_syntax_error_on_the_same_line_wins_over_the_version_problem():
    with pytest.raises(XlConfigError) as info:
        parse("sve = 1.5\n", xen_version="4.17")
    assert "Python" in info.value.errors[0][1] and info.value.newer_syntax_lines == frozenset()


def test_edits_are_checked_for_the_same_xen():
    cfg = parse('name = "g"\n', xen_version="4.21")
    cfg.set("trap_unmapped_accesses", 1)
    assert cfg.xen_version == XenVersion(4, 21) and cfg.get("trap_unmapped_accesses") == "1"
    old = parse('name = "g"\n')
    with pytest.raises(XlConfigError, match="trap_unmapped_accesses"):
        old.set("trap_unmapped_accesses", 1)
    assert old.render() == 'name = "g"\n'


def test_generated_configs_are_checked_for_the_xen_being_built():
    settings = GuestSettings(name="web", vif=("bridge=xenbr0,vlan=10",))
    with pytest.raises(XlConfigError, match="vlan"):
        generate_config(settings, "web.ext4", "Image", xen_version="4.18")
    assert "vlan=10" in generate_config(settings, "web.ext4", "Image", xen_version="4.19")


# ------------------------------------------------------------------ versions

@pytest.mark.parametrize("text,version", [
    ("4.17", (4, 17)), ("4.21.0+stable", (4, 21)), ("4.19%", (4, 19)),
    ("4.18+stable%", (4, 18)), ("4.21-dev+git", (4, 21)), ("1:4.20.1", (4, 20)),
    (" 4.22 ", (4, 22)), ("5.0", (5, 0)), ("4.19~rc1", (4, 19)),
])
def test_recipe_versions_read_as_major_minor(text, version):
    assert parse_xen_version(text) == XenVersion(*version)
    assert str(parse_xen_version(text)) == "{}.{}".format(*version)


@pytest.mark.parametrize("text", ["", "banana", "4", "4.x", "%", "git", "4.210000", "v4.19"])
def test_text_that_is_not_a_version_is_refused_with_the_fix(text):
    with pytest.raises(XenVersionError) as info:
        parse_xen_version(text, "XEN_REF_XEN_VERSION =")
    assert str(info.value).startswith(f'XEN_REF_XEN_VERSION = "{text}" is not a Xen version: '
                                      'write MAJOR.MINOR, e.g. "4.22"')


@pytest.mark.parametrize("value", ["4.16", "4.2%", XenVersion(4, 16), "3.4"])
def test_versions_older_than_the_oldest_known_are_refused(value):
    with pytest.raises(XenVersionError, match=r"older than Xen 4\.17, the oldest release .* "
                                              r"build with Xen 4\.17 or later"):
        as_xen_version(value)
    with pytest.raises(XenVersionError):
        parse("name = 'x'\n", xen_version=value)
    with pytest.raises(XenVersionError):
        parse_disk("/x,xvda", xen_version=value)


def test_a_version_is_a_string_or_a_xen_version():
    with pytest.raises(TypeError):
        as_xen_version(4.19)  # type: ignore[arg-type]


def write_pkgdata(root: Path, text: str, package: str = "xen-tools-xl") -> str:
    runtime = root / "pkgdata" / "runtime"
    runtime.mkdir(parents=True, exist_ok=True)
    (runtime / package).write_text(text)
    return str(root / "pkgdata")


def test_pkgdata_version_reads_the_packages_pv(tmp_path):
    pkgdata = write_pkgdata(tmp_path, "PN: xen-tools\nPE: 0\nPV: 4.21+stable\nPR: r0\n"
                                      "PKGV: 4.21+stable\nFILES:xen-tools-xl: /usr/sbin/xl\n")
    assert pkgdata_version(pkgdata) == "4.21+stable"
    write_pkgdata(tmp_path, "PV: 4.19+stable\nPV:xen-tools-xl: 4.20.1\n")
    assert pkgdata_version(pkgdata) == "4.20.1"
    assert pkgdata_version(str(tmp_path / "nothing")) is None


def test_build_version_comes_from_the_first_source_that_has_one(tmp_path):
    pkgdata = write_pkgdata(tmp_path, "PV: 4.19+stable\n")
    assert build_xen_version(explicit="4.21", pkgdata_dir=pkgdata, preferred="4.18%") == (
        XenVersion(4, 21), 'XEN_REF_XEN_VERSION = "4.21"')
    version, source = build_xen_version(pkgdata_dir=pkgdata, preferred="4.18%")
    assert version == XenVersion(4, 19) and "xen-tools-xl" in source and "4.19+stable" in source
    assert build_xen_version(pkgdata_dir=str(tmp_path / "none"), preferred="4.18+stable%") == (
        XenVersion(4, 18), 'PREFERRED_VERSION_xen-tools = "4.18+stable%"')
    version, source = build_xen_version()
    assert version == DEFAULT_XEN_VERSION and "oldest supported" in source


def test_build_version_errors_name_the_variable_and_the_fix(tmp_path):
    with pytest.raises(XenVersionError, match=r'^XEN_REF_XEN_VERSION = "four" is not a Xen'):
        build_xen_version(explicit="four")
    with pytest.raises(XenVersionError, match=r'^PREFERRED_VERSION_xen-tools = "4.16%" is Xen 4.16'):
        build_xen_version(preferred="4.16%")
    pkgdata = write_pkgdata(tmp_path, "PV: git\n")
    with pytest.raises(XenVersionError, match="set XEN_REF_XEN_VERSION to the Xen version of"):
        build_xen_version(pkgdata_dir=pkgdata, preferred="4.21%")


def test_unreadable_pkgdata_is_a_clear_error(tmp_path):
    pkgdata = tmp_path / "pkgdata"
    (pkgdata / "runtime" / "xen-tools-xl").mkdir(parents=True)     # a folder, not a file
    with pytest.raises(XenVersionError, match="pkgdata .*xen-tools-xl cannot be read"):
        pkgdata_version(str(pkgdata))


# ------------------------------------------------------------------ bundling

@pytest.fixture
def deploy(tmp_path):
    dep = tmp_path / "deploy"
    dep.mkdir()
    (dep / "Image").write_bytes(b"kernel")
    (dep / "data.img").write_bytes(b"disk")
    (dep / "guest.ext4").write_bytes(b"rootfs")
    (dep / "xen-guest-bundle-virtio.cfg").write_text(
        'name = "virtio-guest"\nkernel = "Image"\n'
        "disk = [ 'vdev=xvda, backendtype=standalone, specification=virtio, grant_usage=1, "
        "target=data.img' ]\n")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    return dep, rootfs


def test_plan_checks_configs_for_the_hosts_xen(deploy):
    dep, rootfs = deploy
    with pytest.raises(BundleError) as info:
        plan_bundle(str(rootfs), str(dep))
    message = str(info.value)
    assert "disk keyword `grant_usage=' was added in Xen 4.19" in message
    assert "being built is 4.17" in message and "xen-guest-bundle-virtio.cfg:3" in message
    plan = plan_bundle(str(rootfs), str(dep), xen_version="4.19")
    assert "grant_usage=1, target=/var/lib/xen/images/data.img" in plan.guests[0].text


def test_plan_says_xl_would_refuse_a_config_only_when_it_would(deploy):
    dep, rootfs = deploy
    (dep / "xen-guest-bundle-virtio.cfg").write_text(
        'name = "virtio-guest"\nkernel = "Image"\nnr_spis = 32\nmemory = = 3\n')
    with pytest.raises(BundleError) as info:
        plan_bundle(str(rootfs), str(dep), xen_version="4.18")
    nr_spis, syntax = info.value.problems
    assert ":3: xl.cfg key `nr_spis' was added in Xen 4.19" in nr_spis
    assert "xl would refuse" not in nr_spis and "fix it or remove it" in nr_spis
    assert ":4: " in syntax and "(xl would refuse this file too: fix it" in syntax


def test_generated_guests_are_checked_for_the_hosts_xen(deploy):
    dep, rootfs = deploy
    (dep / "xen-guest-bundle-virtio.cfg").unlink()

    def settings(name):
        return GuestSettings(name=name, vif=("bridge=xenbr0,vlan=10",))

    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(dep), "guest.ext4:Image", settings=settings,
                      xen_version="4.18", log=lambda _: None)
    assert info.value.problems[0].startswith(
        "guest 'guest' (XEN_BUNDLED_GUESTS entry 1 'guest.ext4:Image'): vif spec")
    assert "vlan=' was added in Xen 4.19, but the Xen version being built is 4.18" \
        in info.value.problems[0]
    assert os.listdir(rootfs) == []
    result = bundle_guests(str(rootfs), str(dep), "guest.ext4:Image", settings=settings,
                           xen_version=XenVersion(4, 19), log=lambda _: None)
    assert [g.name for g in result.guests] == ["guest"]


def test_plan_refuses_an_unsupported_version_before_reading_anything(deploy):
    dep, rootfs = deploy
    with pytest.raises(XenVersionError, match="older than Xen 4.17"):
        plan_bundle(str(rootfs), str(dep), xen_version="4.16")


# ------------------------------------------------------------------ CLI

def run_cli(*args: str):
    return subprocess.run([sys.executable, "-m", "xenbundle.xlcfg", *args], capture_output=True,
                          text=True, env={"PYTHONPATH": LIB}, check=False)


def test_cli_checks_for_the_xen_version_given(tmp_path):
    cfg = tmp_path / "g.cfg"
    cfg.write_text('name = "g"\nllc_colors = [ 1 ]\n')
    default = run_cli("--json", str(cfg))
    assert default.returncode == 1
    assert json.loads(default.stdout)["errors"] == [
        ("2: xl.cfg key `llc_colors' was added in Xen 4.20 (the xl of older releases ignores it "
         "without a word), but the Xen version being built is 4.17: raise the Xen version or "
         "drop the setting")]
    newer = run_cli("--xen-version", "4.20", "--json", str(cfg))
    assert newer.returncode == 0 and json.loads(newer.stdout)["settings"]["llc_colors"] == ["1"]


def test_cli_disk_mode_checks_for_the_xen_version_given():
    spec = "vdev=xvda,untrusted,target=/x"
    refused = run_cli("--disk", spec)
    assert refused.returncode == 1 and "being built is 4.17" in refused.stderr
    accepted = run_cli("--json", "--xen-version", "4.19.2", "--disk", spec)
    assert accepted.returncode == 0 and json.loads(accepted.stdout)["disk"]["trusted"] is False


@pytest.mark.parametrize("value,needle", [("4.16", "older than Xen 4.17"),
                                           ("soon", "is not a Xen version")])
def test_cli_refuses_a_bad_xen_version(value, needle):
    proc = run_cli("--xen-version", value, "--disk", "/x,xvda")
    assert proc.returncode == 2
    assert f'argument --xen-version: --xen-version "{value}"' in proc.stderr and needle in proc.stderr


# ------------------------------------------------------------------ documentation

def test_docs_table_lists_every_entry_with_its_versions():
    """docs/bundling.md keeps the version table of xenversion.SYNTAX, row for row."""
    doc = (LAYER / "docs" / "bundling.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 4:
            rows[cells[0]] = cells
    for entry in SYNTAX:
        shown = f'`{entry.name} = "{entry.value}"`' if entry.kind == CONFIG_VALUE \
            else f"`{entry.name}`"
        assert shown in rows, f"docs/bundling.md has no row for {shown}"
        cells = rows[shown]
        assert cells[1] == entry.kind
        assert cells[2] == (str(entry.since) if entry.since else "every supported release")
        assert cells[3] == (str(entry.removed) if entry.removed else "")
    assert len([r for r in rows.values() if re.fullmatch(r"[\w. ]+ (keyword|key|value)", r[1])]) \
        == len(SYNTAX)
