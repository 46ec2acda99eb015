"""xl-disk-configuration(5) disk specifications, parsed the way xl parses them.

A disk spec is one string of a ``disk = [...]`` list, for example
``'file:/var/lib/xen/images/guest.ext4,xvda,rw'`` or
``'format=qcow2, vdev=xvdb, access=ro, target=/images/a,b.qcow2'``.

The parser reproduces libxlutil's flex scanner (``tools/libs/util/libxlu_disk_l.l``)
and the checks in ``libxlu_disk.c``:

* flex semantics: at every position the longest match wins and ties go to the rule
  written first; the deprecated prefixes (``file:``, ``phy:``, ``tap:``, ``tap2:``,
  ``tapdisk:``, ``aio:``, ``ioemu:``, ``raw:``, ``qcow:``, ``qcow2:``, ``vhd:``,
  ``iscsi:``, ``nbd:``, ``enbd:``, ``drbd:``) count as matching the whole rest of
  the string, so they take precedence;
* positional parameters fill target, format, vdev and access in that order; after a
  deprecated prefix the format is skipped (``file:/x,xvda,rw``), and a ``vdev:cdrom``
  positional sets the device type;
* ``target=`` swallows the rest of the string, commas and colons included (one
  trailing comma is dropped);
* keyword parameters: ``format= vdev= access= devtype= backend= backendtype=
  script= specification= colo-host= colo-port= colo-export= active-disk=
  hidden-disk=``, flags ``cdrom direct-io-safe discard no-discard colo no-colo
  trusted untrusted grant_usage=0|1``.

Which Xen: :func:`parse_disk` takes the Xen version it checks for
(``xen_version``, :data:`~xenbundle.xenversion.DEFAULT_XEN_VERSION` 4.17 by
default) and scans with that release's rules.  ``trusted``, ``untrusted`` and
``grant_usage=0|1`` are keywords from Xen 4.19 on (:data:`xenbundle.xenversion.SYNTAX`
says why ``trusted`` is not 4.17 although 4.17's man page lists it); for an older
Xen they are not rules of the scanner, exactly as in that xl, so a spec is
accepted or refused as that xl does (Debian's libxlutil 4.17 is the oracle:
"target respecified" for ``trusted``, "bad disk syntax" for ``grant_usage``).
When such a spec is refused, the message names the keyword, the release that
added it and the version being built instead of xl's puzzling complaint.  Every
other keyword and value is the same from 4.17 to 4.22.

Deliberate difference from xl: a stray ``=`` as the very last character of a
spec (``phy:/dev/vg/guest,xvda,w=``, ``vdev=xvda,x=``) is an error here.  xl's
scanner enters its bad-syntax state on that ``=``, reaches the end of the string
before reporting anything, and reads the spec as if the ``=`` were not there --
so ``vdev=xvda,/images/a=`` silently gets target ``/images/a``.  For a build tool
refusing a clearly malformed spec is the safer choice; the error says to remove
the ``=`` (or to write a path containing ``=`` last as ``target=PATH``).  This is
the disk twin of :mod:`xenbundle.xlcfg`'s stray-character-at-end-of-file
difference.  A differential run against libxlutil 4.17 found no other
difference in acceptance or values for specs without the newer keywords.

:func:`parse_disk` returns a :class:`DiskSpec` with xl's resulting values;
:meth:`DiskSpec.with_target` rewrites the target keeping the spec as written
(legacy prefix and positional form included) whenever xl reads it back the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Union

from .errors import MAX_PROBLEMS, BundleError, snippet
from .xenversion import (
    DEFAULT_XEN_VERSION,
    DISK_KEYWORD,
    NEWEST_KNOWN_XEN_VERSION,
    XenVersion,
    XenVersionLike,
    as_xen_version,
    syntax_problem,
)

__all__ = ["BACKEND_TYPES", "FORMATS", "DiskSpec", "DiskSpecError", "parse_disk"]

#: Values xl accepts for ``format=`` (``""`` means raw).
FORMATS = ("raw", "qcow", "qcow2", "vhd", "empty", "qed")
#: Values xl accepts for ``backendtype=``.
BACKEND_TYPES = ("phy", "tap", "qdisk", "standalone")
SPECIFICATIONS = ("xen", "virtio")


class DiskSpecError(BundleError):
    """A disk specification xl would refuse; ``messages`` lists the problems found.

    Each message quotes the spec (cut to a short :func:`~xenbundle.errors.snippet`);
    scanning stops after :data:`~xenbundle.errors.MAX_PROBLEMS` problems.
    ``str(err)`` joins the messages with ``"; "``.
    """

    def __init__(self, spec: str, messages: list[str]) -> None:
        self.spec = spec
        self.messages = list(messages)
        super().__init__(self.messages)

    def _text(self) -> str:
        return "; ".join(self.messages)


@dataclass(frozen=True)
class DiskSpec:
    """The values xl derives from one disk specification.

    Fields hold xl's resulting values (``format`` defaults to ``"raw"``, a cdrom is
    read-only, ...).  ``legacy_prefix`` is the deprecated prefix as written (e.g.
    ``"file:"`` or ``"tap:aio:"``); ``text`` and ``target_span`` record the spec as
    written and where its target is, so that :meth:`with_target` can keep its form.
    """

    target: str | None
    vdev: str
    format: str = "raw"
    access: str = "rw"
    devtype: str = "disk"
    backend: str | None = None
    backendtype: str | None = None
    script: str | None = None
    specification: str | None = None
    direct_io_safe: bool = False
    discard: bool | None = None
    colo: bool | None = None
    colo_host: str | None = None
    colo_port: int | None = None
    colo_export: str | None = None
    active_disk: str | None = None
    hidden_disk: str | None = None
    trusted: bool | None = None
    grant_usage: bool | None = None
    legacy_prefix: str = ""
    text: str | None = field(default=None, compare=False)
    target_span: tuple[int, int] | None = field(default=None, compare=False, repr=False)
    #: The Xen version the spec was checked for; rewriting it keeps to that grammar.
    xen_version: XenVersion = field(default=DEFAULT_XEN_VERSION, compare=False, repr=False)

    @property
    def is_cdrom(self) -> bool:
        """True for a cdrom (removable, read-only) device."""
        return self.devtype == "cdrom"

    @property
    def is_file_backed(self) -> bool:
        """True when the target names a file or device path (not an empty cdrom drive)."""
        return bool(self.target)

    def values(self) -> dict[str, str | int | bool | None]:
        """xl's values as a plain dict (the ``--disk --json`` output)."""
        out: dict[str, str | int | bool | None] = {}
        for f in fields(self):
            if f.name in ("text", "target_span", "xen_version"):
                continue
            out[f.name] = getattr(self, f.name)
        return out

    def semantics(self) -> dict[str, str | int | bool | None]:
        """The values that matter to xl (everything but the legacy prefix)."""
        vals = self.values()
        del vals["legacy_prefix"]
        return vals

    def render(self) -> str:
        """A spec string that xl parses back to these values.

        The spec as written is returned when it still describes these values;
        otherwise the keyword form with ``target=`` last is written.
        """
        if self.text is not None:
            try:
                if parse_disk(self.text, xen_version=self.xen_version).semantics() \
                        == self.semantics():
                    return self.text
            except DiskSpecError:
                pass
        return self._render_keywords()

    def _render_keywords(self) -> str:
        parts: list[str] = []

        def put(name: str, value: str | None) -> None:
            if value is None:
                return
            _check_keyword_value(name, value)
            parts.append(f"{name}={value}")

        put("format", self.format)
        put("vdev", self.vdev)
        if self.devtype == "cdrom":
            parts.append("devtype=cdrom")
        else:
            put("access", self.access)
        put("backend", self.backend)
        put("backendtype", self.backendtype)
        put("script", self.script)
        put("specification", self.specification)
        if self.direct_io_safe:
            parts.append("direct-io-safe")
        if self.discard is not None:
            parts.append("discard" if self.discard else "no-discard")
        if self.colo is not None:
            parts.append("colo" if self.colo else "no-colo")
        put("colo-host", self.colo_host)
        put("colo-port", None if self.colo_port is None else str(self.colo_port))
        put("colo-export", self.colo_export)
        put("active-disk", self.active_disk)
        put("hidden-disk", self.hidden_disk)
        if self.trusted is not None:
            parts.append("trusted" if self.trusted else "untrusted")
        if self.grant_usage is not None:
            parts.append("grant_usage=1" if self.grant_usage else "grant_usage=0")
        if self.target is not None:
            if "\n" in self.target or self.target.endswith(","):
                raise DiskSpecError(self.target, [
                    (f"target {snippet(self.target)!r} cannot be written in a disk spec "
                     "(a newline or a trailing comma cannot be expressed)")])
            parts.append(f"target={self.target}")
        text = ",".join(parts)
        result = parse_disk(text, xen_version=self.xen_version)
        if result.semantics() != self.semantics():  # pragma: no cover - self-check
            raise DiskSpecError(text, [f"internal error: {text!r} does not round-trip"])
        return text

    def with_target(self, new_target: str) -> DiskSpec:
        """This spec with its target replaced by ``new_target``, otherwise as written.

        The target is replaced in place in the original text (so ``file:`` prefixes
        and the positional form survive) when xl reads the edited text back with
        only the target changed; otherwise the keyword form is used.
        """
        wanted = replace(self, target=new_target, text=None, target_span=None)
        if self.text is not None and self.target_span is not None:
            start, end = self.target_span
            candidate = self.text[:start] + new_target + self.text[end:]
            try:
                parsed = parse_disk(candidate, xen_version=self.xen_version)
            except DiskSpecError:
                parsed = None
            if parsed is not None and parsed == wanted:
                return parsed
        text = wanted._render_keywords()
        return parse_disk(text, xen_version=self.xen_version)


