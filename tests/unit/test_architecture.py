"""The architecture's claims, checked from the source, so that none can silently turn false.

- Each folder imports only the folders its row of ``ALLOWED`` names, and its ``__init__``
  docstring says the same ("May import ``core`` and ``config``").
- There are no import cycles.
- The module tree in the architecture page names every module, under its folder.
- No code outside ``providers/`` and ``config/`` compares provider names: the typed variants
  (config/variants.py) and the factory (providers/factory.py) are where a provider is told apart.
- The modules the core's docstring calls pure import nothing that reaches the outside world.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a deferred
import is still a dependency a reader must know about.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tvmaniac_refreshd"
NAME = "tvmaniac_refreshd"
# The page that holds the module tree (```-fenced, one folder per unindented-by-two line).
ARCHITECTURE_PAGE = ROOT / "docs" / "internals" / "architecture.md"

# The one table: what each folder, and each module at the top of the package, may import.
# The package itself (``tvmaniac_refreshd``: only ``__version__``) may be imported by anyone.
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "config": frozenset({"core"}),
    "providers": frozenset({"core", "config"}),
    "storage": frozenset({"core", "config"}),
    "daemon": frozenset({"core", "config", "providers", "storage"}),
    "service": frozenset({"core", "storage"}),
    "runtime": frozenset({"core", "config", "providers", "storage", "daemon", "service"}),
    "cli": frozenset({"core", "config", "providers", "storage", "daemon", "service", "runtime"}),
    # The faces: the console script, its shortcut, the Python API, `python -m`.
    "entry": frozenset({"core", "quick_token", "cli"}),
    "quick_token": frozenset({"core", "storage"}),
    "api": frozenset({"core", "quick_token", "runtime"}),
    "__main__": frozenset({"entry"}),
}
FOLDERS = ("core", "config", "providers", "storage", "daemon", "service", "runtime", "cli")
# Where provider names may be compared: the variants and the dialects themselves.
PROVIDER_FOLDERS = ("providers", "config")
PROVIDER_NAMES = frozenset({"trakt", "oauth2"})
# What a pure module may not import: each of these reaches files, processes, the network,
# signals, threads or the clock.
OUTSIDE_WORLD = frozenset(
    {
        "os",
        "io",
        "pathlib",
        "shutil",
        "tempfile",
        "subprocess",
        "socket",
        "signal",
        "threading",
        "fcntl",
        "resource",
        "ctypes",
        "select",
    }
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Return the package's modules that ``path`` imports (``from X import y`` counts X.y when
    that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(NAME))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith(NAME):
                continue
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
    return found & known


def outside_imports_of(path: Path) -> set[str]:
    """Return the top-level names of the non-package modules ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found - {NAME}


def owner(module: str) -> str | None:
    """The row of ``ALLOWED`` a module belongs to: its folder, or itself at the top; None for
    the package's face."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return parts[1]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, set(known)) - {name} for name, path in known.items()}


def folder_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Return, per owner, the other owners it imports (the table the closing notes show)."""
    table: dict[str, set[str]] = defaultdict(set)
    for source, targets in edges.items():
        for target in targets:
            here, there = owner(source), owner(target)
            if here is not None and there is not None and here != there:
                table[here].add(there)
    return dict(table)


def forbidden_arrows(edges: dict[str, set[str]]) -> list[str]:
    wrong = []
    for source, targets in edges.items():
        here = owner(source)
        for target in targets:
            there = owner(target)
            if here is None or there is None or here == there:
                continue
            if there not in ALLOWED.get(here, frozenset()):
                wrong.append(f"{source} -> {target}")
    return sorted(wrong)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components larger than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def docstring_of(folder: str) -> str:
    text = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
    assert text, f"{folder}/__init__.py has no docstring"
    return text


