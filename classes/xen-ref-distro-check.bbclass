# Early, explained errors for images that boot under Xen.
#
# features_check already refuses the image when a feature listed in
# REQUIRED_DISTRO_FEATURES is missing. This class adds the requirement that
# is easy to miss: meta-virtualization configures linux-yocto for Xen
# (cfg/xen.scc: dom0/domU support and the xen-* backend modules) only when
# DISTRO_FEATURES has BOTH "virtualization" and "xen". Without it the kernel
# has no Xen support and the image fails late, in do_rootfs, because the
# kernel-module-xen-* packages do not exist.
#
# Kernels other than linux-yocto bring their own configuration; set
# XEN_REF_KERNEL_NEEDS_VIRTUALIZATION = "0" if yours has Xen support without
# meta-virtualization's fragments.

inherit features_check

XEN_REF_KERNEL_NEEDS_VIRTUALIZATION ??= "${@'1' if (d.getVar('PREFERRED_PROVIDER_virtual/kernel') or '').startswith('linux-yocto') else '0'}"

# Skipping a recipe with a reason can only be done while parsing.
# nooelint: oelint.task.noanonpython
python __anonymous() {
    needs = d.getVar("XEN_REF_KERNEL_NEEDS_VIRTUALIZATION") or "0"
    features = (d.getVar("DISTRO_FEATURES") or "").split()
    if needs == "1" and "xen" in features and "virtualization" not in features:
        raise bb.parse.SkipRecipe(
            "DISTRO_FEATURES has 'xen' but not 'virtualization': meta-virtualization adds the "
            "Xen kernel configuration to %s only when both are set, so this image would have "
            "no Xen kernel support. Add DISTRO_FEATURES:append = \" virtualization\" to your "
            "distro or local.conf (or set XEN_REF_KERNEL_NEEDS_VIRTUALIZATION = \"0\" if your "
            "kernel has Xen support of its own)." % d.getVar("PREFERRED_PROVIDER_virtual/kernel"))
}
