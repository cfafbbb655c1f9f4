"""Option types shared by every command module (``cli.py`` and each stage's ``command.py``).

Kept apart from ``cli.py`` so that stage command modules, which ``cli.py`` imports to register
them, can use the same options at import time without a circular import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def recipe_option(section: str) -> Any:
    """``--recipe/-r``, saying which section of the recipe gives the command's defaults."""
    return Annotated[
        Path,
        typer.Option(
            "--recipe", "-r", help=f"Recipe YAML; its `{section}:` section gives the defaults."
        ),
    ]


StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Corpus store folder; overrides the recipe's `store`."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print a machine-readable JSON summary on stdout.")
]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
