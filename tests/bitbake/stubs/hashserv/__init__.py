"""Stand-in for BitBake's ``hashserv`` package (the hash-equivalence server client).

The PyPI wheel ``bitbake-setup`` ships the ``bb`` library but not ``hashserv``,
yet ``bb.siggen`` imports ``hashserv`` (and ``hashserv.client``) at import time.
These tests never configure a hash-equivalence server (``BB_HASHSERVE`` is
unset), so nothing in here is ever called: an empty package is enough for
``import bb.parse`` to work.  This is a stand-in only because the real package
is not distributed on PyPI.
"""
