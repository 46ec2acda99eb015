"""xenbundle.xlcfg against Debian's real libxlutil 4.17: same verdict, same values.

Every input goes to both parsers: ``xenbundle.xlcfg.parse`` and libxlutil's
``xlu_cfg_readdata`` (what ``xl create`` runs on a file's contents).  They must
agree on whether the file is accepted and, when it is, on the value of every
setting (strings, and list elements at every depth).  All words of the text that
look like keys are looked up in libxlutil, so a setting only one side stores is
found too.

The one documented difference (xlcfg's module docstring) is checked exactly, not
tolerated: a file whose last character is a stray character that starts a lexical
error (``memory = 512+``) is refused by xlcfg, while libxlutil's scanner hits the
end of the input before reporting it and reads the file as if that character were
not there.  When libxlutil accepts a file xlcfg refuses, the test demands that
shape: the stray character is last, xlcfg's errors are all on the last line, and
xlcfg reads the file without its last character to exactly libxlutil's values.

A NUL byte inside a quoted string is not a difference in acceptance but in how
the refusal looks: libxlutil stops the process on an assertion in its dequoting
(``xlu__cfgl_dequote``), so ``xl create`` dies with SIGABRT; xlcfg reports an
error on the string's line.  The checker accepts exactly that: when libxlutil
dies on that assertion, xlcfg must refuse the file with a NUL error.

Xen versions: libxlutil's reader stores every setting whatever its name; which
settings a Xen release has is decided later, by xl's ``parse_config_data`` (4.17
ignores a ``virtio`` setting, stops on ``tee = "ffa"``).  So the file grammar is
compared with xlcfg checking for the newest release it knows, and every input is
also parsed for Xen 4.17: that may refuse more, but only on lines that set the
versioned syntax of xenbundle.xenversion.SYNTAX, and otherwise reads the same
values (:func:`check_versions`).  That 4.17's toolstack lacks those settings is
shown from libxenlight 4.17 in test_xenversion_vs_libxenlight.py.

Generated inputs come from hypothesis: structured configurations (strings with
escapes, numbers, nested lists with newlines, comments and trailing commas, ``;``,
``+=``), the same with random edits, and token soup.  The number of examples per
property is ``XEN_REF_ORACLE_EXAMPLES`` (default 300).
"""

from __future__ import annotations

import os

import libxlutil_ctypes
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libxlutil_ctypes import ConfigResult, LibxlutilDied, Oracle
from xenbundle.xenversion import (
    CONFIG_KEY,
    NEWEST_KNOWN_XEN_VERSION,
    SPEC_KEYS,
    SYNTAX,
    VALUE_KEYS,
)
from xenbundle.xlcfg import XlConfig, XlConfigError, parse

EXAMPLES = int(os.environ.get("XEN_REF_ORACLE_EXAMPLES", "300"))
ORACLE_SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                           suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.data_too_large])

# Characters that can start a token (or are blanks) in libxlutil's lexer.  Any other
# final character starts a lexical error: the documented end-of-file difference.
_TOKEN_START = set("abcdefghijklmnopqrstuvwxyz0123456789 \t\n,[]=;")


# ------------------------------------------------------------------ comparison

def _ours(text: str) -> tuple[dict[str, object] | None, list[tuple[int, str]]]:
    """xlcfg's reading of the file grammar: checked for the newest Xen it knows."""
    try:
        return parse(text, "guest.cfg", xen_version=NEWEST_KNOWN_XEN_VERSION).settings(), []
    except XlConfigError as err:
        return None, err.errors


#: Settings whose name (or value, or vif/p9 keywords) depends on the Xen version.
VERSIONED_SETTINGS = ({e.name for e in SYNTAX if e.kind == CONFIG_KEY} | set(VALUE_KEYS)
                      | set(SPEC_KEYS))


def _versioned_lines(cfg: XlConfig) -> set[int]:
    """The lines of the statements (value included) that set versioned settings."""
    text = cfg.render()
    lines: set[int] = set()
    for asg in cfg.assignments:
        if asg.key in VERSIONED_SETTINGS:
            first = text.count("\n", 0, asg.key_start) + 1
            lines.update(range(first, text.count("\n", 0, asg.value_end) + 2))
    return lines


