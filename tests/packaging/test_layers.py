"""The package's layers: every import, function-level and TYPE_CHECKING ones included, points
down a layer or stays in its own, and no module imports itself back through others.

The layers, lowest first (docs/internals.md draws them):

0. ``errors``, ``_extras``, the cffi modules: nothing of commssl's below them;
1. ``_core``: the binding, pointer lifetimes, ownership, the per-context record, the callback
   runner, argument checks;
2. ``config``: the LispWorks-shaped configuration functions and the certificates;
3. ``io``: the state machine, the sans-IO pipe, the handshake checks, the connection accessors;
4. front ends: ``streams``, ``aio``, ``anyio``, ``httpx``;
5. ``cli`` and ``serve``;
6. the package itself (``__init__``, ``__main__``): the re-exports.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import commssl

PACKAGE = Path(commssl.__file__).parent
LIMIT = 400

LAYERS: Tuple[Tuple[int, Tuple[str, ...]], ...] = (
    (0, ("commssl.errors", "commssl._extras", "commssl._openssl", "commssl._demo")),
    (1, ("commssl._core",)),
    (2, ("commssl.config",)),
    (3, ("commssl.io",)),
    (4, ("commssl.streams", "commssl.aio", "commssl.anyio", "commssl._anyio", "commssl.httpx",
         "commssl._socket_stream", "commssl._httpx_network", "commssl._httpx_asyncio")),
    (5, ("commssl.cli", "commssl.serve")),
    (6, ("commssl", "commssl.__main__")),
)


def layer(module: str) -> int:
    best = (-1, -1)  # (prefix length, layer): the longest matching prefix decides
    for number, prefixes in LAYERS:
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + ".") or (
                    prefix.endswith(("_anyio",)) and module.startswith(prefix)):
                best = max(best, (len(prefix), number))
    assert best[1] >= 0, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def modules() -> Dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    for path in sorted(PACKAGE.glob("_*.*so")) + sorted(PACKAGE.glob("_*.pyd")):
        found.setdefault(f"commssl.{path.name.split('.')[0]}", path)  # the cffi modules
    return found


def imports(module: str, path: Path, known: Set[str]) -> List[Tuple[str, int]]:
    """The commssl modules ``module`` imports, each with the line that imports it."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            # `from commssl.x import y` imports commssl.x.y when y is a module, else commssl.x
            names = [f"{parent}.{alias.name}" if f"{parent}.{alias.name}" in known else parent
                     for alias in node.names]
        else:
            continue
        for name in names:
            if name == "commssl" or name.startswith("commssl."):
                while name not in known and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name != module:
                    out.append((name, node.lineno))
    return out


def test_every_module_is_in_a_layer() -> None:
    for module in modules():
        layer(module)


def test_imports_point_down_a_layer_or_stay_level() -> None:
    found = modules()
    up = []
    for module, path in found.items():
        if path.suffix != ".py":
            continue
        mine = layer(module)
        for target, line in sorted(set(imports(module, path, set(found)))):
            if target == "commssl" and module == "commssl.__main__":
                continue
            if layer(target) > mine:
                up.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} (layer {mine}) "
                          f"imports {target} (layer {layer(target)})")
    assert not up, "imports that point up a layer:\n" + "\n".join(up)


def test_no_import_cycles() -> None:
    found = modules()
    graph = {m: sorted({t for t, _ in imports(m, p, set(found)) if t != m}) if p.suffix == ".py" else []
             for m, p in found.items()}
    # a package's __init__ re-exporting its own modules is not a cycle with them
    for m in graph:
        graph[m] = [t for t in graph[m] if not (m.startswith(t + ".") and t != "commssl")]
    cycles = []
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(" <-> ".join(sorted(component)))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_past_the_limit() -> None:
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > LIMIT}
    assert not long, f"modules over {LIMIT} lines: {long}"
