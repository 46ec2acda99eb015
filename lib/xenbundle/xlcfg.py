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
reports some errors at the end of the previous line); all errors are reported,
not only those bison's error recovery happens to print; and a stray character at
the very end of a file with no final newline (``memory = 512+``) is an error here,
while xl's scanner reaches end-of-file before reporting it and accepts the file.
A differential run of 30,000 generated files against Debian's libxlutil 4.17
found no other difference in acceptance or in the values read.

The document model (:class:`XlConfig`) keeps the original text.  :meth:`XlConfig.set`
edits only the characters of the value being changed, so :meth:`XlConfig.render`
returns the original file byte for byte except for the values that were set.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Union

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


class XlConfigError(ValueError):
    """An xl configuration file that xl would refuse.

    ``filename`` names the file and ``errors`` lists every problem as
    ``(line, message)``; ``str(err)`` has one ``FILE:LINE: message`` line each.
    """

    def __init__(self, filename: str, errors: Sequence[tuple[int, str]]) -> None:
        self.filename = filename
        self.errors: list[tuple[int, str]] = list(errors)
        super().__init__("\n".join(f"{filename}:{line}: {msg}" for line, msg in self.errors))

    def lines(self) -> list[str]:
        """The problems as ``"LINE: message"`` strings (the ``--json`` error form)."""
        return [f"{line}: {msg}" for line, msg in self.errors]


# --------------------------------------------------------------------------- lexer

@dataclass
class _Token:
    kind: str          # IDENT NUMBER STRING = += , [ ] ; NEWLINE EOF
    text: str          # the source text of the token
    start: int         # offsets into the source text
    end: int
    line: int          # line the token starts on (1-based)
    value: str = ""    # decoded value of IDENT/NUMBER/STRING