def check_versions(text: str) -> None:
    """For Xen 4.17 xlcfg refuses more than for the newest Xen only on lines setting versioned syntax."""
    try:
        newest: XlConfig | None = parse(text, "guest.cfg", xen_version=NEWEST_KNOWN_XEN_VERSION)
        newest_errors: list[tuple[int, str]] = []
    except XlConfigError as err:
        newest, newest_errors = None, err.errors
    try:
        oldest = parse(text, "guest.cfg", xen_version="4.17")
    except XlConfigError as err:
        versioned = err.newer_syntax_lines
        assert [e for e in err.errors if e[0] not in versioned] == \
            [e for e in newest_errors if e[0] not in versioned], text
        if newest is not None:
            assert versioned <= _versioned_lines(newest), (
                f"lines {sorted(versioned)} of {text!r} are refused for Xen 4.17 but set "
                "nothing versioned")
        else:
            assert not versioned or any(name in text for name in VERSIONED_SETTINGS), text
        return
    assert newest is not None, f"only the newest grammar refuses {text!r}: {newest_errors}"
    assert oldest.settings() == newest.settings()


def _explain(text: str, ours: dict[str, object] | None, errors: list[tuple[int, str]],
             xl: ConfigResult) -> str:
    ours_text = (f"accepted {ours!r}" if ours is not None
                 else "refused:\n      " + "\n      ".join(f"{line}: {msg}" for line, msg in errors))
    xl_text = (f"accepted {xl.settings!r}" if xl.accepted
               else f"refused (errno {xl.status}):\n      " + xl.report.strip().replace("\n", "\n      "))
    return (f"\n  input: {text!r}\n  xenbundle.xlcfg {ours_text}\n"
            f"  libxlutil {xl_text}\n  libxlutil report: {xl.report.strip()!r}")


def _is_stray_final_character(text: str, errors: list[tuple[int, str]]) -> bool:
    """The documented difference: only the last character, a lexical-error start, is at fault."""
    if not text or text[-1] in _TOKEN_START:
        return False
    last_line = text.count("\n") + 1
    return bool(errors) and all(line == last_line for line, _ in errors)


_DEQUOTE_ASSERTION = "xlu__cfgl_dequote: Assertion"


def check_against_libxlutil(oracle: Oracle, text: str) -> ConfigResult | None:
    """Assert that xlcfg and libxlutil agree on ``text``; return libxlutil's result.

    None when libxlutil aborted on a NUL inside a quoted string (and xlcfg refused
    the file because of it).
    """
    ours, errors = _ours(text)
    check_versions(text)
    try:
        xl = oracle.read_config(text.encode("utf-8", "surrogateescape"),
                                libxlutil_ctypes.candidate_keys(text))
    except LibxlutilDied as died:
        assert _DEQUOTE_ASSERTION in died.stderr and "\0" in text, str(died)
        assert ours is None and any("NUL" in msg for _, msg in errors), (
            f"libxlutil aborts on a NUL in a string, xlcfg gives {ours or errors!r} for {text!r}")
        return None
    why = _explain(text, ours, errors, xl)
    if ours is not None:
        assert xl.accepted, "xlcfg accepts a file libxlutil refuses" + why
        assert xl.settings == ours, "the parsers read different values" + why
        return xl
    if not xl.accepted:
        return xl
    # libxlutil accepts what xlcfg refuses: only the documented end-of-file case may do that.
    assert _is_stray_final_character(text, errors), (
        "xlcfg refuses a file libxlutil accepts, and it is not the documented "
        "stray-character-at-end-of-file difference" + why)
    without_last, errors_without = _ours(text[:-1])
    assert without_last == xl.settings, (
        "libxlutil's reading of a file ending in a stray character is not xlcfg's reading "
        f"of the file without it (xlcfg on text[:-1]: {without_last or errors_without!r})" + why)
    return xl


# ------------------------------------------------------------------ strategies

KEYS = ["name", "memory", "vcpus", "disk", "vif", "extra", "kernel", "on_crash",
        "a.b", "x_1", "k9", "frobnicate",
        # settings of later Xen releases (xenbundle.xenversion.SYNTAX)
        "virtio", "nr_spis", "trap_unmapped_accesses", "tee", "p9"]
# Octal escapes need three digits in all (xl then drops the character they encode).
GOOD_ESCAPES = ["\\n", "\\t", "\\\\", "\\'", '\\"', "\\a", "\\b", "\\f", "\\r", "\\v",
                "\\101", "\\0777", "\\012", "\\1234", "\\777"]
