"""The ``mmner-data annotate push|pull`` commands (registered by ``mmner_data.cli``)."""

from __future__ import annotations

import typer

annotate_app = typer.Typer(
    help="Label Studio: push tasks (with pre-annotations), pull annotations.",
    no_args_is_help=True,
)
