"""Parse-time wiring of the bundling classes, as plain functions of variable values.

While BitBake parses a host image, ``xen-ref-bundle.bbclass`` decides which guest
image recipes the host's ``do_rootfs`` waits for and which deploy-dir files are
third-party inputs to checksum; ``xen-ref-common.bbclass`` turns the per-guest
``XEN_GUEST_*`` variables and their per-domain varflags into
:class:`~xenbundle.guests.GuestSettings` and task signature dependencies.  The
decisions are made here, from strings, lists and paths the classes read from the
datastore, so that they can be tested without BitBake:

* :func:`image_output_recipe` - the image recipe behind an oe-core image output name;
* :func:`built_guest_recipes` and :func:`rootfs_task_depends` - what ``do_rootfs``
  waits for;
* :func:`third_party_inputs` - the deploy-dir files no awaited task writes, for
  ``do_rootfs[file-checksums]``;
* :func:`entry_recipes` and :func:`entry_inputs` - the same for the recipe entries
  of ``BUNDLED_XEN_GUESTS`` (host images) and ``XEN_GUEST_BUNDLES`` (bundle recipes);
* :func:`import_task_depends` - the native tools a bundle recipe's imports need;
* :func:`settings_vardeps` and :func:`entry_vardeps` - the signature dependencies
  of the per-guest settings (:mod:`xenbundle.settings` resolves the settings);
* :func:`parse_yes_no` and :func:`is_yes` - BitBake's yes/no words.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .deploydir import inspect, read_regular_file
from .disk import DiskSpecError, parse_disk
from .entries import parse_guest_entries
from .guests import bundle_config_name, parse_bundled_guests
from .plan import plan_bundle
from .settings import ENTRY_VARIABLES, PLAIN_VARIABLES, SETTINGS, Variables, vardeps
from .xlcfg import XlConfigError, decode, parse

__all__ = [
    "AUTO_BUNDLE_OVERRIDE_PREFIX",
    "CONFIG_GLOB",
    "SETTING_VARIABLES",
    "EntryContext",
    "ThirdPartyInputs",
    "auto_bundled_recipes",
    "built_guest_recipes",
    "config_inputs",
    "entry_inputs",
    "entry_recipes",
    "entry_vardeps",
    "image_output_recipe",
    "import_task_depends",
    "is_built_file",
    "is_yes",
    "parse_yes_no",
    "rootfs_task_depends",
    "settings_vardeps",
    "third_party_inputs",
    "uses_shared_kernel",
]

#: Deploy-dir configs that are bundled (third-party and auto-bundled ones).
CONFIG_GLOB = "xen-guest-bundle*.cfg"

#: How a configuration switches auto-bundling on for one recipe:
#: ``XEN_GUEST_AUTO_BUNDLE:pn-<recipe> = "1"``.
AUTO_BUNDLE_OVERRIDE_PREFIX = "XEN_GUEST_AUTO_BUNDLE:pn-"

#: The variables holding per-guest settings, in :class:`GuestSettings` order.
SETTING_VARIABLES: tuple[str, ...] = tuple(s.variable for s in SETTINGS)

#: Native tools each import type needs (the bundle recipe's do_compile waits for them).
IMPORT_TOOL_DEPENDS: dict[str, tuple[str, ...]] = {
    "rootfs_dir": ("e2fsprogs-native:do_populate_sysroot",),
    "qcow2": ("qemu-system-native:do_populate_sysroot",),
    "ext4": (),
    "raw": (),
}

# Image types oe-core deploys a root filesystem as; conversions (".qcow2",
# ".zst", ...) may follow.
_IMAGE_TYPES = (r"(?:ext[234]|wic|btrfs|f2fs|squashfs[a-z0-9-]*|erofs[a-z0-9-]*|cramfs|jffs2"
                r"|ubifs|ubi|cpio|tar|hddimg|iso|img)")

_TRUE_WORDS = ("y", "yes", "1", "true")
_FALSE_WORDS = ("n", "no", "0", "false")


def parse_yes_no(value: str | None) -> bool:
    """A yes/no variable value as BitBake's ``bb.utils.to_boolean`` reads it.

    ``y``, ``yes``, ``1``, ``true`` (any case) are true; ``n``, ``no``, ``0``,
    ``false`` and an empty or unset value are false.  Raises ``ValueError`` for
    any other word, so that the caller can say which variable is wrong.
    """
    if not value:
        return False
    word = value.lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError(f"{value!r} is not a yes/no value")


def is_yes(value: str | None) -> bool:
    """Like :func:`parse_yes_no`, but a word that is not yes/no counts as no.

    For parse-time decisions whose task reports the bad value itself later.
    """
    try:
        return parse_yes_no(value)
    except ValueError:
        return False


def image_output_recipe(filename: str, image_suffix: str) -> str | None:
    """The image recipe that deploys ``filename``, if the name follows oe-core's naming.

    oe-core names image outputs ``<recipe><IMAGE_MACHINE_SUFFIX><IMAGE_NAME_SUFFIX>.<type>``
    (the link) and ``...<IMAGE_VERSION_SUFFIX>.<type>`` (the file), for example
    ``xen-guest-image-minimal-qemuarm64.rootfs.ext4``; ``<type>`` is an image type
    with optional conversions (``ext4``, ``ext4.qcow2``, ``wic.zst``, ``tar.bz2``, ...).
    ``image_suffix`` is ``IMAGE_MACHINE_SUFFIX`` followed by ``IMAGE_NAME_SUFFIX``;
    when it is empty no name can be told apart from a third-party file, so the
    answer is ``None``, as it is for names of any other form.  Directories in
    ``filename`` are ignored.
    """
    if not image_suffix:
        return None
    match = re.match(r"^([A-Za-z0-9][A-Za-z0-9+._-]*?)" + re.escape(image_suffix)
                     + r"(?:-[0-9]+)?\." + _IMAGE_TYPES + r"(?:\.[A-Za-z0-9]+)*$",
                     os.path.basename(filename))
    return match.group(1) if match else None


def auto_bundled_recipes(overrides: Mapping[str, str | None]) -> set[str]:
    """Recipes for which configuration switches auto-bundling on.

    ``overrides`` maps variable names such as ``XEN_GUEST_AUTO_BUNDLE:pn-<recipe>``
    (possibly with further overrides after the recipe name) to their values; names
    without :data:`AUTO_BUNDLE_OVERRIDE_PREFIX` and values that are not yes
    (:func:`is_yes`) are ignored.
    """
    recipes: set[str] = set()
    for name, value in overrides.items():
        if name.startswith(AUTO_BUNDLE_OVERRIDE_PREFIX) and is_yes(value):
            recipe = name[len(AUTO_BUNDLE_OVERRIDE_PREFIX):].split(":")[0]
            if recipe:
                recipes.add(recipe)
    return recipes


def built_guest_recipes(bundled_guests: str, *, guest_images: Iterable[str] = (),
                        auto_bundle_overrides: Mapping[str, str | None] | None = None,
                        external: Iterable[str] = (), image_suffix: str = "",
                        entry_recipes: Iterable[str] = ()) -> list[str]:
    """Guest image recipes the host's ``do_rootfs`` must wait for, sorted.

    These are ``guest_images`` (``XEN_GUEST_IMAGES``), the recipes auto-bundling is
    switched on for (:func:`auto_bundled_recipes` of ``auto_bundle_overrides``),
    ``entry_recipes`` (:func:`entry_recipes` of ``BUNDLED_XEN_GUESTS``) and the
    recipes that the rootfs names of ``bundled_guests`` (``XEN_BUNDLED_GUESTS``)
    point at (:func:`image_output_recipe`), except those whose rootfs name or
    recipe is in ``external`` (``XEN_GUEST_EXTERNAL``).  Malformed
    ``XEN_BUNDLED_GUESTS`` entries are left out: the bundling step reports them.
    """
    excluded = set(external)
    recipes = set(guest_images) | auto_bundled_recipes(auto_bundle_overrides or {})
    recipes |= {recipe for recipe in entry_recipes if recipe not in excluded}
    for entry in parse_bundled_guests(bundled_guests, lenient=True):
        recipe = image_output_recipe(entry.rootfs, image_suffix)
        if recipe and entry.rootfs not in excluded and recipe not in excluded:
            recipes.add(recipe)
    return sorted(recipes)


def rootfs_task_depends(recipes: Iterable[str]) -> list[str]:
    """``do_rootfs[depends]`` entries for the guest image ``recipes``.

    Each recipe's ``do_image_complete`` (its deployed images and config), and the
    kernel's ``do_deploy``, because generated guest configs usually boot the
    kernel the host build deploys.
    """
    return [f"{recipe}:do_image_complete" for recipe in recipes] + ["virtual/kernel:do_deploy"]


def is_built_file(filename: str, recipes: Iterable[str], *, image_suffix: str,
                  kernel_imagetype: str) -> bool:
    """True if the deploy-dir file ``filename`` comes from a task ``do_rootfs`` waits for.

    Those are the kernel (``KERNEL_IMAGETYPE`` and its versioned ``<type>-...``
    names), the image outputs of ``recipes`` and the configs these recipes deploy
    when auto-bundled (``xen-guest-bundle-<recipe><image_suffix>.cfg``).
    """
    name = os.path.basename(filename)
    if kernel_imagetype and (name == kernel_imagetype or name.startswith(kernel_imagetype + "-")):
        return True
    recipes = set(recipes)
    if image_output_recipe(name, image_suffix) in recipes:
        return True
    return any(name == bundle_config_name(recipe + image_suffix) for recipe in recipes)


def config_inputs(config_file: str, deploy_dir: str) -> list[str]:
    """Files in ``deploy_dir`` that the xl config ``config_file`` refers to (best effort).

    A config that does not validate yields an empty list: this is for checksumming
    inputs at parse time, and the bundling step reports the config's problems.
    """
    # Planning needs a root to plan into; an empty one is enough, nothing is written.
    with tempfile.TemporaryDirectory(prefix="xen-ref-plan-") as empty_root:
        try:
            plan = plan_bundle(empty_root, deploy_dir, "",
                               config_glob=glob.escape(os.path.basename(config_file)))
        except (ValueError, OSError):
            return []
    return plan.inputs()


@dataclass(frozen=True)
class ThirdPartyInputs:
    """Deploy-dir files bundling reads that no task ``do_rootfs`` waits for writes.

    ``files`` are absolute paths, sorted, present or not; ``configs`` are the
    third-party ``xen-guest-bundle*.cfg`` files among them, whose contents decided
    part of ``files`` (so a change to them must invalidate the parse result).
    """

    files: tuple[str, ...]
    configs: tuple[str, ...]

    def file_checksums(self) -> list[str]:
        """``path:True|False`` entries for BitBake's ``file-checksums`` varflag.

        The flag says whether the file existed when the recipe was parsed.
        """
        return [f"{path}:{os.path.exists(path)}" for path in self.files]


def third_party_inputs(deploy_dir: str, bundled_guests: str, built_recipes: Iterable[str], *,
                       image_suffix: str, kernel_imagetype: str) -> ThirdPartyInputs:
    """The deploy-dir files of ``bundled_guests`` and deploy-dir configs not built by a task.

    ``built_recipes`` are the recipes ``do_rootfs`` waits for
    (:func:`built_guest_recipes`); files they or the kernel deploy are tracked by
    the task dependency instead (:func:`is_built_file`).  Absolute rootfs or kernel
    names in ``bundled_guests`` are left out; malformed entries too (the bundling
    step reports them).  Of each third-party config, the config itself and the
    files it refers to (:func:`config_inputs`) are inputs.  Names that are not
    regular files (after resolving links inside the deploy directory: a FIFO, a
    directory, a link leaving it...) are left out, since BitBake reads every
    listed file; a missing file or a dangling link is listed (as missing).
    """
    recipes = set(built_recipes)

    def built(name: str) -> bool:
        return is_built_file(name, recipes, image_suffix=image_suffix,
                             kernel_imagetype=kernel_imagetype)

    deploy_real = os.path.realpath(deploy_dir)

    def checksummable(path: str) -> bool:
        # BitBake open()s and reads every file-checksums entry: a FIFO would hang the
        # parse.  Names that are no regular file are left to the bundling step to report.
        return "\0" not in path and inspect(path, deploy_real).state in ("file", "missing",
                                                                          "dangling")

    files: set[str] = set()
    for entry in parse_bundled_guests(bundled_guests, lenient=True):
        for name in (entry.rootfs, entry.kernel):
            if not built(name) and not os.path.isabs(name):
                files.add(os.path.join(deploy_dir, name))
    configs: list[str] = []
    for config in sorted(glob.glob(os.path.join(glob.escape(deploy_dir), CONFIG_GLOB))):
        if built(config) or not checksummable(config):
            continue
        configs.append(config)
        files.add(config)
        files.update(source for source in config_inputs(config, deploy_dir) if not built(source))
    return ThirdPartyInputs(files=tuple(sorted(f for f in files if checksummable(f))),
                            configs=tuple(configs))


def settings_vardeps(variables: Variables, reserved: Iterable[str]) -> list[str]:
    """Signature dependencies of the settings: each variable, its ``*_DEFAULT`` and varflags.

    See :func:`xenbundle.settings.vardeps` (BitBake hashes no arbitrary varflag).
    """
    names = [name for s in SETTINGS for name in (s.variable, s.default_variable)]
    return vardeps(variables, names, reserved)


def entry_vardeps(variables: Variables, variable: str, reserved: Iterable[str]) -> list[str]:
    """Signature dependencies of a task that bundles the entries of ``variable``.

    The entry variable, the settings (:func:`settings_vardeps`), the plain variables
    of the entry forms and every varflag of the entry-keyed variables.
    """
    return ([variable] + settings_vardeps(variables, reserved)
            + vardeps(variables, PLAIN_VARIABLES + ENTRY_VARIABLES, reserved))


# ----------------------------------------------------------------- recipe entries

def _entry_flag(variables: Variables, name: str, entry: str) -> str | None:
    value = variables.flag(name, entry)
    return value.strip() if value and value.strip() else None


def entry_recipes(variables: Variables, variable: str) -> list[str]:
    """The recipes whose ``do_image_complete`` the entries of ``variable`` wait for.

    Every well-formed entry without the ``external`` tag and without an import
    (``XEN_GUEST_SOURCE_TYPE[<entry>]``: its image comes from a fetched file).
    Malformed entries are left out: the task reports them.
    """
    return [entry.name for entry in
            parse_guest_entries(variables.value(variable), variable, lenient=True)
            if not entry.external and not _entry_flag(variables, "XEN_GUEST_SOURCE_TYPE", entry.name)]


def uses_shared_kernel(variables: Variables, variable: str) -> bool:
    """True when an entry of ``variable`` boots ``KERNEL_IMAGETYPE`` of the deploy directory.

    That is every entry without ``XEN_GUEST_KERNEL[<entry>]``; the task then waits
    for ``virtual/kernel:do_deploy``.
    """
    return any(not _entry_flag(variables, "XEN_GUEST_KERNEL", entry.name)
               for entry in parse_guest_entries(variables.value(variable), variable, lenient=True))


def import_task_depends(variables: Variables, variable: str) -> list[str]:
    """The native tool tasks the imports of the entries of ``variable`` need, sorted."""
    depends: set[str] = set()
    for entry in parse_guest_entries(variables.value(variable), variable, lenient=True):
        depends.update(IMPORT_TOOL_DEPENDS.get(
            _entry_flag(variables, "XEN_GUEST_SOURCE_TYPE", entry.name) or "", ()))
    return sorted(depends)


def _custom_config_inputs(path: str, deploy_dir: str) -> list[str]:
    """Deploy-dir files a ``XEN_GUEST_CONFIG_FILE`` refers to besides its first disk and kernel.

    Those two are replaced by the entry's rootfs and kernel; a config that cannot be
    read gives nothing (the bundling step reports it).
    """
    try:
        cfg = parse(decode(read_regular_file(os.path.realpath(path))), path)
    except (OSError, XlConfigError):
        return []
    refs = [v for v in (cfg.get(k) for k in ("ramdisk", "device_tree")) if isinstance(v, str)]
    disks = cfg.get("disk")
    for item in (disks[1:] if isinstance(disks, list) else []):
        try:
            target = parse_disk(item).target if isinstance(item, str) else None
        except DiskSpecError:
            continue
        if target and not target.startswith("/dev/"):
            refs.append(target)
    return [os.path.normpath(os.path.join(deploy_dir, r)) for r in refs if r]


@dataclass(frozen=True)
class EntryContext:
    """What :func:`entry_inputs` needs besides the variables."""

    deploy_dir: str
    machine: str
    unpack_dir: str | None
    image_suffix: str
    kernel_imagetype: str
    built_recipes: tuple[str, ...]


def _entry_files(variables: Variables, entry: str, ctx: EntryContext) -> list[str]:
    """The files an entry may read from the deploy directory or UNPACKDIR.

    The default rootfs names of an awaited recipe are that recipe's output.
    """
    rootfs = _entry_flag(variables, "XEN_GUEST_ROOTFS", entry)
    fstype = (_entry_flag(variables, "XEN_GUEST_IMAGE_FSTYPE", entry)
              or (variables.value("XEN_GUEST_IMAGE_FSTYPE") or "ext4").strip())
    names = [rootfs] if rootfs else [] if entry in ctx.built_recipes else [
        f"{entry}-{ctx.machine}.{fstype}", f"{entry}-{ctx.machine}.rootfs.{fstype}"]
    kernel = _entry_flag(variables, "XEN_GUEST_KERNEL", entry)
    if kernel and kernel != "none":
        names += _named_file_places(kernel, ctx)
    return [os.path.join(ctx.deploy_dir, name) for name in names]


def _named_file_places(name: str, ctx: EntryContext) -> list[str]:
    """Where a file named by a varflag may be: the deploy dir, UNPACKDIR (or the path)."""
    if ctx.unpack_dir and not os.path.isabs(name):
        return [name, os.path.join(ctx.unpack_dir, name)]
    return [name]


def _ramdisk_files(variables: Variables, entry: str, ctx: EntryContext) -> list[str]:
    """The places of an entry's ``XEN_GUEST_RAMDISK`` (the varflag, else the plain value)."""
    ramdisk = _entry_flag(variables, "XEN_GUEST_RAMDISK", entry) or (
        variables.value("XEN_GUEST_RAMDISK") or "").strip()
    if not ramdisk or ramdisk == "none":
        return []
    return [os.path.join(ctx.deploy_dir, n) for n in _named_file_places(ramdisk, ctx)]


