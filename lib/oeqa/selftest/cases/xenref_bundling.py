#
# SPDX-License-Identifier: MIT
#
"""oe-selftest cases for bundling Xen guests into the xen-image-minimal host.

Run them from an OE build directory that has meta-selftest and this layer in bblayers.conf:

    oe-selftest -r xenref_bundling                         # every case
    oe-selftest -r xenref_bundling.XenRefBundlingTests.test_auto_bundled_guest_is_installed

They build real images (a guest and the host, several times), so they need a full build
machine; docs/testing-with-oe.md says what they cost. What they check:

* each bundling form puts the guest into the host rootfs: the guest's own
  ``xen-guest-bundle-<link name>.cfg`` (``XEN_GUEST_AUTO_BUNDLE``), ``XEN_BUNDLED_GUESTS``
  ``rootfs:kernel`` pairs, and a hand-written ``xen-guest-bundle*.cfg`` in DEPLOY_DIR_IMAGE;
  configs land in ``/etc/xen`` rewritten to point at ``/var/lib/xen/images``;
* changing the guest reruns the host's do_rootfs (a new do_rootfs stamp with another task hash);
* bad input (a malformed ``XEN_BUNDLED_GUESTS`` entry, a kernel that does not exist) stops the
  build with the message the bundling engine writes (taken from ``xenbundle`` itself, so the test
  follows the engine's wording);
* the host image grows with the bundled guests;
* meta-virtualization's interface: a ``BUNDLED_XEN_GUESTS`` recipe entry is built first and
  installed as ``/etc/xen/<recipe>.cfg`` with its varflags, and two values for one guest from
  the two key forms stop the build; bundle packages (this layer's ``xen-ref-guest-bundle-minimal``,
  meta-virtualization's ``example-xen-guest-bundle``, and ``xen-ref-alpine-bundle`` importing a
  local minirootfs archive) are installed with ``IMAGE_INSTALL`` and merged by the host, whose
  image then has no ``/usr/share/xen-guest-bundles`` any more.

The host rootfs is read from the host's ``IMAGE_ROOTFS`` (oe-selftest refuses to run with
rm_work, so the folder is still there after the build).
"""

import glob
import io
import os
import sys
import tarfile
import tempfile

from oeqa.selftest.case import OESelftestTestCase
from oeqa.utils.commands import bitbake, get_bb_vars

# Layer lib (xenbundle) on sys.path: oe-selftest adds BBPATH's lib dirs only after loading the
# test modules, so a module-level import needs it here already.
LAYER_LIB = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
if LAYER_LIB not in sys.path:
    sys.path.append(LAYER_LIB)

from xenbundle.bundles import BUNDLES_DIR
from xenbundle.disk import parse_disk
from xenbundle.errors import BundleError
from xenbundle.recipeguests import RecipeGuests
from xenbundle.settings import MappingVariables
from xenbundle.xlcfg import parse_file as parse_xl_config_file

HOST = "xen-image-minimal"
GUEST = "xen-guest-image-minimal"
IMAGES_DIR = "/var/lib/xen/images"

#: Settings every case needs: Xen in the distro, systemd, ext4 images for the guests.
BASE_CONFIG = """
DISTRO_FEATURES:append = " xen systemd virtualization"
INIT_MANAGER = "systemd"
"""