BAD_ESCAPES = ["\\x41", "\\q", "\\8", "\\9", "\\ ", "\\", "\\0", "\\7x", "\\12", "\\09"]
STRING_CHARS = st.sampled_from(list("abcXYZ019 _-./:=,;[]#+()") + ["\t", "é", "€", "\r", "\x01", "\x7f",
                                                                  "\0"])
BLANK = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def string_atoms(draw, allow_bad: bool = False) -> str:
    quote = draw(st.sampled_from(["'", '"']))
    escapes = GOOD_ESCAPES + (BAD_ESCAPES if allow_bad else [])
    parts = draw(st.lists(st.one_of(STRING_CHARS, STRING_CHARS, st.sampled_from(escapes),
                                    st.just("'" if quote == '"' else '"')),
                          max_size=8))
    return quote + "".join(parts) + quote


number_atoms = st.from_regex(r"\A[0-9][0-9a-fx]{0,5}\Z")

LIST_OPEN = st.sampled_from(["", "", " ", "\n", "\n  ", " # c\n", "\n\n"])
LIST_SEP = st.sampled_from([", ", ",", " , ", ",\n", ",\n  ", "\n,", ", # c\n", "\n, "])
LIST_CLOSE = st.sampled_from(["", "", " ", "\n", ",", ", ", ",\n", "\n# c\n"])


@st.composite
def values(draw, depth: int = 0, allow_bad: bool = False) -> str:
    if depth < 3 and draw(st.integers(0, 9)) < 3:
        items = draw(st.lists(values(depth + 1, allow_bad), max_size=4))
        if not items:
            return "[" + draw(LIST_OPEN) + "]"
        text = "[" + draw(LIST_OPEN) + items[0]
        for item in items[1:]:
            text += draw(LIST_SEP) + item
        return text + draw(LIST_CLOSE) + "]"
    return draw(st.one_of(number_atoms, string_atoms(allow_bad)))


TERMINATORS = st.sampled_from(["\n", "\n", ";", "; ", ";\n", " # note\n", "\n\n", "\t\n"])
ENDINGS = st.sampled_from(["", "\n", "\n", "\n", "\n", "# end\n", "\n# end", "#"])


@st.composite
def configs(draw, allow_bad: bool = False) -> str:
    text = draw(st.sampled_from(["", "", "# xl config\n", "\n"]))
    count = draw(st.integers(1, 6))
    for index in range(count):
        key = draw(st.sampled_from(KEYS))
        op = draw(st.sampled_from(["=", "=", "+="]))
        text += draw(BLANK) + key + draw(BLANK) + op + draw(BLANK) + draw(values(0, allow_bad))
        text += draw(BLANK)
        if index < count - 1:
            text += draw(TERMINATORS)
    return text + draw(ENDINGS)


GARBAGE = ["+", "-", ".", "(", ")", ":", "A", "_", "\r", "'", '"', "\\", "[", "]", ",",
           ";", "=", "+=", "\n", "#", " ", "é", "x", "9", "True", "$", "\t", "//", "\0"]


@st.composite
def mutated_configs(draw) -> str:
    text = draw(configs(allow_bad=True))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        at = draw(st.integers(0, len(text)))
        if kind == "insert":
            text = text[:at] + draw(st.sampled_from(GARBAGE)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 4)):]
        else:
            text = text[:at] + draw(st.sampled_from(GARBAGE)) + text[at + 1:]
    return text


SOUP = ["name", "memory", "disk", "a.b", "x_1", "Bad", " ", "\t", "=", "+=", "+", ",", "[",
        "]", ";", "\n", "# c\n", "#", "512", "0x1f", "1.5", "-1", "'s'", '"d"', '"a\\nb"',
        "'\\''", '"\\x41"', '"\\101"', '"\\1"', '"\\q"', '""', "\r", "'unterminated", "(",
        ":", "_x", "9z", "é"]
token_soup = st.lists(st.sampled_from(SOUP), min_size=1, max_size=25).map("".join)


# ------------------------------------------------------------------ properties

@ORACLE_SETTINGS
@given(text=configs())
def test_generated_configs_agree(libxlutil: Oracle, text: str) -> None:
    check_against_libxlutil(libxlutil, text)