class _Lexer:
    """Splits xl configuration text into tokens, reporting lexical errors.

    Lexical errors consume the offending text (up to the next blank), exactly as
    libxlutil's ``lexerr`` start condition does, so the parser carries on after it.
    """

    def __init__(self, text: str, errors: list[tuple[int, str]], warnings: list[tuple[int, str]]):
        self.text = text
        self.errors = errors
        self.warnings = warnings

    def tokens(self) -> Iterator[_Token]:
        text = self.text
        pos = 0
        line = 1
        n = len(text)
        while pos < n:
            ch = text[pos]
            if ch in " \t":
                pos += 1
                continue
            if ch == "\n":
                yield _Token("NEWLINE", "\n", pos, pos + 1, line)
                pos += 1
                line += 1
                continue
            if ch == "#":
                nl = text.find("\n", pos)
                if nl < 0:
                    self._error(line, "comment on the last line has no terminating newline "
                                      "(xl rejects it): end the file with a newline")
                    break
                yield _Token("NEWLINE", text[pos:nl + 1], pos, nl + 1, line)
                pos = nl + 1
                line += 1
                continue
            m = _IDENT_RE.match(text, pos)
            if m:
                yield _Token("IDENT", m.group(), pos, m.end(), line, m.group())
                pos = m.end()
                continue
            m = _NUMBER_RE.match(text, pos)
            if m:
                yield _Token("NUMBER", m.group(), pos, m.end(), line, m.group())
                pos = m.end()
                continue
            if ch in ",[]=;":
                yield _Token(ch, ch, pos, pos + 1, line)
                pos += 1
                continue
            if text.startswith("+=", pos):
                yield _Token("+=", "+=", pos, pos + 2, line)
                pos += 2
                continue
            if ch in "'\"":
                end = self._string_end(pos)
                if end is not None:
                    raw = text[pos:end]
                    yield _Token("STRING", raw, pos, end, line, self._dequote(raw, line))
                    pos = end
                    continue
                eol = text.find("\n", pos)
                rest = text[pos:eol if eol >= 0 else n]
                self._error(line, f"unterminated string near `{_shorten(rest)}': close the "
                                  "quote on the same line (strings cannot span lines)")
                pos = self._skip_lexerr(pos)
                continue
            # Anything else is a lexical error; xl swallows it up to the next blank.
            end = self._skip_lexerr(pos)
            bad = text[pos:end]
            if ch == "\r":
                msg = ("carriage return (DOS line ending): xl rejects it; "
                       "convert the file to Unix line endings")
            elif ch in "+-.():" :
                msg = (f"lexical error near `{_shorten(bad)}': this looks like Python, which xl "
                       "config files are not; write numbers as plain digits and quote "
                       "everything else")
            elif ch.isalpha() or ch == "_":
                msg = (f"lexical error near `{_shorten(bad)}': setting names are lower-case "
                       "([a-z][._0-9a-z]*) and text values must be quoted")
            else:
                msg = f"lexical error near `{_shorten(bad)}'"
            self._error(line, msg)
            pos = end
        yield _Token("EOF", "", n, n, line)

    def _skip_lexerr(self, pos: int) -> int:
        # libxlutil's <lexerr> state: the bad character plus following non-blanks.
        end = pos + 1
        while end < len(self.text) and self.text[end] not in " \t\n":
            end += 1
        return end

    def _string_end(self, pos: int) -> int | None:
        quote = self.text[pos]
        i = pos + 1
        n = len(self.text)
        while i < n:
            c = self.text[i]
            if c == quote:
                return i + 1
            if c == "\n":
                return None
            if c == "\\":
                if i + 1 >= n or self.text[i + 1] == "\n":
                    return None
                i += 2
                continue
            i += 1
        return None

    def _dequote(self, raw: str, line: int) -> str:
        """Decode a quoted string the way libxlutil's ``xlu__cfgl_dequote`` does."""
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
                                  f"in quoted string {_shorten(raw)} (xl rejects every \\x escape): "
                                  "write the character itself")
                return "".join(out)
            elif "0" <= nc <= "7":
                consumed = _strtoul_base10_len(raw[p:p + 3])
                if consumed <= 1:
                    self._error(line, f"invalid digit after backslash octal numerical character "
                                      f"escape in quoted string {_shorten(raw)}: write the "
                                      "character itself")
                    return "".join(out)
                self.warnings.append((line, f"xl drops the escape `\\{nc}{raw[p:p + consumed]}' "
                                            f"in {_shorten(raw)} (it never stores its value)"))
                p += consumed
            else:
                self._error(line, f"invalid character after backslash in quoted string "
                                  f"{_shorten(raw)}: the escapes are \\\\ \\' \\\" \\a \\b \\f "
                                  "\\n \\r \\t \\v")
                return "".join(out)
        return "".join(out)

    def _error(self, line: int, msg: str) -> None:
        self.errors.append((line, msg))


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


def _shorten(text: str, limit: int = 40) -> str:
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------- syntax tree

@dataclass
class _Atom:
    value: str
    start: int
    end: int
    line: int
    quote: str  # "'" or '"' for strings, "" for a bare number


@dataclass
class _List:
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
    """The value xl ends up with for one key, with the source of every part of it."""

    value: Value
    # For lists: the item nodes (possibly from several `+=` statements).
    # For strings: the atoms concatenated.
    parts: list[_Node]
    assignment: Assignment   # the last statement for the key
    line: int                # line of the statement that started the value