class XenRefBundlingBase(OESelftestTestCase):
    """Helpers of the bundling cases: configuration, image variables, checks of the host rootfs."""

    def configure(self, extra=""):
        self.write_config(BASE_CONFIG + extra)

    def host_vars(self):
        return get_bb_vars(["IMAGE_ROOTFS", "DEPLOY_DIR_IMAGE", "IMAGE_LINK_NAME", "STAMP"], HOST)

    def guest_vars(self):
        return get_bb_vars(["DEPLOY_DIR_IMAGE", "IMAGE_LINK_NAME", "KERNEL_IMAGETYPE"], GUEST)

    def bundled_configs(self, rootfs):
        return sorted(glob.glob(os.path.join(rootfs, "etc/xen/xen-guest-bundle*.cfg")))

    def assert_guest_installed(self, rootfs, config_path):
        """The config points only at files under /var/lib/xen/images that the rootfs holds."""
        config = parse_xl_config_file(config_path)
        kernel = config.get("kernel")
        self.assertTrue(kernel, f"{config_path} has no kernel")
        files = [kernel] + [config.get(k) for k in ("ramdisk", "device_tree") if config.get(k)]
        files += [parse_disk(spec).target for spec in (config.get("disk") or [])]
        self.assertTrue(len(files) > 1, f"{config_path} has no disk")
        for path in files:
            self.assertTrue(path.startswith(IMAGES_DIR + "/"),
                            f"{config_path}: {path} is not under {IMAGES_DIR} (config not rewritten)")
            self.assertTrue(os.path.isfile(os.path.join(rootfs, path.lstrip("/"))),
                            f"{config_path}: {path} is missing from the host rootfs")
        return config

    def rootfs_stamps(self, stamp):
        """Task hashes of the host's do_rootfs stamps, newest last."""
        stamps = []
        for path in glob.glob(stamp + ".do_rootfs.*"):
            suffix = path[len(stamp + ".do_rootfs."):]  # <taskhash>, or sigdata.<hash> beside it
            if suffix and not suffix.startswith(("sigdata", "siginfo")):
                stamps.append((os.path.getmtime(path), suffix.split(".")[0]))
        return [taskhash for _, taskhash in sorted(stamps)]

    def expected_problems(self, bundled_guests):
        """The engine's own messages for a XEN_BUNDLED_GUESTS value (with the real deploy dir)."""
        from xenbundle import plan_bundle
        deploy = self.guest_vars()["DEPLOY_DIR_IMAGE"]
        with tempfile.TemporaryDirectory() as empty_rootfs:
            try:
                plan_bundle(empty_rootfs, deploy, bundled_guests=bundled_guests,
                            config_glob="xen-guest-bundle-none-*.cfg")
            except BundleError as err:
                return err.problems
        self.fail(f"xenbundle accepts XEN_BUNDLED_GUESTS = {bundled_guests!r}; the test input is not bad")

    def assert_build_stops_with(self, bundled_guests):
        self.configure(f'XEN_BUNDLED_GUESTS = "{bundled_guests}"\n')
        result = bitbake(HOST, ignore_status=True)
        self.assertNotEqual(result.status, 0, f"the build accepted XEN_BUNDLED_GUESTS = {bundled_guests!r}")
        output = " ".join(result.output.split())
        for problem in self.expected_problems(bundled_guests):
            self.assertIn(" ".join(problem.split()), output)


