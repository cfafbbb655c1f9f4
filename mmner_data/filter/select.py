"""Selection from stored scores: a threshold per language, the top fraction per language, or both.

Pure rule (:func:`select`) plus its application to the store (:func:`apply_selection`), which
rewrites the per-post result in ``relevance_selection`` from the scores already stored, so a new
threshold never needs rescoring.

* threshold only: kept iff ``score >= threshold[lang]``;
* keep-top only: per language, the ``ceil(fraction × n)`` best-scoring pairs are kept — the cutoff
  is the score of the last of them, and ties with it are kept too;
* both: kept iff both hold (the cutoff is the larger of the two);
* neither: every scored pair is kept.

The threshold recorded with each post is this effective cutoff. Posts without an image are kept
with status ``no_image`` (the model downstream is image-optional); posts whose image could not be
read are dropped with status ``image_unreadable``. ``posts.status`` (collect's result) is never
changed: downstream stages read ``relevance_selection.kept``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mmner_data.errors import MmnerError
from mmner_data.filter.scoring import PAIRS_SQL, REASON_IMAGE_UNREADABLE, STAGE
from mmner_data.filter.settings import LangValues, value_for
from mmner_data.schema import Drop, DropReason
from mmner_data.store import CorpusStore, utcnow

REASON_LOW_RELEVANCE = DropReason.LOW_RELEVANCE.value

KEPT = "kept"
DROPPED_LOW_RELEVANCE = "dropped_low_relevance"
NO_IMAGE = "no_image"
IMAGE_UNREADABLE = "image_unreadable"


class SelectionError(MmnerError):
    """Selection cannot run (for instance: pairs still lack a score for the model)."""


@dataclass(frozen=True, slots=True)
class ScoredPost:
    post_id: str
    lang: str | None
    score: float


@dataclass(frozen=True, slots=True)
class Decision:
    kept: bool
    threshold: float | None  # the effective cutoff for the post's language (None: no rule)


def lang_cutoffs(
    scores_by_lang: dict[str | None, list[float]],
    threshold: LangValues | None = None,
    keep_top: LangValues | None = None,
) -> dict[str | None, float | None]:
    """The effective cutoff per language (None where no rule applies)."""
    out: dict[str | None, float | None] = {}
    for lang, scores in scores_by_lang.items():
        cut: list[float] = []
        absolute = value_for(threshold, lang)
        if absolute is not None:
            cut.append(absolute)
        fraction = value_for(keep_top, lang)
        if fraction is not None and scores:
            ranked = sorted(scores, reverse=True)
            n_keep = min(len(ranked), max(1, math.ceil(fraction * len(ranked) - 1e-9)))
            cut.append(ranked[n_keep - 1])
        out[lang] = max(cut) if cut else None
    return out


def select(
    scored: Iterable[ScoredPost],
    threshold: LangValues | None = None,
    keep_top: LangValues | None = None,
) -> dict[str, Decision]:
    """Decide, per post, whether its pair is kept (see the module docstring for the rule)."""
    items = list(scored)
    by_lang: dict[str | None, list[float]] = defaultdict(list)
    for it in items:
        by_lang[it.lang].append(it.score)
    cutoffs = lang_cutoffs(by_lang, threshold, keep_top)
    out: dict[str, Decision] = {}
    for it in items:
        cut = cutoffs[it.lang]
        out[it.post_id] = Decision(kept=cut is None or it.score >= cut, threshold=cut)
    return out


@dataclass(slots=True)
class LangCounts:
    posts: int = 0
    scored: int = 0
    kept: int = 0
    dropped_low_relevance: int = 0
    no_image: int = 0
    image_unreadable: int = 0
    threshold: float | None = None  # effective cutoff
    threshold_abs: float | None = None
    keep_top: float | None = None


@dataclass(slots=True)
class SelectionSummary:
    model_id: str
    rule: str
    langs: dict[str, LangCounts] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        total = LangCounts()
        for c in self.langs.values():
            for k in (
                "posts",
                "scored",
                "kept",
                "dropped_low_relevance",
                "no_image",
                "image_unreadable",
            ):
                setattr(total, k, getattr(total, k) + getattr(c, k))
        kept_total = total.kept + total.no_image
        return {
            "model_id": self.model_id,
            "rule": self.rule,
            "languages": {k: asdict(v) for k, v in sorted(self.langs.items())},
            "total": {
                "posts": total.posts,
                "scored": total.scored,
                "kept": total.kept,
                "kept_with_no_image": total.no_image,
                "kept_total": kept_total,
                "dropped_low_relevance": total.dropped_low_relevance,
                "image_unreadable": total.image_unreadable,
            },
        }


def apply_selection(
    store: CorpusStore,
    model_id: str,
    threshold: LangValues | None = None,
    keep_top: LangValues | None = None,
) -> SelectionSummary:
    """Rewrite ``relevance_selection`` (and the filter's low-relevance drops) in one transaction.

    Raises :class:`SelectionError` when a kept post with a readable image has no score for
    ``model_id`` (score first).
    """
    rule = "+".join(n for n, v in (("threshold", threshold), ("keep_top", keep_top)) if v)
    rule = rule or "none"
    paired = {r["post_id"] for r in store.query(PAIRS_SQL)}
    rows = store.query(
        "SELECT p.post_id, p.lang, p.source, r.score, "
        "EXISTS (SELECT 1 FROM drops d WHERE d.stage=? AND d.item_id=p.post_id AND d.reason=?) "
        "AS unreadable "
        "FROM posts p LEFT JOIN relevance r ON r.post_id=p.post_id AND r.model_id=? "
        "WHERE p.status='kept' ORDER BY p.post_id",
        (STAGE, REASON_IMAGE_UNREADABLE, model_id),
    )
    scored = [
        ScoredPost(r["post_id"], r["lang"], r["score"]) for r in rows if r["score"] is not None
    ]
    missing = [
        r["post_id"]
        for r in rows
        if r["score"] is None and r["post_id"] in paired and not r["unreadable"]
    ]
    if missing:
        raise SelectionError(
            f"{len(missing)} pair(s) have no score for {model_id} yet (e.g. {missing[0]}); "
            "run the filter without --select-only to score them"
        )
    decisions = select(scored, threshold, keep_top)
    summary = SelectionSummary(model_id=model_id, rule=rule)
    now = utcnow()
    with store.transaction() as conn:
        conn.execute("DELETE FROM relevance_selection")
        conn.execute("DELETE FROM drops WHERE stage=? AND reason=?", (STAGE, REASON_LOW_RELEVANCE))
        for r in rows:
            lang = r["lang"] or "und"
            counts = summary.langs.setdefault(lang, LangCounts())
            counts.posts += 1
            counts.threshold_abs = value_for(threshold, r["lang"])
            counts.keep_top = value_for(keep_top, r["lang"])
            decision = decisions.get(r["post_id"])
            if decision is not None:
                status = KEPT if decision.kept else DROPPED_LOW_RELEVANCE
                counts.scored += 1
                counts.threshold = decision.threshold
            elif r["post_id"] in paired:
                status = IMAGE_UNREADABLE
            else:
                status = NO_IMAGE
            kept = status in (KEPT, NO_IMAGE)
            setattr(counts, status, getattr(counts, status) + 1)
            conn.execute(
                "INSERT INTO relevance_selection(post_id, model_id, lang, status, kept, score, "
                "threshold, rule, selected_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r["post_id"],
                    model_id,
                    r["lang"],
                    status,
                    int(kept),
                    r["score"],
                    decision.threshold if decision else None,
                    rule,
                    now,
                ),
            )
            if status == DROPPED_LOW_RELEVANCE:
                store.record_drop(
                    conn,
                    Drop(
                        stage=STAGE,
                        item_id=r["post_id"],
                        reason=REASON_LOW_RELEVANCE,
                        source=r["source"],
                        lang=r["lang"],
                        detail=f"score {r['score']:.4f} < {decision.threshold:.4f} ({model_id})"
                        if decision and decision.threshold is not None
                        else None,
                    ),
                )
    return summary