class _Parser:
    """Recursive-descent parser for the libxlutil grammar with per-statement recovery."""

    def __init__(self, text: str):
        self.text = text
        self.errors: list[tuple[int, str]] = []
        self.warnings: list[tuple[int, str]] = []
        self.assignments: list[Assignment] = []
        self._tokens = list(_Lexer(text, self.errors, self.warnings).tokens())
        self._i = 0

    # token helpers
    def _peek(self) -> _Token:
        return self._tokens[self._i]

    def _next(self) -> _Token:
        tok = self._tokens[self._i]
        if tok.kind != "EOF":
            self._i += 1
        return tok

    def _skip_newlines(self) -> None:
        while self._peek().kind == "NEWLINE":
            self._i += 1

    def parse(self) -> None:
        while True:
            tok = self._peek()
            if tok.kind == "EOF":
                return
            if tok.kind in ("NEWLINE", ";"):
                self._next()
                continue
            try:
                if tok.kind != "IDENT":
                    raise _SyntaxError(tok, "expected a setting name (KEY = VALUE)")
                self._assignment()
                end = self._peek()
                if end.kind in ("NEWLINE", ";"):
                    self._next()
                elif end.kind != "EOF":
                    raise _SyntaxError(end, "expected a newline or `;' after the value "
                                            "(one setting per line, or separate them with `;')")
            except _SyntaxError as err:
                self._report(err)
                if err.skip and not self._consumed_terminator(err.token):
                    self._recover()

    def _report(self, err: _SyntaxError) -> None:
        tok = err.token
        if tok.kind == "EOF":
            near = "end of file"
        elif tok.kind == "NEWLINE":
            near = "end of line"
        else:
            near = f"`{_shorten(tok.text)}'"
        self.errors.append((tok.line, f"syntax error near {near}: {err.message}"))

    def _consumed_terminator(self, tok: _Token) -> bool:
        # The error was found at the newline/`;' ending the statement: nothing to skip.
        return tok.kind in ("NEWLINE", ";") and self._i > 0 and self._tokens[self._i - 1] is tok

    def _recover(self) -> None:
        """Skip to the end of the broken statement.

        Like bison's ``error NEWLINE`` rule, but a newline inside an open list does not
        end the statement unless the next line starts a new ``KEY =`` setting, so one
        broken list gives one error rather than one per line.
        """
        depth = 0
        while True:
            tok = self._peek()
            if tok.kind == "EOF":
                return
            self._next()
            if tok.kind == "[":
                depth += 1
            elif tok.kind == "]":
                depth = max(0, depth - 1)
            elif tok.kind in ("NEWLINE", ";"):
                if depth == 0:
                    return
                nxt = self._tokens[self._i:self._i + 2]
                if len(nxt) == 2 and nxt[0].kind == "IDENT" and nxt[1].kind in ("=", "+="):
                    return

    def _assignment(self) -> None:
        key_tok = self._next()
        op_tok = self._next()
        if op_tok.kind not in ("=", "+="):
            raise _SyntaxError(op_tok, f"expected `=' or `+=' after `{key_tok.text}'")
        node = self._value()
        self.assignments.append(Assignment(
            key=key_tok.value, op=op_tok.kind, line=node.line, key_start=key_tok.start,
            op_start=op_tok.start, value_start=node.start, value_end=node.end, node=node))

    def _value(self) -> _Node:
        tok = self._next()
        if tok.kind in ("STRING", "NUMBER"):
            quote = tok.text[0] if tok.kind == "STRING" else ""
            return _Atom(tok.value, tok.start, tok.end, tok.line, quote)
        if tok.kind == "[":
            return self._list(tok)
        if tok.kind in ("NEWLINE", "EOF"):
            raise _SyntaxError(tok, "missing value: put the value on the same line as the `='")
        if tok.kind == "IDENT":
            raise _SyntaxError(tok, "text values must be quoted, e.g. \"" + tok.text + "\"")
        raise _SyntaxError(tok, "expected a value (a quoted string, a number or a [list])")

    def _skip_list_newlines(self, open_tok: _Token) -> None:
        """Skip newlines inside a list; a following ``KEY =`` means the list was never closed."""
        if self._peek().kind != "NEWLINE":
            return
        self._skip_newlines()
        if self._peek().kind == "EOF":
            raise _SyntaxError(open_tok, "the list opened here is not closed at the end of "
                                         "the file: add `]'", skip=False)
        nxt = self._tokens[self._i:self._i + 2]
        if len(nxt) == 2 and nxt[0].kind == "IDENT" and nxt[1].kind in ("=", "+="):
            raise _SyntaxError(open_tok, f"the list opened here is not closed before "
                                         f"line {nxt[0].line}: add `]'", skip=False)

    def _list(self, open_tok: _Token) -> _List:
        items: list[_Node] = []
        self._skip_list_newlines(open_tok)
        if self._peek().kind == "]":
            close = self._next()
            return _List(items, open_tok.start, close.end, open_tok.line)
        while True:
            items.append(self._value())
            self._skip_list_newlines(open_tok)
            tok = self._next()
            if tok.kind == "]":
                return _List(items, open_tok.start, tok.end, open_tok.line)
            if tok.kind != ",":
                raise _SyntaxError(tok, "expected `,' or `]' in list (list items are "
                                        "separated by commas)")
            self._skip_list_newlines(open_tok)
            if self._peek().kind == "]":
                close = self._next()
                return _List(items, open_tok.start, close.end, open_tok.line)


