"""Tests of xl-disk-configuration(5) parsing in xenbundle.disk (libxlu_disk_l.l semantics)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from xenbundle.disk import BACKEND_TYPES, FORMATS, DiskSpec, DiskSpecError, parse_disk
from xenbundle.xenversion import NEWEST_KNOWN_XEN_VERSION, XenVersion


@pytest.mark.parametrize("spec,target,fmt,vdev,access,prefix", [
    ("/a.img,raw,xvda,rw", "/a.img", "raw", "xvda", "rw", ""),
    ("/a.img,qcow2,xvda,r", "/a.img", "qcow2", "xvda", "ro", ""),
    ("/a.img,,xvda", "/a.img", "raw", "xvda", "rw", ""),
    ("file:/var/lib/xen/images/x.ext4,xvda,rw", "/var/lib/xen/images/x.ext4", "raw", "xvda", "rw", "file:"),
    ("phy:/dev/sdb,xvdb,w", "/dev/sdb", "raw", "xvdb", "rw", "phy:"),
    ("tap:aio:/x.img,xvda,r", "/x.img", "raw", "xvda", "ro", "tap:aio:"),
    ("tap:qcow2:/x.q,xvda,w", "/x.q", "qcow2", "xvda", "rw", "tap:qcow2:"),
    ("qcow2:/x.q,xvdb,w", "/x.q", "qcow2", "xvdb", "rw", "qcow2:"),
    ("  /a.img , raw,  xvda", "/a.img ", "raw", "xvda", "rw", ""),
    ("vdev=xvda, format=vhd, access=ro, target=/p/a,b:c=d.img", "/p/a,b:c=d.img", "vhd", "xvda", "ro", ""),
])
def test_positional_prefix_and_keyword_forms(spec, target, fmt, vdev, access, prefix):
    d = parse_disk(spec)
    assert (d.target, d.format, d.vdev, d.access, d.legacy_prefix) == (target, fmt, vdev, access, prefix)


def test_cdrom_forms():
    a = parse_disk(",,hdc:cdrom,r")
    assert a.devtype == "cdrom" and a.target == "" and a.format == "empty" and a.access == "ro"
    b = parse_disk("vdev=hdc, devtype=cdrom, target=/iso/x.iso")
    assert b.is_cdrom and b.target == "/iso/x.iso" and b.format == "raw" and b.access == "ro"
    c = parse_disk("cdrom,vdev=hdd")
    assert c.is_cdrom and c.target is None


def test_flags_and_keyword_values():
    # untrusted and grant_usage= are Xen 4.19 keywords (test_xenversion.py has the versions).
    d = parse_disk("direct-io-safe, no-discard, untrusted, colo, colo-host=h, colo-port=7,"
                   "colo-export=e, active-disk=a, hidden-disk=h2, grant_usage=1, backend=dd,"
                   "backendtype=qdisk, script=block-x, specification=virtio, vdev=xvda, target=/x",
                   xen_version="4.19")
    assert d.direct_io_safe and d.discard is False and d.trusted is False and d.colo is True
    assert (d.colo_host, d.colo_port, d.colo_export) == ("h", 7, "e")
    assert (d.active_disk, d.hidden_disk, d.grant_usage) == ("a", "h2", True)
    assert (d.backend, d.backendtype, d.script, d.specification) == ("dd", "qdisk", "block-x", "virtio")


def test_script_prefixes():
    d = parse_disk("iscsi:iqn.2001-05.com.example:disk,xvda,w")
    assert d.script == "block-iscsi" and d.legacy_prefix == "iscsi:"


@pytest.mark.parametrize("spec,needle", [
    ("/x,bogus,xvda", "unknown value for format"),
    ("/x,raw,xvda,rx", "unknown value for access"),
    ("/x,raw", "no vdev specified"),
    ("format=raw,vdev=xvda", "no target specified"),
    ("/x,raw,xvda,rw,more", "too many positional parameters"),
    ("bogus:/x,xvda", "unknown deprecated disk prefix"),
    ("frob=1,/x,raw,xvda", "unknown parameter"),
    ("xvda,target=/x", "target respecified"),
    ("devtype=floppy,vdev=xvda,target=/x", "unknown value for type"),
    ("backendtype=vmware,vdev=xvda,target=/x", "unknown value for backendtype"),
    ("format=raw,format=qcow2,vdev=xvda,target=/x", "format respecified"),
    ("/x,raw,xvda:tape", "unknown deprecated type"),
    ("/a=b,raw,xvda", "bad disk syntax"),
])
def test_errors(spec, needle):
    with pytest.raises(DiskSpecError) as info:
        parse_disk(spec)
    assert needle in str(info.value)
    assert spec in str(info.value)


@pytest.mark.parametrize("spec", [
    "phy:/dev/vg/guest,xvda,w=",
    "vdev=xvda,x=",
    "/images/g.img,raw,xvda,ro,=",
    "vdev=xvda,/images/a=",          # xl would silently use target /images/a
])
def test_stray_final_equals_is_refused_with_the_fix(spec):
    """xl ignores a final stray '='; we refuse it (documented deliberate difference)."""
    with pytest.raises(DiskSpecError) as info:
        parse_disk(spec)
    assert info.value.messages == [
        (f"stray '=' at the end of the disk spec: near `=' in `{spec}' "
         "(remove the trailing '='; a path containing '=' must be written last as target=PATH)")]
    parse_disk(spec[:-1])  # the fix works


@pytest.mark.parametrize("spec", ["vdev=xvda,=x", "vdev=xvda,==", "vdev=xvda,=\nx"])
def test_equals_not_at_the_very_end_is_plain_bad_syntax(spec):
    with pytest.raises(DiskSpecError) as info:
        parse_disk(spec)
    assert info.value.messages[0].startswith("bad disk syntax: near `=")


def test_module_documents_grammar_version_and_stray_equals():
    """The Xen version needed for trusted/grant_usage and the '=' difference stay documented."""
    from xenbundle import disk
    doc = " ".join((disk.__doc__ or "").split())
    assert ("``trusted``, ``untrusted`` and ``grant_usage=0|1`` are keywords from Xen 4.19 on"
            in doc)
    assert "Deliberate difference from xl: a stray ``=``" in doc


def test_with_target_keeps_legacy_prefix_and_positional_form():
    d = parse_disk("file:xen-guest.rootfs.ext4,xvda,rw")
    new = d.with_target("/var/lib/xen/images/xen-guest.rootfs.ext4")
    assert new.render() == "file:/var/lib/xen/images/xen-guest.rootfs.ext4,xvda,rw"
    assert new.target == "/var/lib/xen/images/xen-guest.rootfs.ext4"


def test_with_target_keeps_keyword_form_as_written():
    d = parse_disk("format=qcow2, vdev=xvdb, target=data.qcow2")
    assert d.with_target("/i/data.qcow2").render() == "format=qcow2, vdev=xvdb, target=/i/data.qcow2"


def test_with_target_switches_to_keywords_when_positional_cannot_hold_it():
    d = parse_disk("file:a.img,xvda,rw")
    new = d.with_target("/images/a,b.img")
    assert parse_disk(new.render()).target == "/images/a,b.img"
    assert new.vdev == "xvda" and new.access == "rw"


def test_render_of_unmodified_spec_is_the_text():
    assert parse_disk("tap:aio:/x,xvda,r").render() == "tap:aio:/x,xvda,r"


# ------------------------------------------------------------------ properties

plain = st.text(alphabet=st.characters(blacklist_characters=",\n", blacklist_categories=("Cs",)),
                max_size=12)
opt_bool = st.one_of(st.none(), st.booleans())


@st.composite
def disk_specs(draw) -> DiskSpec:
    cdrom = draw(st.booleans())
    target = draw(st.one_of(st.none(), st.text(
        alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)),
        max_size=30).filter(lambda t: not t.endswith(",")))) if cdrom else draw(
        st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)),
                min_size=1, max_size=30).filter(lambda t: not t.endswith(",")))
    fmt = draw(st.sampled_from(FORMATS))
    if cdrom and not target:
        fmt = "empty"
    return DiskSpec(
        target=target, vdev=draw(plain), format=fmt,
        access="ro" if cdrom else draw(st.sampled_from(["ro", "rw"])),
        devtype="cdrom" if cdrom else "disk",
        backend=draw(st.one_of(st.none(), plain.filter(bool))),
        backendtype=draw(st.one_of(st.none(), st.sampled_from(BACKEND_TYPES))),
        script=draw(st.one_of(st.none(), plain.filter(bool))),
        specification=draw(st.one_of(st.none(), st.sampled_from(["xen", "virtio"]))),
        direct_io_safe=draw(st.booleans()), discard=draw(opt_bool), colo=draw(opt_bool),
        colo_port=draw(st.one_of(st.none(), st.integers(1, 65535))),
        trusted=draw(opt_bool), grant_usage=draw(opt_bool), xen_version=NEWEST_KNOWN_XEN_VERSION)


@hsettings(max_examples=300, deadline=None)
@given(disk_specs())
def test_property_render_then_parse_round_trips(spec):
    newest = NEWEST_KNOWN_XEN_VERSION
    assert parse_disk(spec.render(), xen_version=newest).semantics() == spec.semantics()


@hsettings(max_examples=150, deadline=None)
@given(disk_specs())
def test_property_render_for_xen_4_17_round_trips_without_the_newer_keywords(spec):
    old = DiskSpec(**{**spec.values(), "trusted": None, "grant_usage": None,
                      "xen_version": XenVersion(4, 17)})
    assert parse_disk(old.render()).semantics() == old.semantics()


@hsettings(max_examples=200, deadline=None)
@given(st.sampled_from(["file:a.img,xvda,rw", "/a.img,qcow2,xvdb,ro", "phy:/dev/x,xvdc",
                        "vdev=xvdd, access=rw, target=a.img", "tap:aio:a,xvde,w"]),
       st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)),
               min_size=1, max_size=40).filter(lambda t: not t.endswith(",")))
def test_property_with_target_changes_only_target(spec, target):
    d = parse_disk(spec)
    new = parse_disk(d.with_target(target).render())
    assert new.target == target
    before = d.semantics()
    after = new.semantics()
    before.pop("target")
    after.pop("target")
    assert before == after
