"""The package's shape: no import cycles, the CLI is a leaf, stage packages are UI-free."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PKG = Path(__file__).resolve().parents[1] / "mmner_data"
UI_MODULES = ("typer", "rich", "click")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (module level and inside functions), fully qualified."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = _module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def _graph() -> tuple[nx.DiGraph, dict[str, set[str]]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = nx.DiGraph()
    raw: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph.add_node(name)
        raw[name] = _imports(path)
        for imp in raw[name]:
            if imp in modules and imp != name:
                graph.add_edge(name, imp)
    return graph, raw


def _is_stage_module(name: str) -> bool:
    return not (name == "mmner_data.cli" or name.startswith("mmner_data.cli."))


def test_no_import_cycles():
    graph, _ = _graph()
    # a package's __init__ re-exporting its own submodule is not a cycle between modules
    cycles = [
        c
        for c in nx.simple_cycles(graph)
        if len(c) > 1
        and not any(a.startswith(b + ".") or b.startswith(a + ".") for a in c for b in c if a != b)
    ]
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_stage_packages_never_import_the_cli_or_a_ui_library():
    _, raw = _graph()
    offenders = {
        name: sorted(
            imp
            for imp in imports
            if imp.split(".")[0] in UI_MODULES
            or imp == "mmner_data.cli"
            or imp.startswith("mmner_data.cli.")
        )
        for name, imports in raw.items()
        if _is_stage_module(name)
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"stage modules importing typer/rich/the cli: {offenders}"


def test_the_checker_sees_a_cycle_and_a_ui_import(tmp_path, monkeypatch):
    """The checks above can fail: a planted cycle and a planted rich import are found."""
    import tests.test_architecture as me

    pkg = tmp_path / "mmner_data"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("from mmner_data.a import y\nimport rich\n")
    (pkg / "a" / "y.py").write_text("from mmner_data.a.x import thing\n")
    monkeypatch.setattr(me, "PKG", pkg)
    with pytest.raises(AssertionError, match="import cycles"):
        me.test_no_import_cycles()
    with pytest.raises(AssertionError, match="rich"):
        me.test_stage_packages_never_import_the_cli_or_a_ui_library()


@pytest.mark.parametrize(
    "name",
    ["collect", "filter", "preannotate", "annotate-push", "annotate-pull", "agreement", "export"],
)
def test_every_registered_stage_follows_the_contract(name):
    from mmner_data.pipeline import load_stage

    stage = load_stage(name)
    for attr in ("SECTION", "settings", "configured", "run"):
        assert hasattr(stage, attr), f"{name} lacks {attr}"
    assert getattr(stage, "NAME", name) == name
