"""The ``filter`` stage: score what is not scored yet, select, report — each step resumable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmner_data.filter.model import (
    ClipScorer,
    load_scorer,
    quiet_tokenizers_in_workers,
    resolve_model,
)
from mmner_data.filter.report import write_filter_report
from mmner_data.filter.scoring import ScoreSummary, pending_pairs, score_pairs
from mmner_data.filter.select import SelectionSummary, apply_selection
from mmner_data.filter.settings import FilterSettings
from mmner_data.stage import recorded_run
from mmner_data.store import CorpusStore


@dataclass(slots=True)
class FilterResult:
    scoring: ScoreSummary
    selection: SelectionSummary
    report: dict[str, Any]
    paths: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scoring": self.scoring.to_dict(),
            "selection": self.selection.to_dict(),
            "report_files": [str(p) for p in self.paths],
        }


def run_filter(
    store: CorpusStore,
    settings: FilterSettings,
    *,
    select_only: bool = False,
    scorer: ClipScorer | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
    write_report: bool = True,
    score: Callable[..., ScoreSummary] | None = None,
) -> FilterResult:
    """Score the pending pairs (unless ``select_only``), apply the selection, write the report.

    ``scorer`` skips loading (a model already in memory); otherwise the model is loaded only
    when there is something to score. ``score(store, settings, spec, pairs, progress)`` scores
    the pending pairs elsewhere (the Ray engine) instead of a model loaded here.
    """
    spec = scorer.spec if scorer is not None else resolve_model(settings.model, settings.pretrained)
    params = {**settings.model_dump(), "model_id": spec.model_id, "select_only": select_only}
    if score is not None:
        params["engine"] = getattr(score, "engine", "other")
    with recorded_run(store, "filter", params) as rec:
        pairs = [] if select_only else pending_pairs(store, spec.model_id)
        scoring = ScoreSummary(model_id=spec.model_id)
        if pairs and score is not None and scorer is None:
            scoring = score(store, settings, spec, pairs, progress)
        elif pairs:
            if scorer is None:
                scorer = load_scorer(spec, settings.device, settings.precision, settings.cache_dir)
            workers = settings.resolved_workers(scorer.device.type)
            if workers:
                quiet_tokenizers_in_workers()
            scoring = score_pairs(
                store,
                scorer,
                pairs,
                batch_size=settings.batch_size,
                num_workers=workers,
                progress=progress,
            )
        selection = apply_selection(store, spec.model_id, settings.threshold, settings.keep_top)
        report: dict[str, Any] = {}
        paths: list[Path] = []
        if write_report:
            report, paths = write_filter_report(
                store, selection, scoring=scoring.to_dict(), examples=settings.contact_sheet_n
            )
        result = FilterResult(scoring=scoring, selection=selection, report=report, paths=paths)
        rec.finish(result)
    return result