@ORACLE_SETTINGS
@given(text=mutated_configs())
def test_mutated_configs_agree(libxlutil: Oracle, text: str) -> None:
    check_against_libxlutil(libxlutil, text)


@ORACLE_SETTINGS
@given(text=token_soup)
def test_token_soup_agrees(libxlutil: Oracle, text: str) -> None:
    check_against_libxlutil(libxlutil, text)


def test_generated_configs_are_mostly_accepted(libxlutil: Oracle) -> None:
    """The structured generator must mostly produce valid files, or the value checks are idle."""
    accepted = []

    # Derandomized: the same sample every run, so the ratio is not a coin toss.
    @settings(max_examples=100, deadline=None, database=None, derandomize=True)
    @given(text=configs())
    def sample(text: str) -> None:
        xl = check_against_libxlutil(libxlutil, text)
        accepted.append(xl is not None and xl.accepted)

    sample()
    assert sum(accepted) >= len(accepted) // 2, f"{sum(accepted)} of {len(accepted)} accepted"


# ------------------------------------------------------------------ fixed corpus

README_EXAMPLE = """\
name = "xen-guest"
memory = 512
vcpus = 1
disk = ['file:xen-guest-image-minimal-qemuarm64.rootfs.ext4,xvda,rw']
vif = ['bridge=xenbr0']
kernel = "Image"
extra = "root=/dev/xvda ro console=hvc0 ip=dhcp"
"""

ACCEPTED = {
    "readme-example": README_EXAMPLE,
    "readme-example-indented": "".join("   " + line + "\n" for line in README_EXAMPLE.splitlines()),
    "comments-and-unknown-keys": (
        "# Guest for the bundling tests\n"
        "name = 'guest-1'   # trailing comment\n"
        "frobnicate = \"not an xl key, xl stores it anyway\"\n"
        "\n"
        "   # indented comment\n"
        "on_crash = 'destroy'; on_reboot = 'restart'\n"
        "device_model_args = [ '-d', 'guest_errors' ]\n"),
    "multi-line-lists": (
        "disk = [\n"
        "    'format=qcow2, vdev=xvda, access=rw, target=/var/lib/xen/images/a.qcow2',\n"
        "    # the data disk\n"
        "    'phy:/dev/vg/data,xvdb,w',\n"
        "]\n"
        "vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0', ]\n"),
    "nested-lists": "pci = [[1, '2', []], [[['deep']]], 0x1f]\n",
    "plus-equals": ("extra = 'console=hvc0'\nextra += ' root=/dev/xvda'\n"
                    "disk = ['a']\ndisk += ['b', ['c']]\nfresh += 'first'\n"),
    "last-assignment-wins": "memory = 256\nmemory = 512\nname = 'a'; name = 'b'\n",
    "escapes": "s = 'it\\'s'\nd = \"tab\\there\\\\ \\\"q\\\" \\a\\b\\f\\n\\r\\v\"\nbell = '\\101\\0777x'\n",
    "numbers-are-strings": "memory = 512\nmaxmem = \"512\"\nhex = 0x1f\noct = 010\nodd = 0xfffx\n",
    "no-final-newline": "name = 'x'\nmemory = 128",
    "semicolons-only": ";;\n;\nname='x';;\n",
    "empty": "",
    "only-comments": "# nothing here\n#\n",
    "non-ascii-in-strings": "name = 'gäst €'\nextra = \"ä\\tb\"\n",
}

# Accepted by libxlutil 4.17's reader (it stores any setting); xlcfg accepts them for
# the releases that have them and refuses them, line by line, for Xen 4.17.
NEWER_SETTINGS = (
    'name = "g"\n'
    'tee = "ffa"\n'
    "virtio = [ 'type=virtio,device22, transport=mmio' ]\n"
    "vif = [ 'bridge=xenbr0', 'bridge=xenbr1,vlan=10' ]\n"
    "p9 = [ 'tag=share, path=/srv, max-files=10' ]\n"
    "trap_unmapped_accesses = 1\n")


