"""The ``collect`` stage (and ``dedup``, its re-run without crawling) under the stage contract.

Batch cores: :func:`mmner_data.collect.images.process_image_bytes` (fetch + validation, one image
in, one result out) and :func:`mmner_data.collect.dedup.find_duplicates` (items in, decisions out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmner_data.config import Recipe
from mmner_data.stage import Progress

NAME = "collect"
SECTION = None  # the recipe's top level: sources, languages, quotas, text, images, dedup


@dataclass(frozen=True, slots=True)
class Settings:
    recipe: Recipe
    refresh: bool = False
    retry_failed: bool = False
    skip_crawl: bool = False  # ``dedup``: recompute dedup and quotas only


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
    return Settings(recipe=recipe, **o)


def configured(recipe: Recipe) -> str | None:
    return None if recipe.sources else "the recipe names no sources"


def run(store: Any, settings: Settings, progress: Progress | None = None) -> Result:
    """Crawl → fetch images → dedup → quotas → drop report; one ``runs`` row (``collect``)."""
    from mmner_data.collect.pipeline import run_collect
    from mmner_data.collect.report import build_drop_report, write_drop_report

    summary = run_collect(
        settings.recipe,
        store,
        progress=progress,
        refresh=settings.refresh,
        retry_failed=settings.retry_failed,
        skip_crawl=settings.skip_crawl,
    )
    paths = list(write_drop_report(store))
    return Result(summary, build_drop_report(store), paths)
