"""Layer-level checks: oelint-adv is clean for both releases, and layer.conf
follows the rules (parsed with real BitBake, including its addpylib line)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

LAYER = pathlib.Path(__file__).resolve().parents[2]
OELINT = pathlib.Path(sys.executable).with_name("oelint-adv")
RELEASES = ("scarthgap", "wrynose")

# Classes of meta-virtualization (scarthgap and wrynose branches): BBPATH
# lookup would pick one of two same-named classes arbitrarily.
META_VIRT_CLASSES = {
    "cni_networking", "container-bundle", "container-common", "container-cross-install",
    "container-host", "container-registry", "go-mod-discovery", "go-mod-vcs", "image-oci",
    "meta-virt-cfg", "meta-virt-container-cfg", "meta-virt-depreciated-warning",
    "meta-virt-hosts", "meta-virt-k8s-cfg", "meta-virt-xen-cfg", "oci-multiarch",
    "qemuboot-testimage-network", "qemuboot-xen-defaults", "qemuboot-xen-dtb",
    "sanity-meta-virt", "virt_networking", "xen-guest-bundle", "xen-guest-cross-install",
}


def metadata_files():
    """Every .bb/.bbappend/.bbclass/.conf/.inc of the layer, relative to its root."""
    out = []
    for top in ("conf", "classes", "recipes-bsp", "recipes-core", "recipes-extended"):
        for path in sorted((LAYER / top).rglob("*")):
            if path.suffix in (".bb", ".bbappend", ".bbclass", ".conf", ".inc"):
                out.append(str(path.relative_to(LAYER)))
    return out


def run_oelint(release, files):
    proc = subprocess.run([str(OELINT), "--quiet", "--release", release] + files,
                          cwd=LAYER, capture_output=True, text=True, check=False)
    findings = [line for line in (proc.stdout + proc.stderr).splitlines()
                if re.search(r":(error|warning|info):oelint\.", line)]
    return proc.returncode, findings, proc.stdout + proc.stderr


def test_metadata_files_found():
    files = metadata_files()
    assert "conf/layer.conf" in files
    assert "recipes-core/images/xen-image-minimal.bb" in files
    assert "classes/xen-ref-bundle.bbclass" in files


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("absolute", [False, True])
def test_oelint_clean(release, absolute):
    files = metadata_files()
    if absolute:
        files = [str(LAYER / f) for f in files]
    rc, findings, output = run_oelint(release, files)
    assert findings == [], "\n".join(findings)
    assert rc == 0, output


def test_oelint_would_report_a_problem(tmp_path):
    """The lint run can fail: a misspelt variable in a recipe is reported."""
    bad = tmp_path / "oelint-selfcheck_1.0.bb"
    bad.write_text('SUMMARY = "x"\nXEN_GUEST_MEMROY = "1"\n')
    _rc, findings, _out = run_oelint("scarthgap", [str(bad)])
    assert any("XEN_GUEST_MEMROY" in f for f in findings), findings


def test_class_names_do_not_collide_with_meta_virtualization():
    ours = {p.stem for p in (LAYER / "classes").glob("*.bbclass")}
    assert ours, "no classes found"
    assert not ours & META_VIRT_CLASSES
    assert all(name.startswith("xen-ref-") for name in ours), ours


def layer_conf_assignments():
    """(variable, operator, value) of layer.conf, continuation lines joined."""
    text = (LAYER / "conf" / "layer.conf").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([A-Za-z0-9_:${}./-]+)\s*(\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=)\s*"(.*)"$', line)
        if m:
            out.append(m.groups())
        else:
            out.append((line, None, None))
    return out


def test_layer_conf_has_no_side_effects():
    allowed = re.compile(r"^(BBFILES(_DYNAMIC)?|BBFILE_[A-Z_]+|BBPATH|LAYER[A-Z_]+|LICENSE_PATH)(_xen-ref)?$")
    for var, op, _value in layer_conf_assignments():
        if op is None:
            assert var in ("addpylib ${LAYERDIR}/lib xenbundle", "addpylib ${LAYERDIR}/lib xenboot"), \
                f"unexpected statement: {var}"
            continue
        base = var.split(":")[0]
        assert allowed.match(base), f"layer.conf may only register the layer, not set {var}"


@pytest.fixture
def parsed_layer_conf(monkeypatch):
    sys.path.insert(0, str(LAYER / "tests" / "bitbake" / "stubs"))  # hashserv stand-in
    import bb.data
    import bb.parse
    d = bb.data.init()
    d.setVar("LAYERDIR", str(LAYER))
    d.setVar("BBPATH", "")
    d.setVar("__bbclasstype", "recipe")
    bb.parse.init_parser(d)
    monkeypatch.chdir(LAYER)
    # baseconfig=True: parsed the way bitbake reads layer.conf (addpylib is only
    # allowed there).
    return bb.parse.handle("conf/layer.conf", d, baseconfig=True)


def test_layer_conf_values(parsed_layer_conf):
    d = parsed_layer_conf
    assert d.getVar("BBFILE_COLLECTIONS").split() == ["xen-ref"]
    assert int(d.getVar("BBFILE_PRIORITY_xen-ref")) == 10
    assert int(d.getVar("BBFILE_PRIORITY_xen-ref")) > 8  # meta-virtualization's priority
    assert d.getVar("LAYERSERIES_COMPAT_xen-ref").split() == ["scarthgap", "wrynose"]
    assert d.getVar("LAYERDEPENDS_xen-ref").split() == ["core", "virtualization-layer"]
    assert d.getVar("LAYERVERSION_xen-ref") == "1"
    assert str(LAYER) in d.getVar("BBPATH").split(":")
    patterns = d.getVar("BBFILES").split()
    assert f"{LAYER}/recipes-*/*/*.bb" in patterns
    # addpylib put lib/ on sys.path and made "xenbundle" and "xenboot" global
    # names for inline python, as for oe-core's "oe".
    import bb.utils
    assert str(LAYER / "lib") in sys.path
    assert bb.utils._context["xenbundle"].__name__ == "xenbundle"
    assert bb.utils._context["xenboot"].__name__ == "xenboot"


def test_recipe_files_have_required_fields():
    for name in metadata_files():
        if not name.endswith(".bb"):
            continue
        text = (LAYER / name).read_text()
        for field in ("SUMMARY", "DESCRIPTION", "HOMEPAGE", "LICENSE"):
            assert re.search(rf"^{field} = ", text, re.MULTILINE), f"{name}: {field} missing"
        # Our own files are MIT; a recipe packaging third-party content declares that
        # content's licenses, each with its checksum.
        if 'LICENSE = "MIT"' not in text:
            licenses = re.search(r'^LICENSE = "([^"]+)"', text, re.MULTILINE).group(1)
            checksums = re.search(r'^LIC_FILES_CHKSUM = "([^"]+)"', text, re.MULTILINE | re.DOTALL)
            assert checksums, f"{name}: LICENSE {licenses} needs LIC_FILES_CHKSUM"
            for lic in licenses.split(" & "):
                assert f"/{lic};md5=" in checksums.group(1), f"{name}: no checksum for {lic}"


def test_security_policy_present():
    text = (LAYER / "SECURITY.md").read_text()
    assert "xenbits.xen.org/xsa" in text
    assert "meta-virtualization" in text


def test_kickstart_files_live_where_wrynose_looks_for_them():
    """wrynose's oe-core searches files/wic/ and its sanity check stops every build of a layer
    that has a top-level wic/ folder ("wic/wks files ... need to be moved to files/wic")."""
    assert not (LAYER / "wic").exists()
    assert sorted(p.name for p in (LAYER / "files" / "wic").iterdir()) == [
        "xen-ref-x86-bios.wks.in", "xen-ref-x86-efi.wks.in"]