def test_newer_settings_are_stored_by_libxlutil_4_17_and_refused_for_xen_4_17(
        libxlutil: Oracle) -> None:
    xl = check_against_libxlutil(libxlutil, NEWER_SETTINGS)
    assert xl is not None and xl.accepted
    assert xl.settings["tee"] == "ffa" and xl.settings["trap_unmapped_accesses"] == "1"
    assert parse(NEWER_SETTINGS, xen_version="4.21").settings() == xl.settings
    with pytest.raises(XlConfigError) as info:
        parse(NEWER_SETTINGS, "guest.cfg", xen_version="4.17")
    assert [line for line, _ in info.value.errors] == [2, 3, 4, 5, 6]
    assert info.value.newer_syntax_lines == frozenset({2, 3, 4, 5, 6})
    with pytest.raises(XlConfigError) as info:
        parse(NEWER_SETTINGS, "guest.cfg", xen_version="4.20")
    assert [line for line, _ in info.value.errors] == [6]


REFUSED = {
    "dos-line-endings": README_EXAMPLE.replace("\n", "\r\n"),
    "comment-on-last-line-without-newline": "memory = 512\n# end",
    "unterminated-string": "name = 'guest\n",
    "string-across-lines": "extra = \"a\nb\"\n",
    "python-boolean": "pae = True\n",
    "python-float": "ratio = 1.5\n",
    "negative-number": "delta = -1\n",
    "upper-case-key": "Memory = 512\n",
    "bare-word-value": "name = guest\n",
    "list-not-closed": "disk = ['a',\nname = 'x'\n",
    "list-without-commas": "disk = ['a' 'b']\n",
    "two-settings-on-a-line": "name = 'x' memory = 1\n",
    "plus-equals-list-onto-string": "extra = 'a'\nextra += ['b']\n",
    "plus-equals-string-onto-list": "disk = ['a']\ndisk += 'b'\n",
    "hex-escape": "name = '\\x41'\n",
    "unknown-escape": "name = '\\q'\n",
    "missing-value": "name =\n",
    "leading-comma-in-list": "disk = [, 'a']\n",
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=list(ACCEPTED))
def test_corpus_accepted_by_both(libxlutil: Oracle, text: str) -> None:
    xl = check_against_libxlutil(libxlutil, text)
    assert xl is not None and xl.accepted, xl
    # The file-reading entry point gives the same result as the in-memory one.
    assert _read_via_file(libxlutil, text) == xl.settings


@pytest.mark.parametrize("text", REFUSED.values(), ids=list(REFUSED))
def test_corpus_refused_by_both(libxlutil: Oracle, text: str) -> None:
    xl = check_against_libxlutil(libxlutil, text)
    assert xl is not None and not xl.accepted, f"libxlutil accepted {text!r}: {xl}"
    assert xl.report.strip(), "libxlutil refused the file without saying why"
    with pytest.raises(XlConfigError):
        parse(text)


def test_readme_example_values(libxlutil: Oracle) -> None:
    xl = check_against_libxlutil(libxlutil, README_EXAMPLE)
    assert xl is not None and xl.settings == {
        "name": "xen-guest", "memory": "512", "vcpus": "1",
        "disk": ["file:xen-guest-image-minimal-qemuarm64.rootfs.ext4,xvda,rw"],
        "vif": ["bridge=xenbr0"], "kernel": "Image",
        "extra": "root=/dev/xvda ro console=hvc0 ip=dhcp",
    }


def test_quoted_and_bare_numbers_read_as_the_same_integer(libxlutil: Oracle) -> None:
    """xlcfg returns both as the string "512"; xl's integer getter agrees they are one value."""
    assert parse("memory = 512\n").settings() == parse('memory = "512"\n').settings()
    assert libxlutil.get_long(b"memory = 512\n", "memory") == 512
    assert libxlutil.get_long(b'memory = "512"\n', "memory") == 512
    assert libxlutil.get_long(b"memory = 0x200\n", "memory") == 512


def _read_via_file(oracle: Oracle, text: str) -> dict[str, object]:
    import tempfile
    with tempfile.NamedTemporaryFile("wb", suffix=".cfg", delete=False) as f:
        f.write(text.encode("utf-8", "surrogateescape"))
    try:
        result = oracle.read_config_file(f.name, libxlutil_ctypes.candidate_keys(text))
    finally:
        os.unlink(f.name)
    assert result.accepted, result.report
    return result.settings


# ------------------------------------------------- the documented difference, pinned

