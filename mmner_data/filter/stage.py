"""The ``filter`` stage under the stage contract: multilingual CLIP text–image relevance.

Batch core: :meth:`mmner_data.filter.scoring.ClipScorer` scores a batch of (text, image) pairs
(no store access); :func:`mmner_data.filter.pipeline.run_filter` feeds it from the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmner_data.config import Recipe
from mmner_data.engines import EngineSettings, pop_engine
from mmner_data.filter.settings import FilterSettings, build_filter_settings
from mmner_data.stage import Progress

NAME = "filter"
SECTION = "filter"


@dataclass(frozen=True, slots=True)
class Settings:
    filter: FilterSettings
    select_only: bool = False  # re-apply thresholds to stored scores; load no model
    engine: EngineSettings = field(default_factory=EngineSettings)


def settings(recipe: Recipe, overrides: dict[str, Any] | None = None) -> Settings:
    o = dict(overrides or {})
    select_only = bool(o.pop("select_only", False))
    engine = pop_engine(recipe, o)
    return Settings(build_filter_settings(recipe.filter, o), select_only=select_only, engine=engine)


def configured(recipe: Recipe) -> str | None:
    if not recipe.filter:
        return (
            "no `filter:` section in the recipe (CLIP scores left empty); add one with a "
            "model to score text-image relevance"
        )
    return None


def run(store: Any, settings: Settings, progress: Progress | None = None) -> Any:
    """Score pending pairs, select per language, write the report; one ``runs`` row."""
    from mmner_data.filter.pipeline import run_filter

    score = None
    if settings.engine.is_ray:
        from mmner_data.engines.stages import clip_scorer_on_ray

        score = clip_scorer_on_ray(settings.engine)
    return run_filter(
        store, settings.filter, select_only=settings.select_only, progress=progress, score=score
    )
