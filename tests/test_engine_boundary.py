"""The engine stands alone: nothing under include/starmamut imports the dev tooling (starmamut_devtools), which the
Docker image does not contain. Read from the source (every import statement, at any depth, lazy ones included),
then proven by importing every engine module in a Python that cannot import the dev tooling. And the sandbox's own
modules import one way (no circle, not even one only a type checker follows)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

ENGINE = REPO_ROOT / "include" / "starmamut"
DEVTOOLS = "starmamut_devtools"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in {
            "import_module",
            "__import__",
        }:
            names.update(arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant))
    return names


def test_no_engine_module_imports_the_dev_tooling() -> None:
    sources = sorted(ENGINE.rglob("*.py"))
    assert len(sources) > 20
    offending = {
        str(path.relative_to(REPO_ROOT)): sorted(
            name for name in imported_modules(path) if name == DEVTOOLS or name.startswith(f"{DEVTOOLS}.")
        )
        for path in sources
    }
    assert {path: names for path, names in offending.items() if names} == {}


def test_the_engine_has_no_sandbox_or_mock() -> None:
    assert not (ENGINE / "sandbox").exists()
    assert not (ENGINE / "mamut" / "mock.py").exists()


def test_every_engine_module_imports_without_the_dev_tooling() -> None:
    modules = sorted(
        ".".join(path.relative_to(ENGINE.parent).with_suffix("").parts)
        for path in ENGINE.rglob("*.py")
        if path.name != "__main__.py" and "migrations" not in path.parts
    )
    # A meta path finder that refuses starmamut_devtools, whatever sys.path or the editable install say.
    script = (
        "import importlib, sys\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {DEVTOOLS!r} or name.startswith({DEVTOOLS + '.'!r}):\n"
        "            raise ImportError('dev tooling imported by the engine: ' + name)\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "include")}
    result = subprocess.run(
        [sys.executable, "-c", script, *modules], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_sandbox_modules_import_one_way() -> None:
    package = REPO_ROOT / "devtools" / "starmamut_devtools" / "sandbox"
    prefix = "starmamut_devtools.sandbox."
    graph = {
        path.stem: {
            name.removeprefix(prefix).split(".")[0] for name in imported_modules(path) if name.startswith(prefix)
        }
        for path in package.glob("*.py")
        if path.stem not in {"__init__", "__main__"}
    }
    assert "state" in graph and "seeds" in graph

    def circle_from(module: str, trail: tuple[str, ...]) -> tuple[str, ...] | None:
        if module in trail:
            return (*trail[trail.index(module) :], module)
        for imported in sorted(graph.get(module, ())):
            found = circle_from(imported, (*trail, module))
            if found:
                return found
        return None

    circles = {module: circle_from(module, ()) for module in graph}
    assert {module: circle for module, circle in circles.items() if circle} == {}
