"""``annotate push`` and ``annotate pull`` under the stage contract (two stages, one section).

``push`` imports eligible posts as Label Studio tasks (with pre-annotations); ``pull`` stores each
annotator's submitted spans. Each writes its own ``runs`` row (``annotate-push``/``annotate-pull``).
"""

from __future__ import annotations

import os
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


def _settings(recipe: Recipe, overrides: dict[str, Any] | None) -> Settings:
    o = dict(overrides or {})
    run_opts = {k: o.pop(k) for k in ("queue", "limit", "dry_run") if o.get(k) is not None}
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
    }


class _Push:
    NAME = "annotate-push"
    SECTION = SECTION
    Settings = Settings
    settings = staticmethod(_settings)
    configured = staticmethod(_configured)

    @staticmethod
    def run(
        store: Any, settings: Settings, progress: Progress | None = None, client: Any = None
    ) -> Any:
        from mmner_data.annotate.push import run_push

        client = client or connect(settings.annotate)
        with recorded_run(
            store, "annotate-push", _params(settings), dry_run=settings.dry_run
        ) as rec:
            result = run_push(
                store,
                client,
                settings.annotate,
                settings.entity_types,
                recipe_name=settings.recipe_name,
                queue=settings.queue,
                limit=settings.limit,
                dry_run=settings.dry_run,
                progress=progress,
            )
            rec.finish(result)
        return result


class _Pull:
    NAME = "annotate-pull"
    SECTION = SECTION
    Settings = Settings
    settings = staticmethod(_settings)
    configured = staticmethod(_configured)

    @staticmethod
    def run(
        store: Any, settings: Settings, progress: Progress | None = None, client: Any = None
    ) -> Any:
        from mmner_data.annotate.pull import run_pull

        client = client or connect(settings.annotate)
        with recorded_run(
            store, "annotate-pull", _params(settings), dry_run=settings.dry_run
        ) as rec:
            result = run_pull(
                store,
                client,
                settings.annotate,
                settings.entity_types,
                recipe_name=settings.recipe_name,
                queue=settings.queue,
                dry_run=settings.dry_run,
                progress=progress,
            )
            rec.finish(result)
        return result


push = _Push()
pull = _Pull()
