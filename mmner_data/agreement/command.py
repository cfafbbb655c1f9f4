"""The ``mmner-data agreement`` command (registered by ``mmner_data.cli``)."""

from __future__ import annotations


def agreement_command() -> None:
    """Inter-annotator agreement and adjudication (not implemented yet)."""
    raise SystemExit("agreement: not implemented yet")
