"""Tests of the xl.cfg(5) grammar in xenbundle.xlcfg (semantics of libxlutil)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from xenbundle.errors import BundleError
from xenbundle.xlcfg import XlConfigError, parse, render_value

LIB = str(Path(__file__).resolve().parents[3] / "lib")


def errors_of(text: str) -> list:
    with pytest.raises(XlConfigError) as info:
        parse(text, "guest.cfg")
    return info.value.errors


# ---------------------------------------------------------------- values and atoms

def test_numbers_are_kept_as_written_strings():
    cfg = parse("memory = 512\nmaxmem = 0x200\nvcpus = 010\n")
    assert cfg.settings() == {"memory": "512", "maxmem": "0x200", "vcpus": "010"}


def test_quoted_and_bare_numbers_are_the_same_setting():
    assert parse('memory = "512"\n').settings() == parse("memory = 512\n").settings()


def test_single_and_double_quotes_and_escapes():
    cfg = parse(r'''a = 'it\'s "x"'
b = "tab\there\nnl \\ back \a\b\f\r\v"
c = "q\"q"
d = ''
''')
    s = cfg.settings()
    assert s["a"] == "it's \"x\""
    assert s["b"] == "tab\there\nnl \\ back \a\b\f\r\v"
    assert s["c"] == 'q"q'
    assert s["d"] == ""


def test_invalid_escape_is_an_error_with_its_line():
    errs = errors_of('name = "ok"\nextra = "a\\qb"\n')
    assert [line for line, _ in errs] == [2]
    assert "invalid character after backslash" in errs[0][1]


def test_hex_escape_is_rejected_like_xl():
    errs = errors_of('a = "\\x41"\n')
    assert errs[0][0] == 1 and "hex" in errs[0][1]


def test_octal_escape_is_dropped_like_xl_and_warned():
    cfg = parse('a = "A\\101B"\n')
    assert cfg.get("a") == "AB"
    assert cfg.warnings and cfg.warnings[0][0] == 1


def test_short_octal_escape_is_an_error():
    errs = errors_of('a = "\\1"\n')
    assert "octal" in errs[0][1]


def test_string_cannot_span_lines():
    errs = errors_of('a = "abc\nb = 1\n')
    assert errs[0][0] == 1 and "unterminated" in errs[0][1]


# ------------------------------------------------------------------------- lists

def test_lists_nested_trailing_comma_and_newlines_with_comments():
    text = """disk = [
    # the root disk
    'file:/a.img,xvda,rw',   # comment after a value
    "phy:/dev/sdb,xvdb,w"
    ,
]
nested = [1, [2, ["x", []]], ]
empty = []
"""
    s = parse(text).settings()
    assert s["disk"] == ["file:/a.img,xvda,rw", "phy:/dev/sdb,xvdb,w"]
    assert s["nested"] == ["1", ["2", ["x", []]]]
    assert s["empty"] == []


@pytest.mark.parametrize("text,line", [
    ("a = [,]\n", 1),
    ("a = [1,,2]\n", 1),
    ("a = [1 2]\n", 1),
    ("x = 1\na = [1\n,2\n", 2),
    ("x = [1, 2", 1),
])
def test_bad_lists(text, line):
    errs = errors_of(text)
    assert errs[0][0] == line


def test_unclosed_list_is_reported_at_its_opening_line_and_parsing_continues():
    errs = errors_of('disk = ["a",\n  "b"\nname = "x"\nmemory = 1.5\n')
    assert [line for line, _ in errs] == [1, 4]
    assert "not closed" in errs[0][1]


# ----------------------------------------------------------------- statements

def test_semicolons_and_last_statement_without_newline():
    s = parse('name="h0"; type="hvm";;\nmemory = 1').settings()
    assert s == {"name": "h0", "type": "hvm", "memory": "1"}


def test_last_assignment_wins():
    assert parse("a = 1\na = 2\n").get("a") == "2"


def test_plus_equals_concatenates_strings_and_joins_lists():
    cfg = parse('extra = "root=/dev/xvda"\nextra += " ro"\nextra += " quiet"\n'
                'disk = ["a"]\ndisk += ["b", "c"]\nnew += "x"\n')
    assert cfg.get("extra") == "root=/dev/xvda ro quiet"
    assert cfg.get("disk") == ["a", "b", "c"]
    assert cfg.get("new") == "x"


def test_plus_equals_after_reassignment_uses_latest_value():
    assert parse('a = "x"\na = "y"\na += "z"\n').get("a") == "yz"


def test_plus_equals_type_mismatch_is_an_error_naming_both_lines():
    errs = errors_of('a = 1\n\ndisk = ["a"]\ndisk += "b"\n')
    assert errs[0][0] == 4
    assert "can't add [list]" in errs[0][1] and "line 3" in errs[0][1]


def test_all_errors_are_reported_with_lines():
    text = ("name = 'ok'\n"          # 1
            "memory = 1.5\n"          # 2 python-like number
            "Vcpus = 2\n"             # 3 upper-case key
            "extra = \n"              # 4 missing value
            "kernel = Image\n"        # 5 unquoted text
            "a = 1 b = 2\n"           # 6 two settings on a line
            "ok = 3\n")               # 7
    errs = errors_of(text)
    assert [line for line, _ in errs] == [2, 3, 4, 5, 6]
    msgs = dict(errs)
    assert "Python" in msgs[2]
    assert "lower-case" in msgs[3]
    assert "missing value" in msgs[4]
    assert "quoted" in msgs[5]
    assert "`;'" in msgs[6]


def test_error_str_names_file_and_line():
    with pytest.raises(XlConfigError) as info:
        parse("memory = 1.5\n", "/deploy/guest.cfg")
    assert str(info.value).startswith("/deploy/guest.cfg:1: ")
    assert isinstance(info.value, ValueError)


def test_dos_line_endings_are_rejected_like_xl():
    errs = errors_of('name = "a"\r\nmemory = 1\r\n')
    assert [line for line, _ in errs] == [1, 2]
    assert "Unix line endings" in errs[0][1]


def test_comment_on_last_line_needs_newline_like_xl():
    errs = errors_of('name = "a"\n# last')
    assert errs[0][0] == 2
    parse('name = "a"\n# last\n')


def test_identifiers_may_contain_dots_and_underscores():
    assert parse("on_poweroff = 'destroy'\nvif.x = 1\n").keys() == ["on_poweroff", "vif.x"]


# ------------------------------------------------------------------- editing

ORIGINAL = """# Third-party guest
name = "web"   # the domain name
memory = 512 ; vcpus = 2

