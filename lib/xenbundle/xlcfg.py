"""The xl.cfg(5) configuration grammar, as xl's own parser (libxlutil) accepts it.

This module reads and edits xl domain configuration files without losing anything
that was written in them.  It follows the lexer and grammar of libxlutil
(``tools/libs/util/libxlu_cfg_l.l``, ``libxlu_cfg_y.y`` and ``libxlu_cfg.c`` in the
Xen tree) rather than treating the file as Python:

* A setting is ``KEY = VALUE`` or ``KEY += VALUE``.  Keys are lower-case:
  ``[a-z][._0-9a-z]*``.  Settings end at a newline or at ``;``; the last setting of
  the file needs no terminator.
* A value is an atom or a list.  Atoms are single- or double-quoted strings (no
  newline inside; escapes ``\\\\ \\' \\" \\a \\b \\f \\n \\r \\t \\v``) or numbers
  ``[0-9][0-9a-fx]*``.  xl stores every atom as a *string*, so ``memory = 512``
  and ``memory = "512"`` are the same setting, and :meth:`XlConfig.settings`
  returns ``"512"`` for both.
* Lists are ``[ VALUE, VALUE, ... ]``: heterogeneous, nestable, a trailing comma is
  allowed, and newlines (and comments) may stand after ``[``, after a value and
  after a comma.
* ``#`` starts a comment that runs to the end of the line; a comment counts as a
  newline, so it may stand anywhere a newline may.
* ``+=`` appends to the previous value of the same key: strings are concatenated,
  lists are joined; adding a list to a string (or the reverse) is an error.  With
  no previous value ``+=`` is a plain assignment.  Otherwise the last assignment
  wins.

xl quirks that are reproduced on purpose, so that what this parser accepts is what
``xl create`` accepts:

* A carriage return anywhere outside a string is an error (files with DOS line
  endings are rejected by xl).
* A comment on the last line needs its terminating newline.
* ``\\x`` escapes are always rejected by xl; an escape ``\\NNN`` starting with an
  octal digit is accepted but xl *drops* the character (it never stores the
  decoded value).  Such drops are listed in :attr:`XlConfig.warnings`.

Deliberate differences: every error is reported with the line it is on (xl
reports some errors at the end of the previous line); the errors of the first
20 lines with one are reported, not only those bison's error recovery happens
to print, and the others are counted; a stray character at the very end of a
file with no final newline (``memory = 512+``) is an error here, while xl's
scanner reaches end-of-file before reporting it and accepts the file; a NUL
byte inside a quoted string is an error with its line here, while xl stops on
an assertion in its dequoting (SIGABRT); and lists nested more than
:data:`MAX_LIST_DEPTH` (100) levels deep are refused here, while xl's parser
stack allows 4996.  A differential run of 30,000 generated files against
Debian's libxlutil 4.17 found no other difference in acceptance or in the
values read.

Hostile input costs time and memory in proportion to its size: the text is
read by one regular expression per token, or per line for the common simple
statements and for lines of nothing but errors; tokens are made as the parser
needs them, ``+=`` chains extend their value in place, and error messages are
only written for the problems that are listed (each quoting at most 60
characters of the input, control characters escaped).

Which Xen: the file syntax is the same in every supported release (4.17 to 4.22
and master), but the settings are not.  :func:`parse` takes the Xen version it
checks for (``xen_version``, 4.17 by default) and refuses the settings, values
and vif/p9 keywords of :data:`xenbundle.xenversion.SYNTAX` that this Xen does not
have, naming the release that added (or removed) them and the version being
built.  Settings xl does not know at all are kept, as xl keeps them.

The document model (:class:`XlConfig`) keeps the original text.  :meth:`XlConfig.set`
edits only the characters of the value being changed, so :meth:`XlConfig.render`
returns the original file byte for byte except for the values that were set.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Union

from .errors import MAX_PROBLEMS, BundleError, printable, snippet
from .xenversion import (
    CONFIG_KEY,
    CONFIG_VALUE,
    DEFAULT_XEN_VERSION,
    SPEC_KEYS,
    VALUE_KEYS,
    XenVersion,
    XenVersionError,
    XenVersionLike,
    as_xen_version,
    parse_xen_version,
    spec_keywords,
    syntax_problem,
)

__all__ = [
    "Assignment",
    "Value",
    "XlConfig",
    "XlConfigError",
    "main",
    "parse",
    "parse_file",
    "render_value",
]

#: A setting's value as xl stores it: a string, or a (possibly nested) list of values.
Value = Union[str, list["Value"]]

_IDENT_RE = re.compile(r"[a-z][._0-9a-z]*")
_NUMBER_RE = re.compile(r"[0-9][0-9a-fx]*")
_KEY_RE = re.compile(r"\A[a-z][._0-9a-z]*\Z")
_NUMBER_FULL_RE = re.compile(r"\A[0-9][0-9a-fx]*\Z")

# Character escapes understood by libxlutil's dequoting, and their values.
_SIMPLE_ESCAPES = {
    '"': '"', "'": "'", "\\": "\\",
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
}
# The reverse mapping used when writing strings; characters not listed are
# written as they are (xl accepts any character but newline inside quotes).
_RENDER_ESCAPES = {
    "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r",
    "\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v",
}


class XlConfigError(BundleError):
    """An xl configuration file that xl would refuse.

    ``filename`` names the file and ``errors`` lists the problems of the first
    :data:`~xenbundle.errors.MAX_PROBLEMS` lines with a problem as ``(line,
    message)``, one message per line, in line order; ``more`` counts the problems
    found on further lines (the parser stops describing them, so a huge broken file
    gives a small report).  ``str(err)`` has one ``FILE:LINE: message`` line each and
    ends with ``FILE: ... and N more problems`` when some were left out.
    ``newer_syntax_lines`` are the listed lines whose problem is only that the Xen
    version being built lacks the setting (:mod:`xenbundle.xenversion`).
    """

    def __init__(self, filename: str, errors: Sequence[tuple[int, str]], more: int = 0,
                 newer_syntax_lines: frozenset[int] = frozenset()) -> None:
        self.filename = filename
        self.newer_syntax_lines = newer_syntax_lines
        self.errors: list[tuple[int, str]] = list(errors[:MAX_PROBLEMS])
        more += max(0, len(errors) - MAX_PROBLEMS)
        shown = printable(filename)
        super().__init__([f"{shown}:{line}: {msg}" for line, msg in self.errors], more)

    def _text(self) -> str:
        text = "\n".join(self.problems)
        if self.more:
            text += f"\n{printable(self.filename)}: ... and {self.more} more problems"
        return text

    def lines(self) -> list[str]:
        """The problems as ``"LINE: message"`` strings (the ``--json`` error form)."""
        return [f"{line}: {msg}" for line, msg in self.errors]


# --------------------------------------------------------------------------- lexer

# One token per match, blanks before it skipped.  Every character starts some
# alternative (``lexerr`` takes anything but a newline), so the matches tile the text.
# Strings use the "unrolled loop" form, which needs no backtracking stack per
# character; newline runs are bounded so that no match holds a huge repeat stack.
_TOKEN_RE = re.compile(
    r"[ \t]*(?:"
    r"(?P<nl>(?:#[^\n]*)?\n(?:[ \t]*(?:#[^\n]*)?\n){0,1000})"
    r"|(?P<ident>[a-z][._0-9a-z]*)"
    r"|(?P<number>[0-9][0-9a-fx]*)"
    r"|(?P<punct>\+=|[,\[\]=;])"
    r"|(?P<string>\"[^\"\\\n]*(?:\\[^\n][^\"\\\n]*)*\"|'[^'\\\n]*(?:\\[^\n][^'\\\n]*)*')"
    r"|(?P<unterminated>[\"'][^ \t\n]*)"
    r"|(?P<lastcomment>#[^\n]*)"
    r"|(?P<lexerr>[^\n][^ \t\n]*)"
    r"|(?P<eof>\Z))")

# The fast paths (see _Lexer): a statement whose value is an atom without escapes
# or NUL, or a flat list of such atoms (newlines and comments allowed where the
# grammar allows them: after `[', after an item and after a comma).
_ATOM = r"(?:\"[^\"\\\n\0]*\"|'[^'\\\n\0]*'|[0-9][0-9a-fx]*)"
_GAP = r"(?:[ \t]*(?:#[^\n]*)?\n){0,1000}[ \t]*"
_LIST_PART_RE = re.compile(rf"(?P<atom>{_ATOM})|#[^\n]*")
_SIMPLE_RE = re.compile(
    r"(?:[ \t]*(?:#[^\n]*)?\n){0,1000}"       # empty and comment lines before it
    r"[ \t]*(?P<key>[a-z][._0-9a-z]*)[ \t]*(?P<op>\+?=)[ \t]*"
    rf"(?:(?P<atom>{_ATOM})"
    rf"|(?P<list>\[{_GAP}(?:{_ATOM}{_GAP}(?:,{_GAP}{_ATOM}{_GAP}){{0,100000}}(?:,{_GAP})?)?\]))"
    r"[ \t]*(?:#[^\n]*)?\n")
_BLANK_LINES_RE = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n){1,1000}")
# A line of lexical errors only: chunks that start with a character no token starts
# with ('+' is left out: '+=' is a token), separated by blanks.
_ERROR_CHUNK = r"[^a-z0-9,\[\]=;\"'#+ \t\n][^ \t\n]*"
_ERROR_LINES_RE = re.compile(rf"(?:[ \t]*{_ERROR_CHUNK}(?:[ \t]+{_ERROR_CHUNK})*[ \t]*\n){{1,1000}}")

#: Lists nested deeper than this are refused (xl's bison stack allows 4996 levels;
#: real configurations use two).  Keeps every recursion far from Python's limit.
MAX_LIST_DEPTH = 100

# A token: (kind, start, end, line, value).  Kinds: IDENT NUMBER STRING NEWLINE EOF
# and the punctuation itself (= += , [ ] ;); value is the decoded string of STRING
# tokens and the text of IDENT/NUMBER/punctuation tokens.
_Tok = tuple[str, int, int, int, str]

# Priorities of messages on one line: what a reader fixes first wins.  _VERSION is
# a setting the Xen being built lacks (an evaluation problem of its own kind).
_VERSION, _EVALUATION, _SYNTAX, _LEXICAL = -1, 0, 1, 2


class _Errors:
    """The parser's problems: one message for each of the first lines, a count for the rest.

    Problems on lines already listed only replace the message if they come from an
    earlier stage (a lexical error explains a syntax error on its line, not the
    other way round).  Once :data:`MAX_PROBLEMS` lines are listed, problems on
    other lines are counted, not described: ``wants(line)`` tells a caller whether
    building the message is worth it.
    """

    def __init__(self) -> None:
        self.by_line: dict[int, tuple[int, str]] = {}
        self.more = 0
        self._last_counted = 0

    def wants(self, line: int) -> bool:
        return line in self.by_line or len(self.by_line) < MAX_PROBLEMS

    def add(self, line: int, message: str, priority: int) -> None:
        old = self.by_line.get(line)
        if old is not None:
            if priority > old[0]:
                self.by_line[line] = (priority, message)
        elif len(self.by_line) < MAX_PROBLEMS:
            self.by_line[line] = (priority, message)
        elif line != self._last_counted:
            self.more += 1
            self._last_counted = line

    def count_lines(self, first: int, lines: int) -> None:
        """Count problems on ``lines`` lines from ``first`` on, none of them listed."""
        self.more += lines - (1 if first == self._last_counted else 0)
        self._last_counted = first + lines - 1

    def __bool__(self) -> bool:
        return bool(self.by_line)

    def in_line_order(self) -> list[tuple[int, str]]:
        return [(line, message) for line, (_, message) in sorted(self.by_line.items())]

    def version_lines(self) -> frozenset[int]:
        return frozenset(line for line, (priority, _) in self.by_line.items()
                         if priority == _VERSION)


def _lexical_message(kind: str, bad: str) -> str:
    ch = bad[0]
    if kind == "lastcomment":
        return ("comment on the last line has no terminating newline (xl rejects it): "
                "end the file with a newline")
    if ch == "\r":
        return "carriage return (DOS line ending): xl rejects it; convert the file to Unix line endings"
    if ch == "\0":
        return (f"NUL byte near `{snippet(bad)}': xl cannot read it (is this a binary file?); "
                "remove it")
    if ch in "+-.():":
        return (f"lexical error near `{snippet(bad)}': this looks like Python, which xl config "
                "files are not; write numbers as plain digits and quote everything else")
    if ch.isalpha() or ch == "_":
        return (f"lexical error near `{snippet(bad)}': setting names are lower-case "
                "([a-z][._0-9a-z]*) and text values must be quoted")
    return f"lexical error near `{snippet(bad)}'"


class _Lexer:
    """Splits xl configuration text into tokens, reporting lexical errors.

    Lexical errors consume the offending text (up to the next blank), exactly as
    libxlutil's ``lexerr`` start condition does, so the parser carries on after it.
    Tokens are made as the parser asks for them (:meth:`token`): memory does not
    grow with the number of tokens.  Runs of newlines and comment lines are one
    ``NEWLINE`` token, which the grammar cannot tell from several.

    At the start of a statement the parser first offers the two fast paths, which
    read a whole line with one regular expression and give exactly what the
    token path gives: :meth:`simple_statement` and :meth:`error_lines`.
    """

    def __init__(self, text: str, errors: _Errors, warnings: list[tuple[int, str]]) -> None:
        self.text = text
        self.errors = errors
        self.warnings = warnings
        self.pos = 0
        self.line = 1

    def token(self) -> _Tok:
        text = self.text
        while True:
            m = _TOKEN_RE.match(text, self.pos)
            assert m is not None  # the alternatives cover every character and the end
            kind = m.lastgroup or "eof"
            start, end = m.start(kind), m.end()
            self.pos = end
            line = self.line
            if kind == "nl":
                self.line += text.count("\n", start, end)
                return ("NEWLINE", start, end, line, "")
            if kind == "ident" or kind == "number":
                return ("IDENT" if kind == "ident" else "NUMBER", start, end, line, text[start:end])
            if kind == "punct":
                value = text[start:end]
                return (value, start, end, line, value)
            if kind == "string":
                return ("STRING", start, end, line, self._dequote(text[start:end], line))
            if kind == "eof":
                self.pos = len(text)
                return ("EOF", len(text), len(text), line, "")
            if self.errors.wants(line):
                message = self._error_message(str(kind), start, text[start:end])
                self.errors.add(line, message, _LEXICAL)
            else:
                self.errors.add(line, "", _LEXICAL)

    def simple_statement(self) -> Assignment | None:
        """Read ``KEY = ATOM`` or ``KEY = [ATOM, ...]`` and its newline, if that comes next.

        Empty and comment lines before it are skipped.  Only atoms without escapes
        qualify; anything else is left to the token path.
        """
        text = self.text
        m = _SIMPLE_RE.match(text, self.pos)
        if m is None:
            return None
        key_start = m.start("key")
        line = self.line + text.count("\n", m.start(), key_start)
        atom_start = m.start("atom")
        if atom_start >= 0:
            node: _Node = self._atom(atom_start, m.end("atom"), line)
            self.line = line + 1
        else:
            node = self._list(m.start("list"), m.end("list"), line)
            self.line = line + text.count("\n", node.start, m.end())
        self.pos = m.end()
        return Assignment(m.group("key"), m.group("op"), line, key_start, m.start("op"),
                          node.start, node.end, node)

    def _list(self, start: int, end: int, line: int) -> _List:
        text = self.text
        items: list[_Node] = []
        item_line, counted = line, start
        for part in _LIST_PART_RE.finditer(text, start + 1, end - 1):
            if part.lastgroup == "atom":
                item_line += text.count("\n", counted, part.start())
                counted = part.start()
                items.append(self._atom(part.start(), part.end(), item_line))
        return _List(items, start, end, line)

    def blank_lines(self) -> bool:
        """Skip a run of empty and comment-only lines."""
        m = _BLANK_LINES_RE.match(self.text, self.pos)
        if m is None:
            return False
        self.line += self.text.count("\n", self.pos, m.end())
        self.pos = m.end()
        return True

    def _atom(self, start: int, end: int, line: int) -> _Atom:
        quote = self.text[start]
        if quote == '"' or quote == "'":
            return _Atom(self.text[start + 1:end - 1], start, end, line, quote)
        return _Atom(self.text[start:end], start, end, line, "")

    def error_lines(self) -> bool:
        """Count a run of lines holding nothing but lexical errors, once no more are listed."""
        if self.errors.wants(self.line):
            return False
        m = _ERROR_LINES_RE.match(self.text, self.pos)
        if m is None:
            return False
        lines = self.text.count("\n", self.pos, m.end())
        self.errors.count_lines(self.line, lines)
        self.pos = m.end()
        self.line += lines
        return True

    def _error_message(self, kind: str, start: int, bad: str) -> str:
        if kind == "unterminated":
            eol = self.text.find("\n", start)
            rest = self.text[start:eol if eol >= 0 else len(self.text)]
            return (f"unterminated string near `{snippet(rest)}': close the quote on the same "
                    "line (strings cannot span lines)")
        return _lexical_message(kind, bad)

    def _dequote(self, raw: str, line: int) -> str:
        """Decode a quoted string the way libxlutil's ``xlu__cfgl_dequote`` does."""
        if "\0" in raw:
            # libxlutil's dequoting asserts on it: xl aborts instead of reporting.
            self._error(line, f"NUL byte inside the quoted string {snippet(raw)}: xl cannot "
                              "read it (its parser stops with an assertion failure); remove it")
            return ""
        if "\\" not in raw:
            return raw[1:-1]
        out: list[str] = []
        end = len(raw) - 1
        p = 1
        while p < end:
            c = raw[p]
            p += 1
            if c != "\\":
                out.append(c)
                continue
            nc = raw[p]
            p += 1
            if nc in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[nc])
            elif nc == "x":
                # xl skips the first hex digit and then demands more than two
                # digits out of a two-character buffer: every \x escape fails.
                self._error(line, f"invalid digit after backslash hex numerical character escape "
                                  f"in quoted string {snippet(raw)} (xl rejects every \\x escape): "
                                  "write the character itself")
                return "".join(out)
            elif "0" <= nc <= "7":
                consumed = _strtoul_base10_len(raw[p:p + 3])
                if consumed <= 1:
                    self._error(line, f"invalid digit after backslash octal numerical character "
                                      f"escape in quoted string {snippet(raw)}: write the "
                                      "character itself")
                    return "".join(out)
                if len(self.warnings) < MAX_PROBLEMS:
                    self.warnings.append((line, (f"xl drops the escape `\\{nc}{raw[p:p + consumed]}' "
                                                 f"in {snippet(raw)} (it never stores its value)")))
                p += consumed
            else:
                self._error(line, f"invalid character after backslash in quoted string "
                                  f"{snippet(raw)}: the escapes are \\\\ \\' \\\" \\a \\b \\f "
                                  "\\n \\r \\t \\v")
                return "".join(out)
        return "".join(out)

    def _error(self, line: int, msg: str) -> None:
        self.errors.add(line, msg, _LEXICAL)


