"""Adjudication: majority vote per entity span into a gold layer, with a review queue.

A candidate span is a (start, end, type) some annotator of the item marked. Its vote share is
``votes / annotators of the item``; it is gold when the share passes the threshold (default:
strictly more than half). Overlapping candidates form a *cluster* that is decided together:

* a cluster with winners that do not overlap each other: the winners are gold, the rest rejected;
* winners that overlap each other (possible only with a threshold <= 0.5): review ``overlap``;
* no winner, and "no entity here" (annotators with no span in the cluster) leads alone: all
  candidates rejected;
* no winner, and the lead is shared: review ``tie``; a candidate leads alone but below the
  threshold: review ``no_majority``.

Whole items go to review when fewer than ``min_annotators`` labelled them, or when their agreement
(mean pairwise exact span F1) is below ``min_item_agreement``; nothing of them is gold then.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mmner_data.agreement.sequences import (
    AgreementError,
    AnnotatedItem,
    TokenSpan,
    bio_to_spans,
    prepare_items,
    spans_to_bio,
    to_jsonable,
)
from mmner_data.agreement.span_f1 import matched_spans


class ReviewReason(StrEnum):
    """Why something needs a human adjudicator. Stable slugs."""

    TIE = "tie"
    NO_MAJORITY = "no_majority"
    OVERLAP = "overlap"
    LOW_AGREEMENT = "low_agreement"
    TOO_FEW_ANNOTATORS = "too_few_annotators"
    BAD_SPANS = "bad_spans"  # set by the stage when spans were excluded (bad_spans=exclude)


@dataclass(frozen=True, slots=True)
class SpanVote:
    """A candidate span, who marked it and its share of the item's annotators."""

    span: TokenSpan
    voters: tuple[str, ...]
    share: float

    @property
    def votes(self) -> int:
        return len(self.voters)


@dataclass(frozen=True, slots=True)
class ReviewEntry:
    """One decision left to a human: an item, or a cluster of overlapping candidates in it."""

    item_id: str
    reason: ReviewReason
    detail: str
    candidates: tuple[SpanVote, ...] = ()
    no_entity_voters: tuple[str, ...] = ()


@dataclass(slots=True)
class GoldItem:
    """The adjudicated spans of one item; ``provenance[i]`` is the vote behind ``spans[i]``."""

    item_id: str
    spans: list[TokenSpan]
    provenance: list[SpanVote]
    review: list[ReviewEntry] = field(default_factory=list)
    rejected: list[SpanVote] = field(default_factory=list)
    lang: str = ""
    tokens: list[str] = field(default_factory=list)
    annotators: tuple[str, ...] = ()
    agreement: float | None = None

    @property
    def needs_review(self) -> bool:
        """True when some decision in this item is left to a human (spans are then partial)."""
        return bool(self.review)

    def tags(self) -> list[str]:
        """The gold spans as BIO tags over the item's tokens."""
        return spans_to_bio(self.spans, len(self.tokens))

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


@dataclass(slots=True)
class AdjudicationResult:
    """Every item's gold layer, in input order, and the review queue across items."""

    items: list[GoldItem]
    review_queue: list[ReviewEntry]
    settings: dict[str, Any]
    warnings: list[str]

    @property
    def gold(self) -> list[GoldItem]:
        """Items fully decided (nothing left to review)."""
        return [it for it in self.items if not it.needs_review]

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def item_agreement(spans_by_annotator: dict[str, list[TokenSpan]]) -> float | None:
    """Mean pairwise exact span F1 on one item; two annotators with no spans agree (1.0).

    ``None`` with fewer than two annotators.
    """
    scores = []
    for a, b in itertools.combinations(sorted(spans_by_annotator), 2):
        sa, sb = spans_by_annotator[a], spans_by_annotator[b]
        total = len(sa) + len(sb)
        scores.append(1.0 if total == 0 else 2 * sum(matched_spans(sa, sb).values()) / total)
    return sum(scores) / len(scores) if scores else None


def _clusters(cands: Sequence[SpanVote]) -> list[list[SpanVote]]:
    """Connected groups of overlapping candidates (sweep over spans sorted by start)."""
    groups: list[list[SpanVote]] = []
    end = -1
    for c in sorted(cands, key=lambda c: (c.span.start, c.span.end, c.span.type)):
        if groups and c.span.start < end:
            groups[-1].append(c)
            end = max(end, c.span.end)
        else:
            groups.append([c])
            end = c.span.end
    return groups


def _fmt(c: SpanVote, n: int, tokens: Sequence[str] = ()) -> str:
    """``PER "Taylor Swift" (tokens 3-4) 2/3``: the words a reviewer looks for, then where."""
    words = " ".join(tokens[c.span.start : c.span.end])
    first, last = c.span.start, c.span.end - 1
    where = f"tokens {first}-{last}" if last > first else f"token {first}"
    quoted = f' "{words}"' if words else ""
    return f"{c.span.type}{quoted} ({where}) {c.votes}/{n}"


