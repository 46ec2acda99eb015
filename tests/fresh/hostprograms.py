"""Which host programs meta-xen-ref runs, found in its code, and which Debian package provides each.

The scan reads the source, it runs nothing:

* Python (``*.py`` and scripts with a python shebang): every call that starts a program
  (``subprocess.run/Popen/call/check_call/check_output``, ``pexpect.spawn/run``, ``os.exec*``,
  ``os.spawn*``, ``os.system``, ``shutil.which``, ``asyncio.create_subprocess_*``). The program is
  followed from the call back to the literal that names it: through local and module-level
  assignments, imports between the scanned modules, ``for`` loops over literal tuples, dict and list
  constants (``SHELLS[name]``), parameter defaults, and the callers of any function that passes
  one of its parameters on to such a call (also through a parameter defaulting to that function,
  an attribute set from it, and a pytest fixture that returns it). A ``--`` element in an argv
  means "a wrapped command follows" (``runuser -u x -- bash``, ``noisy_shell.py -- busybox sh``).
  ``sys.executable`` and paths built from it are the virtual environment's Python (pip's, not
  Debian's); ``sys.argv`` and ``argparse`` results are the script's own command line, which its
  caller's argv names; a path joined onto one made from ``__file__`` is the repository's own file.
* Shell (scripts with an ``sh``/``bash`` shebang): the first word of every simple command,
  including commands inside ``$(...)``, after ``if``/``then``/``!``/``|``/``&&``..., and after
  wrappers (``exec``, ``sudo``, ``env``, ``timeout``, and the script's own functions that run
  ``"$@"``). Builtins, the script's functions, and paths that start with a variable or are relative
  (the repository's or the venv's own files) are not host programs.

A launch whose program the scan cannot follow to a literal (an argv built by a function, a
program taken from a target file) is reported as :class:`Unresolved`; the caller declares what
such a launch runs (``tests/fresh/test_host_programs.py``: ``DYNAMIC_LAUNCHES``), so a new one
fails the test until someone looks at it.

Commands sent over a console to dom0 or a guest (``channel.run("xl list")``, OEQA's
``target.run``) are strings that the QEMU guest's shell runs: they are not launch calls, so the
scan never reports them (the reference target's own Debian packages provide those programs).
"""

from __future__ import annotations

import ast
import os
import re
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Folders of the repository that hold code run on the host: the harness, the reference-target
#: builder and the bundler (lib), the test suite, the benchmarks, the entry points and CI.
SCANNED_FOLDERS = ("lib", "tests", "bench", "scripts", ".ci")
_SKIPPED_DIRS = {".venv", "__pycache__", ".git", ".pytest_cache", ".hypothesis", "node_modules"}


@dataclass(frozen=True)
class Use:
    """A host program the code runs: where its name is written and where it is started."""

    program: str
    named_at: str  # "path:line" of the literal
    run_at: str  # "path:line" of the launching call (or shell command)

    def where(self) -> str:
        """``run_at``, plus ``named_at`` when the name is written elsewhere."""
        return self.run_at if self.named_at == self.run_at else f"{self.run_at} (named at {self.named_at})"


@dataclass(frozen=True)
class Unresolved:
    """A launch whose program is not a literal the scan can follow."""

    path: str
    line: int
    function: str  # qualified name of the function holding the launch ("<module>" at top level)
    expression: str  # the part of the code the scan could not follow

    def where(self) -> str:
        """``path:line (function)``."""
        return f"{self.path}:{self.line} ({self.function})"


@dataclass
class ScanResult:
    """Everything :func:`scan_tree` found."""

    uses: list[Use] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)

    def programs(self) -> dict[str, list[Use]]:
        """The uses grouped by program name, names sorted."""
        grouped: dict[str, list[Use]] = {}
        for use in sorted(self.uses, key=lambda u: (u.program, u.run_at, u.named_at)):
            grouped.setdefault(use.program, []).append(use)
        return grouped


def scan_tree(root: Path, folders: Sequence[str] = SCANNED_FOLDERS) -> ScanResult:
    """Scan the Python and shell code under ``root``'s ``folders``."""
    python_files, shell_files = [], []
    for path in _source_files(root, folders):
        kind = _file_kind(path)
        if kind == "python":
            python_files.append(path)
        elif kind == "shell":
            shell_files.append(path)
    result = PythonScanner(root, python_files).scan()
    for path in shell_files:
        relative = path.relative_to(root).as_posix()
        uses, unresolved = scan_shell(path.read_text(encoding="utf-8", errors="replace"), relative)
        result.uses.extend(uses)
        result.unresolved.extend(unresolved)
    return result


def _source_files(root: Path, folders: Sequence[str]) -> Iterator[Path]:
    for folder in folders:
        top = root / folder
        if not top.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS and not d.endswith(".egg-info"))
            for name in sorted(filenames):
                yield Path(dirpath) / name


def _file_kind(path: Path) -> str | None:
    if path.suffix == ".py":
        return "python"
    if path.suffix or not path.is_file():
        return None
    try:
        with open(path, "rb") as stream:
            first = stream.readline(200)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    interpreter = first[2:].decode("ascii", "replace").split()
    words = [os.path.basename(w) for w in interpreter]
    if words and words[0] == "env" and len(words) > 1:
        words = words[1:]
    if not words:
        return None
    if words[0].startswith("python"):
        return "python"
    if words[0] in ("sh", "bash", "dash"):
        return "shell"
    return None