def _check_keyword_value(name: str, value: str) -> None:
    if "," in value or "\n" in value:
        raise DiskSpecError(value, [f"{name} value {value!r} cannot contain a comma or newline"])


# ---------------------------------------------------------------------------- scanner

class _State:
    def __init__(self, spec: str, scanner: _Scanner) -> None:
        self.spec = spec
        self.scanner = scanner
        #: ``(keyword, text)`` of each versioned keyword the scanner matched.
        self.keywords: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.values: dict[str, object] = {}
        self.had_depr_prefix = False
        self.access_set = False
        self.prefix_end = 0
        self.target_span: tuple[int, int] | None = None
        self.prefix_start: int | None = None
        self.stop = False

    def err(self, near: str | None, message: str, fix: str = "") -> None:
        text = message
        if near is not None:
            text += f": near `{snippet(near)}'"
        text += f" in `{snippet(self.spec)}'"
        if fix:
            text += f" ({fix})"
        self.errors.append(text)

    # DSET: an enum may be set twice only to the same value.
    def set_enum(self, member: str, value: object, near: str) -> None:
        old = self.values.get(member)
        if old is not None and old != value:
            self.err(near, f"{member} respecified")
        else:
            self.values[member] = value

    # savestring: a string may be set twice only when the first was empty.
    def save(self, what: str, member: str, value: str, span: tuple[int, int] | None = None) -> None:
        old = self.values.get(member)
        if old:
            self.err(value, f"{what} respecified")
            return
        self.values[member] = value
        if member == "target" and span is not None:
            self.target_span = span