def adjudicate_item(
    item: AnnotatedItem,
    *,
    threshold: float = 0.5,
    inclusive: bool = False,
    min_annotators: int = 2,
    min_item_agreement: float | None = None,
) -> GoldItem:
    """Majority vote over one validated item (see the module docstring for the rules)."""
    anns = tuple(sorted(a for a, tags in item.by_annotator.items() if tags))
    n = len(anns)
    spans_by = {a: bio_to_spans(item.by_annotator[a]) for a in anns}
    voters: dict[TokenSpan, list[str]] = {}
    for a in anns:
        for s in spans_by[a]:
            voters.setdefault(s, []).append(a)
    cands = [SpanVote(s, tuple(v), len(v) / n) for s, v in sorted(voters.items())]
    agreement = item_agreement(spans_by)
    gold = GoldItem(item.item_id, [], [], lang=item.lang, tokens=list(item.tokens))
    gold.annotators, gold.agreement = anns, agreement
    if not item.tokens:
        return gold
    if n < min_annotators:
        detail = f"{n} annotator(s) labelled this item; {min_annotators} needed"
        gold.review.append(
            ReviewEntry(item.item_id, ReviewReason.TOO_FEW_ANNOTATORS, detail, tuple(cands))
        )
        return gold
    if min_item_agreement is not None and agreement is not None and agreement < min_item_agreement:
        detail = f"mean pairwise span F1 {agreement:.3f} < {min_item_agreement}"
        gold.review.append(
            ReviewEntry(item.item_id, ReviewReason.LOW_AGREEMENT, detail, tuple(cands))
        )
        return gold

    def wins(c: SpanVote) -> bool:
        return c.share >= threshold if inclusive else c.share > threshold

    accepted: list[SpanVote] = []
    for cluster in _clusters(cands):
        winners = [c for c in cluster if wins(c)]
        in_cluster = {a for c in cluster for a in c.voters}
        none_voters = tuple(a for a in anns if a not in in_cluster)
        clashing = [w for w in winners if any(w.span.overlaps(o.span) for o in winners if o != w)]
        if clashing:
            detail = "overlapping spans pass the threshold: " + ", ".join(
                _fmt(c, n, item.tokens) for c in clashing
            )
            entry = ReviewEntry(
                item.item_id, ReviewReason.OVERLAP, detail, tuple(cluster), none_voters
            )
            gold.review.append(entry)
            continue
        if winners:
            accepted += winners
            gold.rejected += [c for c in cluster if c not in winners]
            continue
        top = max(c.votes for c in cluster)
        leaders = [c for c in cluster if c.votes == top]
        if len(none_voters) > top:
            gold.rejected += cluster
            continue
        options = ", ".join(_fmt(c, n, item.tokens) for c in cluster)
        options += f"; no entity {len(none_voters)}/{n}"
        if len(leaders) > 1 or len(none_voters) == top:
            reason = ReviewReason.TIE
        else:
            reason = ReviewReason.NO_MAJORITY
        gold.review.append(ReviewEntry(item.item_id, reason, options, tuple(cluster), none_voters))
    accepted.sort(key=lambda c: c.span)
    gold.spans = [c.span for c in accepted]
    gold.provenance = accepted
    return gold


def adjudicate(
    items: Iterable[AnnotatedItem],
    *,
    threshold: float = 0.5,
    inclusive: bool = False,
    min_annotators: int = 2,
    min_item_agreement: float | None = None,
    labels: Iterable[str] | None = None,
) -> AdjudicationResult:
    """Adjudicate every item into a gold layer plus a review queue.

    A span is gold when its vote share is ``> threshold`` (``>=`` with ``inclusive=True``).
    Inputs are validated as for the agreement metrics (:class:`AgreementError` on a tag outside
    the schema, a malformed tag, or a tag list whose length differs from the tokens).
    """
    if not (0.0 <= threshold <= 1.0) or (threshold == 1.0 and not inclusive):
        raise AgreementError(f"threshold must be in [0, 1) (or [0, 1] inclusive), got {threshold}")
    if min_annotators < 1:
        raise AgreementError(f"min_annotators must be at least 1, got {min_annotators}")
    items = list(items)
    prep = prepare_items(items, labels)
    cleaned = {it.item_id: it for it in prep.items}
    out: list[GoldItem] = []
    for item in items:
        use = cleaned.get(item.item_id, AnnotatedItem(item.item_id, item.lang, item.tokens, {}))
        out.append(
            adjudicate_item(
                use,
                threshold=threshold,
                inclusive=inclusive,
                min_annotators=min_annotators,
                min_item_agreement=min_item_agreement,
            )
        )
    settings = {
        "threshold": threshold,
        "inclusive": inclusive,
        "min_annotators": min_annotators,
        "min_item_agreement": min_item_agreement,
        "labels": list(prep.types),
    }
    queue = [entry for g in out for entry in g.review]
    return AdjudicationResult(out, queue, settings, list(prep.warnings))