def first_word(command: str) -> str | None:
    """The program of a command string: its first word's base name (``/usr/sbin/x -a`` -> ``x``)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    if not words:
        return None
    return os.path.basename(words[0]) or None


# ---------------------------------------------------------------------------------------------
# Python

#: Calls that start a program: qualified name -> (position of the program/argv, keyword names).
#: ``argv`` launchers take a sequence whose first element is the program (or a command string);
#: for ``pexpect`` the second argument holds the rest of the argv.
_ARGV_LAUNCHERS = {
    "subprocess.run": (0, ("args",)),
    "subprocess.Popen": (0, ("args",)),
    "subprocess.call": (0, ("args",)),
    "subprocess.check_call": (0, ("args",)),
    "subprocess.check_output": (0, ("args",)),
    "subprocess.getoutput": (0, ("cmd",)),
    "subprocess.getstatusoutput": (0, ("cmd",)),
    "pexpect.spawn": (0, ("command",)),
    "pexpect.spawnu": (0, ("command",)),
    "pexpect.run": (0, ("command",)),
    "pexpect.popen_spawn.PopenSpawn": (0, ("cmd",)),
    "os.system": (0, ("command",)),
    "os.popen": (0, ("cmd",)),
    "asyncio.create_subprocess_shell": (0, ("cmd",)),
}
_PROGRAM_LAUNCHERS = {
    **{f"os.{name}": (0, ("file", "path")) for name in
       ("execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe",
        "posix_spawn", "posix_spawnp")},
    **{f"os.{name}": (1, ("file", "path")) for name in
       ("spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe")},
    "shutil.which": (0, ("cmd",)),
    "asyncio.create_subprocess_exec": (0, ("program",)),
}
#: Launchers whose next argument holds the rest of the argv (a "--" there wraps a command).
_REST_ARGS = {"pexpect.spawn": (1, "args"), "pexpect.spawnu": (1, "args"),
              **{f"os.{name}": (1, "args") for name in ("execv", "execve", "execvp", "execvpe",
                                                       "posix_spawn", "posix_spawnp")},
              **{f"os.{name}": (2, "args") for name in ("spawnv", "spawnve", "spawnvp", "spawnvpe")}}
#: Calls that hand their argument through unchanged (for this scan's purpose).
_PASS_THROUGH = {"str", "list", "tuple", "os.fspath", "pathlib.Path", "Path", "shlex.split",
                 "os.path.basename", "os.path.realpath", "os.path.abspath"}

ARGV, PROGRAM = "argv", "program"


@dataclass(frozen=True)
class _Leaf:
    """One end of following an expression: a program name, or why there is none."""

    kind: str  # "program", "python", "cmdline", "repository", "unresolved"
    name: str
    node: ast.AST
    module: _Module


class _Module:
    """One parsed source file with the lookups the scan needs."""

    def __init__(self, root: Path, path: Path) -> None:
        self.path = path
        self.relative = path.relative_to(root).as_posix()
        self.tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"), filename=str(path))
        self.dotted = _dotted_name(self.relative)
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.imports = self._imports()

    def _imports(self) -> dict[str, str]:
        names: dict[str, str] = {}
        if self.path.name == "__init__.py":
            package = self.dotted
        else:
            package = self.dotted.rsplit(".", 1)[0] if "." in self.dotted else ""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        names[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        names[top] = top
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".") if package else []
                    parts = parts[:len(parts) - (node.level - 1)] if node.level > 1 else parts
                    base = ".".join(p for p in parts + ([base] if base else []) if p)
                for alias in node.names:
                    names[alias.asname or alias.name] = f"{base}.{alias.name}" if base else alias.name
        return names

    def qualified(self, func: ast.AST) -> str | None:
        """``subprocess.run`` for ``sp.run`` after ``import subprocess as sp``; None if local."""
        if isinstance(func, ast.Name):
            return self.imports.get(func.id)
        if isinstance(func, ast.Attribute):
            base = self.qualified(func.value)
            return f"{base}.{func.attr}" if base else None
        return None

    def line(self, node: ast.AST) -> str:
        return f"{self.relative}:{getattr(node, 'lineno', 0)}"

    def enclosing(self, node: ast.AST) -> list[ast.AST]:
        """Enclosing function and class definitions, innermost first."""
        chain = []
        current = self.parents.get(node)
        while current is not None:
            if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                chain.append(current)
            current = self.parents.get(current)
        return chain

    def qualname(self, node: ast.AST) -> str:
        names = [d.name for d in reversed(self.enclosing(node)) if not isinstance(d, ast.Lambda)]
        return ".".join(names) or "<module>"


def _dotted_name(relative: str) -> str:
    """``lib/xenreftarget/packages.py`` -> ``xenreftarget.packages``; a test helper -> its stem."""
    parts = relative[:-3].split("/") if relative.endswith(".py") else relative.split("/")
    if parts[0] == "lib":
        parts = parts[1:]
        if parts and parts[-1] == "__init__":
            parts = parts[:-1]
        return ".".join(parts)
    return parts[-1]


def _own_statements(body: Iterable[ast.stmt]) -> Iterator[ast.AST]:
    """Nodes of ``body`` that belong to its scope (not to nested functions or classes)."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                stack.append(child)


