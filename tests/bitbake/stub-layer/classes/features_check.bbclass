# STAND-IN for oe-core's features_check.bbclass, used only by tests/bitbake.
# oe-core is not available to these tests (the bb library comes from a PyPI
# wheel); xen-ref-distro-check inherits features_check, and its own check is
# what is tested here. The real class skips recipes whose
# REQUIRED_DISTRO_FEATURES are missing; this stand-in does nothing.
