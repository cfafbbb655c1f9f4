"""Span-level agreement: pairwise F1 between annotators' entity spans, exact and partial.

Exact: same token boundaries and type; partial: overlapping spans of the same type, matched one
to one (a maximum matching, so partial >= exact). Per pair ``F1 = 2·matched / (|A| + |B|)``,
micro over types and per type; over all pairs both the unweighted mean and the pooled counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mmner_data.agreement.sequences import (
    NO_SPANS_NOTE,
    AnnotatedItem,
    Match,
    Score,
    TokenSpan,
    annotator_pairs,
    bio_to_spans,
    check_match,
    mean_score,
    overlapping_items,
    prepare_items,
    require_pair,
)


@dataclass(frozen=True, slots=True)
class PairSpanF1:
    """Span F1 between two annotators: pooled over types (micro) and per entity type."""

    annotators: tuple[str, str]
    micro: Score
    per_type: dict[str, Score]


@dataclass(frozen=True, slots=True)
class SpanF1Summary:
    """Span F1 over all annotator pairs: mean of per-pair values, and pooled counts."""

    match: str
    mean: Score
    pooled: Score
    per_type_mean: dict[str, Score]
    per_type_pooled: dict[str, Score]
    pairs: list[PairSpanF1]

    def pair(self, a: str, b: str) -> PairSpanF1 | None:
        key = tuple(sorted((a, b)))
        return next((p for p in self.pairs if p.annotators == key), None)


# --- span F1 -------------------------------------------------------------------------------


def _max_overlap_matching(xs: Sequence[TokenSpan], ys: Sequence[TokenSpan]) -> int:
    """Size of a maximum one-to-one matching between overlapping spans (Kuhn's algorithm)."""
    adj = [[j for j, y in enumerate(ys) if x.overlaps(y)] for x in xs]
    owner = [-1] * len(ys)

    def augment(i: int, seen: set[int]) -> bool:
        for j in adj[i]:
            if j not in seen:
                seen.add(j)
                if owner[j] == -1 or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return sum(augment(i, set()) for i in range(len(xs)))


def matched_spans(
    a: Sequence[TokenSpan], b: Sequence[TokenSpan], match: Match = "exact"
) -> Counter[str]:
    """Matched span count per type: exact = same boundaries and type; partial = overlap and same
    type, one-to-one (a maximum matching, so partial >= exact)."""
    check_match(match)
    if match == "exact":
        return Counter(s.type for s in set(a) & set(b))
    out: Counter[str] = Counter()
    for typ in {s.type for s in a} & {s.type for s in b}:
        xs = [s for s in a if s.type == typ]
        ys = [s for s in b if s.type == typ]
        out[typ] = _max_overlap_matching(xs, ys)
    return +out


def _f1_score(
    matched: int, n_spans: int, n_items: int, anns: tuple[str, ...], n_tokens: int, **extra: int
) -> Score:
    value = 2 * matched / n_spans if n_spans else None
    note = None if n_spans else NO_SPANS_NOTE
    detail: dict[str, int | float] = {"matched": matched, "n_spans": n_spans, **extra}
    return Score(value, n_items, len(anns), n_tokens, anns, note, detail)


class SpanCache:
    """Spans per (item, annotator) and match counts per (item, pair, match), computed once."""

    def __init__(self) -> None:
        self._spans: dict[tuple[str, str], list[TokenSpan]] = {}
        self._counts: dict[tuple[str, str, str, str], tuple[Counter[str], ...]] = {}

    def spans(self, item: AnnotatedItem, ann: str) -> list[TokenSpan]:
        key = (item.item_id, ann)
        if key not in self._spans:
            self._spans[key] = bio_to_spans(item.by_annotator[ann])
        return self._spans[key]

    def counts(self, item: AnnotatedItem, a: str, b: str, match: Match) -> tuple[Counter[str], ...]:
        """Matched spans, ``a``'s spans and ``b``'s spans, per type."""
        key = (item.item_id, a, b, match)
        if key not in self._counts:
            sa, sb = self.spans(item, a), self.spans(item, b)
            matched = matched_spans(sa, sb, match) if sa and sb else Counter()
            self._counts[key] = (matched, Counter(s.type for s in sa), Counter(s.type for s in sb))
        return self._counts[key]


def _span_pair(
    shared: Sequence[AnnotatedItem], a: str, b: str, match: Match, cache: SpanCache
) -> PairSpanF1:
    a, b = sorted((a, b))
    matched: Counter[str] = Counter()
    n_a: Counter[str] = Counter()
    n_b: Counter[str] = Counter()
    for it in shared:
        m, ca, cb = cache.counts(it, a, b, match)
        matched.update(m)
        n_a.update(ca)
        n_b.update(cb)
    n_tokens = sum(len(it.tokens) for it in shared)
    anns = (a, b)
    total_a, total_b = sum(n_a.values()), sum(n_b.values())
    micro = _f1_score(
        sum(matched.values()),
        total_a + total_b,
        len(shared),
        anns,
        n_tokens,
        spans_a=total_a,
        spans_b=total_b,
    )
    per_type = {
        t: _f1_score(
            matched[t], n_a[t] + n_b[t], len(shared), anns, n_tokens, spans_a=n_a[t], spans_b=n_b[t]
        )
        for t in sorted(set(n_a) | set(n_b))
    }
    return PairSpanF1(anns, micro, per_type)


def _pooled(scores: Sequence[Score], n_items: int, n_tokens: int) -> Score:
    """F1 from matched and span counts summed over pairs' scores."""
    anns = tuple(sorted({a for s in scores for a in s.annotators}))
    matched = sum(int(s.detail["matched"]) for s in scores)
    n_spans = sum(int(s.detail["n_spans"]) for s in scores)
    return _f1_score(matched, n_spans, n_items, anns, n_tokens)


def pairwise_span_f1_of(
    items: Sequence[AnnotatedItem],
    match: Match,
    types: Sequence[str],
    cache: SpanCache | None = None,
) -> SpanF1Summary:
    """Span F1 over every pair of validated ``items`` (``cache`` shares spans between calls)."""
    cache = cache or SpanCache()
    pairs = [_span_pair(sh, a, b, match, cache) for (a, b), sh in annotator_pairs(items).items()]
    shared = [it for it in items if len(it.by_annotator) >= 2]
    n_items, n_tokens = len(shared), sum(len(it.tokens) for it in shared)
    mean = mean_score([p.micro for p in pairs], n_items, n_tokens, "span F1")
    pooled = _pooled([p.micro for p in pairs], n_items, n_tokens)
    seen = {t for p in pairs for t in p.per_type}
    ordered = [t for t in types if t in seen] + sorted(seen - set(types))
    per_type_mean: dict[str, Score] = {}
    per_type_pooled: dict[str, Score] = {}
    for t in ordered:
        with_t = [p for p in pairs if t in p.per_type]
        per_type_mean[t] = mean_score([p.per_type[t] for p in with_t], n_items, n_tokens, "F1")
        per_type_pooled[t] = _pooled([p.per_type[t] for p in with_t], n_items, n_tokens)
    return SpanF1Summary(match, mean, pooled, per_type_mean, per_type_pooled, pairs)


def span_f1(
    items: Iterable[AnnotatedItem],
    a: str,
    b: str,
    *,
    match: Match = "exact",
    labels: Iterable[str] | None = None,
) -> PairSpanF1:
    """Span F1 between ``a`` and ``b`` on the items both labelled: ``2·matched / (|A| + |B|)``."""
    prep = prepare_items(items, labels)
    overlapping_items(prep, 2)
    check_match(match)
    return _span_pair(require_pair(prep.items, a, b), a, b, match, SpanCache())


def pairwise_span_f1(
    items: Iterable[AnnotatedItem],
    *,
    match: Match = "exact",
    labels: Iterable[str] | None = None,
    min_annotators: int = 2,
) -> SpanF1Summary:
    """Span F1 for every annotator pair, averaged over pairs and pooled, micro and per type."""
    prep = prepare_items(items, labels)
    check_match(match)
    return pairwise_span_f1_of(overlapping_items(prep, min_annotators), match, prep.types)