def _set_format(st: _State, value: str) -> None:
    fmt = "raw" if value == "" else value
    if fmt in FORMATS:
        st.set_enum("format", fmt, value)
    else:
        st.err(value, "unknown value for format", "use one of: " + ", ".join(FORMATS))


def _set_access(st: _State, value: str) -> None:
    if value in ("r", "ro"):
        st.values["access"] = "ro"
    elif value in ("rw", "w", ""):
        st.values["access"] = "rw"
    else:
        st.err(value, "unknown value for access", "use ro or rw")


def _set_backendtype(st: _State, value: str) -> None:
    if value in BACKEND_TYPES:
        st.set_enum("backendtype", value, value)
    else:
        st.err(value, "unknown value for backendtype", "use one of: " + ", ".join(BACKEND_TYPES))


def _set_specification(st: _State, value: str) -> None:
    if value in SPECIFICATIONS:
        st.set_enum("specification", value, value)
    else:
        st.err(value, "unknown value for specification", "use xen or virtio")


def _set_colo_port(st: _State, value: str) -> None:
    m = re.match(r"\s*[+-]?\d+", value)   # C atoi()
    port = int(m.group()) if m else 0
    if port:
        st.values["colo_port"] = port
    else:
        st.err(value, "unknown value for colo_port")