def declared_imports(docstring: str) -> set[str]:
    """The ``names`` in the docstring's "May import ..." clause (up to its ';' or '.');
    "May import nothing" declares none."""
    match = re.search(r"May import ([^;.]*)", " ".join(docstring.split()))
    assert match, "no 'May import ...' clause"
    return set(re.findall(r"``(\w+)``", match.group(1)))


def architecture_tree() -> dict[str, str]:
    """Return the text of each entry of the architecture page's module tree, by folder (the
    top-level modules under "")."""
    page = ARCHITECTURE_PAGE.read_text(encoding="utf-8")
    block = re.search(rf"^```\n{NAME}/\n(.*?)^```$", page, re.M | re.S)
    assert block, f"{ARCHITECTURE_PAGE} has no ```-fenced tree starting with {NAME}/"
    entries: dict[str, str] = defaultdict(str)
    current = ""
    for line in block.group(1).splitlines():
        head = re.match(r"^  (\w+)/\s", line + " ")
        if head:
            current = head.group(1)
        elif re.match(r"^  \S", line):
            current = ""
        entries[current] += line + "\n"
    return dict(entries)


def provider_comparisons(path: Path) -> list[int]:
    """Return the lines of ``path`` that compare a provider name or an ``.provider``."""

    def names_provider(node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in PROVIDER_NAMES
        if isinstance(node, ast.Attribute):
            return node.attr == "provider"
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return any(names_provider(element) for element in node.elts)
        return False

    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Compare)
            and any(names_provider(operand) for operand in (node.left, *node.comparators))
        ) or (isinstance(node, ast.MatchValue) and names_provider(node.value)):
            lines.append(node.lineno)
    return lines


# -- the checks -------------------------------------------------------------------------------


def test_every_module_lives_in_a_folder_of_the_table_or_is_one_of_its_faces() -> None:
    loose = {
        name
        for name in modules()
        if name != NAME and owner(name) not in ALLOWED and owner(name) not in FOLDERS
    }
    assert loose == set()
    assert set(FOLDERS) <= set(ALLOWED)


def test_the_package_face_imports_nothing_of_its_own() -> None:
    assert graph()[NAME] == set()


def test_each_folder_imports_only_what_the_table_allows() -> None:
    assert forbidden_arrows(graph()) == []


def test_there_are_no_import_cycles() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize("folder", FOLDERS)
def test_each_folder_docstring_declares_the_imports_of_the_table(folder: str) -> None:
    assert declared_imports(docstring_of(folder)) == set(ALLOWED[folder])


def test_the_architecture_tree_names_every_module_under_its_folder() -> None:
    tree = architecture_tree()
    missing = []
    for name in modules():
        parts = name.split(".")
        if len(parts) == 1 or parts[-1] == "__main__":
            continue
        if len(parts) == 2 and parts[1] in FOLDERS:
            if parts[1] not in tree:
                missing.append(f"{parts[1]}/")
            continue
        where = parts[1] if len(parts) > 2 else ""
        stem = parts[-1]
        shown = stem if len(parts) > 2 else f"{stem}.py"
        if len(parts) > 3:  # a sub-package (cli/verbs/login.py): its folder names it
            where, shown = parts[1], parts[2]
        if not re.search(rf"(?<![\w/]){re.escape(shown)}(?!\w)", tree.get(where, "")):
            missing.append(f"{where}/{stem}" if where else shown)
    assert missing == []


def test_no_provider_name_is_compared_outside_providers_and_config() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for name, path in modules().items()
        if owner(name) not in PROVIDER_FOLDERS
        for line in provider_comparisons(path)
    ]
    assert found == []


