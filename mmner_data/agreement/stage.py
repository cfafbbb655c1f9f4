"""The ``agreement`` stage under the stage contract: IAA metrics and adjudication into gold.

Batch core: the pure metric functions of :mod:`mmner_data.agreement` over per-annotator labels.
"""

from __future__ import annotations

from typing import Any

from mmner_data.agreement.settings import AgreementSettings, build_agreement_settings
from mmner_data.config import Recipe
from mmner_data.stage import Progress

NAME = "agreement"
SECTION = "agreement"
Settings = AgreementSettings


def settings(recipe: Recipe, overrides: dict[str, Any] | None = None) -> Settings:
    return build_agreement_settings(
        recipe.agreement, overrides or {}, entity_types=recipe.entity_types
    )


def configured(recipe: Recipe) -> str | None:
    return None  # needs annotations: see needs_input()


def needs_input(store: Any) -> str | None:
    """Why the stage has nothing to do on this store (no submitted annotation), or None."""
    n = store.query("SELECT COUNT(*) FROM annotations WHERE status='submitted'")[0][0]
    return None if n else "no submitted annotations in the store"


def run(store: Any, settings: Settings, progress: Progress | None = None) -> Any:
    """Reports under ``<store>/reports`` and the ``adjudication`` table; one ``runs`` row."""
    from mmner_data.agreement.pipeline import run_agreement

    return run_agreement(store, settings, progress)