STRAY_FINAL_CHARACTER = {
    "plus-after-number": ("memory = 512+", {"memory": "512"}),
    "lone-hash": ("memory = 512\n#", {"memory": "512"}),
    "lone-quote": ("name = 'x' '", {"name": "x"}),
    "carriage-return": ("vcpus = 1\nmemory = 2\r", {"vcpus": "1", "memory": "2"}),
    "colon-after-list": ("disk = ['a', 'b']:", {"disk": ["a", "b"]}),
    "upper-case-letter": ("memory = 1\nA", {"memory": "1"}),
}


@pytest.mark.parametrize("text,xl_values", STRAY_FINAL_CHARACTER.values(),
                         ids=list(STRAY_FINAL_CHARACTER))
def test_stray_final_character_is_the_documented_difference(
        libxlutil: Oracle, text: str, xl_values: dict[str, object]) -> None:
    """libxlutil ignores a stray last character; xlcfg reports it on the last line.

    If either side changes (a newer libxlutil reports the character, or xlcfg starts
    to accept it) this test fails and xlcfg's documentation must change with it.
    """
    xl = libxlutil.read_config(text.encode(), libxlutil_ctypes.candidate_keys(text))
    assert xl.accepted and xl.settings == xl_values, xl.report
    assert xl.report == "", "libxlutil printed nothing for the stray character"
    with pytest.raises(XlConfigError) as info:
        parse(text)
    assert [line for line, _ in info.value.errors] == [text.count("\n") + 1]
    assert parse(text[:-1]).settings() == xl_values
    # The general check recognises exactly this shape.
    check_against_libxlutil(libxlutil, text)


def test_stray_character_before_a_newline_is_refused_by_both(libxlutil: Oracle) -> None:
    """With a final newline the same character is an error to libxlutil too ('#' then starts a comment)."""
    for text, _ in STRAY_FINAL_CHARACTER.values():
        if text.endswith("#"):
            continue
        xl = check_against_libxlutil(libxlutil, text + "\n")
        assert xl is not None and not xl.accepted, text


def test_missing_library_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libxlutil the oracle refuses to start and says which Debian package to install."""
    monkeypatch.setenv(libxlutil_ctypes.LIBXLUTIL_ENV, "libxlutil-that-does-not-exist.so.0")
    with pytest.raises(libxlutil_ctypes.LibraryUnavailable) as info:
        libxlutil_ctypes.Oracle()
    assert f"apt-get install {libxlutil_ctypes.DEBIAN_PACKAGE}" in str(info.value)
    assert libxlutil_ctypes.DEBIAN_PACKAGE == "libxenmisc4.17"


# ------------------------------------------------- NUL bytes

NUL_IN_A_STRING = {
    "double-quoted": 'name = "x\0y"\n',
    "single-quoted": "memory = 1\nname = 'x\0y'\n",
    "after-a-backslash": 'extra = "a\\\0"\n',
    "in-a-list": "disk = [ 'a',\n  'b\0' ]\n",
}


@pytest.mark.parametrize("text", NUL_IN_A_STRING.values(), ids=list(NUL_IN_A_STRING))
def test_nul_in_a_quoted_string_aborts_xl_and_is_an_error_with_its_line(
        libxlutil: Oracle, text: str) -> None:
    """xl dies on an assertion (SIGABRT) where xlcfg names the line of the string."""
    with pytest.raises(LibxlutilDied) as died:
        libxlutil.read_config(text.encode(), libxlutil_ctypes.candidate_keys(text))
    assert _DEQUOTE_ASSERTION in died.value.stderr
    with pytest.raises(XlConfigError) as info:
        parse(text)
    line = text[:text.index("\0")].count("\n") + 1
    assert info.value.errors[0][0] == line and "NUL" in info.value.errors[0][1]
    assert check_against_libxlutil(libxlutil, text) is None


NUL_ELSEWHERE = {
    "in-a-comment": ("# a\0b\nname = 'x'\n", True),
    "between-tokens": ("name = 'x'\0\n", False),
    "in-a-key": ("na\0me = 'x'\n", False),
}


@pytest.mark.parametrize("text,accepted", NUL_ELSEWHERE.values(), ids=list(NUL_ELSEWHERE))
def test_nul_outside_strings_agrees(libxlutil: Oracle, text: str, accepted: bool) -> None:
    """Outside strings a NUL is an ordinary lexical error (or comment text) to both."""
    xl = check_against_libxlutil(libxlutil, text)
    assert xl is not None and xl.accepted is accepted
