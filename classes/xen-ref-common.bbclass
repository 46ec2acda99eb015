# Settings shared by the host bundling class (xen-ref-bundle), the guest
# class (xen-ref-guest) and the bundle package class (xen-ref-guest-bundle):
# the per-guest xl settings and how they are looked up.
#
# Each setting is a variable whose value is the default for every guest, and
# whose varflags, keyed by a guest, override it for one guest:
#
#   XEN_GUEST_MEMORY = "256"                 # every guest: 256 MiB
#   XEN_GUEST_MEMORY[db-guest] = "1024"      # guest "db-guest": 1 GiB
#
# A guest is keyed by its domain name, and a guest named by an entry of
# BUNDLED_XEN_GUESTS / XEN_GUEST_BUNDLES also by that entry (its recipe name,
# meta-virtualization's key). The default of every guest is the plain
# variable, which defaults to meta-virtualization's XEN_GUEST_*_DEFAULT.
# Two different values for one guest from the two key forms (or from the
# plain and the *_DEFAULT variable) are an error, never a silent choice.
# docs/bundling.md lists the variables, their defaults and the precedence.

# meta-virtualization's names for the defaults of every guest. The values
# must agree with xenbundle.settings.WEAK_DEFAULTS (tests/bitbake checks).
XEN_GUEST_MEMORY_DEFAULT ??= "512"
XEN_GUEST_VCPUS_DEFAULT ??= "1"
XEN_GUEST_VIF_DEFAULT ??= "bridge=xenbr0"
XEN_GUEST_EXTRA_DEFAULT ??= "root=/dev/xvda ro console=hvc0 ip=dhcp"
XEN_GUEST_DISK_DEVICE_DEFAULT ??= "xvda"

# Guest RAM in MiB (xl "memory").
XEN_GUEST_MEMORY ??= "${XEN_GUEST_MEMORY_DEFAULT}"
# Number of virtual CPUs (xl "vcpus").
XEN_GUEST_VCPUS ??= "${XEN_GUEST_VCPUS_DEFAULT}"
# Network interfaces, one xl vif spec per entry, entries separated by
# whitespace (xl "vif"); empty for no network.
XEN_GUEST_VIF ??= "${XEN_GUEST_VIF_DEFAULT}"
# Guest kernel command line (xl "extra").
XEN_GUEST_EXTRA ??= "${XEN_GUEST_EXTRA_DEFAULT}"
# Virtual device of the root disk in generated configs (xl disk "vdev").
XEN_GUEST_DISK_DEVICE ??= "${XEN_GUEST_DISK_DEVICE_DEFAULT}"

# Image type of entry guests' rootfs: <recipe>-<MACHINE>[.rootfs].<type>.
XEN_GUEST_IMAGE_FSTYPE ??= "ext4"
# Size in MiB of images imported from a root filesystem (rootfs_dir); empty:
# computed from the content.
XEN_GUEST_IMAGE_SIZE_DEFAULT ??= ""

# Varflags of the settings that are BitBake's own, not guest names.
XEN_REF_RESERVED_FLAGS = "doc vardeps vardepsexclude vardepvalue vardepvalueexclude export unexport func python \
                          dirs cleandirs depends rdepends deptask rdeptask recrdeptask recideptask noexec nostamp \
                          postfuncs prefuncs lineno filename type"

def xen_ref_variables(d):
    """The datastore as xenbundle.settings.Variables (what xenbundle reads)."""
    import xenbundle.settings
    return xenbundle.settings.DatastoreVariables(d)

def xen_ref_guest_settings(d, domain):
    """The xenbundle.GuestSettings of ``domain``: XEN_GUEST_* and their [domain] varflags.

    Raises xenbundle.BundleError (naming the variable and the domain) when a
    value is not usable, so that the task turns it into one clear bb.fatal.
    """
    import xenbundle.settings
    return xenbundle.settings.guest_settings(xen_ref_variables(d), domain)

def xen_ref_settings_vardeps(d):
    """Signature dependencies of the settings, every per-guest varflag included.

    See xenbundle.wiring.settings_vardeps (BitBake does not hash varflags).
    """
    import xenbundle.wiring
    reserved = (d.getVar("XEN_REF_RESERVED_FLAGS") or "").split()
    return " ".join(xenbundle.wiring.settings_vardeps(xen_ref_variables(d), reserved))

def xen_ref_entry_vardeps(d, variable):
    """Signature dependencies of a task bundling the entries of ``variable``."""
    import xenbundle.wiring
    reserved = (d.getVar("XEN_REF_RESERVED_FLAGS") or "").split()
    return " ".join(xenbundle.wiring.entry_vardeps(xen_ref_variables(d), variable, reserved))

def xen_ref_unpack_dir(d):
    """Where the fetcher put SRC_URI files: UNPACKDIR, or WORKDIR before it existed."""
    return d.getVar("UNPACKDIR") or d.getVar("WORKDIR")

def xen_ref_recipe_guests(d, variable, imports_allowed):
    """xenbundle.recipeguests.RecipeGuests of the entries of ``variable``."""
    import xenbundle.recipeguests
    return xenbundle.recipeguests.RecipeGuests(
        xen_ref_variables(d), variable, machine=d.getVar("MACHINE") or "",
        kernel_imagetype=d.getVar("KERNEL_IMAGETYPE") or "", unpack_dir=xen_ref_unpack_dir(d),
        import_dir=d.getVar("XEN_REF_IMPORT_DIR") if imports_allowed else None,
        imports_allowed=imports_allowed,
        hvm=(d.getVar("TARGET_ARCH") or "") in ("x86_64", "i386", "i486", "i586", "i686"))

def xen_ref_entry_inputs(d, variable, built_recipes):
    """Third-party files the entries of ``variable`` read (xenbundle.wiring.entry_inputs)."""
    import xenbundle.wiring
    context = xenbundle.wiring.EntryContext(
        deploy_dir=d.getVar("DEPLOY_DIR_IMAGE"), machine=d.getVar("MACHINE") or "",
        unpack_dir=xen_ref_unpack_dir(d), image_suffix=xen_ref_image_suffix(d),
        kernel_imagetype=d.getVar("KERNEL_IMAGETYPE") or "", built_recipes=tuple(built_recipes))
    return xenbundle.wiring.entry_inputs(xen_ref_variables(d), variable, context)

def xen_ref_image_suffix(d):
    """IMAGE_MACHINE_SUFFIX + IMAGE_NAME_SUFFIX: what oe-core puts between recipe and type."""
    return (d.getVar("IMAGE_MACHINE_SUFFIX") or "") + (d.getVar("IMAGE_NAME_SUFFIX") or "")
