"""The recipe-name entry syntax of ``BUNDLED_XEN_GUESTS`` and ``XEN_GUEST_BUNDLES``.

meta-virtualization (wrynose and later) names bundled guests by image recipe:
``BUNDLED_XEN_GUESTS = "recipe[:autostart][:external] ..."`` in a host image, and
the same syntax in ``XEN_GUEST_BUNDLES`` of a bundle recipe.  Each entry is a
recipe (or, for an ``external`` guest, a free name) followed by tags:

* ``autostart`` - link the guest's config into ``/etc/xen/auto/`` (xendomains);
* ``external`` - no BitBake dependency on ``<recipe>:do_image_complete`` (a guest
  not built by BitBake, or imported by a bundle recipe).
* ``dom0less`` - Xen starts the guest at boot from the device tree (Arm only; it is
  not bundled as an xl guest, see :mod:`xenbundle.dom0less`).

The tag list is :data:`KNOWN_TAGS`; a later tag (such as one marking dom0less
guests) is added there and read through :attr:`GuestEntry.tags`.  Unlike
meta-virtualization, an unknown or repeated tag, an empty part and a recipe named
twice are errors, each naming the variable, the entry's position and its text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BundleError, snippet

__all__ = ["KNOWN_TAGS", "GuestEntry", "parse_guest_entries", "split_guest_entries"]

#: Tags an entry may carry after its name.
KNOWN_TAGS: tuple[str, ...] = ("autostart", "external", "dom0less")

# The entry name is a recipe name and also a file name (``<name>.cfg``).
_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9+._-]*\Z")
_MAX_NAME = 200


@dataclass(frozen=True)
class GuestEntry:
    """One ``name[:tag...]`` entry; ``position`` counts from 1 within ``variable``."""

    variable: str
    position: int
    text: str
    name: str
    tags: frozenset[str]

    @property
    def autostart(self) -> bool:
        """True when the entry has the ``autostart`` tag."""
        return "autostart" in self.tags

    @property
    def external(self) -> bool:
        """True when the entry has the ``external`` tag (no dependency on a recipe)."""
        return "external" in self.tags

    @property
    def origin(self) -> str:
        """How messages name this entry: ``BUNDLED_XEN_GUESTS entry 2 'web:autostart'``."""
        return f"{self.variable} entry {self.position} '{snippet(self.text)}'"


def _entry_problem(variable: str, position: int, text: str, what: str) -> str:
    return (f"{variable} entry {position} '{snippet(text)}' {what}: each entry is "
            f"RECIPE[:TAG...] with the tags {', '.join(KNOWN_TAGS)}, entries separated by "
            "spaces, e.g. 'xen-guest-image-minimal:autostart'")


def _parse_entry(variable: str, position: int, text: str) -> GuestEntry | str:
    """The entry, or the problem with it."""
    name, *tags = text.split(":")
    if not _NAME_RE.match(name) or len(name) > _MAX_NAME:
        what = ("has no recipe name" if not name else
                f"has the name '{snippet(name)}', which is not a recipe name (letters, digits "
                f"and '+ . _ -', starting with a letter or digit, at most {_MAX_NAME})")
        return _entry_problem(variable, position, text, what)
    seen: set[str] = set()
    for tag in tags:
        if tag not in KNOWN_TAGS:
            what = "has an empty tag" if not tag else f"has the unknown tag '{snippet(tag)}'"
            return _entry_problem(variable, position, text, what)
        if tag in seen:
            return _entry_problem(variable, position, text, f"repeats the tag '{tag}'")
        seen.add(tag)
    return GuestEntry(variable, position, text, name, frozenset(tags))


def split_guest_entries(value: str | None, variable: str) -> tuple[list[GuestEntry], list[str]]:
    """The well-formed entries of ``value`` and the problems with the others.

    A name given by two entries is a problem reported at its second entry.
    """
    entries: list[GuestEntry] = []
    problems: list[str] = []
    first: dict[str, GuestEntry] = {}
    for position, text in enumerate((value or "").split(), start=1):
        parsed = _parse_entry(variable, position, text)
        if isinstance(parsed, str):
            problems.append(parsed)
            continue
        earlier = first.setdefault(parsed.name, parsed)
        if earlier is not parsed:
            problems.append(
                f"{parsed.origin} names '{snippet(parsed.name)}' again ({earlier.origin} "
                "already does): list each guest once, with all its tags in one entry")
            continue
        entries.append(parsed)
    return entries, problems


def parse_guest_entries(value: str | None, variable: str = "BUNDLED_XEN_GUESTS", *,
                        lenient: bool = False) -> list[GuestEntry]:
    """The entries of ``value``; raises :class:`BundleError` listing every malformed one.

    With ``lenient`` malformed entries are left out instead (for parse-time wiring:
    the task that bundles reports them).
    """
    entries, problems = split_guest_entries(value, variable)
    if problems and not lenient:
        raise BundleError(problems)
    return entries
