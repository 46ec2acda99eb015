"""Debian's real libxlutil (Xen 4.17, amd64), reached through ctypes: the oracle for the grammar tests.

xenbundle.xlcfg and xenbundle.disk re-implement the two grammars of xl's helper
library libxlutil: the xl.cfg(5) file grammar and the xl-disk-configuration(5)
disk spec grammar.  The tests in this directory feed the same input to both the
Python parsers and the real C library and compare the results.  This module is
the C side: a small, typed ctypes binding to the host's ``libxlutil.so.4.17``.

The library comes from the Debian package :data:`DEBIAN_PACKAGE` (it pulls in the
rest of the Xen runtime libraries it links against; nothing runs a hypervisor).
It is a host library (x86_64), not the arm64 one the product ships, but the
parser sources are the same C code for every architecture.  ``XEN_REF_LIBXLUTIL``
may name another libxlutil to load (a path or a soname).

What is bound, with the C declarations taken from libxen-dev 4.17's
``libxlutil.h``, ``libxl.h`` and ``_libxl_types.h``:

* ``xlu_cfg_init`` / ``xlu_cfg_readdata`` (what ``xl create`` calls on the file
  contents) / ``xlu_cfg_readfile`` / ``xlu_cfg_destroy``;
* ``xlu_cfg_get_string``, ``xlu_cfg_get_list``, ``xlu_cfg_get_listitem2``,
  ``xlu_cfg_value_type``, ``xlu_cfg_value_get_string``,
  ``xlu_cfg_value_get_list`` and ``xlu_cfg_get_long`` to read values back;
* libxenlight's enum parsers ``libxl_<enum>_from_string`` (what xl uses for
  values such as ``tee``) and the presence of exported symbols, to show which
  types the 4.17 toolstack has (:meth:`LibXlUtil.enum_from_string`,
  :meth:`LibXlUtil.has_symbol`);
* ``xlu_disk_parse`` into a ``libxl_device_disk`` laid out as
  :class:`LibxlDeviceDisk` (initialised and freed by libxenlight's own
  ``libxl_device_disk_init`` / ``_dispose``).  The layout is checked at load time:
  ``libxl_device_disk_init`` must clear exactly ``sizeof`` of our structure, and
  the tests compare every field read through the structure with libxenlight's
  own JSON rendering (``libxl_device_disk_to_json``), which does not depend on
  our layout.

libxlutil prints its diagnostics to a ``FILE *`` given to ``xlu_cfg_init``.  Each
call here opens a fresh temporary file with libc's ``fdopen`` and returns what was
printed as ``report`` text, so a failing test can show xl's own message.

libxlutil's flex scanners end the process with ``exit(2)`` on some inputs ("flex
scanner jammed").  So the tests do not call :class:`LibXlUtil` directly but through
:class:`Oracle` (from :func:`load`), which runs it in a child Python process and
turns such an exit into :class:`LibxlutilDied`.

libxlutil has no call that lists the keys of a configuration; the caller names
the keys to look up (:func:`candidate_keys` lists every word of a text that could
be a key, so that no setting can hide).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import IO, Union

#: The Debian package that ships libxlutil.so.4.17 (and libxenlight.so.4.17).
DEBIAN_PACKAGE = "libxenmisc4.17"
#: The shared objects loaded from the host's library path.
LIBXLUTIL_SONAME = "libxlutil.so.4.17"
LIBXENLIGHT_SONAME = "libxenlight.so.4.17"
#: Environment variable naming another libxlutil to load (a path or a soname).
LIBXLUTIL_ENV = "XEN_REF_LIBXLUTIL"

#: A configuration value as libxlutil stores it: a string or a nested list.
Value = Union[str, list["Value"]]

# enum XLU_ConfigValueType
_XLU_STRING = 0
_XLU_LIST = 1

# Keys are [a-z][._0-9a-z]* in libxlutil's lexer; any such word may be a key.
_KEY_WORD_RE = re.compile(r"[a-z][._0-9a-z]*")


class LibraryUnavailable(RuntimeError):
    """libxlutil could not be loaded; the message names the Debian package to install."""


def candidate_keys(text: str) -> list[str]:
    """Every distinct word of ``text`` that has the shape of an xl setting name.

    A setting can only exist in libxlutil if its name appears in the text, so
    looking all of these up finds every setting libxlutil stored.
    """
    return sorted(set(_KEY_WORD_RE.findall(text)))


def _decode(raw: bytes) -> str:
    # The same decoding xenbundle.xlcfg.read_text uses for files.
    return raw.decode("utf-8", errors="surrogateescape")


@dataclass(frozen=True)
class ConfigResult:
    """What libxlutil made of one configuration text.

    ``status`` is ``xlu_cfg_readdata``'s return value (0 or an errno value);
    ``settings`` maps every looked-up key that is set to its value (empty when the
    text was refused); ``report`` is what libxlutil printed.
    """

    accepted: bool
    status: int
    settings: dict[str, Value]
    report: str


@dataclass(frozen=True)
class DiskResult:
    """What ``xlu_disk_parse`` made of one disk spec.

    ``fields`` holds the ``libxl_device_disk`` members (read through
    :class:`LibxlDeviceDisk`) in the vocabulary of :class:`xenbundle.disk.DiskSpec`;
    ``as_json`` is libxenlight's JSON rendering of the same structure (members at
    their default values are left out by libxenlight).  Both are None when the
    spec was refused.
    """

    accepted: bool
    status: int
    fields: dict[str, object] | None
    as_json: dict[str, object] | None
    report: str


class LibxlDefbool(ctypes.Structure):
    """``libxl_defbool``: 0 = default, otherwise true/false (read via libxenlight)."""

    _fields_ = [("val", ctypes.c_int)]


class LibxlDeviceDisk(ctypes.Structure):
    """``libxl_device_disk`` of Xen 4.17 (``_libxl_types.h``), member by member.

    Enums are C ``int``; ``libxl_domid`` is ``uint32_t``; ``bool`` is one byte.
    """

    _fields_ = [
        ("backend_domid", ctypes.c_uint32),
        ("backend_domname", ctypes.c_char_p),
        ("pdev_path", ctypes.c_char_p),
        ("vdev", ctypes.c_char_p),
        ("backend", ctypes.c_int),            # libxl_disk_backend
        ("format", ctypes.c_int),             # libxl_disk_format
        ("script", ctypes.c_char_p),
        ("removable", ctypes.c_int),
        ("readwrite", ctypes.c_int),
        ("is_cdrom", ctypes.c_int),
        ("direct_io_safe", ctypes.c_bool),
        ("discard_enable", LibxlDefbool),
        ("specification", ctypes.c_int),      # libxl_disk_specification
        ("transport", ctypes.c_int),          # libxl_disk_transport
        ("irq", ctypes.c_uint32),
        ("base", ctypes.c_uint64),
        ("colo_enable", LibxlDefbool),
        ("colo_restore_enable", LibxlDefbool),
        ("colo_host", ctypes.c_char_p),
        ("colo_port", ctypes.c_int),
        ("colo_export", ctypes.c_char_p),
        ("active_disk", ctypes.c_char_p),
        ("hidden_disk", ctypes.c_char_p),
        ("trusted", LibxlDefbool),
    ]


# Room for the C structure even if libxenlight's were larger than ours: the size
# check in LibXlUtil.__init__ would then fail instead of memory being overwritten.
_DISK_BUFFER_SIZE = 4096


class LibXlUtil:
    """The loaded libraries with typed entry points.  Use :func:`load` to get one."""

    def __init__(self) -> None:
        name = os.environ.get(LIBXLUTIL_ENV) or LIBXLUTIL_SONAME
        try:
            self._xlu = ctypes.CDLL(name)
            self._xl = ctypes.CDLL(LIBXENLIGHT_SONAME)
        except OSError as err:
            raise LibraryUnavailable(
                f"cannot load Xen's {name} ({err}); install the Debian package "
                f"{DEBIAN_PACKAGE} (apt-get install {DEBIAN_PACKAGE})") from err
        self._libc = ctypes.CDLL(None)
        self._declare()
        self._check_disk_layout()

    # ------------------------------------------------------------------ set-up

    def _declare(self) -> None:
        c = ctypes
        vp = c.c_void_p
        libc = self._libc
        libc.fdopen.restype = vp
        libc.fdopen.argtypes = [c.c_int, c.c_char_p]
        libc.fclose.restype = c.c_int
        libc.fclose.argtypes = [vp]
        libc.free.restype = None
        libc.free.argtypes = [vp]

        xlu = self._xlu
        xlu.xlu_cfg_init.restype = vp
        xlu.xlu_cfg_init.argtypes = [vp, c.c_char_p]
        xlu.xlu_cfg_readdata.restype = c.c_int
        xlu.xlu_cfg_readdata.argtypes = [vp, c.c_char_p, c.c_int]
        xlu.xlu_cfg_readfile.restype = c.c_int
        xlu.xlu_cfg_readfile.argtypes = [vp, c.c_char_p]
        xlu.xlu_cfg_destroy.restype = None
        xlu.xlu_cfg_destroy.argtypes = [vp]
        xlu.xlu_cfg_get_string.restype = c.c_int
        xlu.xlu_cfg_get_string.argtypes = [vp, c.c_char_p, c.POINTER(c.c_char_p), c.c_int]
        xlu.xlu_cfg_get_long.restype = c.c_int
        xlu.xlu_cfg_get_long.argtypes = [vp, c.c_char_p, c.POINTER(c.c_long), c.c_int]
        xlu.xlu_cfg_get_list.restype = c.c_int
        xlu.xlu_cfg_get_list.argtypes = [vp, c.c_char_p, c.POINTER(vp), c.POINTER(c.c_int), c.c_int]
        xlu.xlu_cfg_get_listitem2.restype = vp
        xlu.xlu_cfg_get_listitem2.argtypes = [vp, c.c_int]
        xlu.xlu_cfg_value_type.restype = c.c_int
        xlu.xlu_cfg_value_type.argtypes = [vp]
        xlu.xlu_cfg_value_get_string.restype = c.c_int
        xlu.xlu_cfg_value_get_string.argtypes = [vp, vp, c.POINTER(c.c_char_p), c.c_int]
        xlu.xlu_cfg_value_get_list.restype = c.c_int
        xlu.xlu_cfg_value_get_list.argtypes = [vp, vp, c.POINTER(vp), c.c_int]
        xlu.xlu_disk_parse.restype = c.c_int
        xlu.xlu_disk_parse.argtypes = [vp, c.c_int, c.POINTER(c.c_char_p), vp]

        xl = self._xl
        xl.libxl_device_disk_init.restype = None
        xl.libxl_device_disk_init.argtypes = [vp]
        xl.libxl_device_disk_dispose.restype = None
        xl.libxl_device_disk_dispose.argtypes = [vp]
        # Returns a malloc'ed string: keep it as a pointer so that it can be freed.
        xl.libxl_device_disk_to_json.restype = vp
        xl.libxl_device_disk_to_json.argtypes = [vp, vp]
        for name in ("libxl_disk_format_to_string", "libxl_disk_backend_to_string",
                     "libxl_disk_specification_to_string"):
            fn = getattr(xl, name)
            fn.restype = c.c_char_p
            fn.argtypes = [c.c_int]
        xl.libxl_defbool_is_default.restype = c.c_bool
        xl.libxl_defbool_is_default.argtypes = [LibxlDefbool]
        xl.libxl_defbool_val.restype = c.c_bool
        xl.libxl_defbool_val.argtypes = [LibxlDefbool]

    def _check_disk_layout(self) -> None:
        # libxl_device_disk_init memsets the whole C structure: fill a buffer with a
        # marker, let it clear, and the cleared prefix is sizeof(libxl_device_disk).
        buf = ctypes.create_string_buffer(b"\xa5" * _DISK_BUFFER_SIZE, _DISK_BUFFER_SIZE)
        self._xl.libxl_device_disk_init(ctypes.addressof(buf))
        raw = buf.raw
        ours = ctypes.sizeof(LibxlDeviceDisk)
        # The first byte init did not touch ends the C structure.
        cleared = raw.find(b"\xa5")
        self._xl.libxl_device_disk_dispose(ctypes.addressof(buf))
        if cleared != ours:
            raise LibraryUnavailable(
                f"{LIBXENLIGHT_SONAME}: libxl_device_disk is {cleared} bytes but the ctypes "
                f"layout in {__name__} is {ours} bytes; the "
                f"installed {DEBIAN_PACKAGE} is not the 4.17 ABI this binding was written for")

    # ----------------------------------------------------------------- reports

    @contextmanager
    def _report_file(self, captured: list[str]) -> Iterator[int]:
        """A C ``FILE *`` open for writing on a temporary file; its text lands in ``captured``."""
        fd, path = tempfile.mkstemp(prefix="xlu-report-", suffix=".txt")
        stream = self._libc.fdopen(fd, b"w")
        if not stream:
            os.close(fd)
            os.unlink(path)
            raise OSError(f"fdopen failed for the libxlutil report file {path}")
        try:
            yield stream
        finally:
            self._libc.fclose(stream)
            with open(path, "rb") as f:
                captured.append(_decode(f.read()))
            os.unlink(path)

    # ----------------------------------------------------------------- configs

    def read_config(self, data: bytes, keys: Iterable[str],
                    filename: str = "guest.cfg") -> ConfigResult:
        """Parse ``data`` with ``xlu_cfg_readdata`` (as ``xl create`` does) and read ``keys``."""
        return self._read(lambda cfg: self._xlu.xlu_cfg_readdata(cfg, data, len(data)),
                          keys, filename)

    def read_config_file(self, path: str, keys: Iterable[str]) -> ConfigResult:
        """Parse the file at ``path`` with ``xlu_cfg_readfile`` and read ``keys``."""
        return self._read(lambda cfg: self._xlu.xlu_cfg_readfile(cfg, os.fsencode(path)),
                          keys, path)

    def _read(self, reader, keys: Iterable[str], filename: str) -> ConfigResult:
        captured: list[str] = []
        settings: dict[str, Value] = {}
        with self._report_file(captured) as stream:
            cfg = self._xlu.xlu_cfg_init(stream, filename.encode())
            if not cfg:
                raise MemoryError("xlu_cfg_init failed")
            try:
                status = reader(cfg)
                # After a failed read libxlutil forbids the getters (undefined behaviour).
                if status == 0:
                    for key in keys:
                        value = self._get(cfg, key)
                        if value is not None:
                            settings[key] = value
            finally:
                self._xlu.xlu_cfg_destroy(cfg)
        return ConfigResult(status == 0, status, settings, captured[0])

    def _get(self, cfg: int, key: str) -> Value | None:
        name = key.encode()
        text = ctypes.c_char_p()
        if self._xlu.xlu_cfg_get_string(cfg, name, ctypes.byref(text), 1) == 0:
            return _decode(text.value or b"")
        lst = ctypes.c_void_p()
        count = ctypes.c_int()
        if self._xlu.xlu_cfg_get_list(cfg, name, ctypes.byref(lst), ctypes.byref(count), 1) == 0:
            items = self._list_items(cfg, lst)
            if len(items) != count.value:
                raise AssertionError(f"xlu_cfg_get_list said {count.value} entries for {key}, "
                                     f"xlu_cfg_get_listitem2 gave {len(items)}")
            return items
        return None

    def _list_items(self, cfg: int, lst: ctypes.c_void_p) -> list[Value]:
        items: list[Value] = []
        while True:
            item = self._xlu.xlu_cfg_get_listitem2(lst, len(items))
            if not item:
                return items
            if self._xlu.xlu_cfg_value_type(item) == _XLU_STRING:
                text = ctypes.c_char_p()
                rc = self._xlu.xlu_cfg_value_get_string(cfg, item, ctypes.byref(text), 1)
                if rc:
                    raise AssertionError(f"xlu_cfg_value_get_string failed ({rc})")
                items.append(_decode(text.value or b""))
            else:
                sub = ctypes.c_void_p()
                rc = self._xlu.xlu_cfg_value_get_list(cfg, item, ctypes.byref(sub), 1)
                if rc:
                    raise AssertionError(f"xlu_cfg_value_get_list failed ({rc})")
                items.append(self._list_items(cfg, sub))

    def get_long(self, data: bytes, key: str) -> int | None:
        """``xlu_cfg_get_long`` of ``key`` in ``data``: None when unset or not a number."""
        captured: list[str] = []
        with self._report_file(captured) as stream:
            cfg = self._xlu.xlu_cfg_init(stream, b"guest.cfg")
            try:
                if self._xlu.xlu_cfg_readdata(cfg, data, len(data)) != 0:
                    raise ValueError(f"libxlutil refused the configuration: {captured}")
                out = ctypes.c_long()
                rc = self._xlu.xlu_cfg_get_long(cfg, key.encode(), ctypes.byref(out), 1)
            finally:
                self._xlu.xlu_cfg_destroy(cfg)
        return out.value if rc == 0 else None

    # ------------------------------------------------------------------- disks

    def parse_disk(self, spec: bytes) -> DiskResult:
        """Parse one disk spec with ``xlu_disk_parse`` (``nspecs`` = 1, as xl does)."""
        captured: list[str] = []
        buf = ctypes.create_string_buffer(_DISK_BUFFER_SIZE)
        addr = ctypes.addressof(buf)
        specs = (ctypes.c_char_p * 1)(spec)
        fields: dict[str, object] | None = None
        as_json: dict[str, object] | None = None
        with self._report_file(captured) as stream:
            cfg = self._xlu.xlu_cfg_init(stream, b"disk")
            self._xl.libxl_device_disk_init(addr)
            try:
                status = self._xlu.xlu_disk_parse(cfg, 1, specs, addr)
                if status == 0:
                    fields = self._disk_fields(LibxlDeviceDisk.from_address(addr))
                    as_json = self._disk_json(addr)
            finally:
                self._xl.libxl_device_disk_dispose(addr)
                self._xlu.xlu_cfg_destroy(cfg)
        return DiskResult(status == 0, status, fields, as_json, captured[0])

    def _defbool(self, value: LibxlDefbool) -> bool | None:
        if self._xl.libxl_defbool_is_default(value):
            return None
        return bool(self._xl.libxl_defbool_val(value))

    def _disk_fields(self, disk: LibxlDeviceDisk) -> dict[str, object]:
        def text(raw: bytes | None) -> str | None:
            return None if raw is None else _decode(raw)

        def enum(fn, value: int) -> str | None:
            name = fn(value)
            return None if name is None or value == 0 else name.decode().lower()

        xl = self._xl
        return {
            "target": text(disk.pdev_path),
            "vdev": text(disk.vdev),
            "format": enum(xl.libxl_disk_format_to_string, disk.format),
            "access": "rw" if disk.readwrite else "ro",
            "devtype": "cdrom" if disk.is_cdrom else "disk",
            "removable": bool(disk.removable),
            "backend": text(disk.backend_domname),
            "backendtype": enum(xl.libxl_disk_backend_to_string, disk.backend),
            "script": text(disk.script),
            "specification": enum(xl.libxl_disk_specification_to_string, disk.specification),
            "direct_io_safe": bool(disk.direct_io_safe),
            "discard": self._defbool(disk.discard_enable),
            "colo": self._defbool(disk.colo_enable),
            "colo_host": text(disk.colo_host),
            "colo_port": disk.colo_port or None,
            "colo_export": text(disk.colo_export),
            "active_disk": text(disk.active_disk),
            "hidden_disk": text(disk.hidden_disk),
            "trusted": self._defbool(disk.trusted),
        }

    # -------------------------------------------------------------- libxenlight

    def has_symbol(self, name: str) -> bool:
        """Whether libxenlight exports ``name`` (a function of its API or of its IDL types)."""
        try:
            getattr(self._xl, name)
        except AttributeError:
            return False
        return True

    def enum_from_string(self, enum: str, text: str) -> bool | None:
        """Whether ``libxl_<enum>_from_string`` knows ``text``; None when the enum does not exist.

        These generated parsers (``int f(const char *s, libxl_<enum> *e)``, 0 on
        success) are what xl calls for enum-valued settings such as ``tee``.
        """
        name = f"libxl_{enum}_from_string"
        if not self.has_symbol(name):
            return None
        fn = getattr(self._xl, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
        value = ctypes.c_int(-1)
        return fn(text.encode(), ctypes.byref(value)) == 0

    def _disk_json(self, addr: int) -> dict[str, object]:
        # A NULL ctx is only used for logging a yajl failure.
        raw = self._xl.libxl_device_disk_to_json(None, addr)
        if not raw:
            raise AssertionError("libxl_device_disk_to_json returned NULL")
        try:
            return json.loads(_decode(ctypes.string_at(raw)))
        finally:
            self._libc.free(raw)


# ----------------------------------------------------------- out-of-process use

class LibxlutilDied(RuntimeError):
    """libxlutil ended the process it ran in (flex's ``YY_FATAL_ERROR`` calls ``exit(2)``).

    ``exit_code`` is the process's exit status and ``stderr`` what it printed
    (e.g. ``flex scanner jammed``); ``xl`` itself would die the same way.
    """

    def __init__(self, request: str, exit_code: int | None, stderr: str) -> None:
        self.exit_code = exit_code
        self.stderr = stderr
        super().__init__(f"libxlutil ended its process (exit status {exit_code}, "
                         f"stderr {stderr.strip()!r}) on {request}")


class Oracle:
    """:class:`LibXlUtil` run in a child Python process, so that libxlutil may ``exit()``.

    libxlutil's scanners call ``exit(2)`` on some inputs ("flex scanner jammed");
    in-process that would end the test run.  Here such a call raises
    :class:`LibxlutilDied` and the next call starts a fresh child.  Requests and
    results travel as JSON lines (bytes as latin-1 text, which is lossless).
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self._start()

    def _start(self) -> None:
        # Kept open for the child's whole life (closed in close() and _receive()).
        self._stderr = tempfile.TemporaryFile("w+", prefix="xlu-child-stderr-")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            text=True, encoding="latin-1", bufsize=1)
        hello = self._receive("start-up")
        if "unavailable" in hello:
            self.close()
            raise LibraryUnavailable(hello["unavailable"])

    def close(self) -> None:
        """Stop the child process (it exits when its input closes)."""
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=30)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _receive(self, request: str) -> dict[str, object]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line:
            return json.loads(line)
        exit_code = self._proc.wait(timeout=30)
        assert self._stderr is not None
        self._stderr.seek(0)
        stderr = self._stderr.read()
        self._proc.stdout.close()
        self._proc = None
        self._stderr.close()
        self._stderr = None
        raise LibxlutilDied(request, exit_code, stderr)

    def _call(self, method: str, *args: object) -> dict[str, object]:
        if self._proc is None:
            self._start()
        assert self._proc is not None and self._proc.stdin is not None
        request = json.dumps([method, [a.decode("latin-1") if isinstance(a, bytes) else a
                                       for a in args]])
        try:
            self._proc.stdin.write(request + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child is gone; _receive reports how it ended
        answer = self._receive(f"{method}{tuple(args)!r}")
        if "exception" in answer:
            raise RuntimeError(f"libxlutil oracle failed on {method}: {answer['exception']}")
        return answer

    def read_config(self, data: bytes, keys: Iterable[str],
                    filename: str = "guest.cfg") -> ConfigResult:
        """:meth:`LibXlUtil.read_config` in the child process."""
        return ConfigResult(**self._call("read_config", data, list(keys), filename))

    def read_config_file(self, path: str, keys: Iterable[str]) -> ConfigResult:
        """:meth:`LibXlUtil.read_config_file` in the child process."""
        return ConfigResult(**self._call("read_config_file", path, list(keys)))

    def get_long(self, data: bytes, key: str) -> int | None:
        """:meth:`LibXlUtil.get_long` in the child process."""
        return self._call("get_long", data, key)["value"]  # type: ignore[return-value]

    def parse_disk(self, spec: bytes) -> DiskResult:
        """:meth:`LibXlUtil.parse_disk` in the child process."""
        return DiskResult(**self._call("parse_disk", spec))

    def has_symbol(self, name: str) -> bool:
        """:meth:`LibXlUtil.has_symbol` in the child process."""
        return bool(self._call("has_symbol", name)["value"])

    def enum_from_string(self, enum: str, text: str) -> bool | None:
        """:meth:`LibXlUtil.enum_from_string` in the child process."""
        return self._call("enum_from_string", enum, text)["value"]  # type: ignore[return-value]


# Methods whose result is a plain JSON value rather than a dataclass.
_PLAIN_RESULTS = {"get_long", "has_symbol", "enum_from_string"}


def _serve() -> int:
    """The child side of :class:`Oracle`: answer JSON-line requests until input ends."""
    out = sys.stdout
    try:
        lib = LibXlUtil()
    except LibraryUnavailable as err:
        out.write(json.dumps({"unavailable": str(err)}) + "\n")
        out.flush()
        return 1
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    # Arguments that were bytes in the parent: the data of read_config/get_long, the spec.
    binary_first = {"read_config", "get_long", "parse_disk"}
    for line in sys.stdin:
        method, args = json.loads(line)
        if method in binary_first:
            args[0] = args[0].encode("latin-1")
        try:
            result = getattr(lib, method)(*args)
            answer = {"value": result} if method in _PLAIN_RESULTS else asdict(result)
        except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
            answer = {"exception": f"{type(err).__name__}: {err}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    return 0


_ORACLE: Oracle | None = None


def load() -> Oracle:
    """The process-wide oracle; raises :class:`LibraryUnavailable` naming the package."""
    global _ORACLE
    if _ORACLE is None:
        _ORACLE = Oracle()
    return _ORACLE


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        sys.exit(_serve())
    sys.exit("usage: libxlutil_ctypes.py --serve (used by Oracle; not a tool)")
