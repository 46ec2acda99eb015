"""No function in lib/ is longer than about 60 lines (the developers' guide): measured with ast.

A function's length is from its ``def`` line (decorators included) to its last line, docstring
included, nested functions counted in their parent.  The test prints every offender.
"""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"
LIMIT = 60


def function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function and method in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                end = child.end_lineno or child.lineno
                found.append((prefix + child.name, first, end - first + 1))
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def test_measure_counts_a_function_from_def_to_its_last_line(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("class A:\n    @staticmethod\n    def f():\n        x = 1\n\n        return x\n"
                      "def g():\n    def h():\n        pass\n    return h\n")
    assert function_lengths(source) == [("A.f", 2, 5), ("g", 7, 4), ("g.h", 8, 2)]


def test_no_function_in_lib_is_longer_than_the_limit() -> None:
    offenders = []
    for path in sorted(LIB.rglob("*.py")):
        for name, line, length in function_lengths(path):
            if length > LIMIT:
                offenders.append(f"{path.relative_to(LIB.parent)}:{line}: {name} is {length} lines")
    assert not offenders, f"functions over {LIMIT} lines (split them into named steps):\n" + "\n".join(offenders)
