"""The ``preannotate`` stage under the stage contract: model predictions into the store.

Batch core: a predictor's ``prepare`` → ``forward`` → ``finish`` (posts in, spans with
confidences out, no store access; :mod:`mmner_data.preannotate.predict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmner_data.config import Recipe
from mmner_data.engines import EngineSettings, pop_engine
from mmner_data.preannotate.settings import PreannotateSettings
from mmner_data.stage import Progress, build_settings

NAME = "preannotate"
SECTION = "preannotate"


@dataclass(frozen=True, slots=True)
class Settings:
    preannotate: PreannotateSettings
    entity_types: tuple[str, ...] = ()
    engine: EngineSettings = field(default_factory=EngineSettings)


@dataclass(slots=True)
class Result:
    model: str
    model_version: str
    entity_types: list[str]
    predicted: int
    with_image: int
    total_for_version: int
    spans: int
    spans_by_label: dict[str, int]
    unmapped_spans: int
    tokens: int
    seconds: float
    tokens_per_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extra"}
        return {**d, **self.extra}


def settings(recipe: Recipe, overrides: dict[str, Any] | None = None) -> Settings:
    o = dict(overrides or {})
    engine = pop_engine(recipe, o)
    pre = build_settings(PreannotateSettings, "preannotate", recipe.preannotate, o)
    return Settings(pre, tuple(recipe.entity_types), engine)


def configured(recipe: Recipe) -> str | None:
    from mmner_data.bundled import BUNDLED_MODEL

    model = (recipe.preannotate or {}).get("model")
    if not model and not BUNDLED_MODEL.exists():
        return f"bundled model not found at {BUNDLED_MODEL} (set preannotate.model)"
    return None


def run(store: Any, settings: Settings, progress: Progress | None = None) -> Result:
    """Predict every eligible post that this model version has not done; one ``runs`` row."""
    from mmner_data.preannotate.predict import run_preannotate

    s = settings.preannotate
    if settings.engine.is_ray:
        from mmner_data.engines.stages import preannotate_on_ray

        run_preannotate = preannotate_on_ray(settings.engine)
    summary = run_preannotate(
        store,
        s.model,
        batch_size=s.batch_size,
        device=None if s.device == "auto" else s.device,
        progress=progress,
        overwrite=s.overwrite,
        entity_types=list(settings.entity_types) or None,
        label_map=s.label_map or None,
    )
    known = set(Result.__dataclass_fields__) - {"extra"}
    return Result(
        **{k: v for k, v in summary.items() if k in known},
        extra={k: v for k, v in summary.items() if k not in known},
    )


def model_version_of(model: str) -> str:
    """The version a model name/folder will predict as, without loading it (for --dry-run)."""
    from mmner_data.models.config import is_checkpoint
    from mmner_data.models.model import checkpoint_version

    folder = Path(model).expanduser()
    return checkpoint_version(folder) if is_checkpoint(folder) else model
