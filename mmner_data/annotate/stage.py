"""``annotate push`` and ``annotate pull`` under the stage contract (two stages, one section).

``push`` imports eligible posts as Label Studio tasks (with pre-annotations); ``pull`` stores each
annotator's submitted spans. Each writes its own ``runs`` row (``annotate-push``/``annotate-pull``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mmner_data.annotate.settings import AnnotateSettings, build_annotate_settings
from mmner_data.config import Recipe
from mmner_data.stage import Progress, recorded_run

SECTION = "annotate"


@dataclass(frozen=True, slots=True)
class Settings:
    annotate: AnnotateSettings
    entity_types: tuple[str, ...]
    recipe_name: str
    queue: str = "annotate"
    limit: int | None = None
    dry_run: bool = False
    order: str = "crawl"  # push: crawl | uncertainty (least certain prediction first)
    sample_uncertain: int | None = None  # push: only the N least certain new posts
    refresh_predictions: bool = False  # push: the latest predictions to unannotated tasks


RUN_OPTIONS = ("queue", "limit", "dry_run", "order", "sample_uncertain", "refresh_predictions")


def _settings(recipe: Recipe, overrides: dict[str, Any] | None) -> Settings:
    o = dict(overrides or {})
    run_opts = {k: o.pop(k) for k in RUN_OPTIONS if o.get(k) is not None}
    return Settings(
        build_annotate_settings(recipe.annotate, o),
        tuple(recipe.entity_types),
        recipe.name,
        **run_opts,
    )


def _configured(recipe: Recipe) -> str | None:
    if not recipe.annotate:
        return "no Label Studio configured (recipe `annotate:` section)"
    s = build_annotate_settings(recipe.annotate, {})
    if not (s.url or os.environ.get(s.url_env, "").strip()):
        return f"no Label Studio URL (annotate.url or ${s.url_env})"
    return None


def connect(settings: AnnotateSettings) -> Any:
    """A Label Studio client for the settings' URL and the API key from the environment."""
    from mmner_data.annotate.client import LSClient

    return LSClient(
        settings.resolved_url(),
        settings.resolved_api_key(),
        api_key_env=settings.api_key_env,
        timeout=settings.timeout_s,
    )


def _params(settings: Settings) -> dict[str, Any]:
    # the settings hold no secret: the API key is read from the environment when connecting
    return {
        **settings.annotate.model_dump(mode="json"),
        "queue": settings.queue,
        "limit": settings.limit,
        "order": settings.order,
        "sample_uncertain": settings.sample_uncertain,
        "refresh_predictions": settings.refresh_predictions,
    }


class _Step:
    """``annotate push`` or ``annotate pull``: the same settings, one ``runs`` row each."""

    SECTION = SECTION
    Settings = Settings
    settings = staticmethod(_settings)
    configured = staticmethod(_configured)

    def __init__(self, name: str, call: Callable[[Any, Any, Settings, Progress | None], Any]):
        self.NAME = name
        self._call = call

    def run(
        self, store: Any, settings: Settings, progress: Progress | None = None, client: Any = None
    ) -> Any:
        client = client or connect(settings.annotate)
        params = _params(settings)
        with recorded_run(store, self.NAME, params, dry_run=settings.dry_run) as rec:
            result = self._call(store, client, settings, progress)
            rec.finish(result)
        return result


def _push(store: Any, client: Any, settings: Settings, progress: Progress | None) -> Any:
    from mmner_data.annotate.push import run_push

    return run_push(
        store,
        client,
        settings.annotate,
        settings.entity_types,
        recipe_name=settings.recipe_name,
        queue=settings.queue,
        limit=settings.limit,
        dry_run=settings.dry_run,
        progress=progress,
        order=settings.order,
        sample_uncertain=settings.sample_uncertain,
        refresh_predictions=settings.refresh_predictions,
    )


def _pull(store: Any, client: Any, settings: Settings, progress: Progress | None) -> Any:
    from mmner_data.annotate.pull import run_pull

    return run_pull(
        store,
        client,
        settings.annotate,
        settings.entity_types,
        recipe_name=settings.recipe_name,
        queue=settings.queue,
        dry_run=settings.dry_run,
        progress=progress,
    )


push = _Step("annotate-push", _push)
pull = _Step("annotate-pull", _pull)
