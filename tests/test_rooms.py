"""The house's rule, kept: a room imports only the rooms drawn above it.

``docs/architecture.md`` draws the rooms in this order; an import the other way is a
cycle waiting to happen and a room that knows more than it should. Imports under
``if TYPE_CHECKING:`` are types only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import flamel_usage

PACKAGE = Path(flamel_usage.__file__).parent

#: Top to bottom. A module belongs to the longest entry its name starts with: the
#: webhooks' outbox (``events``, and ``signing`` for its message ids) sits above the
#: ledger, which writes alerts in the transaction of each change of balance, while the
#: rest of ``webhooks`` (the dispatcher reads usage) sits below ``metering``. The SDK
#: (``client``) imports nothing of the service; the terminal (``cli``) speaks through it.
ROOMS = (
    "core",
    "db",
    "accounts",
    "auth",
    "webhooks.signing",
    "webhooks.events",
    "ledger",
    "metering",
    "webhooks",
    "http",
    "client",
    "cli",
)


def _room(module: str) -> int | None:
    """The rank of ``module`` (``flamel_usage.`` stripped), or None outside the rooms."""
    found = [room for room in ROOMS if module == room or module.startswith(room + ".")]
    return ROOMS.index(max(found, key=len)) if found else None


def _run_time_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, module)`` of each ``flamel_usage`` import outside ``if TYPE_CHECKING:``."""
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            # ``from flamel_usage.ledger import purchases`` imports the module it names.
            module = next((name for name in reversed(names) if _is_module(name)), node.module)
            found.append((node.lineno, module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, module) for line, module in found if module.startswith("flamel_usage.")]


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_every_module_is_in_a_room() -> None:
    outside = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if len(path.relative_to(PACKAGE).parts) > 1
        and _room(".".join(path.relative_to(PACKAGE).with_suffix("").parts)) is None
    ]
    assert outside == []


def test_rooms_import_only_rooms_above_them() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        rank = _room(own)
        if rank is None:  # the package's own entry points (``__main__``)
            continue
        for line, module in _run_time_imports(ast.parse(path.read_text(encoding="utf-8"))):
            target = _room(module.removeprefix("flamel_usage."))
            if target is not None and target > rank:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert upward == []
