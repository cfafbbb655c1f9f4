"""``mmner-data run``: every stage in order, each resumable, so a rerun goes on where it stopped.

collect → filter → preannotate → annotate push/pull → agreement → export → stats.

A stage is *skipped* (with the reason in the final table) when it is not configured or not
available: ``filter`` needs a ``filter:`` section in the recipe (the default CLIP model is a
1.4 GB download; the bundled sample has none); ``preannotate`` needs its model (the bundled one
or ``preannotate.model``); ``annotate`` needs a Label Studio URL (``annotate.url`` or the
variable named by ``annotate.url_env``, with an ``annotate:`` section); ``agreement`` needs
annotations. When annotation is skipped, the export includes silver labels, marked per row.
A stage that is configured but fails stops the run (its error is the run's error).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmner_data.config import Recipe

Progress = Callable[[str, int, int | None], None]
STAGES: tuple[str, ...] = (
    "collect",
    "filter",
    "preannotate",
    "annotate",
    "agreement",
    "export",
    "stats",
)


class StageSkipped(Exception):
    """Raised inside a stage to skip it; the message is the reason."""


class StageFailed(RuntimeError):
    """A configured stage failed; ``stage`` names it."""

    def __init__(self, stage: str, message: str):
        super().__init__(f"{stage}: {message}")
        self.stage = stage


@dataclass(slots=True)
class StageOutcome:
    stage: str
    status: str  # done | skipped | failed
    detail: str = ""
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 2),
            "summary": self.summary,
        }


@dataclass(slots=True)
class RunResult:
    store: Path
    stages: list[StageOutcome] = field(default_factory=list)
    export_path: Path | None = None

    @property
    def failed(self) -> StageOutcome | None:
        return next((s for s in self.stages if s.status == "failed"), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": str(self.store),
            "stages": [s.to_dict() for s in self.stages],
            "export_path": str(self.export_path) if self.export_path else None,
        }


def _available(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise StageSkipped(f"{module} not available ({exc})") from None


class _Pipeline:
    def __init__(
        self,
        recipe: Recipe,
        store: Any,
        *,
        recipe_text: str | None,
        progress: Progress | None,
        export_out: Path | None,
        include_silver: bool | None,
    ):
        self.recipe = recipe
        self.store = store
        self.recipe_text = recipe_text
        self.progress = progress
        self.export_out = export_out
        self.include_silver = include_silver
        self.annotated = False
        self.export_path: Path | None = None

    def bar(self, stage: str) -> Progress | None:
        if self.progress is None:
            return None
        outer = self.progress

        def update(name: str, advance: int, total: int | None) -> None:
            outer(f"  {stage}: {name}", advance, total)

        return update

    # -- stages ----------------------------------------------------------------------------
    def collect(self) -> dict[str, Any]:
        from mmner_data.collect.pipeline import run_collect
        from mmner_data.collect.report import write_drop_report

        summary = run_collect(self.recipe, self.store, progress=self.bar("collect"))
        list(write_drop_report(self.store))
        kept = sum(summary.kept.values())
        if not kept:
            errors = "; ".join(summary.source_errors.values())
            raise StageFailed("collect", "no post kept" + (f" ({errors})" if errors else ""))
        return {"kept": summary.kept, "source_errors": summary.source_errors}

    def filter(self) -> dict[str, Any]:
        if not self.recipe.filter:
            raise StageSkipped(
                "no `filter:` section in the recipe (CLIP scores left empty); add one with a "
                "model to score text-image relevance"
            )
        pipeline = _available("mmner_data.filter.pipeline")
        from mmner_data.filter.model import ModelLoadError
        from mmner_data.filter.select import SelectionError
        from mmner_data.filter.settings import build_filter_settings

        settings = build_filter_settings(self.recipe.filter, {})
        try:
            result = pipeline.run_filter(self.store, settings, progress=self.bar("filter"))
        except (ModelLoadError, SelectionError) as exc:
            raise StageFailed("filter", str(exc)) from None
        sel = result.selection.to_dict()
        return {"model_id": sel.get("model_id"), "rule": sel.get("rule")}

    def preannotate(self) -> dict[str, Any]:
        inference = _available("mmner_data.preannotate.predict")
        from mmner_data.bundled import BUNDLED_MODEL
        from mmner_data.preannotate.settings import PreannotateSettings
        from mmner_data.stage import build_settings

        settings = build_settings(PreannotateSettings, "preannotate", self.recipe.preannotate, {})
        model = settings.model
        if Path(model) == BUNDLED_MODEL and not BUNDLED_MODEL.exists():
            raise StageSkipped(f"bundled model not found at {BUNDLED_MODEL}")
        try:
            return inference.run_preannotate(
                self.store,
                model,
                batch_size=settings.batch_size,
                device=None if settings.device == "auto" else settings.device,
                progress=self.bar("preannotate"),
                overwrite=settings.overwrite,
                entity_types=self.recipe.entity_types,
                label_map=settings.label_map or None,
            )
        except (OSError, ValueError) as exc:
            raise StageFailed("preannotate", str(exc)) from None

    def annotate(self) -> dict[str, Any]:
        section = self.recipe.annotate
        if not section:
            raise StageSkipped("no Label Studio configured (recipe `annotate:` section)")
        _available("mmner_data.annotate.push")
        from mmner_data.annotate.client import LabelStudioError, LSClient
        from mmner_data.annotate.pull import PullError, run_pull
        from mmner_data.annotate.push import PushError, run_push
        from mmner_data.annotate.settings import build_annotate_settings

        settings = build_annotate_settings(section, {})
        if not (settings.url or os.environ.get(settings.url_env, "").strip()):
            raise StageSkipped(f"no Label Studio URL (annotate.url or ${settings.url_env})")
        client = LSClient(
            settings.resolved_url(),
            settings.resolved_api_key(),
            api_key_env=settings.api_key_env,
            timeout=settings.timeout_s,
        )
        name, bar = self.recipe.name, self.bar("annotate")
        try:
            push = run_push(
                self.store,
                client,
                settings,
                self.recipe.entity_types,
                recipe_name=name,
                progress=bar,
            )
            pull = run_pull(
                self.store,
                client,
                settings,
                self.recipe.entity_types,
                recipe_name=name,
                progress=bar,
            )
        except (LabelStudioError, PushError, PullError) as exc:
            raise StageFailed("annotate", str(exc)) from None
        self.annotated = True
        return {"push": _as_dict(push), "pull": _as_dict(pull)}

    def agreement(self) -> dict[str, Any]:
        n = self.store.query("SELECT COUNT(*) FROM annotations WHERE status='submitted'")[0][0]
        if not n:
            raise StageSkipped("no submitted annotations in the store")
        pipeline = _available("mmner_data.agreement.pipeline")
        from mmner_data.agreement.settings import build_agreement_settings

        settings = build_agreement_settings(
            self.recipe.agreement, {}, entity_types=self.recipe.entity_types
        )
        try:
            result = pipeline.run_agreement(self.store, settings, progress=self.bar("agreement"))
        except ValueError as exc:
            raise StageFailed("agreement", str(exc)) from None
        return {"annotations": int(n), "result": _as_dict(result, keep=("adjudication",))}

    def export(self) -> dict[str, Any]:
        from mmner_data.export.pipeline import ExportError, run_export
        from mmner_data.export.settings import build_export_settings

        silver = self.include_silver
        if silver is None and not self.annotated:
            silver = True
        settings = build_export_settings(self.recipe.export, {"include_silver": silver})
        try:
            result = run_export(
                self.store,
                self.recipe,
                settings,
                out=self.export_out,
                recipe_text=self.recipe_text,
                progress=self.bar("export"),
            )
        except ExportError as exc:
            raise StageFailed("export", str(exc)) from None
        self.export_path = result.out
        d = result.to_dict()
        return {
            "out": d["out"],
            "total": d["total"],
            "label_sources": d["selection"]["by_label_source"],
        }

    def stats(self) -> dict[str, Any]:
        from mmner_data.stats import write_stats

        return {"files": [str(p) for p in write_stats(self.store)]}


def _as_dict(obj: Any, keep: Iterable[str] | None = None) -> dict[str, Any]:
    d = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj or {})
    if keep is not None:
        d = {k: v for k, v in d.items() if k in set(keep)}
    return d


def validate_sections(recipe: Recipe) -> None:
    """Check every configured stage section before any work (a misspelt key fails at once)."""
    from mmner_data.export.settings import build_export_settings

    build_export_settings(recipe.export, {})
    checks: list[tuple[dict[str, Any], str, Callable[[Any], Any]]] = [
        (recipe.filter, "mmner_data.filter.settings", lambda m: m.build_filter_settings),
        (recipe.annotate, "mmner_data.annotate.settings", lambda m: m.build_annotate_settings),
    ]
    for section, module, getter in checks:
        if section:
            with contextlib.suppress(ImportError):
                getter(importlib.import_module(module))(section, {})
    if recipe.agreement:
        with contextlib.suppress(ImportError):
            from mmner_data.agreement.settings import build_agreement_settings

            build_agreement_settings(recipe.agreement, {}, entity_types=recipe.entity_types)
    if recipe.preannotate:
        with contextlib.suppress(ImportError):
            from mmner_data.preannotate.settings import PreannotateSettings
            from mmner_data.stage import build_settings

            build_settings(PreannotateSettings, "preannotate", recipe.preannotate, {})


def run_stages(
    recipe: Recipe,
    store: Any,
    *,
    recipe_text: str | None = None,
    progress: Progress | None = None,
    skip: Iterable[str] = (),
    export_out: Path | None = None,
    include_silver: bool | None = None,
    on_stage: Callable[[StageOutcome], None] | None = None,
) -> RunResult:
    """Run the stages on an open store; stops at the first failed stage."""
    skip = set(skip)
    unknown = skip - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) to skip: {sorted(unknown)}; stages: {list(STAGES)}")
    pipe = _Pipeline(
        recipe,
        store,
        recipe_text=recipe_text,
        progress=progress,
        export_out=export_out,
        include_silver=include_silver,
    )
    validate_sections(recipe)
    result = RunResult(store=Path(store.root))
    for i, stage in enumerate(STAGES, start=1):
        label = f"{i}/{len(STAGES)} {stage}"
        if progress:
            progress(label, 0, 1)
        t0 = time.perf_counter()
        outcome = StageOutcome(stage, "done")
        try:
            if stage in skip:
                raise StageSkipped("--skip")
            outcome.summary = getattr(pipe, stage)() or {}
        except StageSkipped as exc:
            outcome.status, outcome.detail = "skipped", str(exc)
        except StageFailed as exc:
            outcome.status, outcome.detail = "failed", str(exc).split(": ", 1)[-1]
        outcome.seconds = time.perf_counter() - t0
        if progress:
            progress(label, 1, 1)
        result.stages.append(outcome)
        if on_stage:
            on_stage(outcome)
        if outcome.status == "failed":
            break
    result.export_path = pipe.export_path
    return result


def run_pipeline(
    recipe_path: str | os.PathLike[str],
    store: str | os.PathLike[str] | None = None,
    *,
    progress: Progress | None = None,
    skip: Iterable[str] = (),
    export_out: Path | None = None,
    include_silver: bool | None = None,
    on_stage: Callable[[StageOutcome], None] | None = None,
) -> RunResult:
    """Open the recipe (starting the sample server if it asks for one) and the store; run."""
    from mmner_data.recipes import open_recipe
    from mmner_data.store import CorpusStore

    path = Path(recipe_path)
    text = path.read_text(encoding="utf-8") if path.exists() else None
    with open_recipe(path) as recipe, CorpusStore(store or Path(recipe.store)) as st:
        return run_stages(
            recipe,
            st,
            recipe_text=text,
            progress=progress,
            skip=skip,
            export_out=export_out,
            include_silver=include_silver,
            on_stage=on_stage,
        )
