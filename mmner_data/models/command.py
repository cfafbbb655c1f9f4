"""The ``mmner-data train|evaluate|preannotate`` commands (registered by ``mmner_data.cli``)."""

from __future__ import annotations


def train_command() -> None:
    """Train 2M-NER or a text-only baseline (not implemented yet)."""
    raise SystemExit("train: not implemented yet")


def evaluate_command() -> None:
    """Evaluate a checkpoint with seqeval, per language (not implemented yet)."""
    raise SystemExit("evaluate: not implemented yet")


def preannotate_command() -> None:
    """Write model predictions to the store (not implemented yet)."""
    raise SystemExit("preannotate: not implemented yet")