def _strtoul_base10_len(buf: str) -> int:
    """Length of the prefix of ``buf`` that C's ``strtoul(buf, &ep, 10)`` consumes."""
    i = 0
    while i < len(buf) and buf[i] in " \t\n\v\f\r":
        i += 1
    if i < len(buf) and buf[i] in "+-":
        i += 1
    start = i
    while i < len(buf) and buf[i].isdigit() and buf[i] in "0123456789":
        i += 1
    return i if i > start else 0


# ------------------------------------------------------------------------- syntax tree

class _Atom(NamedTuple):
    value: str
    start: int
    end: int
    line: int
    quote: str  # "'" or '"' for strings, "" for a bare number


class _List(NamedTuple):
    items: list[_Atom | _List]
    start: int
    end: int
    line: int


_Node = Union[_Atom, _List]


@dataclass
class Assignment:
    """One ``KEY = VALUE`` / ``KEY += VALUE`` statement as written.

    ``line`` is the line the value starts on; offsets index the source text.
    """

    key: str
    op: str                 # "=" or "+="
    line: int
    key_start: int
    op_start: int
    value_start: int
    value_end: int
    node: _Node = field(repr=False)


@dataclass
class _Effective:
    """The value xl ends up with for one key, with the source of every part of it.

    ``parts`` are the list's item nodes (possibly from several ``+=`` statements) or
    the string atoms concatenated; ``+=`` extends them in place, so a long chain of
    ``+=`` costs time in proportion to its length.
    """

    is_list: bool
    parts: list[_Node]
    assignment: Assignment   # the last statement for the key
    line: int                # line of the statement that started the value

    @property
    def value(self) -> Value:
        if self.is_list:
            return [_node_value(part) for part in self.parts]
        return "".join(part.value for part in self.parts if isinstance(part, _Atom))