def test_the_core_modules_called_pure_touch_nothing_outside() -> None:
    docstring = " ".join(docstring_of("core").split())
    match = re.search(r"Pure \(([^)]*)\)", docstring)
    assert match, "core's docstring lists its pure modules: 'Pure (``a``, ``b``)'"
    pure = re.findall(r"``(\w+)``", match.group(1))
    core = {name.split(".")[-1] for name in modules() if owner(name) == "core"} - {"core"}
    assert set(pure) <= core
    # Every core module is named in the docstring, pure or not, so none hides its effects.
    assert [module for module in sorted(core) if f"``{module}``" not in docstring] == []
    reaching = {
        module: sorted(outside_imports_of(PACKAGE / "core" / f"{module}.py") & OUTSIDE_WORLD)
        for module in pure
    }
    assert {module: found for module, found in reaching.items() if found} == {}


def enum_compared_with_text(path: Path) -> list[int]:
    """Return the lines of ``path`` that compare a daemon ``.condition`` with a string literal:
    a renamed member would leave such a comparison silently false."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Compare):
            continue
        operands = (node.left, *node.comparators)
        if any(isinstance(o, ast.Attribute) and o.attr == "condition" for o in operands) and any(
            isinstance(o, ast.Constant) and isinstance(o.value, str) for o in operands
        ):
            lines.append(node.lineno)
    return lines


def test_conditions_are_compared_as_members_not_as_text() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in modules().values()
        for line in enum_compared_with_text(path)
    ]
    assert found == []


def test_the_man_page_generator_is_a_build_script_not_part_of_the_package() -> None:
    assert [name for name in modules() if name.endswith(".manpage")] == []
    assert (ROOT / "scripts" / "manpage.py").is_file()


# -- the checks see what they must ------------------------------------------------------------


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({f"{NAME}.core.a": {f"{NAME}.cli.b"}, f"{NAME}.cli.b": set()}, 1),
        ({f"{NAME}.storage.a": {f"{NAME}.providers.b"}, f"{NAME}.providers.b": set()}, 1),
        ({f"{NAME}.service.a": {f"{NAME}.config.b"}, f"{NAME}.config.b": set()}, 1),
        ({f"{NAME}.api": {f"{NAME}.cli.app"}, f"{NAME}.cli.app": set()}, 1),
        ({f"{NAME}.daemon.a": {f"{NAME}.runtime.b"}, f"{NAME}.runtime.b": set()}, 1),
        ({f"{NAME}.cli.a": {f"{NAME}.core.b"}, f"{NAME}.core.b": set()}, 0),
        ({f"{NAME}.api": {f"{NAME}.runtime.root"}, f"{NAME}.runtime.root": set()}, 0),
    ],
)
def test_the_check_sees_a_forbidden_arrow(edges: dict[str, set[str]], expected: int) -> None:
    assert len(forbidden_arrows(edges)) == expected


def test_the_check_sees_a_cycle() -> None:
    a, b = f"{NAME}.core.a", f"{NAME}.core.b"
    assert cycles({a: {b}, b: {a}}) == [[a, b]]


@pytest.mark.parametrize(
    ("source", "compares"),
    [
        ('if account.provider == "oauth2":\n    pass\n', True),
        ('ok = kind in ("trakt", "other")\n', True),
        ('match kind:\n    case "trakt":\n        pass\n', True),
        ("same = a.provider != b.provider\n", True),
        ('username = "oauth2"\n', False),
        ("if isinstance(settings, OAuth2Settings):\n    pass\n", False),
    ],
)
def test_the_check_sees_a_provider_comparison(source: str, compares: bool, tmp_path: Path) -> None:
    path = tmp_path / "module.py"
    path.write_text(source)
    assert bool(provider_comparisons(path)) is compares


def test_the_docstring_clause_is_read_as_written() -> None:
    assert declared_imports("May import ``core`` and ``config``; never ``cli``.") == {
        "core",
        "config",
    }
    assert declared_imports("Imports: none. May import nothing of the other layers.") == set()


if __name__ == "__main__":  # the table of imports between folders, for notes and reviews
    for here, there in sorted(folder_edges(graph()).items()):
        print(f"{here:12} -> {', '.join(sorted(there))}")
