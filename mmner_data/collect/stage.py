"""The ``collect`` stage (and ``dedup``, its re-run without crawling) under the stage contract.

Batch cores: :func:`mmner_data.collect.images.process_image_bytes` (fetch + validation, one image
in, one result out) and :func:`mmner_data.collect.dedup.find_duplicates` (items in, decisions out).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmner_data.config import Recipe
from mmner_data.engines import EngineSettings, pop_engine
from mmner_data.stage import Progress

NAME = "collect"
SECTION = None  # the recipe's top level: sources, languages, quotas, text, images, dedup


@dataclass(frozen=True, slots=True)
class Settings:
    recipe: Recipe
    refresh: bool = False
    retry_failed: bool = False
    skip_crawl: bool = False  # ``dedup``: recompute dedup and quotas only
    engine: EngineSettings = field(
        default_factory=EngineSettings
    )  # image fetch and dedup link finding


@dataclass(slots=True)
class Result:
    summary: Any  # CollectSummary
    report: dict[str, Any]
    report_files: list[Path] = field(default_factory=list)

    @property
    def nothing_read(self) -> bool:
        """Every source failed and nothing is kept: the run collected nothing at all."""
        s = self.summary
        return (
            bool(s.source_errors)
            and not any(s.ingested.values())
            and not self.report.get("kept_total")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary.to_dict(),
            "report": self.report,
            "report_files": [str(p) for p in self.report_files],
        }


def settings(recipe: Recipe, overrides: dict[str, Any] | None = None) -> Settings:
    o = {k: v for k, v in (overrides or {}).items() if v is not None}
    engine = pop_engine(recipe, o)
    return Settings(recipe=recipe, engine=engine, **o)


def configured(recipe: Recipe) -> str | None:
    return None if recipe.sources else "the recipe names no sources"


def run(store: Any, settings: Settings, progress: Progress | None = None) -> Result:
    """Crawl → fetch images → dedup → quotas → drop report; one ``runs`` row (``collect``)."""
    from mmner_data.collect.pipeline import run_collect
    from mmner_data.collect.report import build_drop_report, write_drop_report

    with _engine(settings.engine, store) as engine:
        summary = run_collect(
            settings.recipe,
            store,
            progress=progress,
            refresh=settings.refresh,
            retry_failed=settings.retry_failed,
            skip_crawl=settings.skip_crawl,
            engine=engine,
        )
    paths = list(write_drop_report(store))
    return Result(summary, build_drop_report(store), paths)


@contextlib.contextmanager
def _engine(engine: EngineSettings, store: Any) -> Iterator[Any]:
    """The collect engine hooks: this process, or one Ray session for the whole stage."""
    from mmner_data.collect.pipeline import Engine

    if not engine.is_ray:
        yield Engine()
        return
    from mmner_data.engines.stages import collect_engine

    with collect_engine(engine, store.root) as hooks:
        yield hooks