class _Parser:
    """Recursive-descent parser for the libxlutil grammar with per-statement recovery.

    Statements are evaluated (``=`` / ``+=``) as they are read; with
    ``keep_statements`` every statement is kept in :attr:`statements` too.  With
    ``xen_version`` the settings that Xen lacks are reported as well.
    """

    def __init__(self, text: str, keep_statements: bool = False,
                 xen_version: XenVersion | None = None) -> None:
        self.text = text
        self.errors = _Errors()
        self.warnings: list[tuple[int, str]] = []
        self.effective: dict[str, _Effective] = {}
        self.statements: list[Assignment] = []
        self._keep = keep_statements
        self._lexer = _Lexer(text, self.errors, self.warnings)
        self._ahead: list[_Tok] = []
        self._last: _Tok | None = None
        self._depth = 0
        self._xen = xen_version
        #: Whether the lexer's fast paths are used (the tests compare both ways).
        self.fast = True

    # token helpers
    def _peek(self) -> _Tok:
        if not self._ahead:
            self._ahead.append(self._lexer.token())
        return self._ahead[0]

    def _peek_two(self) -> tuple[_Tok, _Tok]:
        while len(self._ahead) < 2:
            self._ahead.append(self._lexer.token())
        return self._ahead[0], self._ahead[1]

    def _next(self) -> _Tok:
        tok = self._peek()
        if tok[0] != "EOF":
            del self._ahead[0]
            self._last = tok
        return tok

    def _skip_newlines(self) -> None:
        while self._peek()[0] == "NEWLINE":
            self._next()

    def _starts_setting(self) -> bool:
        first, second = self._peek_two()
        return first[0] == "IDENT" and second[0] in ("=", "+=")

    def parse(self) -> None:
        self._parse_statements()
        if self._xen is not None:
            self._check_values(self._xen)

    def _parse_statements(self) -> None:
        lexer = self._lexer
        while True:
            if not self._ahead and self.fast:
                simple = lexer.simple_statement()
                if simple is not None:
                    while simple is not None:
                        self._statement(simple)
                        simple = lexer.simple_statement()
                    continue
                if lexer.blank_lines() or lexer.error_lines():
                    continue
            tok = self._peek()
            kind = tok[0]
            if kind == "EOF":
                return
            if kind == "NEWLINE" or kind == ";":
                self._next()
                continue
            try:
                if kind != "IDENT":
                    raise _SyntaxError(tok, "expected a setting name (KEY = VALUE)")
                self._assignment()
                end = self._peek()
                if end[0] == "NEWLINE" or end[0] == ";":
                    self._next()
                elif end[0] != "EOF":
                    raise _SyntaxError(end, "expected a newline or `;' after the value "
                                            "(one setting per line, or separate them with `;')")
            except _SyntaxError as err:
                self._report(err)
                if err.skip and not self._consumed_terminator(err.token):
                    self._recover()

    def _report(self, err: _SyntaxError) -> None:
        kind, start, end, line, _ = err.token
        if not self.errors.wants(line):
            self.errors.add(line, "", _SYNTAX)
            return
        if kind == "EOF":
            near = "end of file"
        elif kind == "NEWLINE":
            near = "end of line"
        else:
            near = f"`{snippet(self.text[start:end])}'"
        self.errors.add(line, f"syntax error near {near}: {err.message}", _SYNTAX)

    def _consumed_terminator(self, tok: _Tok) -> bool:
        # The error was found at the newline/`;' ending the statement: nothing to skip.
        return (tok[0] == "NEWLINE" or tok[0] == ";") and self._last is tok

    def _recover(self) -> None:
        """Skip to the end of the broken statement.

        Like bison's ``error NEWLINE`` rule, but a newline inside an open list does not
        end the statement unless the next line starts a new ``KEY =`` setting, so one
        broken list gives one error rather than one per line.
        """
        depth = 0
        while True:
            kind = self._peek()[0]
            if kind == "EOF":
                return
            self._next()
            if kind == "[":
                depth += 1
            elif kind == "]":
                depth = max(0, depth - 1)
            elif (kind == "NEWLINE" or kind == ";") and (depth == 0 or self._starts_setting()):
                return

    def _assignment(self) -> None:
        key_tok = self._next()
        op_tok = self._next()
        if op_tok[0] != "=" and op_tok[0] != "+=":
            raise _SyntaxError(op_tok, f"expected `=' or `+=' after `{key_tok[4]}'")
        node = self._value()
        self._statement(Assignment(key=key_tok[4], op=op_tok[0], line=node.line,
                                   key_start=key_tok[1], op_start=op_tok[1],
                                   value_start=node.start, value_end=node.end, node=node))

    def _statement(self, asg: Assignment) -> None:
        if self._keep:
            self.statements.append(asg)
        if self._xen is not None:
            problem = syntax_problem(CONFIG_KEY, asg.key, self._xen)
            if problem is not None:
                self._version_problem(asg.line, f"{problem[0]}: {problem[1]}")
        self._apply(asg)

    def _version_problem(self, line: int, message: str) -> None:
        self.errors.add(line, message if self.errors.wants(line) else "", _VERSION)

    def _check_values(self, version: XenVersion) -> None:
        """The values, and vif/p9 spec keywords, that Xen ``version`` lacks (final values)."""
        for key in sorted(VALUE_KEYS & self.effective.keys()):
            eff = self.effective[key]
            problem = None if eff.is_list else syntax_problem(CONFIG_VALUE, key, version,
                                                                str(eff.value))
            if problem is not None:
                self._version_problem(eff.assignment.line, f"{problem[0]}: {problem[1]}")
        for key, kind in SPEC_KEYS.items():
            specs = self.effective.get(key)
            if specs is not None and specs.is_list:
                for part in specs.parts:
                    if isinstance(part, _Atom):
                        self._check_spec(key, kind, part, version)

    def _check_spec(self, key: str, kind: str, spec: _Atom, version: XenVersion) -> None:
        for keyword in spec_keywords(kind, spec.value):
            problem = syntax_problem(kind, keyword, version)
            if problem is not None:
                self._version_problem(spec.line, (f"{key} spec \"{snippet(spec.value)}\": "
                                                  f"{problem[0]}: {problem[1]}"))
                return

    def _apply(self, asg: Assignment) -> None:
        """xl's `=` / `+=` rules for one statement."""
        prev = self.effective.get(asg.key)
        node = asg.node
        is_list = isinstance(node, _List)
        if asg.op == "+=" and prev is not None:
            if prev.is_list != is_list:
                self.errors.add(asg.line, f"can't add [list] to \"string\" or vice versa: "
                                          f"`{asg.key}' was a "
                                          f"{'list' if prev.is_list else 'string'} on line "
                                          f"{prev.line}; use the same kind of value with `+='",
                                _EVALUATION)
                return
            # The key keeps its place (order of first appearance of the chain).
            prev.parts.extend(node.items if isinstance(node, _List) else [node])
            prev.assignment = asg
            return
        if prev is not None:
            del self.effective[asg.key]
        parts: list[_Node] = list(node.items) if isinstance(node, _List) else [node]
        self.effective[asg.key] = _Effective(is_list, parts, asg, asg.line)

    def _value(self) -> _Node:
        tok = self._next()
        kind, start, end, line, value = tok
        if kind == "STRING":
            return _Atom(value, start, end, line, self.text[start])
        if kind == "NUMBER":
            return _Atom(value, start, end, line, "")
        if kind == "[":
            return self._list(tok)
        if kind == "NEWLINE" or kind == "EOF":
            raise _SyntaxError(tok, "missing value: put the value on the same line as the `='")
        if kind == "IDENT":
            raise _SyntaxError(tok, f"text values must be quoted, e.g. \"{snippet(value)}\"")
        raise _SyntaxError(tok, "expected a value (a quoted string, a number or a [list])")

    def _skip_list_newlines(self, open_tok: _Tok) -> None:
        """Skip newlines inside a list; a following ``KEY =`` means the list was never closed."""
        if self._peek()[0] != "NEWLINE":
            return
        self._skip_newlines()
        if self._peek()[0] == "EOF":
            raise _SyntaxError(open_tok, "the list opened here is not closed at the end of "
                                         "the file: add `]'", skip=False)
        if self._starts_setting():
            raise _SyntaxError(open_tok, f"the list opened here is not closed before "
                                         f"line {self._peek()[3]}: add `]'", skip=False)

    def _list(self, open_tok: _Tok) -> _List:
        if self._depth >= MAX_LIST_DEPTH:
            raise _SyntaxError(open_tok, f"lists nested more than {MAX_LIST_DEPTH} levels deep: "
                                         "flatten the value (xl configurations need two levels)")
        self._depth += 1
        try:
            return self._list_items(open_tok)
        finally:
            self._depth -= 1

    def _list_items(self, open_tok: _Tok) -> _List:
        items: list[_Node] = []
        start, line = open_tok[1], open_tok[3]
        self._skip_list_newlines(open_tok)
        if self._peek()[0] == "]":
            return _List(items, start, self._next()[2], line)
        while True:
            items.append(self._value())
            self._skip_list_newlines(open_tok)
            tok = self._next()
            if tok[0] == "]":
                return _List(items, start, tok[2], line)
            if tok[0] != ",":
                raise _SyntaxError(tok, "expected `,' or `]' in list (list items are "
                                        "separated by commas)")
            self._skip_list_newlines(open_tok)
            if self._peek()[0] == "]":
                return _List(items, start, self._next()[2], line)


