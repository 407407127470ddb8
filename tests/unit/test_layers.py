"""The layers import downwards only: config < instructors < actors < report < cluster (docs: STYLE,
README). `report` reads finished runs through `actors.core`; the CLI in `cluster` registers it.

Every import statement counts, also those inside functions, since a lazy upward import is still a
cycle in the design. A lower layer that needs something from a higher one gets it registered or
passed in (as the categories register their options models in `config.params`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ABOVE = {
    "prompts": ("config", "instructors", "actors", "report", "cluster"),
    "config": ("instructors", "actors", "report", "cluster"),
    "instructors": ("actors", "report", "cluster"),
    "actors": ("report", "cluster"),
    "report": ("cluster",),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("layer", sorted(ABOVE))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    banned = tuple(f"instructflow.{name}" for name in ABOVE[layer])
    upward = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in sorted((REPO / layer).rglob("*.py"))
        for line, module in _imports(path)
        if module in banned or module.startswith(tuple(f"{b}." for b in banned))
    ]
    assert not upward, f"{layer}/ imports a higher layer:\n" + "\n".join(upward)