def entry_inputs(variables: Variables, variable: str, ctx: EntryContext) -> ThirdPartyInputs:
    """Files the entries of ``variable`` read that no awaited task writes.

    For ``do_rootfs[file-checksums]`` (hosts) or ``do_install[file-checksums]``
    (bundle recipes), like :func:`third_party_inputs`: each ``XEN_GUEST_CONFIG_FILE``
    (listed in ``configs`` too: its content decides part of the list) and the
    deploy-dir files it refers to, and the rootfs, kernel and ramdisk
    (``XEN_GUEST_RAMDISK``, for generated configs) files of each entry, except files
    of ``ctx.built_recipes`` and the kernel (:func:`is_built_file`).
    Imported guests read fetched files, which the fetcher tracks.
    """
    def built(path: str) -> bool:
        return is_built_file(path, ctx.built_recipes, image_suffix=ctx.image_suffix,
                             kernel_imagetype=ctx.kernel_imagetype)

    files: set[str] = set()
    configs: list[str] = []
    for entry in parse_guest_entries(variables.value(variable), variable, lenient=True):
        name = entry.name
        config = _entry_flag(variables, "XEN_GUEST_CONFIG_FILE", name)
        if config:
            path = config if os.path.isabs(config) else os.path.join(ctx.unpack_dir or "", config)
            configs.append(path)
            files.add(path)
            files.update(f for f in _custom_config_inputs(path, ctx.deploy_dir) if not built(f))
        else:
            files.update(f for f in _ramdisk_files(variables, name, ctx) if not built(f))
        if _entry_flag(variables, "XEN_GUEST_SOURCE_TYPE", name):
            continue
        files.update(f for f in _entry_files(variables, name, ctx) if not built(f))
    usable = tuple(sorted(f for f in files if "\0" not in f and inspect(
        f, os.path.realpath(os.path.dirname(f))).state in ("file", "missing", "dangling")))
    return ThirdPartyInputs(files=usable, configs=tuple(c for c in configs if c in usable))
