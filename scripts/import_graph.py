"""The package's import graph, read from the source (every import, function-level ones included; those under
`if TYPE_CHECKING:` too): its circles, and the imports that run against the flow of data.

    python scripts/import_graph.py            folders, module and import counts, circles, imports against the flow
    python scripts/import_graph.py --edges    every import, one a line

The stage folders, in the order data flows (FLOW), may import core/ and the folders before them, never a later
one, not even through engines/ (checked on the transitive closure). consume/ and fixtures/ sit beside the flow:
no stage imports them. tests/vs_sonar_dataset/test_layout.py holds the package to these rules.
"""

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "vs_sonar_dataset"
FLOW = ("core", "encoders", "sources", "embed", "dedup", "build", "model_check", "verify", "card")
SIDES = ("engines", "consume", "fixtures")  # how stages run; reading releases; models and data made locally


def module_names(root: Path) -> dict[str, Path]:
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports (a name imported from a module counts as that module)."""
    modules = module_names(root)
    edges = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges[name].add(target)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def folder(module: str) -> str:
    """The module's folder under the package, or "" for the package's top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in FLOW + SIDES) else ""


def against_the_flow(edges: dict[str, set[str]]) -> list[tuple[str, str, str]]:
    """(module, what it reaches, how) for each stage-folder module that reaches, directly or through other
    modules, a later stage folder, consume/, fixtures/ or a top-level module (the package itself is allowed:
    it only names the version and the public API, which it imports on first use)."""
    found = []
    for module in edges:
        here = folder(module)
        if here not in FLOW:
            continue
        seen, todo, via = {module}, [module], {}
        while todo:
            current = todo.pop()
            for target in edges[current]:
                if target not in seen:
                    seen.add(target)
                    via[target] = current
                    todo.append(target)
        for target in sorted(seen - {module, PACKAGE}):
            there = folder(target)
            later = there in FLOW and FLOW.index(there) > FLOW.index(here)
            if later or there in ("consume", "fixtures") or there == "":
                path, step = [target], target
                while via[step] != module:
                    step = via[step]
                    path.append(step)
                found.append((module, target, " <- ".join(path)))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1] / PACKAGE))
    parser.add_argument("--edges", action="store_true", help="print every import")
    args = parser.parse_args(argv)
    edges = graph(Path(args.root))
    if args.edges:
        for module in sorted(edges):
            for target in sorted(edges[module]):
                print(f"{module} -> {target}")
        return 0
    folders = {}
    for module in edges:
        folders.setdefault(folder(module) or "(top)", []).append(module)
    for name in ["(top)", *FLOW, *SIDES, *sorted(set(folders) - {"(top)", *FLOW, *SIDES})]:
        if name in folders:
            print(f"{name:12} {len(folders[name]):3} modules")
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports")
    found_circles, backwards = circles(edges), against_the_flow(edges)
    for circle in found_circles:
        print("circle:", " <-> ".join(circle))
    for module, target, path in backwards:
        print(f"against the flow: {module} reaches {target} ({path})")
    print(f"{len(found_circles)} circles, {len(backwards)} imports against the flow")
    return 1 if found_circles or backwards else 0


if __name__ == "__main__":
    sys.exit(main())
