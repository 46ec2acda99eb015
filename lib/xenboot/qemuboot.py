"""``<image>.qemuboot.conf``: read it the way oe-core's ``runqemu`` does, write it the way
oe-core's ``qemuboot.bbclass`` does.

The file is an INI file with one section ``[config_bsp]``.  ``do_write_qemuboot_conf`` fills it
with a default :class:`configparser.ConfigParser` (names lower-cased by its key transform, in
the order of the sorted upper-case variable names).  ``runqemu`` reads it with a default
``ConfigParser`` too, so ``%`` interpolation is on; it upper-cases the names, turns a value of
``.`` into the file's folder and a value starting with ``../`` into a path relative to that
folder, and, when it was given the file itself, takes the images from the file's folder
whatever ``DEPLOY_DIR_IMAGE`` says (``@DEPLOY_DIR_IMAGE@`` in ``QB_OPT_APPEND`` becomes that
folder).  Two deliberate differences: this reader does not fall back to environment variables
for missing keys (runqemu's ``get()`` does), and the writer stores a ``%`` as ``%%`` so that
runqemu reads back the value it was given (oe-core's writer would fail on a lone ``%``).
"""

from __future__ import annotations

import configparser
import io
import os
import re
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BootConfigError

__all__ = ["SECTION", "QemubootConf", "read_qemuboot", "read_text", "render_qemuboot", "write_qemuboot"]

SECTION = "config_bsp"
_NAME = re.compile(r"[A-Za-z0-9_]+")
_FIX_FILE = "use the <image>.qemuboot.conf that oe-core writes next to the image in DEPLOY_DIR_IMAGE"


@dataclass(frozen=True)
class QemubootConf:
    """A qemuboot.conf as runqemu sees it when started with that file.

    ``values`` has upper-case names with runqemu's path rules applied and ``DEPLOY_DIR_IMAGE``
    set to ``deploy_dir`` (the real path of the file's folder); ``written`` has the values as
    the file holds them (upper-case names, interpolation done, no path rules).
    """

    path: Path
    deploy_dir: Path
    values: dict[str, str]
    written: dict[str, str]
    lines: dict[str, int] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        """The value of ``key`` without surrounding blanks, or ``default``."""
        return self.values.get(key, default).strip()

    def line(self, key: str) -> int | None:
        """The line ``key`` is set on, if it is in the file."""
        return self.lines.get(key)

    def error(self, key: str | None, problem: str, fix: str) -> BootConfigError:
        """A :class:`BootConfigError` about ``key`` of this file (with its line)."""
        return BootConfigError(problem, fix, path=self.path, key=key,
                               line=self.line(key) if key else None)


def read_text(path: os.PathLike[str] | str, what: str = "file", fix: str = _FIX_FILE) -> str:
    """The file's text, read as bytes and decoded as UTF-8; every failure a BootConfigError.

    ``what`` names the kind of file in messages; ``fix`` says what to pass instead when the path
    is not a readable file.
    """
    source = Path(path)
    if source.is_dir():
        raise BootConfigError(f"is a directory, not a {what}", fix, path=source)
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise BootConfigError("file not found", fix, path=source) from None
    except OSError as err:
        raise BootConfigError(f"cannot be read ({err.strerror or err})",
                              "check the path and its permissions", path=source) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise BootConfigError(
            f"not UTF-8 text: byte {data[err.start]:#04x} at offset {err.start}",
            f"save the {what} as UTF-8 text (is it the right file? a binary or an image is not a {what})",
            path=source, line=line) from None


def _key_lines(text: str) -> dict[str, int]:
    """Upper-case key -> line number, for the keys of the ``[config_bsp]`` section."""
    lines: dict[str, int] = {}
    inside = False
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("["):
            inside = stripped == f"[{SECTION}]"
            continue
        match = re.match(r"([^=:\s][^=:]*?)\s*[=:]", raw)
        if inside and match:
            lines.setdefault(match.group(1).strip().upper(), number)
    return lines


def _parse(text: str, path: Path, lines: dict[str, int]) -> dict[str, str]:
    """``[config_bsp]`` with runqemu's parser: interpolation on, names upper-cased."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text, source=str(path))
        if not parser.has_section(SECTION):
            raise BootConfigError(f"no [{SECTION}] section", _FIX_FILE, path=path)
        return {key.upper(): value for key, value in parser.items(SECTION)}
    except configparser.InterpolationError as err:
        key = err.option.upper()
        raise BootConfigError(f"runqemu cannot read the value ({err.message.splitlines()[0]})",
                              "write a literal '%' as '%%'", path=path, key=key,
                              line=lines.get(key)) from None
    except configparser.Error as err:
        line = getattr(err, "lineno", None)
        first = str(err).splitlines()[0]
        raise BootConfigError(f"not a qemuboot.conf INI file ({err.__class__.__name__}: {first})",
                              _FIX_FILE, path=path, line=line) from None


def _resolve_paths(written: Mapping[str, str], folder: str) -> dict[str, str]:
    """runqemu's rules: ``.`` is the file's folder, ``../x`` is relative to it."""
    values: dict[str, str] = {}
    for key, value in written.items():
        if value.startswith("../"):
            value = os.path.abspath(os.path.join(folder, value))
        elif value == ".":
            value = folder
        values[key] = value
    return values


def read_qemuboot(path: os.PathLike[str] | str) -> QemubootConf:
    """Read a qemuboot.conf the way runqemu does when it is given that file (module docstring)."""
    source = Path(path)
    text = read_text(source, "qemuboot.conf")
    lines = _key_lines(text)
    written = _parse(text, source, lines)
    folder = os.path.dirname(os.path.abspath(source))
    values = _resolve_paths(written, folder)
    deploy_dir = Path(os.path.realpath(folder))
    values["DEPLOY_DIR_IMAGE"] = str(deploy_dir)
    return QemubootConf(source, deploy_dir, values, written, lines)


def _checked(key: str, value: str) -> str:
    """``value`` as it goes into the file; raises when runqemu could not read it back as it is."""
    if not _NAME.fullmatch(key):
        raise BootConfigError(f"{key!r} is not a variable name runqemu can look up",
                              "use letters, digits and '_' (override syntax such as ':' is not written)",
                              key=key)
    if "\n" in value or "\r" in value:
        raise BootConfigError("the value holds a line break, which runqemu would not read back",
                              "put the value on one line", key=key)
    if key.startswith("QB_"):
        try:
            shlex.split(value)
        except ValueError as err:
            raise BootConfigError(f"runqemu splits the value like a shell and fails: {err}",
                                  "balance the quotes in the value", key=key) from None
    return value.replace("%", "%%")


def render_qemuboot(values: Mapping[str, str]) -> str:
    """The text oe-core's ``do_write_qemuboot_conf`` writes for these variables.

    Keys in the order of their sorted upper-case names, lower-cased by configparser, one
    ``[config_bsp]`` section.  Raises :class:`BootConfigError` for a value runqemu could not read
    back unchanged (a line break, unbalanced quotes in a ``QB_*`` value, a bad name).
    """
    parser = configparser.ConfigParser()
    parser.add_section(SECTION)
    for key in sorted(values):
        parser.set(SECTION, key, _checked(key, values[key]))
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def write_qemuboot(path: os.PathLike[str] | str, values: Mapping[str, str]) -> Path:
    """Write ``values`` to ``path`` (replaced atomically); return the path."""
    target = Path(path)
    text = render_qemuboot(values)
    fd, tmp = tempfile.mkstemp(prefix=".qemuboot-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target