def _vdev_and_devtype(st: _State, text: str) -> bool:
    colon = text.rfind(":")
    if colon < 0:
        return False
    st.save("vdev", "vdev", text[:colon])
    kind = text[colon + 1:]
    if kind == "cdrom":
        st.values["cdrom"] = True
    elif kind == "disk":
        st.values["cdrom"] = False
    else:
        st.err(kind, "unknown deprecated type", "use devtype=cdrom or devtype=disk")
    return True


def _strip_comma(text: str) -> str:
    return text.removesuffix(",")


def _from_equals(text: str) -> str:
    return text[text.index("=") + 1:]


_Action = Callable[[_State, str, int, int], None]


def _kw_string(what: str, member: str) -> _Action:
    def act(st: _State, text: str, start: int, end: int) -> None:
        st.save(what, member, _from_equals(_strip_comma(text)))
    return act


def _kw_call(func: Callable[[_State, str], None]) -> _Action:
    def act(st: _State, text: str, start: int, end: int) -> None:
        func(st, _from_equals(_strip_comma(text)))
    return act


def _flag(member: str, value: object) -> _Action:
    def act(st: _State, text: str, start: int, end: int) -> None:
        st.values[member] = value
    return act


#: The keyword (as :data:`xenbundle.xenversion.SYNTAX` names it) of each rule that
#: only some supported xl releases have, by the rule's action.
_KEYWORD_OF: dict[_Action, str] = {}


def _keyword_flag(keyword: str, member: str, value: object) -> _Action:
    """A flag of a keyword that not every supported xl has; the match is recorded."""
    def act(st: _State, text: str, start: int, end: int) -> None:
        st.keywords.append((keyword, _strip_comma(text)))
        st.values[member] = value
    _KEYWORD_OF[act] = keyword
    return act


def _act_ignore(st: _State, text: str, start: int, end: int) -> None:
    pass


def _act_bad_devtype(st: _State, text: str, start: int, end: int) -> None:
    st.err(text, "unknown value for type", "use devtype=cdrom or devtype=disk")


def _act_target(st: _State, text: str, start: int, end: int) -> None:
    value = _strip_comma(text)
    vstart = start + value.index("=") + 1
    st.save("target", "target", _from_equals(value), (vstart, start + len(value)))


def _act_unknown_param(st: _State, text: str, start: int, end: int) -> None:
    st.err(text, "unknown parameter",
           "if this is part of a path, write the path last as target=PATH")


def _act_format_prefix(st: _State, text: str, start: int, end: int) -> None:
    st.had_depr_prefix = True
    st.prefix_end = end
    _set_format(st, text[:-1])


def _act_script_prefix(st: _State, text: str, start: int, end: int) -> None:
    st.had_depr_prefix = True
    st.prefix_end = end
    st.save("script", "script", "block-" + text[:-1])


def _act_plain_prefix(st: _State, text: str, start: int, end: int) -> None:
    st.had_depr_prefix = True
    st.prefix_end = end


def _act_unknown_prefix(st: _State, text: str, start: int, end: int) -> None:
    st.err(text, "unknown deprecated disk prefix",
           "use target=PATH (as the last item) for paths containing ':'")
    st.stop = True


def _act_positional(st: _State, text: str, start: int, end: int) -> None:
    value = _strip_comma(text)
    if st.errors:
        return  # previous errors may just lead to subsequent ones
    v = st.values
    if v.get("target") is None:
        st.save("target", "target", value, (start, start + len(value)))
    elif not st.had_depr_prefix and v.get("format") is None:
        if not v["target"] and _vdev_and_devtype(st, value):
            v["format"] = "empty"
        else:
            _set_format(st, value)
    elif v.get("vdev") is None:
        if not _vdev_and_devtype(st, value):
            st.save("vdev", "vdev", value)
    elif not st.access_set:
        st.access_set = True
        _set_access(st, value)
    else:
        st.err(value, "too many positional parameters",
               "the positional form is TARGET,FORMAT,VDEV,ACCESS; use key=value for the rest")
        st.stop = True