class _SyntaxError(Exception):
    def __init__(self, token: _Token, message: str, skip: bool = True):
        super().__init__(message)
        self.token = token
        self.message = message
        self.skip = skip  # False: parsing resumes at the current token


def _node_value(node: _Node) -> Value:
    if isinstance(node, _Atom):
        return node.value
    return [_node_value(item) for item in node.items]


def _evaluate(assignments: Sequence[Assignment],
              errors: list[tuple[int, str]]) -> dict[str, _Effective]:
    """Apply assignments in order with xl's `=` / `+=` rules."""
    result: dict[str, _Effective] = {}
    for asg in assignments:
        prev = result.get(asg.key)
        node = asg.node
        if asg.op == "+=" and prev is not None:
            prev_is_list = isinstance(prev.value, list)
            if prev_is_list != isinstance(node, _List):
                errors.append((asg.line, f"can't add [list] to \"string\" or vice versa: "
                                         f"`{asg.key}' was a "
                                         f"{'list' if prev_is_list else 'string'} on line "
                                         f"{prev.line}; use the same kind of value with `+='"))
                continue
            if isinstance(node, _List):
                parts = prev.parts + list(node.items)
                value: Value = list(prev.value) + [_node_value(i) for i in node.items]
            else:
                parts = prev.parts + [node]
                value = str(prev.value) + node.value
            # Keep insertion order of first appearance (dict keeps the old slot).
            result[asg.key] = _Effective(value, parts, asg, prev.line)
        else:
            if isinstance(node, _List):
                parts = list(node.items)
            else:
                parts = [node]
            if asg.key in result:
                del result[asg.key]
            result[asg.key] = _Effective(_node_value(node), parts, asg, asg.line)
    return result


# ----------------------------------------------------------------------- rendering

def _render_string(value: str, quote: str = '"') -> str:
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


def render_value(value: Value | int, quote: str = '"') -> str:
    """Write a value in xl syntax: ints bare, strings quoted (with escapes), lists in brackets.

    Strings are always quoted (xl treats ``512`` and ``"512"`` alike); ``quote``
    chooses the quote character.
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

    Create it with :func:`parse` or :func:`parse_file`.
    """

    def __init__(self, text: str, filename: str = "<string>") -> None:
        parser = _Parser(text)
        parser.parse()
        errors = parser.errors
        effective = _evaluate(parser.assignments, errors)
        if errors:
            # One message per line, in line order (as a reader scans the file).
            seen: dict[int, str] = {}
            for line, msg in errors:
                seen.setdefault(line, msg)
            raise XlConfigError(filename, sorted(seen.items()))
        self.filename = filename
        self._text = text
        self._assignments = parser.assignments
        self._effective = effective
        #: ``(line, message)`` for accepted constructs that xl does not read the way
        #: they look (e.g. numeric escapes whose character xl drops).
        self.warnings: list[tuple[int, str]] = parser.warnings

    # reading
    def settings(self) -> dict[str, Value]:
        """Every setting with the value xl ends up with, in order of first appearance."""
        return {key: _copy(eff.value) for key, eff in self._effective.items()}

    def keys(self) -> list[str]:
        """The keys that are set, in order of first appearance."""
        return list(self._effective)

    def __contains__(self, key: object) -> bool:
        return key in self._effective

    def get(self, key: str, default: Value | None = None) -> Value | None:
        """The value of ``key`` (a string or a list), or ``default`` when it is not set."""
        eff = self._effective.get(key)
        return default if eff is None else _copy(eff.value)

    def line_of(self, key: str, index: int | None = None) -> int:
        """The line where ``key`` (or item ``index`` of its list value) is written.

        Raises ``KeyError`` when ``key`` is not set.
        """
        eff = self._effective[key]
        if index is not None and isinstance(eff.value, list) and 0 <= index < len(eff.parts):
            return eff.parts[index].line
        return eff.assignment.line

    @property
    def assignments(self) -> list[Assignment]:
        """Every assignment statement, in file order (including overridden ones)."""
        return list(self._assignments)

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
        if not _KEY_RE.match(key):
            raise ValueError(f"invalid xl setting name {key!r}: names match [a-z][._0-9a-z]*")
        new = _normalise(value)
        edits: list[tuple[int, int, str]] = []
        eff = self._effective.get(key)
        if eff is None:
            text = self._text
            prefix = "" if (not text or text.endswith("\n")) else "\n"
            edits.append((len(text), len(text), f"{prefix}{key} = {render_value(value)}\n"))
        elif not self._plan_in_place(eff, new, edits):
            edits = []
            asg = eff.assignment
            quote = _first_quote(asg.node)
            edits.append((asg.op_start, asg.value_end, "= " + render_value(_denormalise(value, new), quote)))
        text = self._text
        for start, end, repl in sorted(edits, reverse=True):
            text = text[:start] + repl + text[end:]
        updated = XlConfig(text, self.filename)
        if updated.get(key) != new:  # pragma: no cover - guards the edit logic itself
            raise AssertionError(f"internal error: setting {key} did not round-trip")
        self.__dict__.update(updated.__dict__)

    def _plan_in_place(self, eff: _Effective, new: Value, edits: list[tuple[int, int, str]]) -> bool:
        if isinstance(eff.value, list):
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


