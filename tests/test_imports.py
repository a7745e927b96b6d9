"""The package's import graph has no cycle, counting imports inside functions (lazy imports)."""

import ast
from pathlib import Path

import pytest

import backprop

ROOT = Path(backprop.__file__).parent


def _modules():
    """{dotted name: path} for every module of the package."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path, modules):
    """The package's modules that the module at ``path`` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def _cycles(graph):
    """The import cycles: every strongly connected component of more than one module, as a
    sorted tuple (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def test_the_package_has_no_import_cycle_lazy_imports_included():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert _cycles(graph) == []


@pytest.mark.parametrize("primitives", ["backprop.ops", "backprop.shape_ops", "backprop.loss_ops"])
def test_the_primitives_do_not_import_tensor(primitives):
    modules = _modules()
    assert "backprop.tensor" not in _imports(modules[primitives], modules)
    assert "backprop.ops" in _imports(modules["backprop.tensor"], modules)


def test_the_cycle_finder_finds_every_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert _cycles(graph) == [("a", "b", "c"), ("d", "e")]


HOST_SIDE = ("backprop.io", "backprop.datasets", "backprop.pipeline", "backprop.plots", "backprop.explain", "backprop.cli", "backprop.sklearn")
DEVICE_SIDE = ("backprop.tensor", "backprop.ops", "backprop.shape_ops", "backprop.loss_ops", "backprop.compile", "backprop.backend", "backprop.nn", "backprop.optim", "backprop.data", "backprop.metrics", "backprop.gradcheck", "backprop.training", "backprop.random", "backprop.checks")


def _within(name, packages):
    return any(name == package or name.startswith(package + ".") for package in packages)


def test_device_side_modules_never_import_host_side_ones():
    modules = _modules()
    device = [name for name in modules if _within(name, DEVICE_SIDE)]
    assert "backprop.ops" in device and "backprop.datasets" not in device
    for name in device:
        assert not [m for m in _imports(modules[name], modules) if _within(m, HOST_SIDE)], name