# Trailing contexts of the flex rules (they count for the longest-match comparison
# but are not consumed, exactly like flex's `/`).  All of them run to the end of
# the line, so their lengths come from the position of the next newline
# (:class:`_LineEnds`) instead of a regular expression run over the rest of the line
# at every position, which made long specs quadratic.
_REST = "rest"                   # /.*
_REST_AFTER_BLANKS = "blanks"    # /(?:[^ \t\n].*)?   after [ \t\n]+
_REST_AFTER_NAME = "name"        # /(?:[^a-z0-9].*)?   after an unknown prefix

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")

# (pattern, trailing context or None, action), in the scanner's order.
_RULES: list[tuple[str, str | None, _Action]] = [
    (r"[ \t\n]+", _REST_AFTER_BLANKS, _act_ignore),
    (r"format=[^,]*,?", None, _kw_call(_set_format)),
    (r"cdrom,?", None, _flag("cdrom", True)),
    (r"devtype=cdrom,?", None, _flag("cdrom", True)),
    (r"devtype=disk,?", None, _flag("cdrom", False)),
    (r"devtype=[^,]*,?", None, _act_bad_devtype),
    (r"access=[^,]*,?", None, _kw_call(_set_access)),
    (r"backend=[^,]*,?", None, _kw_string("backend", "backend")),
    (r"backendtype=[^,]*,?", None, _kw_call(_set_backendtype)),
    (r"specification=[^,]*,?", None, _kw_call(_set_specification)),
    (r"vdev=[^,]*,?", None, _kw_string("vdev", "vdev")),
    (r"script=[^,]*,?", None, _kw_string("script", "script")),
    (r"direct-io-safe,?", None, _flag("direct_io_safe", True)),
    (r"discard,?", None, _flag("discard", True)),
    (r"no-discard,?", None, _flag("discard", False)),
    (r"colo,?", None, _flag("colo", True)),
    (r"no-colo,?", None, _flag("colo", False)),
    (r"colo-host=[^,]*,?", None, _kw_string("colo-host", "colo_host")),
    (r"colo-port=[^,]*,?", None, _kw_call(_set_colo_port)),
    (r"colo-export=[^,]*,?", None, _kw_string("colo-export", "colo_export")),
    (r"active-disk=[^,]*,?", None, _kw_string("active-disk", "active_disk")),
    (r"hidden-disk=[^,]*,?", None, _kw_string("hidden-disk", "hidden_disk")),
    (r"trusted,?", None, _keyword_flag("trusted", "trusted", True)),
    (r"untrusted,?", None, _keyword_flag("untrusted", "trusted", False)),
    (r"grant_usage=1,?", None, _keyword_flag("grant_usage=", "grant_usage", True)),
    (r"grant_usage=0,?", None, _keyword_flag("grant_usage=", "grant_usage", False)),
    (r"target=.*", None, _act_target),
    (r"[a-z][-a-z0-9]*=[^,],?", None, _act_unknown_param),
    (r"(?:raw|qcow2?|vhd):", _REST, _act_format_prefix),
    (r"(?:iscsi|e?nbd|drbd):", _REST, _act_script_prefix),
    (r"tapdisk:", _REST, _act_plain_prefix),
    (r"tap2?:", _REST, _act_plain_prefix),
    (r"aio:", _REST, _act_plain_prefix),
    (r"ioemu:", _REST, _act_plain_prefix),
    (r"file:", _REST, _act_plain_prefix),
    (r"phy:", _REST, _act_plain_prefix),
    (r"[a-z][a-z0-9]*:", _REST_AFTER_NAME, _act_unknown_prefix),
    (r"[^=,]*,|[^=,]+,?", None, _act_positional),
]
_Rule = tuple["re.Pattern[str]", Union[str, None], _Action]


def _first_literal(pattern: str) -> str | None:
    """The character every match of ``pattern`` starts with, if the pattern says so plainly."""
    if pattern[:1].isalnum() and pattern[1:2] not in ("?", "*", "+", "{"):
        return pattern[0]
    return None


class _Scanner:
    """The scanner rules of one xl release, and which of them can match at a character."""

    def __init__(self, rules: list[tuple[str, str | None, _Action]]) -> None:
        self.rules: list[_Rule] = [(re.compile(p), c, a) for p, c, a in rules]
        self._first = [_first_literal(p) for p, _, _ in rules]
        self._candidates: dict[str, list[_Rule]] = {}

    def candidates(self, ch: str) -> list[_Rule]:
        """The rules that can match at a character ``ch``, in the scanner's order."""
        rules = self._candidates.get(ch)
        if rules is None:
            rules = [rule for rule, first in zip(self.rules, self._first)
                     if first is None or first == ch]
            if len(self._candidates) < 512:
                self._candidates[ch] = rules
        return rules


