"""The agreement report: every metric, overall and per language (:func:`agreement_report`).

Pure: the numbers of :mod:`mmner_data.agreement.kappa` and :mod:`mmner_data.agreement.span_f1`
gathered per scope; :mod:`mmner_data.agreement.report` writes them to files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mmner_data.agreement.kappa import (
    Confusion,
    PairwiseKappa,
    choose_panel,
    confusion_matrix,
    fleiss_score,
    krippendorff_score,
    pairwise_cohen,
)
from mmner_data.agreement.sequences import (
    EXCLUDING_ALL_O,
    MATCHES,
    MODES,
    VARIANTS,
    AnnotatedItem,
    Coded,
    Mode,
    Score,
    encode,
    overlapping_items,
    prepare_items,
    to_jsonable,
)
from mmner_data.agreement.span_f1 import SpanCache, SpanF1Summary, pairwise_span_f1_of


@dataclass(slots=True)
class SectionResult:
    """All metrics over one scope (``"overall"`` or a language code)."""

    scope: str
    n_items: int
    n_annotators: int
    n_tokens: int
    annotators: tuple[str, ...]
    cohen: dict[str, dict[str, PairwiseKappa]] = field(default_factory=dict)
    fleiss: dict[str, dict[str, Score]] = field(default_factory=dict)
    krippendorff: dict[str, dict[str, Score]] = field(default_factory=dict)
    span_f1: dict[str, SpanF1Summary] = field(default_factory=dict)
    confusion: Confusion | None = None
    error: str | None = None


@dataclass(slots=True)
class AgreementReport:
    """What :func:`agreement_report` returns: overall and per-language sections."""

    overall: SectionResult
    by_lang: dict[str, SectionResult]
    labels: tuple[str, ...]
    min_annotators: int
    n_items_input: int
    n_items_used: int
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (``json.loads(json.dumps(d)) == d``)."""
        return to_jsonable(self)


# --- the report ----------------------------------------------------------------------------


def _section(
    scope: str,
    items: Sequence[AnnotatedItem],
    types: Sequence[str],
    coded: dict[Mode, Coded],
    spans: SpanCache,
) -> SectionResult:
    anns = tuple(sorted({a for it in items for a in it.by_annotator}))
    section = SectionResult(scope, len(items), len(anns), sum(len(it.tokens) for it in items), anns)
    sel = coded["type"].select(items)
    panel = choose_panel(items)
    for mode in MODES:
        section.cohen[mode] = {}
        section.fleiss[mode] = {}
        section.krippendorff[mode] = {}
        for variant in VARIANTS:
            excl = variant == EXCLUDING_ALL_O
            section.cohen[mode][variant] = pairwise_cohen(items, coded[mode], sel, excl)
            if panel is not None:
                fl = fleiss_score(coded[mode], sel, panel, excl)
                if set(panel) != set(anns):
                    note = f"panel {', '.join(panel)}: the subset with the most shared ratings"
                    fl = replace(fl, note="; ".join(x for x in (fl.note, note) if x))
                section.fleiss[mode][variant] = fl
            section.krippendorff[mode][variant] = krippendorff_score(coded[mode], sel, excl)
    for match in MATCHES:
        section.span_f1[match] = pairwise_span_f1_of(items, match, types, spans)
    section.confusion = confusion_matrix(items, types, coded["type"], sel)
    return section


def agreement_report(
    items: Iterable[AnnotatedItem],
    min_annotators: int = 2,
    labels: Iterable[str] | None = None,
) -> AgreementReport:
    """Every metric, overall and per language, on items labelled by ``min_annotators``+.

    Raises :class:`AgreementError` when agreement cannot be computed overall; a language where
    it cannot gets a section with ``error`` set and a warning.
    """
    items = list(items)
    prep = prepare_items(items, labels)
    kept = overlapping_items(prep, min_annotators)
    warnings = list(prep.warnings)
    dropped = len(prep.items) - len(kept)
    if dropped:
        warnings.append(
            f"{dropped} items labelled by fewer than {min_annotators} annotators ignored"
        )
    coded = {mode: encode(kept, mode) for mode in MODES}
    spans = SpanCache()
    overall = _section("overall", kept, prep.types, coded, spans)
    by_lang: dict[str, SectionResult] = {}
    for lang in sorted({it.lang for it in prep.items}):
        subset = [it for it in kept if it.lang == lang]
        lang_anns = {a for it in prep.items if it.lang == lang for a in it.by_annotator}
        if len(lang_anns) < 2:
            reason = (
                f"only one annotator ({', '.join(map(repr, sorted(lang_anns)))}) labelled items"
            )
        elif not subset:
            reason = f"no item was labelled by at least {min_annotators} annotators"
        else:
            by_lang[lang] = _section(lang, subset, prep.types, coded, spans)
            continue
        by_lang[lang] = SectionResult(lang, len(subset), len(lang_anns), 0, (), error=reason)
        warnings.append(f"language {lang!r}: {reason}")
    return AgreementReport(
        overall, by_lang, prep.types, min_annotators, len(items), len(kept), warnings
    )
