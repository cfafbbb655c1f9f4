"""``mmner-data run``: every stage in order over one store, each resumable; and the registry.

collect → filter → preannotate → annotate (push, pull) → agreement → export, then the stats
report. Each stage is a module (or object) following :mod:`mmner_data.stage`: it says whether the
recipe configures it (``configured(recipe)`` returns the reason when not), builds its ``Settings``
from its recipe section, and runs over the store, writing one ``runs`` row.

A stage that is not configured is *skipped* with its reason; when annotation is skipped the export
includes silver labels, marked per row. A configured stage that fails with an error the user can
fix (:class:`~mmner_data.errors.MmnerError`) stops the run and is the run's error; any other
exception is a bug and propagates.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmner_data.config import Recipe
from mmner_data.errors import MmnerError, UserError
from mmner_data.stage import Progress, result_dict

# stage name → "module[:attribute]" of the object that follows the stage contract
REGISTRY: dict[str, str] = {
    "collect": "mmner_data.collect.stage",
    "filter": "mmner_data.filter.stage",
    "preannotate": "mmner_data.preannotate.stage",
    "annotate-push": "mmner_data.annotate.stage:push",
    "annotate-pull": "mmner_data.annotate.stage:pull",
    "agreement": "mmner_data.agreement.stage",
    "export": "mmner_data.export.stage",
}
# what `run` shows as one step: annotate = push then pull; stats is a report, not a stage
STEPS: dict[str, tuple[str, ...]] = {
    "collect": ("collect",),
    "filter": ("filter",),
    "preannotate": ("preannotate",),
    "annotate": ("annotate-push", "annotate-pull"),
    "agreement": ("agreement",),
    "export": ("export",),
    "stats": (),
}
STAGES: tuple[str, ...] = tuple(STEPS)


def load_stage(name: str) -> Any:
    """The stage object registered as ``name`` (a module or an object with the same attributes)."""
    module, _, attr = REGISTRY[name].partition(":")
    mod = importlib.import_module(module)
    return getattr(mod, attr) if attr else mod


class StageSkipped(Exception):
    """Raised inside a step to skip it; the message is the reason."""


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


def validate_sections(recipe: Recipe) -> None:
    """Build every configured stage's settings up front: a misspelt key fails before any work."""
    for name in REGISTRY:
        stage = load_stage(name)
        if stage.configured(recipe) is None:
            stage.settings(recipe, {})


def _brief(stage: str, data: dict[str, Any]) -> dict[str, Any]:
    """The part of a stage's result that the run table shows."""
    if stage == "collect":
        s = data["summary"]
        return {"kept": s["kept"], "source_errors": s["source_errors"]}
    if stage == "filter":
        sel = data["selection"]
        return {"model_id": sel.get("model_id"), "rule": sel.get("rule")}
    if stage == "agreement":
        return {"adjudication": data.get("adjudication")}
    if stage == "export":
        return {
            "out": data["out"],
            "total": data["total"],
            "label_sources": data["selection"]["by_label_source"],
        }
    return data


#: Stages whose batch work an engine can run elsewhere (``--engine ray``).
ENGINE_STAGES = ("collect", "filter", "preannotate")


class _Run:
    def __init__(self, recipe: Recipe, store: Any, progress: Progress | None, **context: Any):
        self.recipe, self.store, self.progress = recipe, store, progress
        self.context = context
        self.annotated = False
        self.export_path: Path | None = None

    def bar(self, step: str) -> Progress | None:
        if self.progress is None:
            return None
        outer = self.progress

        def update(name: str, advance: int, total: int | None) -> None:
            outer(f"  {step}: {name}", advance, total)

        return update

    def overrides(self, name: str) -> dict[str, Any]:
        if name in ENGINE_STAGES:
            return dict(self.context.get("engine") or {})
        if name != "export":
            return {}
        silver = self.context.get("include_silver")
        if silver is None and not self.annotated:
            silver = True
        return {
            "include_silver": silver,
            "out": self.context.get("export_out"),
            "recipe_text": self.context.get("recipe_text"),
        }

    def step(self, step: str) -> dict[str, Any]:
        if step == "stats":
            from mmner_data.stats import write_stats

            return {"files": [str(p) for p in write_stats(self.store)]}
        summary: dict[str, Any] = {}
        for name in STEPS[step]:
            stage = load_stage(name)
            reason = stage.configured(self.recipe)
            if reason is None and hasattr(stage, "needs_input"):
                reason = stage.needs_input(self.store)
            if reason:
                raise StageSkipped(reason)
            settings = stage.settings(self.recipe, self.overrides(name))
            result = stage.run(self.store, settings, self.bar(step))
            data = result_dict(result)
            if name == "collect" and not sum(result.summary.kept.values()):
                errors = "; ".join(result.summary.source_errors.values())
                raise MmnerError("no post kept" + (f" ({errors})" if errors else ""))
            if name == "export":
                self.export_path = result.out
            if name.startswith("annotate-"):
                self.annotated = True
                summary[name.removeprefix("annotate-")] = data
            else:
                summary = _brief(name, data)
        return summary


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
    engine: dict[str, Any] | None = None,
) -> RunResult:
    """Run the steps on an open store; stops at the first failed one. ``engine``: overrides of
    the recipe's ``engine:`` (``engine``, ``ray_address``, ``lake``, ``workers``) for the stages
    that have heavy batch work (collect, filter, preannotate)."""
    skip = set(skip)
    unknown = skip - set(STAGES)
    if unknown:
        raise UserError(f"unknown stage(s) to skip: {sorted(unknown)}; stages: {list(STAGES)}")
    run = _Run(
        recipe,
        store,
        progress,
        recipe_text=recipe_text,
        export_out=export_out,
        include_silver=include_silver,
        engine=engine or {},
    )
    validate_sections(recipe)
    result = RunResult(store=Path(store.root))
    for i, step in enumerate(STAGES, start=1):
        label = f"{i}/{len(STAGES)} {step}"
        if progress:
            progress(label, 0, 1)
        t0 = time.perf_counter()
        outcome = StageOutcome(step, "done")
        try:
            if step in skip:
                raise StageSkipped("--skip")
            outcome.summary = run.step(step)
        except StageSkipped as exc:
            outcome.status, outcome.detail = "skipped", str(exc)
        except MmnerError as exc:
            outcome.status, outcome.detail = "failed", str(exc)
        outcome.seconds = time.perf_counter() - t0
        if progress:
            progress(label, 1, 1)
        result.stages.append(outcome)
        if on_stage:
            on_stage(outcome)
        if outcome.status == "failed":
            break
    result.export_path = run.export_path
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
    engine: dict[str, Any] | None = None,
) -> RunResult:
    """Open the recipe (starting the sample server if it asks for one) and the store; run."""
    from mmner_data.recipes import open_recipe
    from mmner_data.store import CorpusStore

    path = Path(recipe_path)
    if not path.exists():
        raise UserError(f"recipe not found: {path}")
    text = path.read_text(encoding="utf-8")
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
            engine=engine,
        )