# One scanner per set of keywords missing from a release (a handful at most).
_SCANNERS: dict[frozenset[str], _Scanner] = {}


def _scanner_for(version: XenVersion) -> _Scanner:
    """The scanner of xl ``version``: without the rules of keywords it does not have."""
    missing = frozenset(keyword for keyword in _KEYWORD_OF.values()
                        if syntax_problem(DISK_KEYWORD, keyword, version) is not None)
    scanner = _SCANNERS.get(missing)
    if scanner is None:
        scanner = _Scanner([rule for rule in _RULES if _KEYWORD_OF.get(rule[2]) not in missing])
        _SCANNERS[missing] = scanner
    return scanner


class _NextOf:
    """The next position holding one of some characters, for positions that mostly increase.

    Remembers the last answer, so that asking at every position of a long text
    costs time in proportion to its length, not to its square.
    """

    def __init__(self, text: str, chars: str) -> None:
        self.text = text
        self._search = re.compile(f"[{re.escape(chars)}]").search
        self.start = 0
        self.end = self._find(0)

    def _find(self, pos: int) -> int:
        m = self._search(self.text, pos)
        return len(self.text) if m is None else m.start()

    def at(self, pos: int) -> int:
        if self.start <= pos <= self.end:
            return self.end
        if pos < self.start:
            return self._find(pos)
        self.start, self.end = pos, self._find(pos)
        return self.end


def _context_length(kind: str, text: str, end: int, ends: _NextOf) -> int:
    if kind == _REST:
        return ends.at(end) - end
    nxt = text[end:end + 1]
    if kind == _REST_AFTER_BLANKS:
        return ends.at(end) - end if nxt and nxt not in " \t\n" else 0
    if not nxt or nxt in _NAME_CHARS:      # _REST_AFTER_NAME: [^a-z0-9] may be a newline
        return 0
    return 1 + ends.at(end + 1) - (end + 1)


def _positional_end(text: str, pos: int, separators: _NextOf) -> int:
    """Where ``[^=,]*,|[^=,]+,?`` matching at ``pos`` ends (``pos``: no match)."""
    sep = separators.at(pos)
    if sep < len(text) and text[sep] == ",":
        return sep + 1
    return sep


def _longest_match(scanner: _Scanner, text: str, pos: int, ends: _NextOf,
                   separators: _NextOf) -> tuple[int, _Action] | None:
    """flex: the longest match (trailing context included) wins, ties go to the first rule."""
    best_len = -1
    best: tuple[int, _Action] | None = None
    for pattern, context, action in scanner.candidates(text[pos]):
        if action is _act_positional:
            end = _positional_end(text, pos, separators)
        else:
            m = pattern.match(text, pos)
            end = m.end() if m else pos
        if end == pos:
            continue
        total = end - pos
        if context is not None:
            total += _context_length(context, text, end, ends)
        if total > best_len:
            best_len, best = total, (end, action)
    return best


def _scan(st: _State) -> None:
    text = st.spec
    ends, separators = _NextOf(text, "\n"), _NextOf(text, "=,")
    pos = 0
    while pos < len(text) and not st.stop:
        if len(st.errors) >= MAX_PROBLEMS:
            st.err(None, "and maybe more problems: the rest of the spec was not checked")
            return
        best = _longest_match(st.scanner, text, pos, ends, separators)
        if best is None and text[pos:] == "=":
            # xl's scanner hits the end of the string before reporting this `=' and
            # ignores it; refusing it is a deliberate difference (module docstring).
            st.err("=", "stray '=' at the end of the disk spec",
                   "remove the trailing '='; a path containing '=' must be written "
                   "last as target=PATH")
            return
        if best is None:
            # flex's `.` rule: everything from here on is reported as bad syntax.
            eol = ends.at(pos)
            st.err(text[pos:eol], "bad disk syntax",
                   "paths containing '=' or ',' must be written last as target=PATH")
            return
        end, action = best
        action(st, text[pos:end], pos, end)
        if action in (_act_format_prefix, _act_script_prefix, _act_plain_prefix) \
                and st.prefix_start is None:
            st.prefix_start = pos
        pos = end


