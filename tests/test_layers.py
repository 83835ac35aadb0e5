"""
The layers of shared/design.md are the shape of the package, and imports go
one way through them: edges (web, control, ctl) -> protocol -> state ->
event log, with services beside. Every import counts, function-local and
TYPE_CHECKING ones too.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "oauthd"

ALLOWED: dict[str, frozenset[str]] = {
    # A module's layer -> the layers it may import (its own included).
    "interfaces": frozenset(),
    "locations": frozenset(),
    "eventlog": frozenset({"eventlog", "interfaces"}),
    "state": frozenset({"state", "eventlog", "interfaces"}),
    "services": frozenset({"services", "eventlog", "interfaces"}),
    "protocol": frozenset({"protocol", "state", "interfaces", "config", "version"}),
    "web": frozenset({"web", "protocol", "state", "interfaces", "config"}),
    "control": frozenset({"control", "wire", "protocol", "state", "eventlog", "interfaces", "config", "version"}),
    "wire": frozenset({"locations"}),
    "ctl": frozenset({"ctl", "wire", "version"}),
    "config": frozenset({"locations"}),
    "testing": frozenset({"testing", "protocol", "state", "eventlog", "services", "interfaces", "config"}),
    "tap": frozenset({"tap", "web", "control", "wire", "protocol", "state", "eventlog", "services",
                      "interfaces", "config", "locations", "version", "reload", "opening"}),
    "opening": frozenset({"opening", "eventlog", "interfaces", "config"}),
    # Puts a reloaded configuration into the objects that hold it.
    "reload": frozenset({"reload", "web", "protocol", "state", "services", "interfaces", "config"}),
    "version": frozenset(),
}

CTL_THIRD_PARTY = (
    "attrs", "twisted.protocols.amp", "twisted.internet.error", "twisted.internet.address",
    "twisted.python.failure", "segno",
)
"""
What oauthctl may import besides the standard library and the wire schema:
it must start fast, without loading the daemon. (segno draws the QR code of
C{users 2fa enable}, imported by that command alone.)
"""


def layer(module: str) -> str:
    """
    The layer of an oauthd module (dotted name).
    """
    parts = module.split(".")
    if parts == ["oauthd"]:
        return "version"
    if parts[:3] == ["oauthd", "control", "wire"]:
        return "wire"
    return parts[1]


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def imports(path: Path) -> Iterator[str]:
    """
    Every module C{path} imports, anywhere in it.
    """
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, f"{path}: a relative import"
            # "from oauthd.protocol import errors" imports the module
            # oauthd.protocol.errors (the package's own imports are checked
            # as the package's); "from oauthd.protocol.errors import deny"
            # imports oauthd.protocol.errors.
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            submodules = [name for name in submodules if known(name)]
            yield from submodules or [node.module]


def known(name: str) -> bool:
    return name == "oauthd" or (name.startswith("oauthd.") and (
        (PACKAGE.parent / (name.replace(".", "/") + ".py")).exists()
        or (PACKAGE.parent / name.replace(".", "/")).is_dir()
    ))


ALL = list(modules())


@pytest.mark.parametrize("module,path", ALL, ids=[m for m, _ in ALL])
def test_imports_go_one_way(module: str, path: Path) -> None:
    allowed = ALLOWED[layer(module)]
    wrong = sorted({
        name for name in imports(path)
        if known(name) and layer(name) not in allowed and layer(name) != layer(module)
    })
    assert wrong == [], f"{module} ({layer(module)}) imports {wrong}"


@pytest.mark.parametrize("module,path", [(m, p) for m, p in ALL if layer(m) in ("ctl", "wire")],
                         ids=[m for m, _ in ALL if layer(m) in ("ctl", "wire")])
def test_oauthctl_imports_only_the_wire_schema_stdlib_attrs_and_amp(module: str, path: Path) -> None:
    others = sorted({
        name for name in imports(path)
        if not name.startswith("oauthd") and name.split(".")[0] not in sys.stdlib_module_names
        and not name.startswith(CTL_THIRD_PARTY) and name != "__future__"
    })
    # "from twisted.protocols import amp" names the package and the module.
    others = [name for name in others if f"{name}." not in "".join(f"{n}." for n in CTL_THIRD_PARTY)]
    assert others == [], f"{module} imports {others}"


def test_sizes() -> None:
    """
    No module over 500 lines; no class with more than 20 public methods.
    """
    too_long = []
    too_wide = []
    for module, path in ALL:
        text = path.read_text()
        if text.count("\n") > 500:
            too_long.append(module)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                public = [
                    item.name for item in node.body
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and not item.name.startswith("_")
                ]
                if len(public) > 20:
                    too_wide.append(f"{module}.{node.name} ({len(public)})")
    assert (too_long, too_wide) == ([], [])


def test_every_module_has_a_layer() -> None:
    assert sorted({layer(m) for m, _ in ALL} - set(ALLOWED)) == []


def test_setup_cfg_lists_every_package() -> None:
    """
    setup.cfg names the packages by hand (twisted/plugins has no
    __init__.py, so it cannot be found); a package missing there is missing
    from every installed daemon.
    """
    import configparser

    config = configparser.ConfigParser()
    config.read(PACKAGE.parent / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {module for module, path in ALL if path.name == "__init__.py"}
    assert sorted(found - listed) == []


@pytest.mark.parametrize("lower", ["protocol", "state", "eventlog", "services"])
def test_the_layers_below_the_edges_load_no_edge(lower: str) -> None:
    """
    What the layer rules say of direct imports holds for everything a layer
    below the edges loads, however indirectly: no edge, no Klein, no AMP.
    """
    import subprocess

    modules = sorted(m for m, _ in ALL if layer(m) == lower)
    script = f"import sys; import {', '.join(modules)}; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True,
        cwd=PACKAGE.parent,
    ).stdout.split()
    edges = [m for m in loaded if m.startswith(("oauthd.web", "oauthd.control", "oauthd.ctl", "klein",
                                                "twisted.protocols.amp"))]
    assert edges == []
