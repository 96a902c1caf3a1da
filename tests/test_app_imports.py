"""Imports point one way: ``feedback_site`` may import the apps, no app imports ``feedback_site``.

Apps queue work with ``.delay()`` on their shared tasks; whether that means a
broker, an eager run or a thread is the Celery app's configuration.  The check
reads every module's source (function-level imports included), so an import
that only runs on some path is caught too.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("annotations", "rlhf", "editing")


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_no_app_module_imports_the_site_package():
    modules = [p for app in APPS for p in (ROOT / app).rglob("*.py")]
    assert len(modules) > 40  # the walk really reached the apps
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in modules
        for line, name in _imported_modules(path)
        if name == "feedback_site" or name.startswith("feedback_site.")
    ]
    assert offenders == []
