"""The ``export`` stage under the stage contract: HF DatasetDict, Twitter-2015 layout, card."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmner_data.config import Recipe
from mmner_data.export.settings import ExportSettings, build_export_settings
from mmner_data.stage import Progress

NAME = "export"
SECTION = "export"


@dataclass(frozen=True, slots=True)
class Settings:
    export: ExportSettings
    recipe: Recipe
    out: Path | None = None
    recipe_text: str | None = None  # written into the dataset card
    dry_run: bool = False


def settings(recipe: Recipe, overrides: dict[str, Any] | None = None) -> Settings:
    o = dict(overrides or {})
    extra = {k: o.pop(k) for k in ("out", "recipe_text", "dry_run") if o.get(k) is not None}
    return Settings(build_export_settings(recipe.export, o), recipe, **extra)


def configured(recipe: Recipe) -> str | None:
    return None


def run(store: Any, settings: Settings, progress: Progress | None = None) -> Any:
    """Export the labelled posts beside ``out`` and rename into place; one ``runs`` row."""
    from mmner_data.export.pipeline import run_export

    return run_export(
        store,
        settings.recipe,
        settings.export,
        out=settings.out,
        recipe_text=settings.recipe_text,
        progress=progress,
        dry_run=settings.dry_run,
    )