class XenRefBundlingTests(XenRefBundlingBase):
    """Build a guest and the host with each bundling form and inspect the host rootfs."""

    def test_auto_bundled_guest_is_installed(self):
        """XEN_GUEST_AUTO_BUNDLE: the guest deploys its config, the host installs it."""
        self.configure(f'XEN_GUEST_AUTO_BUNDLE:pn-{GUEST} = "1"\n')
        bitbake(GUEST)
        bitbake(HOST)
        guest = self.guest_vars()
        deployed = os.path.join(guest["DEPLOY_DIR_IMAGE"], "xen-guest-bundle-{}.cfg".format(guest["IMAGE_LINK_NAME"]))
        self.assertTrue(os.path.isfile(deployed), f"the guest did not deploy {deployed}")
        rootfs = self.host_vars()["IMAGE_ROOTFS"]
        installed = os.path.join(rootfs, "etc/xen", os.path.basename(deployed))
        self.assertIn(installed, self.bundled_configs(rootfs))
        config = self.assert_guest_installed(rootfs, installed)
        self.assertEqual(config.get("name"), parse_xl_config_file(deployed).get("name"))

    def test_bundled_guests_pair_is_installed(self):
        """XEN_BUNDLED_GUESTS: a rootfs:kernel pair becomes a generated config."""
        self.configure()
        bitbake(GUEST)
        guest = self.guest_vars()
        pair = "{}.ext4:{}".format(guest["IMAGE_LINK_NAME"], guest["KERNEL_IMAGETYPE"])
        self.configure(f'XEN_BUNDLED_GUESTS = "{pair}"\n')
        bitbake(HOST)
        rootfs = self.host_vars()["IMAGE_ROOTFS"]
        configs = self.bundled_configs(rootfs)
        self.assertEqual(len(configs), 1, f"expected one generated config for {pair}, found {configs}")
        config = self.assert_guest_installed(rootfs, configs[0])
        self.assertEqual(os.path.basename(configs[0]), "xen-guest-bundle-{}.cfg".format(config.get("name")))

    def test_config_in_deploy_dir_is_installed(self):
        """A hand-written xen-guest-bundle*.cfg next to the guest's files is bundled as well."""
        self.configure()
        bitbake(GUEST)
        guest = self.guest_vars()
        deploy = guest["DEPLOY_DIR_IMAGE"]
        handwritten = os.path.join(deploy, "xen-guest-bundle-selftest-handwritten.cfg")
        self.track_for_cleanup(handwritten)
        with open(handwritten, "w") as cfg:
            cfg.write('# written by oe-selftest xenref_bundling\n'
                      'name = "selftest-handwritten"\n'
                      'type = "pvh"\n'
                      'memory = 128\n'
                      'kernel = "{}"\n'
                      'extra = "console=hvc0 root=/dev/xvda rw"\n'
                      'disk = ["file:{}.ext4,xvda,rw"]\n'
                      'vif = ["bridge=xenbr0"]\n'.format(guest["KERNEL_IMAGETYPE"], guest["IMAGE_LINK_NAME"]))  # relative to the deploy dir
        bitbake(HOST)
        rootfs = self.host_vars()["IMAGE_ROOTFS"]
        installed = os.path.join(rootfs, "etc/xen", os.path.basename(handwritten))
        self.assertIn(installed, self.bundled_configs(rootfs))
        config = self.assert_guest_installed(rootfs, installed)
        self.assertEqual(config.get("extra"), "console=hvc0 root=/dev/xvda rw", "unknown keys must be kept")
        with open(installed) as cfg:
            self.assertIn("# written by oe-selftest xenref_bundling", cfg.read(), "comments must be kept")

    def test_changing_the_guest_reruns_host_rootfs(self):
        self.configure(f'XEN_GUEST_AUTO_BUNDLE:pn-{GUEST} = "1"\n')
        bitbake(HOST)
        stamp = self.host_vars()["STAMP"]
        before = self.rootfs_stamps(stamp)
        self.assertTrue(before, f"no do_rootfs stamp for {HOST}")
        bitbake(HOST)
        self.assertEqual(self.rootfs_stamps(stamp)[-1], before[-1], "an unchanged guest reran do_rootfs")

        self.configure(f'XEN_GUEST_AUTO_BUNDLE:pn-{GUEST} = "1"\nIMAGE_INSTALL:append:pn-{GUEST} = " strace"\n')
        bitbake(HOST)
        after = self.rootfs_stamps(stamp)
        self.assertNotEqual(after[-1], before[-1],
                            f"changing {GUEST} did not change {HOST}:do_rootfs's task hash")

    def test_malformed_bundled_guests_stops_the_build(self):
        self.configure()
        bitbake(GUEST)
        self.assert_build_stops_with("just-a-rootfs-without-kernel")

    def test_missing_kernel_stops_the_build(self):
        self.configure()
        bitbake(GUEST)
        guest = self.guest_vars()
        self.assert_build_stops_with("{}.ext4:no-such-kernel-Image".format(guest["IMAGE_LINK_NAME"]))

    def test_image_size_grows_with_bundled_guests(self):
        self.configure()
        bitbake(HOST)
        host = self.host_vars()
        image = os.path.join(host["DEPLOY_DIR_IMAGE"], host["IMAGE_LINK_NAME"] + ".ext4")
        plain_size = os.path.getsize(os.path.realpath(image))

        self.configure(f'XEN_GUEST_AUTO_BUNDLE:pn-{GUEST} = "1"\n')
        bitbake(GUEST)
        bitbake(HOST)
        rootfs = self.host_vars()["IMAGE_ROOTFS"]
        guest_bytes = sum(os.path.getsize(p) for p in glob.glob(os.path.join(rootfs, IMAGES_DIR.lstrip("/"), "*")))
        self.assertGreater(guest_bytes, 0, f"no guest files in {IMAGES_DIR}")
        bundled_size = os.path.getsize(os.path.realpath(image))
        self.assertGreaterEqual(bundled_size - plain_size, guest_bytes,
                                f"the host image grew by {bundled_size - plain_size} bytes for "
                                f"{guest_bytes} bytes of bundled guests")


def minirootfs_archive(path):
    """A tiny root filesystem archive (a stand-in for Alpine's minirootfs: no internet here)."""
    with tarfile.open(path, "w:gz") as archive:
        for name, kind, data, mode in (("./", tarfile.DIRTYPE, b"", 0o755),
                                       ("./bin", tarfile.DIRTYPE, b"", 0o755),
                                       ("./bin/sh", tarfile.REGTYPE, b"#!shell\n", 0o755),
                                       ("./etc/hostname", tarfile.REGTYPE, b"alpine\n", 0o644)):
            info = tarfile.TarInfo(name)
            info.type, info.size, info.mode = kind, len(data), mode
            archive.addfile(info, io.BytesIO(data) if data else None)


