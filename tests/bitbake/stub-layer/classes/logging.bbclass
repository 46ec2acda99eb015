# STAND-IN for oe-core's logging.bbclass, used only by tests/bitbake: the
# shell logging functions that oe-core's configuration gives every recipe
# (meta-virtualization's shell tasks call them). These print to the task log
# and stop the task on bbfatal, which is all the tests need; the real ones
# also forward the messages to BitBake's UI.

bbnote() {
    echo "NOTE: $*"
}

bbwarn() {
    echo "WARNING: $*"
}

bbfatal() {
    echo "ERROR: $*"
    exit 1
}