def parse(text: str, filename: str = "<string>") -> XlConfig:
    """Parse xl configuration ``text``; ``filename`` is used in error messages.

    Raises :class:`XlConfigError` listing every problem.
    """
    return XlConfig(text, filename)


def read_text(path: str) -> str:
    """Read a configuration file as text, byte-exactly (undecodable bytes are kept)."""
    with open(path, "rb") as f:
        return f.read().decode("utf-8", errors="surrogateescape")


def parse_file(path: str) -> XlConfig:
    """Read and parse the configuration file at ``path``."""
    return XlConfig(read_text(path), path)


# ------------------------------------------------------------------------------ CLI

def main(argv: Sequence[str] | None = None) -> int:
    """Command line: check a configuration file or one disk specification.

    ``--json FILE`` prints ``{"ok": true, "settings": {...}}`` or
    ``{"ok": false, "errors": ["LINE: message", ...]}`` (exit status 1).
    ``--disk SPEC`` does the same for an xl-disk-configuration(5) spec
    (``{"ok": true, "disk": {...}}``).  Without ``--json`` the result is printed for
    people: ``KEY = VALUE`` lines (or ``key: value`` lines for ``--disk``), and
    errors as ``FILE:LINE: message`` on standard error.  ``FILE`` may be ``-``
    for standard input.
    """
    ap = argparse.ArgumentParser(prog="python3 -m xenbundle.xlcfg",
                                 description="Parse an xl.cfg(5) file or an xl disk spec "
                                             "the way xl does.")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--disk", metavar="SPEC", help="parse one disk specification instead of a file")
    ap.add_argument("file", nargs="?", help="configuration file ('-' for standard input)")
    args = ap.parse_args(argv)

    if args.disk is not None:
        if args.file is not None:
            ap.error("give either FILE or --disk SPEC, not both")
        from .disk import DiskSpecError, parse_disk
        try:
            spec = parse_disk(args.disk)
        except DiskSpecError as err:
            if args.json:
                print(json.dumps({"ok": False, "errors": err.messages}))
            else:
                print(str(err), file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps({"ok": True, "disk": spec.values()}))
        else:
            for k, v in spec.values().items():
                print(f"{k}: {v}")
        return 0

    if args.file is None:
        ap.error("a FILE (or --disk SPEC) is required")
    try:
        if args.file == "-":
            cfg = parse(sys.stdin.read(), "<stdin>")
        else:
            cfg = parse_file(args.file)
    except OSError as err:
        msg = f"cannot read {args.file}: {err.strerror}"
        if args.json:
            print(json.dumps({"ok": False, "errors": [f"0: {msg}"]}))
        else:
            print(msg, file=sys.stderr)
        return 1
    except XlConfigError as err:
        if args.json:
            print(json.dumps({"ok": False, "errors": err.lines()}))
        else:
            print(str(err), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"ok": True, "settings": cfg.settings()}))
    else:
        for key, value in cfg.settings().items():
            print(f"{key} = {render_value(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
