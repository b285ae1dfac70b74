"""The test suite's own layout: helpers live in helper modules (`tests/helpers*.py`,
`fake_upstream.py`, `pg.py`, ...), fixtures in `conftest.py`; no module imports a test module
or `conftest`, so a test module can be moved or deleted without breaking another.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _forbidden(module: str) -> bool:
    """A test module (`tests.test_x`, `tests.sub.test_x`) or a conftest."""
    last = module.rsplit(".", 1)[-1]
    return module.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def imported_test_modules(source: str, path: Path) -> list[str]:
    """The test modules and conftests `source` (the file at `path`) imports, at any depth."""
    package = ".".join(path.relative_to(TESTS.parent).parent.parts)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if _forbidden(module):
                found.append(module)
            found += [f"{module}.{a.name}" for a in node.names
                      if _forbidden(f"{module}.{a.name}")]  # `from tests import test_x`
    return found


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    offenders = {}
    for path in sorted(TESTS.rglob("*.py")):
        found = imported_test_modules(path.read_text(encoding="utf-8"), path)
        if found:
            offenders[str(path.relative_to(TESTS.parent))] = found
    assert offenders == {}, f"move what these share into a tests/helpers*.py module: {offenders}"


def test_the_check_sees_every_way_of_importing_a_test_module() -> None:
    path = TESTS / "test_example.py"
    for source in ("from tests.test_routing import add_task", "import tests.test_routing",
                   "from tests import test_routing", "from .test_routing import add_task",
                   "from tests.conftest import keys", "def f():\n    from . import conftest",
                   "from tests.container.test_x import y"):
        assert imported_test_modules(source, path), source
    for source in ("from tests.helpers import add_task", "from tests.pg import store_table",
                   "from . import helpers_students", "import tests.fake_upstream"):
        assert imported_test_modules(source, path) == [], source
