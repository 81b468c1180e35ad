"""The layering of design.md Part 2, checked from the source: arrows point down only, no cycles.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a deferred
import is still a dependency a reader must know about.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tvmaniac_refreshd"
NAME = "tvmaniac_refreshd"
# Lower numbers sit lower. Folders of the same rank may not import each other.
RANKS = {
    "core": 0,
    "config": 1,
    "providers": 2,
    "storage": 2,
    "daemon": 3,
    "service": 3,
    "runtime": 4,
    "cli": 5,
}
TOP = 6  # entry.py, quick_token.py, api.py, __main__.py, __init__.py


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


def folder(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RANKS) else None


def rank(module: str) -> int:
    if module == NAME:
        return -1  # the package's face holds only metadata (__version__); see the test below
    top = folder(module)
    return RANKS[top] if top else TOP


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, set(known)) - {name} for name, path in known.items()}


def upward_arrows(edges: dict[str, set[str]]) -> list[str]:
    wrong = []
    for source, targets in edges.items():
        for target in targets:
            same_folder = folder(source) is not None and folder(source) == folder(target)
            if same_folder or (folder(target) is None and rank(source) == TOP):
                continue
            # A folder's face (its __init__) may import its own modules; the rest go down.
            if rank(target) >= rank(source) and not same_folder:
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


def test_every_module_lives_in_a_layer_folder_or_is_an_entry_point() -> None:
    loose = {
        name
        for name in modules()
        if folder(name) is None
        and name
        not in {
            NAME,
            f"{NAME}.__main__",
            f"{NAME}.entry",
            f"{NAME}.quick_token",
            # The Python API: a face for programs, as entry.py is for shells. Not in __init__,
            # which must stay free of imports so that `import tvmaniac_refreshd` costs nothing.
            f"{NAME}.api",
            *(f"{NAME}.{layer}" for layer in RANKS),
        }
    }
    assert loose == set()


def test_the_package_face_imports_nothing_of_its_own() -> None:
    assert graph()[NAME] == set()


def test_arrows_point_down_only() -> None:
    assert upward_arrows(graph()) == []


def test_there_are_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_every_folder_says_what_lives_there_and_what_it_may_import() -> None:
    for layer in RANKS:
        docstring = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert docstring, layer
        assert "import" in docstring.lower(), layer


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({f"{NAME}.core.a": {f"{NAME}.cli.b"}, f"{NAME}.cli.b": set()}, 1),
        ({f"{NAME}.storage.a": {f"{NAME}.providers.b"}, f"{NAME}.providers.b": set()}, 1),
        ({f"{NAME}.cli.a": {f"{NAME}.core.b"}, f"{NAME}.core.b": set()}, 0),
    ],
)
def test_the_check_sees_an_upward_or_sideways_arrow(
    edges: dict[str, set[str]], expected: int
) -> None:
    assert len(upward_arrows(edges)) == expected


def test_the_check_sees_a_cycle() -> None:
    a, b = f"{NAME}.core.a", f"{NAME}.core.b"
    assert cycles({a: {b}, b: {a}}) == [[a, b]]
