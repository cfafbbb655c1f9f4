"""Inter-annotator agreement (pure metrics), adjudication into a gold layer, and reports.

Modules: ``sequences`` (items, label sequences, validation, the error type), ``kappa`` (token
level: Cohen, Fleiss, Krippendorff, type confusion), ``span_f1``, ``summary`` (the report over
all of them), ``adjudicate`` (majority vote), ``pipeline`` (the stage), ``report`` (files).
Gold is written through :mod:`mmner_data.labels`.
"""

import importlib

from mmner_data.agreement.adjudicate import (
    AdjudicationResult,
    GoldItem,
    ReviewEntry,
    ReviewReason,
    SpanVote,
    adjudicate,
    adjudicate_item,
    item_agreement,
)
from mmner_data.agreement.kappa import (
    Confusion,
    PairwiseKappa,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    pairwise_cohen_kappa,
    reliability_matrix,
    type_confusion,
)
from mmner_data.agreement.sequences import (
    AgreementError,
    AnnotatedItem,
    Score,
    TokenSpan,
    bio_to_spans,
    prepare_items,
    spans_to_bio,
)
from mmner_data.agreement.span_f1 import (
    PairSpanF1,
    SpanF1Summary,
    matched_spans,
    pairwise_span_f1,
    span_f1,
)
from mmner_data.agreement.summary import AgreementReport, SectionResult, agreement_report

# The stage (store I/O, reports with matplotlib) loads on first use, so that importing the pure
# metrics, or the CLI that registers the command, stays cheap.
_LAZY = {
    "AgreementResult": "pipeline",
    "review_queue": "pipeline",
    "run_agreement": "pipeline",
    "run_on_export": "pipeline",
    "ReportPaths": "report",
    "write_report": "report",
    "AgreementSettings": "settings",
    "build_agreement_settings": "settings",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AdjudicationResult",
    "AgreementError",
    "AgreementReport",
    "AgreementResult",
    "AgreementSettings",
    "AnnotatedItem",
    "Confusion",
    "GoldItem",
    "PairSpanF1",
    "PairwiseKappa",
    "ReportPaths",
    "ReviewEntry",
    "ReviewReason",
    "Score",
    "SectionResult",
    "SpanF1Summary",
    "SpanVote",
    "TokenSpan",
    "adjudicate",
    "adjudicate_item",
    "agreement_report",
    "bio_to_spans",
    "build_agreement_settings",
    "cohen_kappa",
    "fleiss_kappa",
    "item_agreement",
    "krippendorff_alpha",
    "matched_spans",
    "pairwise_cohen_kappa",
    "pairwise_span_f1",
    "prepare_items",
    "reliability_matrix",
    "review_queue",
    "run_agreement",
    "run_on_export",
    "span_f1",
    "spans_to_bio",
    "type_confusion",
    "write_report",
]
