"""Cache key and staleness: what makes a rebuild, what does not."""

import pytest
from reftarget_helpers import record
from xenreftarget import stamp


def _inputs(sha="a" * 64, source="1", settings=None):
    return stamp.build_inputs([record("bash", "5.2", sha), record("libc6", "2.36")],
                              {"xenreftarget/build.py": source}, settings or {"boot": "x"})


def test_key_is_stable_and_order_independent():
    a = stamp.build_inputs([record("bash"), record("libc6")], {"s": "1"}, {"k": "v"})
    b = stamp.build_inputs([record("libc6"), record("bash")], {"s": "1"}, {"k": "v"})
    assert stamp.input_key(a) == stamp.input_key(b)


@pytest.mark.parametrize("change", [{"sha": "b" * 64}, {"source": "2"}, {"settings": {"boot": "y"}}])
def test_key_changes_with_each_input(change):
    assert stamp.input_key(_inputs()) != stamp.input_key(_inputs(**change))


def test_changes_are_described():
    old = _inputs()
    new = stamp.build_inputs([record("bash", "5.3", "c" * 64)], {"xenreftarget/build.py": "2"}, {"boot": "x"})
    assert stamp.describe_changes(old, new) == [
        "package bash: 5.2 -> 5.3", "packages: libc6 removed", "sources: xenreftarget/build.py changed"]


def test_source_digest_covers_python_files_of_each_folder(tmp_path):
    pkg = tmp_path / "xenbundle"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "plan.py").write_text("x = 1\n")
    (pkg / "__pycache__" / "plan.cpython-311.pyc").write_bytes(b"junk")
    (pkg / "README").write_text("not code")
    first = stamp.source_digest([pkg])
    assert list(first) == ["xenbundle/plan.py"]
    (pkg / "plan.py").write_text("x = 2\n")
    assert stamp.source_digest([pkg]) != first


def test_current_only_with_matching_key_and_intact_files(tmp_path):
    assert stamp.check_current(tmp_path, "k") == (False, "no previous build")
    (tmp_path / "Image").write_bytes(b"1234")
    stamp.write_manifest(tmp_path, {"key": "k", "files": stamp.file_records(tmp_path)})
    assert stamp.check_current(tmp_path, "k") == (True, "up to date")
    assert stamp.check_current(tmp_path, "other") == (False, "inputs changed")
    (tmp_path / "Image").write_bytes(b"12345")
    assert stamp.check_current(tmp_path, "k") == (False, "Image changed size")
    (tmp_path / "Image").unlink()
    assert stamp.check_current(tmp_path, "k") == (False, "Image is missing")


def test_unreadable_manifest_counts_as_no_build(tmp_path):
    (tmp_path / stamp.MANIFEST_NAME).write_text("{not json")
    assert stamp.read_manifest(tmp_path) is None