def _parameters(func: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> list[ast.arg]:
    args = func.args
    return [*args.posonlyargs, *args.args, *args.kwonlyargs]


def _default(func: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, name: str) -> ast.expr | None:
    args = func.args
    positional = [*args.posonlyargs, *args.args]
    offset = len(positional) - len(args.defaults)
    for index, arg in enumerate(positional):
        if arg.arg == name and index >= offset:
            return args.defaults[index - offset]
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        if arg.arg == name:
            return default
    return None


class PythonScanner:
    """Follows every launch in a set of Python modules back to the literal naming its program."""

    def __init__(self, root: Path, paths: Sequence[Path]) -> None:
        self.modules = [_Module(root, path) for path in paths]
        self.by_dotted = {m.dotted: m for m in self.modules}
        self._active: set[tuple[int, str]] = set()

    def scan(self) -> ScanResult:
        result = ScanResult()
        for module in self.modules:
            for node in ast.walk(module.tree):
                if isinstance(node, ast.Call):
                    self._scan_call(module, node, result)
        result.uses = sorted(set(result.uses), key=lambda u: (u.program, u.run_at, u.named_at))
        result.unresolved = sorted(set(result.unresolved), key=lambda u: (u.path, u.line, u.expression))
        return result

    def _scan_call(self, module: _Module, call: ast.Call, result: ScanResult) -> None:
        name = module.qualified(call.func)
        if name in _ARGV_LAUNCHERS:
            position, keywords = _ARGV_LAUNCHERS[name]
            context = ARGV
        elif name in _PROGRAM_LAUNCHERS:
            position, keywords = _PROGRAM_LAUNCHERS[name]
            context = PROGRAM
        else:
            return
        argument = _argument(call, position, keywords)
        if argument is None:
            return
        leaves = self._argv(module, argument) if context == ARGV else self._program(module, argument)
        if name in _REST_ARGS:
            rest = _argument(call, _REST_ARGS[name][0], (_REST_ARGS[name][1],))
            if rest is not None:
                leaves += self._wrapped(module, self._flatten(module, rest), first_is_program=False)
        for leaf in leaves:
            if leaf.kind == "program":
                result.uses.append(Use(leaf.name, leaf.module.line(leaf.node), module.line(call)))
            elif leaf.kind == "unresolved":
                result.unresolved.append(Unresolved(
                    module.relative, call.lineno, module.qualname(call),
                    f"{ast.unparse(leaf.node)} ({leaf.name}, {leaf.module.line(leaf.node)})"))

    # -- following expressions -----------------------------------------------------------------

    def _guarded(self, node: ast.AST, context: str) -> bool:
        key = (id(node), context)
        if key in self._active:
            return False
        self._active.add(key)
        return True

    def _argv(self, module: _Module, node: ast.AST) -> list[_Leaf]:
        """Programs an argv expression (a sequence, or a command string) starts."""
        if not self._guarded(node, ARGV):
            return []
        try:
            items = self._flatten(module, node)
            if items and items[0][0] == "seq" and items[0][1] is node:
                return self._follow(module, node, ARGV)
            return self._wrapped(module, items)
        finally:
            self._active.discard((id(node), ARGV))

    def _wrapped(self, module: _Module, items: list[tuple[str, ast.AST]],
                 first_is_program: bool = True) -> list[_Leaf]:
        """The first item's program, and the program after each ``"--"`` element."""
        leaves: list[_Leaf] = []
        for index, (kind, node) in enumerate(items):
            if (index == 0 and first_is_program) \
                    or (index > 0 and items[index - 1][0] == "elt" and _constant(items[index - 1][1]) == "--"):
                leaves += self._program(module, node) if kind == "elt" else self._argv(module, node)
        return leaves

    def _flatten(self, module: _Module, node: ast.AST) -> list[tuple[str, ast.AST]]:
        """A sequence expression as elements ("elt") and opaque sub-sequences ("seq")."""
        if isinstance(node, (ast.List, ast.Tuple)):
            items: list[tuple[str, ast.AST]] = []
            for element in node.elts:
                if isinstance(element, ast.Starred):
                    items.append(("seq", element.value))
                else:
                    items.append(("elt", element))
            return items
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self._flatten(module, node.left) + self._flatten(module, node.right)
        if isinstance(node, ast.Name):
            definitions = self._definitions(module, node)
            if len(definitions) == 1 and isinstance(definitions[0][1], (ast.List, ast.Tuple, ast.BinOp)):
                def_module, value = definitions[0]
                if def_module is module and self._guarded(value, "flatten"):
                    try:
                        return self._flatten(module, value)
                    finally:
                        self._active.discard((id(value), "flatten"))
        return [("seq", node)]

    def _program(self, module: _Module, node: ast.AST) -> list[_Leaf]:
        """Programs a single program expression names."""
        if not self._guarded(node, PROGRAM):
            return []
        try:
            return self._follow(module, node, PROGRAM)
        finally:
            self._active.discard((id(node), PROGRAM))

    def _follow(self, module: _Module, node: ast.AST, context: str) -> list[_Leaf]:
        text = ast.unparse(node)
        if "sys.executable" in text:
            return [_Leaf("python", "sys.executable", node, module)]
        if "sys.argv" in text or self._is_cmdline(module, node):
            return [_Leaf("cmdline", text, node, module)]
        if self._is_repository_file(module, node):
            return [_Leaf("repository", text, node, module)]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = first_word(node.value)
            return [_Leaf("program", name, node, module)] if name else []
        if isinstance(node, ast.JoinedStr):
            head = node.values[0] if node.values else None
            # f"tool {arg}" names tool; f"/usr/bin/{tool}" names nothing the scan can read
            text = head.value.lstrip() if isinstance(head, ast.Constant) and isinstance(head.value, str) else ""
            if " " in text:
                return [_Leaf("program", first_word(text) or text.split()[0], node, module)]
            return [_Leaf("unresolved", "an f-string", node, module)]
        if isinstance(node, (ast.List, ast.Tuple, ast.BinOp)) and context == ARGV:
            return self._argv(module, node)
        if isinstance(node, (ast.List, ast.Tuple)):  # a program list, iterated by a for loop
            return [leaf for element in node.elts for leaf in self._program(module, element)]
        if isinstance(node, ast.IfExp):
            return self._again(module, node.body, context) + self._again(module, node.orelse, context)
        if isinstance(node, ast.BoolOp):
            return [leaf for value in node.values for leaf in self._again(module, value, context)]
        if isinstance(node, ast.Subscript):
            return self._subscript(module, node, context)
        if isinstance(node, ast.Call):
            return self._call(module, node, context)
        if isinstance(node, ast.Name):
            return self._name(module, node, context)
        if isinstance(node, ast.Attribute):
            return self._attribute(module, node, context)
        return [_Leaf("unresolved", "an expression", node, module)]

    def _again(self, module: _Module, node: ast.AST, context: str) -> list[_Leaf]:
        return self._argv(module, node) if context == ARGV else self._program(module, node)

    def _is_cmdline(self, module: _Module, node: ast.AST) -> bool:
        """An attribute of an ``argparse`` result (``args.program``)."""
        base = node
        while isinstance(base, (ast.Attribute, ast.Subscript)):
            base = base.value
        if not isinstance(base, ast.Name) or base is node:
            return False
        for _, value in self._definitions(module, base):
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) \
                    and value.func.attr in ("parse_args", "parse_known_args"):
                return True
        return False

    def _is_repository_file(self, module: _Module, node: ast.AST) -> bool:
        """A path joined onto one made from ``__file__`` (``REPO / "scripts" / "x"``)."""
        if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)):
            return False
        base: ast.AST = node
        while isinstance(base, ast.BinOp) and isinstance(base.op, ast.Div):
            base = base.left
        if "__file__" in ast.unparse(base):
            return True
        return isinstance(base, ast.Name) and any(
            "__file__" in ast.unparse(value) for _, value in self._definitions(module, base))

    def _subscript(self, module: _Module, node: ast.Subscript, context: str) -> list[_Leaf]:
        index = _constant(node.slice)
        if index == 0:
            return self._argv(module, node.value)  # argv[0]: the program of the argv
        containers = self._values(module, node.value)
        if containers is None:
            return [_Leaf("unresolved", "a subscript", node, module)]
        leaves: list[_Leaf] = []
        for def_module, container in containers:
            if isinstance(container, ast.Dict):
                members = [v for v in container.values if v is not None]
            elif isinstance(container, (ast.List, ast.Tuple)) and isinstance(index, int):
                members = container.elts[index:index + 1] if -len(container.elts) <= index < len(container.elts) else []
            elif isinstance(container, (ast.List, ast.Tuple)):
                members = list(container.elts)
            else:
                leaves.append(_Leaf("unresolved", "a subscript", node, module))
                continue
            for member in members:
                leaves += self._again(def_module, member, context)
        return leaves

    def _values(self, module: _Module, node: ast.AST) -> list[tuple[_Module, ast.AST]] | None:
        """The literal containers a name refers to, or None."""
        if isinstance(node, (ast.Dict, ast.List, ast.Tuple)):
            return [(module, node)]
        if isinstance(node, ast.Name):
            definitions = self._definitions(module, node)
            if definitions and all(isinstance(v, (ast.Dict, ast.List, ast.Tuple)) for _, v in definitions):
                return definitions
        return None

    def _call(self, module: _Module, node: ast.Call, context: str) -> list[_Leaf]:
        name = module.qualified(node.func) or (node.func.id if isinstance(node.func, ast.Name) else None)
        if name == "shutil.which" and node.args:
            return self._program(module, node.args[0])
        if name in _PASS_THROUGH and node.args:
            return self._again(module, node.args[0], context)
        return [_Leaf("unresolved", "the result of a call", node, module)]

    def _attribute(self, module: _Module, node: ast.Attribute, context: str) -> list[_Leaf]:
        """``self.x``: the values assigned to ``self.x`` in the class."""
        if isinstance(node.value, ast.Name) and node.value.id == "self":
            classes = [d for d in module.enclosing(node) if isinstance(d, ast.ClassDef)]
            if classes:
                values = [n.value for n in ast.walk(classes[0]) if isinstance(n, ast.Assign)
                          for t in n.targets if isinstance(t, ast.Attribute) and t.attr == node.attr
                          and isinstance(t.value, ast.Name) and t.value.id == "self"]
                if values:
                    return [leaf for v in values for leaf in self._again(module, v, context)]
        return [_Leaf("unresolved", "an attribute", node, module)]

    def _name(self, module: _Module, node: ast.Name, context: str) -> list[_Leaf]:
        parameter = self._parameter_of(module, node)
        if parameter is not None:
            return self._parameter(module, parameter, node.id, context, node)
        definitions = self._definitions(module, node)
        if not definitions:
            return [_Leaf("unresolved", f"the name {node.id}", node, module)]
        return [leaf for def_module, value in definitions for leaf in self._again(def_module, value, context)]

    # -- names ---------------------------------------------------------------------------------

    def _parameter_of(self, module: _Module, node: ast.Name) -> ast.AST | None:
        for scope in module.enclosing(node):
            if isinstance(scope, ast.ClassDef):
                continue
            if node.id in [a.arg for a in _parameters(scope)]:  # type: ignore[arg-type]
                return scope
            if self._assigned(scope.body if not isinstance(scope, ast.Lambda) else [], node.id):
                return None
        return None

    def _definitions(self, module: _Module, node: ast.Name) -> list[tuple[_Module, ast.AST]]:
        """Values assigned to a name in its innermost scope that assigns it (or an import)."""
        for scope in module.enclosing(node):
            if isinstance(scope, (ast.ClassDef, ast.Lambda)):
                continue
            if node.id in [a.arg for a in _parameters(scope)]:
                return []
            values = self._assigned(scope.body, node.id)
            if values:
                return [(module, v) for v in values]
        values = self._assigned(module.tree.body, node.id)
        if values:
            return [(module, v) for v in values]
        imported = module.imports.get(node.id)
        if imported and "." in imported:
            source_name, _, attribute = imported.rpartition(".")
            source = self.by_dotted.get(source_name) or self.by_dotted.get(source_name.rsplit(".", 1)[-1])
            if source is not None and source is not module:
                return [(source, v) for v in self._assigned(source.tree.body, attribute)]
        return []

    @staticmethod
    def _assigned(body: Iterable[ast.stmt], name: str) -> list[ast.AST]:
        values: list[ast.AST] = []
        for statement in _own_statements(body):
            if isinstance(statement, ast.Assign):
                if any(isinstance(t, ast.Name) and t.id == name for t in statement.targets):
                    values.append(statement.value)
            elif isinstance(statement, (ast.AnnAssign, ast.NamedExpr)):
                target = statement.target
                if isinstance(target, ast.Name) and target.id == name and statement.value is not None:
                    values.append(statement.value)
            elif isinstance(statement, (ast.For, ast.AsyncFor, ast.comprehension)):
                values += _loop_values(statement.target, statement.iter, name)
        return values

    # -- parameters and callers ----------------------------------------------------------------

    def _parameter(self, module: _Module, function: ast.AST, name: str, context: str,
                   use: ast.AST) -> list[_Leaf]:
        """A parameter: its default and what every caller passes for it."""
        leaves: list[_Leaf] = []
        default = _default(function, name)  # type: ignore[arg-type]
        if _constant(default) is not None or isinstance(default, (ast.List, ast.Tuple)):
            leaves += self._again(module, default, context)
        callers = list(self._callers(module, function))
        for caller_module, call, is_method_call in callers:
            argument = _call_argument(call, function, name, is_method_call)  # type: ignore[arg-type]
            if argument is None:
                continue
            if argument == "dynamic":
                leaves.append(_Leaf("unresolved", "*args or **kwargs", call, caller_module))
            else:
                leaves += self._again(caller_module, argument, context)
        if not leaves:
            what = f"parameter {name} of {module.qualname(use)}, with no caller found"
            leaves.append(_Leaf("unresolved", what, use, module))
        return leaves

    def _callers(self, module: _Module, function: ast.AST) -> Iterator[tuple[_Module, ast.Call, bool]]:
        """Calls of ``function`` (by name) in its module and the modules that import it."""
        fname = getattr(function, "name", None)
        if fname is None:
            return
        scopes = module.enclosing(function)
        is_method = bool(scopes) and isinstance(scopes[0], ast.ClassDef)
        names = {fname}
        factory = self._factory(module, function)
        aliases = self._aliases(module, fname)
        for candidate in self.modules:
            local = candidate is module
            imported = {alias for alias, target in candidate.imports.items()
                        if target.rsplit(".", 1)[-1] == fname
                        and target.rsplit(".", 1)[0].rsplit(".", 1)[-1] == module.dotted.rsplit(".", 1)[-1]}
            fixture_scope = factory is not None and module.path.name == "conftest.py" \
                and module.path.parent in candidate.path.parents
            for node in ast.walk(candidate.tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                if isinstance(func, ast.Name):
                    if (local and (func.id in names or func.id in aliases)) or func.id in imported \
                            or (fixture_scope and func.id == factory):
                        yield candidate, node, False
                elif isinstance(func, ast.Attribute) and local and (func.attr in names or func.attr in aliases):
                    yield candidate, node, is_method

    @staticmethod
    def _factory(module: _Module, function: ast.AST) -> str | None:
        """The enclosing function's name when it returns or yields ``function`` (a fixture)."""
        scopes = [s for s in module.enclosing(function) if not isinstance(s, ast.ClassDef)]
        if not scopes:
            return None
        outer = scopes[0]
        for node in _own_statements(outer.body):  # type: ignore[attr-defined]
            value = node.value if isinstance(node, (ast.Return, ast.Yield, ast.Expr)) else None
            if isinstance(value, ast.Yield):
                value = value.value
            if isinstance(value, ast.Name) and value.id == getattr(function, "name", None):
                return outer.name  # type: ignore[attr-defined, no-any-return]
        return None

    @staticmethod
    def _aliases(module: _Module, fname: str) -> set[str]:
        """Parameters defaulting to the function, and ``self`` attributes set from them."""
        aliases: set[str] = set()
        for node in ast.walk(module.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in _parameters(node):
                    default = _default(node, arg.arg)
                    if isinstance(default, ast.Name) and default.id == fname:
                        aliases.add(arg.arg)
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                for target in node.targets:
                    if isinstance(target, ast.Attribute):
                        aliases.add(target.attr)
        return aliases


def _loop_values(target: ast.AST, iterable: ast.AST, name: str) -> list[ast.AST]:
    """What a ``for`` loop binds to ``name``: elements of a literal (or the iterable itself)."""
    if isinstance(target, ast.Name) and target.id == name:
        return list(iterable.elts) if isinstance(iterable, (ast.List, ast.Tuple)) else [iterable]
    if isinstance(target, ast.Tuple) and isinstance(iterable, (ast.List, ast.Tuple)):
        names = [t.id if isinstance(t, ast.Name) else None for t in target.elts]
        if name in names:
            index = names.index(name)
            return [e.elts[index] for e in iterable.elts
                    if isinstance(e, (ast.Tuple, ast.List)) and len(e.elts) > index]
    return []


def _constant(node: ast.AST | None) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _argument(call: ast.Call, position: int, keywords: Sequence[str]) -> ast.AST | None:
    if len(call.args) > position and not any(isinstance(a, ast.Starred) for a in call.args[:position + 1]):
        return call.args[position]
    for keyword in call.keywords:
        if keyword.arg in keywords:
            return keyword.value
    return None


def _call_argument(call: ast.Call, function: ast.FunctionDef, name: str, is_method_call: bool) -> ast.AST | str | None:
    """What ``call`` passes for parameter ``name``: a node, "dynamic" (``*args``), or None."""
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    positional = [a.arg for a in [*function.args.posonlyargs, *function.args.args]]
    if is_method_call and positional and positional[0] in ("self", "cls"):
        positional = positional[1:]
    if name not in positional:
        return None
    index = positional.index(name)
    for position, argument in enumerate(call.args):
        if isinstance(argument, ast.Starred):
            return "dynamic"
        if position == index:
            return argument
    if any(k.arg is None for k in call.keywords):
        return "dynamic"
    return None


# ---------------------------------------------------------------------------------------------
# Shell

SHELL_BUILTINS = frozenset((
    ":", ".", "[", "alias", "bg", "bind", "break", "builtin", "caller", "cd", "command", "compgen",
    "complete", "compopt", "continue", "declare", "dirs", "disown", "echo", "enable", "eval", "exec",
    "exit", "export", "false", "fc", "fg", "getopts", "hash", "help", "history", "jobs", "kill", "let",
    "local", "logout", "mapfile", "popd", "printf", "pushd", "pwd", "read", "readarray", "readonly",
    "return", "set", "shift", "shopt", "source", "suspend", "test", "times", "trap", "true", "type",
    "typeset", "ulimit", "umask", "unalias", "unset", "wait"))
#: Words that may precede a command (the command follows them).
_PREFIX_KEYWORDS = frozenset(("if", "then", "else", "elif", "do", "while", "until", "!", "{", "time",
                              "fi", "done", "}", "[[", "((", "coproc"))
#: Programs and builtins that run the command given in their arguments: the options they take
#: with a value, and how many plain arguments come before the command.
_WRAPPERS = {
    "exec": ({"-a"}, 0), "command": (set(), 0), "builtin": (set(), 0), "time": (set(), 0),
    "sudo": ({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"}, 0),
    "env": ({"-u", "-C", "-S"}, 0), "nice": ({"-n"}, 0), "nohup": (set(), 0), "setsid": (set(), 0),
    "timeout": ({"-s", "-k", "--signal", "--kill-after"}, 1), "chroot": ({"--userspec", "--groups"}, 1),
    "unshare": ({"--propagation", "--setgroups", "-S", "-G", "--map-user", "--map-group"}, 0),
    "runuser": ({"-u", "-g", "-G", "-s", "-l"}, 0), "stdbuf": ({"-i", "-o", "-e"}, 0),
    "xargs": ({"-I", "-n", "-P", "-d", "-a", "-E", "-L", "-s"}, 0),
}
_SEPARATORS = frozenset((";", "&&", "||", "|", "&", "|&", "\n", ";;", ";&", ";;&", "(", ")"))
_REDIRECTIONS = frozenset(("<", ">", ">>", "<<", "<<<", "&>", "&>>", ">&", "<&", ">|", "<>"))
_OPERATORS = sorted(_SEPARATORS | _REDIRECTIONS, key=len, reverse=True)
_SUBSTITUTION = "__command_substitution__"
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")


class ShellSyntaxError(ValueError):
    """A construct the shell scan does not understand (it says so instead of guessing)."""


def scan_shell(text: str, relative: str) -> tuple[list[Use], list[Unresolved]]:
    """Programs a shell script runs, with their ``path:line``."""
    commands = list(_simple_commands(text, relative))
    functions = {c.function_defined for c in commands if c.function_defined}
    wrappers: set[str] = set()
    changed = True
    while changed:  # a function running "$@" makes its name a wrapper, which may make others so
        changed = False
        for command in commands:
            if command.function and command.function not in wrappers \
                    and "$@" in _command_words(command.words, functions, wrappers, runs_args=True):
                wrappers.add(command.function)
                changed = True
    uses, unresolved = [], []
    for command in commands:
        for word in _command_words(command.words, functions, wrappers):
            where = f"{relative}:{command.line}"
            if word.startswith("$") and "/" not in word and word not in ("$@", "$*"):
                unresolved.append(Unresolved(relative, command.line, command.function or "<script>",
                                             f"{word} (a variable as the command)"))
            elif word == _SUBSTITUTION:
                unresolved.append(Unresolved(relative, command.line, command.function or "<script>",
                                             "$(...) as the command"))
            elif word.startswith("/"):
                uses.append(Use(os.path.basename(word), where, where))
            elif "/" not in word and not word.startswith("$"):
                uses.append(Use(word, where, where))
    return uses, unresolved


@dataclass
class _Command:
    words: list[str]
    line: int
    function: str | None  # the function whose body holds it
    function_defined: str | None = None  # set on a "name()" definition


def _command_words(words: list[str], functions: set[str], wrappers: set[str],
                   runs_args: bool = False) -> list[str]:
    """Command words a simple command runs: its program and the programs wrappers run.

    Builtins and the script's functions are dropped; ``$@`` is kept when ``runs_args``.
    """
    found: list[str] = []
    index = 0
    while index < len(words) and (words[index] in _PREFIX_KEYWORDS or _ASSIGNMENT.match(words[index])):
        index += 1
    while index < len(words):
        word = words[index]
        wrapper = _WRAPPERS.get(word)
        if wrapper is None and word in wrappers:
            wrapper = (set(), 0)
        if wrapper is None:
            if word in ("$@", '"$@"'):
                if runs_args:
                    found.append("$@")
            elif word not in SHELL_BUILTINS and word not in functions and word not in _PREFIX_KEYWORDS:
                found.append(word)
            return found
        if word not in SHELL_BUILTINS and word not in functions and word not in _PREFIX_KEYWORDS:
            found.append(word)
        if word == "command" and index + 1 < len(words) and words[index + 1] in ("-v", "-V"):
            return found  # a lookup, not a run
        index = _after_wrapper_options(words, index + 1, *wrapper)
    return found


def _after_wrapper_options(words: list[str], index: int, with_value: set[str], positionals: int) -> int:
    while index < len(words):
        word = words[index]
        if word == "--":
            index += 1
            break
        if word.startswith("-") and len(word) > 1:
            index += 2 if word in with_value else 1
        elif _ASSIGNMENT.match(word):
            index += 1
        else:
            break
    return index + positionals


def _simple_commands(text: str, relative: str) -> Iterator[_Command]:
    """Simple commands of a script with their line; nested ``$(...)`` are commands too."""
    state = _ShellState()
    for line, logical in _logical_lines(text, relative):
        yield from state.feed(logical, line, relative)
    yield from state.end()


class _ShellState:
    """The little state that survives between lines: arrays, case patterns, function bodies."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.line = 0
        self.array_depth = 0
        self.case_depth = 0
        self.expect_pattern = False
        self.function: str | None = None
        self.brace_depth = 0
        self.skip_next = False
        self.pending_function: str | None = None

    def feed(self, logical: str, line: int, relative: str) -> Iterator[_Command]:
        text, inner = _extract_substitutions(logical, relative, line)
        for nested in inner:
            nested_state = _ShellState()
            nested_state.function = self.function
            yield from nested_state.feed(nested, line, relative)
            yield from nested_state.end()
        for token in _tokens(text, relative, line) + ["\n"]:
            yield from self._token(token, line)

    def end(self) -> Iterator[_Command]:
        yield from self._emit()

    def _token(self, token: str, line: int) -> Iterator[_Command]:
        if self.array_depth:
            self.array_depth += {"(": 1, ")": -1}.get(token, 0)
            return
        if self.skip_next:
            self.skip_next = token in _SEPARATORS  # a redirection's target is the next word
            if not self.skip_next:
                return
        if token in _REDIRECTIONS:
            if self.words and self.words[-1].isdigit():
                self.words.pop()
            self.skip_next = True
            return
        if token not in _SEPARATORS:
            if not self.words:
                self.line = line
            self.words.append(token)
            return
        if token == "(" and self.words and _ASSIGNMENT.match(self.words[-1]) and self.words[-1].endswith("="):
            self.words.pop()
            self.array_depth = 1
            return
        if token == "(" and len(self.words) in (1, 2) and self.words[0] in ("function", self.words[-1]):
            self.pending_function = self.words[-1]
            self.words = []
            return
        if token == ")" and self.pending_function:
            return
        if token == ")" and self.expect_pattern:
            self.words = []
            self.expect_pattern = False
            return
        yield from self._emit()
        if token in (";;", ";&", ";;&") and self.case_depth:
            self.expect_pattern = True

    def _emit(self) -> Iterator[_Command]:
        words, self.words = self.words, []
        if not words:
            return
        if self.expect_pattern:
            if words == ["esac"]:
                self.case_depth -= 1
                self.expect_pattern = self.case_depth > 0
            return
        if words[0] == "case":
            self.case_depth += 1
            self.expect_pattern = True
            return
        if words[0] in ("for", "select"):
            return
        if self.pending_function is not None:
            self.function, self.pending_function = self.pending_function, None
            self.brace_depth = 0
            yield _Command([], self.line, self.function, function_defined=self.function)
        self.brace_depth += words.count("{") - words.count("}")
        command = _Command(words, self.line, self.function)
        if self.function is not None and self.brace_depth <= 0 and "}" in words:
            self.function = None
        if words[0] == "esac":
            self.case_depth = max(0, self.case_depth - 1)
        yield command


def _logical_lines(text: str, relative: str) -> Iterator[tuple[int, str]]:
    """Lines with continuations joined, comments and here-document bodies removed."""
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        start = index
        buffer = ""
        heredocs: list[str] = []
        while index < len(lines):
            physical = _strip_comment(lines[index])
            index += 1
            heredocs += [m.group(2) for m in re.finditer(r"<<-?\s*(['\"]?)(\w+)\1", physical)]
            if physical.endswith("\\"):
                buffer += physical[:-1] + " "
                continue
            buffer += physical
            if _complete(buffer):
                break
            buffer += "\n"
        else:
            if not _complete(buffer):
                raise ShellSyntaxError(f"{relative}:{start + 1}: unterminated quote or $(...)")
        for delimiter in heredocs:
            while index < len(lines) and lines[index].strip() != delimiter:
                index += 1
            index += 1
        yield start + 1, buffer


def _strip_comment(line: str) -> str:
    quote = None
    for position, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
            elif char == "\\" and quote == '"':
                continue
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or line[position - 1] in " \t;"):
            return line[:position].rstrip()
    return line


def _complete(text: str) -> bool:
    try:
        _extract_substitutions(text, "", 0)
        shlex.split(text.replace(_SUBSTITUTION, ""), comments=False)
    except (ValueError, ShellSyntaxError):
        return False
    return True


def _extract_substitutions(text: str, relative: str, line: int) -> tuple[str, list[str]]:
    """``text`` with each ``$(...)``/`` `...` `` replaced by a placeholder word, and their texts."""
    out: list[str] = []
    inner: list[str] = []
    position = 0
    single = False
    while position < len(text):
        char = text[position]
        if single:
            single = char != "'"
            out.append(char)
            position += 1
        elif char == "'" and not _inside_double(text, position):
            single = True
            out.append(char)
            position += 1
        elif char == "\\":
            out.append(text[position:position + 2])
            position += 2
        elif text.startswith("$((", position):
            end = _matching(text, position + 1, relative, line)
            out.append("0")
            position = end + 1
        elif text.startswith(("$(", "<(", ">("), position):  # command and process substitution
            end = _matching(text, position + 1, relative, line)
            inner.append(text[position + 2:end])
            out.append(_SUBSTITUTION)
            position = end + 1
        elif char == "`":
            end = text.find("`", position + 1)
            if end < 0:
                raise ShellSyntaxError(f"{relative}:{line}: unterminated backquote")
            inner.append(text[position + 1:end])
            out.append(_SUBSTITUTION)
            position = end + 1
        else:
            out.append(char)
            position += 1
    return "".join(out), inner


def _inside_double(text: str, position: int) -> bool:
    """Whether ``position`` is inside a double-quoted string (quotes in $(...) restart)."""
    inside = False
    index = 0
    while index < position:
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == '"':
            inside = not inside
        elif text.startswith("$(", index) and inside:
            try:
                index = _matching(text, index + 1, "", 0) + 1
            except ShellSyntaxError:
                return inside
            continue
        index += 1
    return inside


def _matching(text: str, open_at: int, relative: str, line: int) -> int:
    """Index of the ``)`` closing the ``(`` at ``open_at`` (quotes respected)."""
    depth = 0
    index = open_at
    quote = None
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\" and quote == '"':
                index += 2
                continue
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "\\":
            index += 2
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    raise ShellSyntaxError(f"{relative}:{line}: unterminated $(...)")


def _tokens(text: str, relative: str, line: int) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    lexer.wordchars += "$@{}[]%:+,^!*?=~#"
    try:
        raw = list(lexer)
    except ValueError as err:
        raise ShellSyntaxError(f"{relative}:{line}: {err}") from err
    tokens: list[str] = []
    for token in raw:
        if token and all(c in "();<>|&\n" for c in token):
            tokens += _split_operators(token)
        else:
            tokens.append(token)
    return tokens


def _split_operators(run: str) -> list[str]:
    parts = []
    while run:
        for operator in _OPERATORS:
            if run.startswith(operator):
                parts.append(operator)
                run = run[len(operator):]
                break
        else:
            parts.append(run[0])
            run = run[1:]
    return parts
