"""The shape of the code, read from its imports: one-way dependencies, no circles, no hidden imports.

Every import statement of the project's packages counts, at module level or inside a
function, so an import that only runs on some path is caught too (see
``shared/ARCHITECTURE.md`` and ``docs/ARCHITECTURE.md``).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("annotations", "rlhf", "editing", "feedback_site")
HEAVY = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")
           if "migrations" not in p.parts}


def _imports(name: str) -> list[tuple[int, str, bool]]:
    """(line, imported module, inside a function) for every import of module ``name``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    # "from pkg import module" imports the module; "from module import name" the module.
                    target = f"{base}.{alias.name}"
                    found.append((child.lineno, target if target in MODULES else base, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def _project_graph() -> dict[str, set[str]]:
    return {name: {target for _, target, _ in _imports(name) if target in MODULES and target != name}
            for name in MODULES}


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import each other, directly or around a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return groups


def test_the_walk_reaches_every_room():
    assert len(MODULES) > 80
    for room in ("rlhf.learning.policy", "rlhf.cycle.steps", "rlhf.retarget.services", "rlhf.evidence.evaluation",
                 "annotations.dispatch", "rlhf.dispatch", "editing.spaces"):
        assert room in MODULES


def test_no_import_circle_anywhere():
    circles = [group for group in _strongly_connected(_project_graph()) if len(group) > 1]
    assert circles == [], "modules that import each other: " + "; ".join(" <-> ".join(g) for g in circles)


def test_the_circle_check_finds_a_circle():
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"], ["d"]]


def _offenders(rule) -> list[str]:
    return [f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}"
            for name in MODULES for line, target, in_function in _imports(name) if rule(name, target, in_function)]


def _under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_imports_point_one_way():
    # editing imports neither app; annotations never imports rlhf; no app imports the site package.
    assert _offenders(lambda name, target, _: _under(name, "editing") and _under(target, "annotations", "rlhf")) == []
    assert _offenders(lambda name, target, _: _under(name, "annotations") and _under(target, "rlhf")) == []
    assert _offenders(lambda name, target, _: _under(name, "annotations", "rlhf", "editing")
                      and _under(target, "feedback_site")) == []


def test_pure_rooms_import_neither_django_nor_the_apps():
    pure = ("editing", "rlhf.learning")
    assert _offenders(lambda name, target, _: _under(name, *pure)
                      and _under(target, "django", "rest_framework", "celery", "annotations", "feedback_site")) == []
    assert _offenders(lambda name, target, _: _under(name, "rlhf.learning") and _under(target, "rlhf")
                      and not _under(target, "rlhf.learning")) == []


def test_no_learning_library_is_imported_inside_a_function():
    # The site stays free of torch because the modules it loads do not import the torch ones,
    # not because an import hides inside a function.
    learning = (*HEAVY, "rlhf.learning", "rlhf.cycle.steps", "rlhf.cycle.reward_services",
                "rlhf.cycle.policy_services", "rlhf.retarget.run", "rlhf.evidence", "rlhf.tasks")
    assert _offenders(lambda name, target, in_function: in_function and _under(target, *learning)) == []


def test_services_never_import_the_task_modules():
    # Work is queued by name through the dispatch modules, so tasks can import services freely.
    tasks = ("annotations.tasks", "rlhf.tasks")
    assert _offenders(lambda name, target, _: _under(target, *tasks) and name not in tasks) == []
