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

def xen_ref_guest_settings(d, domain):
    """The xenbundle.GuestSettings of ``domain``: XEN_GUEST_* and their [domain] varflags.

    Raises xenbundle.BundleError (naming the variable and the domain) when a
    number is not usable, so that the task turns it into one clear bb.fatal.
    """
    import xenbundle.wiring
    names = xenbundle.wiring.SETTING_VARIABLES
    return xenbundle.wiring.guest_settings(
        domain,
        {var: d.getVar(var) for var in names},
        {var: d.getVarFlag(var, domain) if domain else None for var in names})

def xen_ref_settings_vardeps(d):
    """Signature dependencies of the settings, every per-domain varflag included.

    See xenbundle.wiring.settings_vardeps (BitBake does not hash varflags).
    """
    import xenbundle.wiring
    flags = {var: list(d.getVarFlags(var) or {}) for var in xenbundle.wiring.SETTING_VARIABLES}
    reserved = (d.getVar("XEN_REF_RESERVED_FLAGS") or "").split()
    return " ".join(xenbundle.wiring.settings_vardeps(flags, reserved))