class _SyntaxError(Exception):
    def __init__(self, token: _Tok, message: str, skip: bool = True) -> None:
        super().__init__(message)
        self.token = token
        self.message = message
        self.skip = skip  # False: parsing resumes at the current token


def _node_value(node: _Node) -> Value:
    if isinstance(node, _Atom):
        return node.value
    return [_node_value(item) for item in node.items]


# ----------------------------------------------------------------------- rendering

def _render_string(value: str, quote: str = '"') -> str:
    if "\0" in value:
        raise ValueError(f"xl cannot read a NUL character in a string ({snippet(value)})")
    if quote not in ("'", '"'):
        quote = '"'
    out = [quote]
    for ch in value:
        if ch == quote:
            out.append("\\" + ch)
        else:
            out.append(_RENDER_ESCAPES.get(ch, ch))
    out.append(quote)
    return "".join(out)


def render_value(value: object, quote: str = '"') -> str:
    """Write a value in xl syntax: ints bare, strings quoted (with escapes), lists in brackets.

    Strings are always quoted (xl treats ``512`` and ``"512"`` alike); ``quote``
    chooses the quote character.  A string with a NUL character cannot be written
    (``ValueError``): xl cannot read it.
    """
    if isinstance(value, bool):
        raise TypeError("xl has no boolean type: use 0 or 1")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"xl cannot write negative numbers ({value}): use a string")
        return str(value)
    if isinstance(value, str):
        return _render_string(value, quote)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(render_value(v, quote) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as an xl value")


def _normalise(value: object) -> Value:
    if isinstance(value, bool):
        raise TypeError("xl has no boolean type: use 0 or 1")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    raise TypeError(f"cannot write {type(value).__name__} as an xl value")


# ------------------------------------------------------------------ document model

class XlConfig:
    """A parsed xl configuration file that can be edited without losing what was written.

    Create it with :func:`parse` or :func:`parse_file`.  ``xen_version`` is the Xen
    it is checked for (:mod:`xenbundle.xenversion`); edits are checked for it too.
    """

    def __init__(self, text: str, filename: str = "<string>", *,
                 xen_version: XenVersionLike = DEFAULT_XEN_VERSION) -> None:
        version = as_xen_version(xen_version)
        parser = _Parser(text, xen_version=version)
        parser.parse()
        if parser.errors:
            raise XlConfigError(filename, parser.errors.in_line_order(), parser.errors.more,
                                parser.errors.version_lines())
        #: The Xen version the configuration was checked for.
        self.xen_version = version
        self.filename = filename
        self._text = text
        self._effective = parser.effective
        #: ``(line, message)`` for accepted constructs that xl does not read the way
        #: they look (e.g. numeric escapes whose character xl drops); the first
        #: :data:`~xenbundle.errors.MAX_PROBLEMS` of them.
        self.warnings: list[tuple[int, str]] = parser.warnings

    # reading
    def settings(self) -> dict[str, Value]:
        """Every setting with the value xl ends up with, in order of first appearance."""
        return {key: eff.value for key, eff in self._effective.items()}

    def keys(self) -> list[str]:
        """The keys that are set, in order of first appearance."""
        return list(self._effective)

    def __contains__(self, key: object) -> bool:
        return key in self._effective

    def get(self, key: str, default: Value | None = None) -> Value | None:
        """The value of ``key`` (a string or a list), or ``default`` when it is not set."""
        eff = self._effective.get(key)
        return default if eff is None else eff.value

    def line_of(self, key: str, index: int | None = None) -> int:
        """The line where ``key`` (or item ``index`` of its list value) is written.

        Raises ``KeyError`` when ``key`` is not set.
        """
        eff = self._effective[key]
        if index is not None and eff.is_list and 0 <= index < len(eff.parts):
            return eff.parts[index].line
        return eff.assignment.line

    @property
    def assignments(self) -> list[Assignment]:
        """Every assignment statement, in file order (including overridden ones)."""
        parser = _Parser(self._text, keep_statements=True)
        parser.parse()
        return parser.statements

    def render(self) -> str:
        """The configuration text; untouched parts are exactly as they were read."""
        return self._text

    # editing
    def set(self, key: str, value: Value | int | Sequence[object]) -> None:
        """Set ``key`` to ``value``, editing the file in place.

        Only the characters of the value that changes are rewritten: list items that
        keep their value keep their text, quoting style and the comments between
        them.  When the shape of the value changes, the last statement for ``key``
        is rewritten as ``key = VALUE`` (earlier statements stay, overridden, as
        written).  A key that is not set yet is appended at the end of the file.
        """
        self.update({key: value})

    def update(self, values: Mapping[str, Value | int | Sequence[object]]) -> None:
        """Set several keys as :meth:`set` does, reading the edited text once.

        Nothing changes when one of the values cannot be written (the exception
        propagates).
        """
        edits: list[tuple[int, int, str]] = []
        appended: list[str] = []
        expected: dict[str, Value] = {}
        for key, value in values.items():
            if not _KEY_RE.match(key):
                raise ValueError(f"invalid xl setting name {key!r}: names match [a-z][._0-9a-z]*")
            new = _normalise(value)
            expected[key] = new
            eff = self._effective.get(key)
            if eff is None:
                appended.append(f"{key} = {render_value(value)}\n")
                continue
            own: list[tuple[int, int, str]] = []
            if not self._plan_in_place(eff, new, own):
                asg = eff.assignment
                own = [(asg.op_start, asg.value_end,
                        "= " + render_value(_denormalise(value, new), _first_quote(asg.node)))]
            edits.extend(own)
        if not expected:
            return
        text = self._text
        if appended:
            prefix = "" if (not text or text.endswith("\n")) else "\n"
            edits.append((len(text), len(text), prefix + "".join(appended)))
        pieces: list[str] = []
        pos = 0
        for start, end, replacement in sorted(edits):
            pieces += [text[pos:start], replacement]
            pos = end
        pieces.append(text[pos:])
        updated = XlConfig("".join(pieces), self.filename, xen_version=self.xen_version)
        for key, new in expected.items():
            if updated.get(key) != new:  # pragma: no cover - guards the edit logic itself
                raise AssertionError(f"internal error: setting {key} did not round-trip")
        self.__dict__.update(updated.__dict__)

    def _plan_in_place(self, eff: _Effective, new: Value, edits: list[tuple[int, int, str]]) -> bool:
        if eff.is_list:
            if not isinstance(new, list) or len(new) != len(eff.parts):
                return False
            for node, item in zip(eff.parts, new):
                _plan_node(node, item, edits)
            return True
        if isinstance(new, list) or len(eff.parts) != 1:
            return False
        _plan_node(eff.parts[0], new, edits)
        return True


def _plan_node(node: _Node, new: Value, edits: list[tuple[int, int, str]]) -> None:
    if isinstance(node, _Atom):
        if isinstance(new, str) and new == node.value:
            return
        if isinstance(new, str) and not node.quote and _NUMBER_FULL_RE.match(new):
            edits.append((node.start, node.end, new))
            return
        edits.append((node.start, node.end, render_value(new, node.quote or '"')))
        return
    if isinstance(new, list) and len(new) == len(node.items):
        for child, item in zip(node.items, new):
            _plan_node(child, item, edits)
        return
    edits.append((node.start, node.end, render_value(new, _first_quote(node))))


def _first_quote(node: _Node) -> str:
    if isinstance(node, _Atom):
        return node.quote or '"'
    for item in node.items:
        return _first_quote(item)
    return '"'


def _denormalise(original: object, normalised: Value) -> object:
    # Keep ints as ints (bare numbers) when writing a whole new value.
    if isinstance(original, int) and not isinstance(original, bool):
        return original
    if isinstance(original, (list, tuple)) and isinstance(normalised, list):
        return [_denormalise(o, n) for o, n in zip(original, normalised)]
    return normalised


def _copy(value: Value) -> Value:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def parse(text: str, filename: str = "<string>", *,
          xen_version: XenVersionLike = DEFAULT_XEN_VERSION) -> XlConfig:
    """Parse xl configuration ``text``; ``filename`` is used in error messages.

    ``xen_version`` is the Xen whose xl is meant (4.17 by default; see
    :mod:`xenbundle.xenversion`).  Raises :class:`XlConfigError` listing every
    problem, :class:`~xenbundle.xenversion.XenVersionError` for a version
    xenbundle does not support.
    """
    return XlConfig(text, filename, xen_version=xen_version)


def decode(data: bytes) -> str:
    """Configuration file contents as text, byte-exactly (undecodable bytes are kept).

    xl reads bytes; bytes that are not UTF-8 become lone surrogates, so that
    :meth:`XlConfig.render` gives the same bytes back (encode with
    ``"surrogateescape"``).
    """
    return data.decode("utf-8", errors="surrogateescape")


def read_text(path: str) -> str:
    """Read a configuration file as text with :func:`decode`."""
    with open(path, "rb") as f:
        return decode(f.read())


def parse_file(path: str, *, xen_version: XenVersionLike = DEFAULT_XEN_VERSION) -> XlConfig:
    """Read and parse the configuration file at ``path`` (see :func:`parse`)."""
    return XlConfig(read_text(path), path, xen_version=xen_version)


# ------------------------------------------------------------------------------ CLI

def _xen_version_argument(text: str) -> XenVersion:
    try:
        return parse_xen_version(text, "--xen-version")
    except XenVersionError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: check a configuration file or one disk specification.

    ``--json FILE`` prints ``{"ok": true, "settings": {...}}`` or
    ``{"ok": false, "errors": ["LINE: message", ...], "more": N}`` (exit status 1;
    the first 20 lines with a problem are listed, ``more`` counts the others).
    ``--disk SPEC`` does the same for an xl-disk-configuration(5) spec
    (``{"ok": true, "disk": {...}}``).  Without ``--json`` the result is printed for
    people: ``KEY = VALUE`` lines (or ``key: value`` lines for ``--disk``), and
    errors as ``FILE:LINE: message`` on standard error.  ``FILE`` may be ``-``
    for standard input.  ``--xen-version`` names the Xen whose xl is meant
    (default 4.17, the oldest supported; see :mod:`xenbundle.xenversion`).
    """
    ap = argparse.ArgumentParser(prog="python3 -m xenbundle.xlcfg",
                                 description="Parse an xl.cfg(5) file or an xl disk spec "
                                             "the way xl does.")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--disk", metavar="SPEC", help="parse one disk specification instead of a file")
    ap.add_argument("--xen-version", metavar="X.Y", type=_xen_version_argument,
                    default=DEFAULT_XEN_VERSION,
                    help=f"the Xen version whose xl is meant (default {DEFAULT_XEN_VERSION}, "
                         "the oldest supported); syntax newer than it is an error")
    ap.add_argument("file", nargs="?", help="configuration file ('-' for standard input)")
    args = ap.parse_args(argv)

    if args.disk is not None:
        if args.file is not None:
            ap.error("give either FILE or --disk SPEC, not both")
        return _main_disk(args.disk, args.json, args.xen_version)
    if args.file is None:
        ap.error("a FILE (or --disk SPEC) is required")
    return _main_file(args.file, args.json, args.xen_version)


def _main_disk(text: str, as_json: bool, xen_version: XenVersion) -> int:
    from .disk import DiskSpecError, parse_disk
    try:
        spec = parse_disk(text, xen_version=xen_version)
    except DiskSpecError as err:
        if as_json:
            print(json.dumps({"ok": False, "errors": err.messages}))
        else:
            print(str(err), file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"ok": True, "disk": spec.values()}))
    else:
        for k, v in spec.values().items():
            print(f"{k}: {v}")
    return 0


def _main_file(path: str, as_json: bool, xen_version: XenVersion) -> int:
    try:
        if path == "-":
            cfg = parse(sys.stdin.read(), "<stdin>", xen_version=xen_version)
        else:
            cfg = parse_file(path, xen_version=xen_version)
    except OSError as err:
        msg = f"cannot read {path}: {err.strerror}"
        if as_json:
            print(json.dumps({"ok": False, "errors": [f"0: {msg}"]}))
        else:
            print(msg, file=sys.stderr)
        return 1
    except XlConfigError as err:
        if as_json:
            print(json.dumps({"ok": False, "errors": err.lines(), "more": err.more}))
        else:
            print(str(err), file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"ok": True, "settings": cfg.settings()}))
    else:
        for key, value in cfg.settings().items():
            print(f"{key} = {render_value(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