kernel = 'Image'          # kernel in deploy dir
disk = [ 'file:web.ext4,xvda,rw',  # root
         # data disk follows
         'phy:/dev/sdb,xvdb,w',
       ]
unknown_key = [ "kept", 1 ]
extra = "root=/dev/xvda"
extra += " ro"
"""


def test_render_is_byte_identical_when_untouched():
    assert parse(ORIGINAL).render() == ORIGINAL


def test_set_list_item_keeps_comments_quotes_and_other_items():
    cfg = parse(ORIGINAL)
    cfg.set("disk", ["file:/var/lib/xen/images/web.ext4,xvda,rw", "phy:/dev/sdb,xvdb,w"])
    out = cfg.render()
    assert out == ORIGINAL.replace("'file:web.ext4,xvda,rw'",
                                   "'file:/var/lib/xen/images/web.ext4,xvda,rw'")
    assert parse(out).get("disk")[0] == "file:/var/lib/xen/images/web.ext4,xvda,rw"


def test_set_scalar_in_place_and_keeps_quote_style():
    cfg = parse(ORIGINAL)
    cfg.set("kernel", "/var/lib/xen/images/it's")
    assert "kernel = '/var/lib/xen/images/it\\'s'          # kernel in deploy dir" in cfg.render()
    assert cfg.get("kernel") == "/var/lib/xen/images/it's"


def test_set_number_stays_bare():
    cfg = parse(ORIGINAL)
    cfg.set("memory", 1024)
    assert "memory = 1024 ; vcpus = 2" in cfg.render()


def test_set_over_plus_equals_chain_rewrites_last_statement():
    cfg = parse(ORIGINAL)
    cfg.set("extra", "console=hvc0")
    assert cfg.get("extra") == "console=hvc0"
    assert 'extra = "root=/dev/xvda"\nextra = "console=hvc0"\n' in cfg.render()


def test_set_list_over_plus_equals_chain_keeps_both_statements():
    cfg = parse('disk = ["a"]  # one\ndisk += ["b"]  # two\n')
    cfg.set("disk", ["A", "b"])
    assert cfg.render() == 'disk = ["A"]  # one\ndisk += ["b"]  # two\n'


def test_set_with_different_shape_rewrites_the_value():
    cfg = parse(ORIGINAL)
    cfg.set("disk", ["only"])
    assert cfg.get("disk") == ["only"]
    assert "# Third-party guest" in cfg.render()


def test_set_new_key_appends_and_handles_missing_final_newline():
    cfg = parse("name = 'a'")
    cfg.set("memory", "256")
    assert cfg.render() == "name = 'a'\nmemory = \"256\"\n"


def test_set_rejects_bad_key():
    with pytest.raises(ValueError):
        parse("").set("Bad", "x")


def test_line_of_points_at_list_items():
    cfg = parse(ORIGINAL)
    assert cfg.line_of("disk", 0) == 6
    assert cfg.line_of("disk", 1) == 8
    assert cfg.line_of("kernel") == 5


# ------------------------------------------------------------------ properties

keys = st.from_regex(r"\A[a-z][._0-9a-z]{0,8}\Z")
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                max_size=20)
numbers = st.integers(min_value=0, max_value=10**12).map(str)
values = st.recursive(st.one_of(texts, numbers), lambda inner: st.lists(inner, max_size=4),
                      max_leaves=10)


@hsettings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, values, max_size=6))
def test_property_render_then_parse_gives_same_settings(data):
    text = "".join(f"{k} = {render_value(v)}\n" for k, v in data.items())
    assert parse(text).settings() == data


@hsettings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, values, min_size=1, max_size=5), st.data())
def test_property_set_changes_only_that_key(data, draw):
    text = "# head\n" + "".join(f"{k} = {render_value(v)}  # c\n" for k, v in data.items())
    cfg = parse(text)
    key = draw.draw(st.sampled_from(sorted(data)))
    new = draw.draw(values)
    cfg.set(key, new)
    expected = dict(data)
    expected[key] = new
    assert parse(cfg.render()).settings() == expected
    assert cfg.render().count("# c\n") == len(data)
    assert cfg.render().startswith("# head\n")


# ------------------------------------------------------------------------- CLI

def run_cli(*args: str, stdin: str = ""):
    return subprocess.run([sys.executable, "-m", "xenbundle.xlcfg", *args], input=stdin,
                          capture_output=True, text=True, env={"PYTHONPATH": LIB}, check=False)


def test_cli_json_ok(tmp_path):
    f = tmp_path / "g.cfg"
    f.write_text(ORIGINAL)
    proc = run_cli("--json", str(f))
    assert proc.returncode == 0
    out = json.loads(proc.stdout)
    assert out["ok"] is True
    assert out["settings"]["memory"] == "512"
    assert out["settings"]["unknown_key"] == ["kept", "1"]


def test_cli_json_errors_exit_1(tmp_path):
    f = tmp_path / "g.cfg"
    f.write_text("a = 1\nb = 1.5\nc = \n")
    proc = run_cli("--json", str(f))
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["ok"] is False
    assert [e.split(":")[0] for e in out["errors"]] == ["2", "3"]


def test_cli_human_errors_name_file(tmp_path):
    f = tmp_path / "g.cfg"
    f.write_text("b = 1.5\n")
    proc = run_cli(str(f))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{f}:1: ")


def test_cli_disk_json_and_plain():
    proc = run_cli("--json", "--disk", "file:/x.img,xvda,rw")
    assert proc.returncode == 0
    disk = json.loads(proc.stdout)["disk"]
    assert disk["target"] == "/x.img" and disk["vdev"] == "xvda" and disk["legacy_prefix"] == "file:"
    plain = run_cli("--disk", "/x.img,raw,xvda")
    assert plain.returncode == 0 and "vdev: xvda" in plain.stdout
    bad = run_cli("--json", "--disk", "/x.img,bogus,xvda")
    assert bad.returncode == 1 and json.loads(bad.stdout)["ok"] is False


# ------------------------------------------------------------------ bounds

def test_update_sets_several_keys_at_once_or_none():
    cfg = parse(ORIGINAL)
    cfg.update({"kernel": "/k", "memory": 1024, "new_key": ["a"]})
    assert (cfg.get("kernel"), cfg.get("memory"), cfg.get("new_key")) == ("/k", "1024", ["a"])
    assert cfg.render().startswith("# Third-party guest\n")
    before = cfg.render()
    with pytest.raises(ValueError):
        cfg.update({"kernel": "/other", "extra": "a\0b"})   # NUL cannot be written
    assert cfg.render() == before


def test_lists_nested_too_deep_are_an_error_not_a_crash():
    errs = errors_of("a = " + "[" * 5000 + "]" * 5000 + "\nb = 1\n")
    assert errs[0][0] == 1 and "nested more than 100 levels" in errs[0][1]
    assert parse("a = " + "[" * 100 + "]" * 100 + "\n").get("a") is not None


def test_warnings_are_bounded():
    cfg = parse('a = "\\101"\n' * 100)
    assert len(cfg.warnings) == 20


def test_errors_of_a_long_file_stop_at_twenty_lines_and_count_the_rest():
    text = "a = 1\n" + "x = = 1\nBad\n" * 50
    with pytest.raises(XlConfigError) as info:
        parse(text, "big.cfg")
    assert [line for line, _ in info.value.errors] == list(range(2, 22))
    assert info.value.more == 80
    assert isinstance(info.value, BundleError)


def test_cli_json_counts_what_it_does_not_list(tmp_path):
    f = tmp_path / "g.cfg"
    f.write_text("Bad\n" * 25)
    out = json.loads(run_cli("--json", str(f)).stdout)
    assert len(out["errors"]) == 20 and out["more"] == 5
