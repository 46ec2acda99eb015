"""Tests of xenbundle.entries: the recipe[:tag...] syntax of BUNDLED_XEN_GUESTS / XEN_GUEST_BUNDLES."""

from __future__ import annotations

import pytest
from xenbundle import BundleError
from xenbundle.entries import KNOWN_TAGS, parse_guest_entries, split_guest_entries


def test_entries_with_tags_in_any_order():
    entries = parse_guest_entries("  web:autostart\n db:external:autostart plain ")
    assert [(e.name, sorted(e.tags), e.position) for e in entries] == [
        ("web", ["autostart"], 1), ("db", ["autostart", "external"], 2), ("plain", [], 3)]
    assert entries[0].autostart and not entries[0].external
    assert entries[1].external and entries[1].autostart
    assert entries[0].origin == "BUNDLED_XEN_GUESTS entry 1 'web:autostart'"


def test_the_variable_is_named_in_origins():
    (entry,) = parse_guest_entries("alpine:autostart:external", "XEN_GUEST_BUNDLES")
    assert entry.origin == "XEN_GUEST_BUNDLES entry 1 'alpine:autostart:external'"


@pytest.mark.parametrize("value", ["", None, "   \n "])
def test_empty_values_have_no_entries(value):
    assert parse_guest_entries(value) == []


@pytest.mark.parametrize("text, what", [
    ("web:autostrat", "has the unknown tag 'autostrat'"),
    ("web:", "has an empty tag"),
    ("web::autostart", "has an empty tag"),
    (":autostart", "has no recipe name"),
    ("web:autostart:autostart", "repeats the tag 'autostart'"),
    ("-web", "which is not a recipe name"),
    ("we/b", "which is not a recipe name"),
    ("x" * 201, "which is not a recipe name"),
])
def test_malformed_entries_name_variable_position_and_fix(text, what):
    with pytest.raises(BundleError) as info:
        parse_guest_entries(f"ok {text}")
    (problem,) = info.value.problems
    assert problem.startswith("BUNDLED_XEN_GUESTS entry 2 '")
    assert what in problem
    assert "RECIPE[:TAG...]" in problem and ", ".join(KNOWN_TAGS) in problem


def test_a_recipe_named_twice_is_an_error_naming_both_entries():
    entries, problems = split_guest_entries("web db web:autostart", "BUNDLED_XEN_GUESTS")
    assert [e.name for e in entries] == ["web", "db"]
    assert problems == [("BUNDLED_XEN_GUESTS entry 3 'web:autostart' names 'web' again "
                        "(BUNDLED_XEN_GUESTS entry 1 'web' already does): list each guest once, "
                        "with all its tags in one entry")]


def test_lenient_parsing_keeps_the_good_entries():
    entries = parse_guest_entries("a b:bad c", lenient=True)
    assert [e.name for e in entries] == ["a", "c"]


def test_every_problem_is_reported_and_bounded():
    with pytest.raises(BundleError) as info:
        parse_guest_entries(" ".join(f"g{i}:x" for i in range(50)))
    assert len(info.value.problems) == 20 and info.value.more == 30
    assert str(info.value).endswith("... and 30 more")


def test_long_input_is_quoted_short():
    with pytest.raises(BundleError) as info:
        parse_guest_entries("web:" + "y" * 10000)
    assert len(str(info.value)) < 600
