#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Parse recipes with BitBake's tinfoil in an OE build directory and print what they set, as JSON.

Run by tests/bitbake/test_machines_tinfoil.py inside an initialised build environment (bitbake on
PATH, as a normal user: BitBake refuses root). The request is JSON on stdin::

    {"recipes": {"image": "/path/xen-image-minimal.bb", ...},
     "appends": {"grub-efi": ["/path/grub-efi_%.bbappend"]},
     "vars": ["QB_MACHINE", ...], "flags": ["do_image_wic[depends]", ...],
     "expand": {"image": {"syslinux": "${@xen_ref_boot_config(d, 'syslinux', False)}"}, ...}}

Only the configuration is parsed (``config_only``), then each recipe file on its own, with the
configuration's real oe-core, meta-openembedded, meta-virtualization and this layer: what BitBake
itself would hold for the recipe, without parsing every recipe of the layers. A configuration-only
BitBake has not collected the layers' bbappends, so ``appends`` names them per recipe; the other
recipes are parsed without any. A recipe that is
skipped while parsing reports its reason in ``__SKIPPED``. ``expand`` holds expressions per
recipe name, expanded only when that recipe is not skipped.
"""
import json
import shutil
import sys
import time
from pathlib import Path


def main() -> int:
    bitbake = shutil.which("bitbake")
    if not bitbake:
        print("tinfoil_probe: bitbake is not on PATH; source oe-init-build-env first", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(bitbake).resolve().parent.parent / "lib"))
    import bb.tinfoil

    request = json.load(sys.stdin)
    result = {"recipes": {}}
    started = time.monotonic()
    with bb.tinfoil.Tinfoil() as tinfoil:
        tinfoil.prepare(config_only=True, quiet=2)
        result["config_seconds"] = round(time.monotonic() - started, 1)
        for name, path in request["recipes"].items():
            appends = request.get("appends", {}).get(name, [])
            d = tinfoil.parse_recipe_file(path, appends=bool(appends), appendlist=appends or None)
            parsed = {"vars": {v: d.getVar(v) for v in request.get("vars", []) + ["__SKIPPED"]}}
            parsed["flags"] = {f: d.getVarFlag(f.split("[")[0], f.split("[")[1].rstrip("]"))
                               for f in request.get("flags", [])}
            parsed["expand"] = {}
            if not parsed["vars"]["__SKIPPED"]:
                for key, expression in request.get("expand", {}).get(name, {}).items():
                    parsed["expand"][key] = d.expand(expression)
            result["recipes"][name] = parsed
    result["seconds"] = round(time.monotonic() - started, 1)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
