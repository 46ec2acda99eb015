"""``python3 -m xenreftarget`` is ``xen-ref-target``."""

import sys

from .cli import main

sys.exit(main())
