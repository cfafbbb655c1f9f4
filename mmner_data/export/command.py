"""The ``mmner-data export|run|stats`` commands (registered by ``mmner_data.cli``)."""

from __future__ import annotations


def export_command() -> None:
    """Export the dataset (not implemented yet)."""
    raise SystemExit("export: not implemented yet")


def run_command() -> None:
    """Run every stage in order (not implemented yet)."""
    raise SystemExit("run: not implemented yet")


def stats_command() -> None:
    """Counts per stage, language and reason (not implemented yet)."""
    raise SystemExit("stats: not implemented yet")
