# Settings shared by the host bundling class (xen-ref-bundle) and the guest
# class (xen-ref-guest): the per-guest xl settings and how they are looked up.
#
# Each setting is a variable whose value is the default for every guest, and
# whose varflags, keyed by domain name, override it for one guest:
#
#   XEN_GUEST_MEMORY = "256"                 # every guest: 256 MiB
#   XEN_GUEST_MEMORY[db-guest] = "1024"      # domain "db-guest": 1 GiB
#
# docs/bundling.md lists the variables and their defaults.

# Guest RAM in MiB (xl "memory").
XEN_GUEST_MEMORY ??= "512"
# Number of virtual CPUs (xl "vcpus").
XEN_GUEST_VCPUS ??= "1"
# Network interfaces, one xl vif spec per entry, entries separated by
# whitespace (xl "vif"); empty for no network.
XEN_GUEST_VIF ??= "bridge=xenbr0"
# Guest kernel command line (xl "extra").
XEN_GUEST_EXTRA ??= "root=/dev/xvda ro console=hvc0 ip=dhcp"

# Varflags of the settings that are BitBake's own, not domain names.
XEN_REF_RESERVED_FLAGS = "doc vardeps vardepsexclude vardepvalue vardepvalueexclude export unexport func python \
                          dirs cleandirs depends rdepends deptask rdeptask recrdeptask recideptask noexec nostamp \
                          postfuncs prefuncs lineno filename type"

def xen_ref_is_true(value):
    """bb.utils.to_boolean without the exception: unknown words count as false."""
    try:
        return bb.utils.to_boolean(value)
    except ValueError:
        return False

def xen_ref_setting_names():
    """The variables that hold per-guest settings, in GuestSettings order."""
    return ("XEN_GUEST_MEMORY", "XEN_GUEST_VCPUS", "XEN_GUEST_VIF", "XEN_GUEST_EXTRA")

def xen_ref_setting_value(d, var, domain):
    """The value of setting ``var`` for ``domain``: its varflag, else the variable."""
    value = d.getVarFlag(var, domain) if domain else None
    if value is None:
        value = d.getVar(var)
    return (value or "").strip()

def xen_ref_guest_settings(d, domain):
    """Build the xenbundle.GuestSettings for ``domain`` from the datastore.

    Raises xenbundle.BundleError (naming the variable and the domain) when a
    number is not usable, so that the task turns it into one clear bb.fatal.
    """
    import xenbundle

    def number(var, example):
        text = xen_ref_setting_value(d, var, domain)
        where = "%s[%s]" % (var, domain) if d.getVarFlag(var, domain) is not None else var
        if not text.isdigit() or int(text, 10) <= 0:
            raise xenbundle.BundleError([
                "guest '%s': %s = \"%s\" is not a positive whole number; set it to e.g. \"%s\""
                % (domain, where, text, example)])
        return int(text, 10)

    return xenbundle.GuestSettings(
        name=domain,
        memory=number("XEN_GUEST_MEMORY", "512"),
        vcpus=number("XEN_GUEST_VCPUS", "1"),
        vif=tuple(xen_ref_setting_value(d, "XEN_GUEST_VIF", domain).split()),
        extra=xen_ref_setting_value(d, "XEN_GUEST_EXTRA", domain),
    )

def xen_ref_settings_vardeps(d):
    """Dependency names for the settings, including every per-domain varflag.

    BitBake hashes a variable's value but not its arbitrary varflags, so each
    ``VAR[domain]`` is listed explicitly: changing one guest's memory then
    changes the task signature and reruns the task.
    """
    reserved = set((d.getVar("XEN_REF_RESERVED_FLAGS") or "").split())
    deps = []
    for var in xen_ref_setting_names():
        deps.append(var)
        flags = d.getVarFlags(var) or {}
        for flag in sorted(flags):
            if flag.startswith("_") or flag in reserved:
                continue
            deps.append("%s[%s]" % (var, flag))
    return " ".join(deps)
