"""mypy's reach over the runner (``make lint``): [tool.mypy] files lists every runner module that imports
nothing beyond the standard library and the runner's own such modules, and no other (mypy would follow one
into torch)."""

import ast
import sys
from pathlib import Path
from typing import Dict, Iterator, Set

import tomllib

REPO = Path(__file__).resolve().parent.parent
RUNNER = "runner_in_container"


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (never run, and mypy knows them)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        yield node
        yield from _nodes(node)


def _imports(path: Path) -> Set[str]:
    """The absolute names ``path`` imports anywhere (a function's import too), with each ``from`` target."""
    module = _module(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: Set[str] = set()
    for node in _nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found.update(base + "." + alias.name for alias in node.names)  # ``from . import protocol``
    return found


def _parents(module: str) -> Set[str]:
    """The packages that importing ``module`` runs first (their ``__init__``)."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def torch_free_runner_modules() -> Set[str]:
    """The runner's modules that need, also through the runner modules and packages they import, only the
    standard library: files relative to the repository."""
    paths = {_module(p): p for p in sorted((REPO / RUNNER).rglob("*.py"))}
    needs: Dict[str, Set[str]] = {}
    heavy: Set[str] = set()
    for module, path in paths.items():
        needs[module] = set(_parents(module))
        for name in _imports(path):
            top = name.split(".")[0]
            if top == RUNNER:
                needs[module].update(n for n in {name} | _parents(name) if n in paths)
            elif top not in sys.stdlib_module_names:
                heavy.add(module)
    grew = True
    while grew:
        more = {m for m, used in needs.items() if m not in heavy and used & heavy}
        heavy |= more
        grew = bool(more)
    return {paths[m].relative_to(REPO).as_posix() for m in paths if m not in heavy}


def test_mypy_checks_every_torch_free_runner_module() -> None:
    files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    listed = {f for f in files if f.startswith(RUNNER + "/")}
    free = torch_free_runner_modules()
    assert "runner_in_container/contract.py" in free and "runner_in_container/run.py" not in free
    assert not free - listed, "torch-free, add to [tool.mypy] files: %s" % sorted(free - listed)
    assert not listed - free, "imports beyond the standard library, not for mypy: %s" % sorted(listed - free)