def parse_disk(spec: str, *, xen_version: XenVersionLike = DEFAULT_XEN_VERSION) -> DiskSpec:
    """Parse one xl disk specification; raise :class:`DiskSpecError` if xl would refuse it.

    ``xen_version`` is the Xen whose xl is meant (see the module docstring); a
    version xenbundle does not support raises
    :class:`~xenbundle.xenversion.XenVersionError`.
    """
    if not isinstance(spec, str):
        raise TypeError("a disk spec is a string")
    version = as_xen_version(xen_version)
    scanner = _scanner_for(version)
    try:
        return _parse(_State(spec, scanner), version)
    except DiskSpecError as err:
        newer = None if scanner is _NEWEST else _newer_keyword_problems(spec, version)
        if not newer:
            raise
        raise DiskSpecError(spec, newer) from err


# Words that start the keywords some supported release lacks: only a refused spec
# containing one is scanned again with the newest rules.
_NEWER_STEMS = tuple(sorted({keyword.rstrip("=") for keyword in _KEYWORD_OF.values()}))
_NEWEST = _scanner_for(NEWEST_KNOWN_XEN_VERSION)


def _newer_keyword_problems(spec: str, version: XenVersion) -> list[str]:
    """Why a spec ``version`` refuses uses keywords of a later xl, or [] when it does not.

    The spec is scanned with the newest rules; each keyword ``version`` lacks is
    named (once), followed by the newest grammar's own complaints, if any.
    """
    if not any(stem in spec for stem in _NEWER_STEMS):
        return []
    st = _State(spec, _NEWEST)
    _scan(st)
    others, st.errors = st.errors, []
    named: set[str] = set()
    for keyword, text in st.keywords:
        problem = syntax_problem(DISK_KEYWORD, keyword, version)
        if problem is not None and keyword not in named:
            named.add(keyword)
            st.err(text, *problem)
    return st.errors + others if st.errors else []


def _parse(st: _State, version: XenVersion) -> DiskSpec:
    spec = st.spec
    _scan(st)
    v = st.values
    if st.errors:
        raise DiskSpecError(spec, st.errors)
    fmt = v.get("format") or "raw"
    access = v.get("access", "rw")
    cdrom = bool(v.get("cdrom", False))
    target = v.get("target")
    if cdrom:
        access = "ro"
        if not target:
            fmt = "empty"
    if v.get("vdev") is None:
        st.err(None, "no vdev specified", "add the guest device name, e.g. ,xvda, or vdev=xvda")
    if target is None and not cdrom:
        st.err(None, "no target specified (and device not removable)",
               "add the image path, e.g. target=/var/lib/xen/images/disk.img")
    if st.errors:
        raise DiskSpecError(spec, st.errors)
    prefix = ""
    if st.had_depr_prefix:
        prefix = spec[st.prefix_start or 0:st.prefix_end]
    return DiskSpec(
        target=target,  # type: ignore[arg-type]
        vdev=str(v["vdev"]),
        format=str(fmt),
        access=str(access),
        devtype="cdrom" if cdrom else "disk",
        backend=v.get("backend"),  # type: ignore[arg-type]
        backendtype=v.get("backendtype"),  # type: ignore[arg-type]
        script=v.get("script"),  # type: ignore[arg-type]
        specification=v.get("specification"),  # type: ignore[arg-type]
        direct_io_safe=bool(v.get("direct_io_safe", False)),
        discard=v.get("discard"),  # type: ignore[arg-type]
        colo=v.get("colo"),  # type: ignore[arg-type]
        colo_host=v.get("colo_host"),  # type: ignore[arg-type]
        colo_port=v.get("colo_port"),  # type: ignore[arg-type]
        colo_export=v.get("colo_export"),  # type: ignore[arg-type]
        active_disk=v.get("active_disk"),  # type: ignore[arg-type]
        hidden_disk=v.get("hidden_disk"),  # type: ignore[arg-type]
        trusted=v.get("trusted"),  # type: ignore[arg-type]
        grant_usage=v.get("grant_usage"),  # type: ignore[arg-type]
        legacy_prefix=prefix,
        text=spec,
        target_span=st.target_span,
        xen_version=version,
    )