class XenRefCompatTests(XenRefBundlingBase):
    """meta-virtualization's interface: BUNDLED_XEN_GUESTS entries and bundle packages."""

    def assert_staging_removed(self, rootfs):
        self.assertFalse(os.path.exists(os.path.join(rootfs, BUNDLES_DIR.lstrip("/"))),
                         f"{BUNDLES_DIR} must not be left in the host image")

    def test_recipe_entry_is_built_first_and_installed(self):
        """BUNDLED_XEN_GUESTS alone makes the host build the guest and bundle it."""
        self.configure(f'BUNDLED_XEN_GUESTS = "{GUEST}:autostart"\n'
                       f'XEN_GUEST_MEMORY[{GUEST}] = "256"\n')
        bitbake(HOST)   # not the guest first: do_rootfs waits for its do_image_complete
        rootfs = self.host_vars()["IMAGE_ROOTFS"]
        installed = os.path.join(rootfs, "etc/xen", f"{GUEST}.cfg")
        config = self.assert_guest_installed(rootfs, installed)
        self.assertEqual(config.get("memory"), "256")
        self.assertEqual(os.readlink(os.path.join(rootfs, "etc/xen/auto", f"{GUEST}.cfg")),
                         f"../{GUEST}.cfg")

    def test_recipe_entry_with_two_values_stops_the_build(self):
        flags = {"XEN_GUEST_NAME": {GUEST: "mini"}, "XEN_GUEST_MEMORY": {GUEST: "256", "mini": "512"}}
        self.configure(f'BUNDLED_XEN_GUESTS = "{GUEST}"\nXEN_GUEST_NAME[{GUEST}] = "mini"\n'
                       f'XEN_GUEST_MEMORY[{GUEST}] = "256"\nXEN_GUEST_MEMORY[mini] = "512"\n')
        result = bitbake(HOST, ignore_status=True)
        self.assertNotEqual(result.status, 0, "the build accepted two memory values for one guest")
        variables = MappingVariables({"BUNDLED_XEN_GUESTS": GUEST}, flags)
        expected = self.expected_entry_problems(variables)
        output = " ".join(result.output.split())
        for problem in expected:
            self.assertIn(" ".join(problem.split()), output)

    def expected_entry_problems(self, variables):
        """The engine's own messages for these entries (with the real deploy dir)."""
        from xenbundle import plan_bundle
        guest = self.guest_vars()
        recipe_guests = RecipeGuests(variables, machine=get_bb_vars(["MACHINE"], HOST)["MACHINE"],
                                     kernel_imagetype=guest["KERNEL_IMAGETYPE"])
        with tempfile.TemporaryDirectory() as empty_rootfs:
            try:
                plan_bundle(empty_rootfs, guest["DEPLOY_DIR_IMAGE"], recipe_guests=recipe_guests,
                            config_glob="xen-guest-bundle-none-*.cfg")
            except BundleError as err:
                return [p for p in err.problems if "two values for one guest" in p]
        self.fail("xenbundle accepts the entries; the test input is not bad")

    def assert_bundle_merged(self, package, config_name, domain):
        self.configure(f'IMAGE_INSTALL:append:pn-{HOST} = " {package}"\n')
        bitbake(HOST)
        rootfs = self.host_vars()["IMAGE_ROOTFS"]
        config = self.assert_guest_installed(rootfs, os.path.join(rootfs, "etc/xen", config_name))
        self.assertEqual(config.get("name"), domain)
        self.assertTrue(os.path.islink(os.path.join(rootfs, "etc/xen/auto", config_name)))
        self.assert_staging_removed(rootfs)

    def test_our_bundle_package_is_merged(self):
        self.assert_bundle_merged("xen-ref-guest-bundle-minimal", f"{GUEST}.cfg", GUEST)

    def test_meta_virtualization_bundle_package_is_merged(self):
        self.assert_bundle_merged("example-xen-guest-bundle", f"{GUEST}.cfg", GUEST)

    def test_imported_minirootfs_bundle_is_merged(self):
        """xen-ref-alpine-bundle with its archive replaced by a local file:// one."""
        package = "xen-ref-alpine-bundle"
        arch = get_bb_vars(["TARGET_ARCH"], package)["TARGET_ARCH"]
        folder = tempfile.mkdtemp(prefix="xenref-selftest-")
        self.track_for_cleanup(folder)
        name = f"alpine-minirootfs-3.23.3-{arch}.tar.gz"
        minirootfs_archive(os.path.join(folder, name))
        self.configure(f'IMAGE_INSTALL:append:pn-{HOST} = " {package}"\n'
                       f'SRC_URI:pn-{package} = "file://{name};unpack=0"\n'
                       f'FILESEXTRAPATHS:prepend:pn-{package} := "{folder}:"\n')
        bitbake(HOST)
        rootfs = self.host_vars()["IMAGE_ROOTFS"]
        config = self.assert_guest_installed(rootfs, os.path.join(rootfs, "etc/xen/alpine.cfg"))
        self.assertEqual(config.get("disk"), ["file:/var/lib/xen/images/alpine.img,xvda,rw"])
        self.assert_staging_removed(rootfs)
