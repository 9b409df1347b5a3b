"""The dependency rules of DESIGN.md and STYLE.md §2, checked on the source.

Parsing imports with ``ast`` keeps the check free of extra tools: each rule names
which packages may import what, and a violation names the file and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = ("hub", "node_agent", "slicer_bridge")

# Third-party adapters and the modules that may use each (prefix match on the module name).
ADAPTER_OWNERS: dict[str, tuple[str, ...]] = {
    "grpc": ("hub.api", "hub.client", "hub.__main__", "node_agent.hub_client", "node_agent.__main__"),
    "spimeforge": ("hub.api", "hub.client", "node_agent.hub_client"),
    "sqlalchemy": ("hub.store",),
    "alembic": ("hub.store",),
    "psycopg": ("hub.store",),
    "serial": ("node_agent.drivers.serial", "node_agent.testing", "node_agent.cli"),
    "octoprint_client": ("node_agent.drivers.octoprint",),
    "octoprint": ("node_agent.drivers.octoprint",),
    "boto3": ("hub.store.s3blobs",),
    "botocore": ("hub.store.s3blobs",),
}

# Pure cores: no sockets, serial ports, subprocesses, databases or gRPC.
PURE_MODULES = (
    "hub.domain",
    "hub.errors",
    "hub.licenses",
    "hub.provenance",
    "hub.jobs",
    "hub.scheduler",
    "hub.keys",
    "hub.bundle",
    "hub.manifest",
    "hub.paths",
    "hub.exports",
    "hub.limits",
    "hub.orders",
    "hub.ledger",
    "hub.ratings",
    "hub.quotes",
    "hub.geo",
    "hub.grants",
    "node_agent.protocol",
    "node_agent.busy",
    "node_agent.backoff",
    "node_agent.events",
    "node_agent.safety",
    "node_agent.gcode",
    "node_agent.jobs",
    "node_agent.messages",
    "slicer_bridge.base",
)
IMPURE_IMPORTS = (
    "socket", "subprocess", "sqlite3", "asyncio", "serial", "grpc", "sqlalchemy", "psycopg",
    "requests", "octoprint_client", "spimeforge", "urllib.request", "http.client",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _source_modules() -> dict[str, set[str]]:
    modules = {}
    for package in PRODUCT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts and "versions" in path.parts:
                continue
            modules[_module_name(path)] = _imports(path)
    return modules


MODULES = _source_modules()


def _top(name: str) -> str:
    return name.split(".")[0]


def _is_within(module: str, owners: tuple[str, ...]) -> bool:
    return any(module == o or module.startswith(o + ".") for o in owners)


def test_there_is_code_to_check() -> None:
    assert {_top(m) for m in MODULES} == set(PRODUCT_PACKAGES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_hub_and_node_agent_are_independent(module: str) -> None:
    forbidden = {"hub": "node_agent", "node_agent": "hub"}.get(_top(module))
    bad = sorted(i for i in MODULES[module] if forbidden and _top(i) == forbidden)
    assert not bad, f"{module} imports {bad}: hub and node_agent share only the proto package"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("slicer_bridge")))
def test_slicer_bridge_imports_nothing_of_ours(module: str) -> None:
    bad = sorted(i for i in MODULES[module] if _top(i) in {"hub", "node_agent", "spimeforge", "tests"})
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_adapters_are_imported_only_by_their_owners(module: str) -> None:
    bad = sorted(
        i for i in MODULES[module]
        if _top(i) in ADAPTER_OWNERS and not _is_within(module, ADAPTER_OWNERS[_top(i)])
    )
    assert not bad, f"{module} imports {bad}; only {[ADAPTER_OWNERS[_top(b)] for b in bad]} may"


@pytest.mark.parametrize("module", [m for m in PURE_MODULES if m in MODULES])
def test_pure_modules_do_no_io(module: str) -> None:
    bad = sorted(i for i in MODULES[module] if _is_within(i, IMPURE_IMPORTS) or _top(i) in IMPURE_IMPORTS)
    assert not bad, f"{module} is a pure core but imports {bad}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_nothing_imports_tests(module: str) -> None:
    assert not any(_top(i) == "tests" for i in MODULES[module])
