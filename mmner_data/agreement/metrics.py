"""Inter-annotator agreement for token-level NER annotation, as pure functions.

Input: :class:`AnnotatedItem` records, one per post, holding BIO tags per annotator for the same
tokens (annotators who did not label an item are absent, or present with an empty tag list).

Metrics (see ``docs/agreement.md`` for formulas and which to trust):

* Cohen's kappa per annotator pair, on the items both labelled;
* Fleiss' kappa over a panel of annotators, on the items every one of them labelled;
* Krippendorff's alpha (nominal), tokens × annotators with missing ratings allowed;
* span-level pairwise F1, exact (same boundaries and type) and partial (overlap and same type).

Token metrics come in two label modes (``"bio"``: the full tag; ``"type"``: entity type or ``O``)
and two variants: all tokens, and excluding the tokens every compared annotator tagged ``O``
(those inflate kappa). Every number is a :class:`Score` carrying the ``n_items``,
``n_annotators`` and ``n_tokens`` behind it. Undefined numbers are ``None`` with a note, never
NaN; inputs agreement cannot be computed on raise :class:`AgreementError`.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from enum import Enum
from typing import Any, Literal

import krippendorff
import numpy as np

from mmner_data.errors import MmnerError

Mode = Literal["bio", "type"]
Match = Literal["exact", "partial"]
MODES: tuple[Mode, ...] = ("bio", "type")
MATCHES: tuple[Match, ...] = ("exact", "partial")
ALL_TOKENS = "all_tokens"
EXCLUDING_ALL_O = "excluding_all_o"
VARIANTS: tuple[str, ...] = (ALL_TOKENS, EXCLUDING_ALL_O)
OUTSIDE = "O"

DEGENERATE_NOTE = (
    "all ratings fall in one single category (expected agreement 1): reported as 1.0 because "
    "observed agreement is 1 (sklearn returns NaN unless replace_undefined_by=1.0)"
)
NO_TOKENS_NOTE = "no tokens to compare"
NO_TOKENS_EXCL_NOTE = "no tokens left after excluding tokens every annotator tagged O"
NO_SPANS_NOTE = "no entity spans from either side: F1 undefined"

_BIO = re.compile(r"^([BI])-(\S.*)$")


class AgreementError(MmnerError):
    """Agreement cannot be computed on these inputs; the message is one line and names why."""


@dataclass(frozen=True, slots=True, order=True)
class TokenSpan:
    """An entity over tokens ``start`` (inclusive) to ``end`` (exclusive)."""

    start: int
    end: int
    type: str

    def overlaps(self, other: TokenSpan) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(slots=True)
class AnnotatedItem:
    """One item's tokens and each annotator's BIO tags for them."""

    item_id: str
    lang: str
    tokens: list[str]
    by_annotator: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class Score:
    """One agreement number and what lies behind it. ``value`` is ``None`` when undefined."""

    value: float | None
    n_items: int
    n_annotators: int
    n_tokens: int
    annotators: tuple[str, ...] = ()
    note: str | None = None
    detail: dict[str, int | float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


@dataclass(frozen=True, slots=True)
class PairwiseKappa:
    """Cohen's kappa for every annotator pair that shares items, and their unweighted mean."""

    mean: Score
    pairs: list[Score]

    def pair(self, a: str, b: str) -> Score | None:
        """The score of pair ``a``, ``b`` (either order), or ``None`` if they share no item."""
        key = tuple(sorted((a, b)))
        return next((s for s in self.pairs if s.annotators == key), None)


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


@dataclass(frozen=True, slots=True)
class Confusion:
    """Token-level entity-type confusion between annotators, pooled over pairs.

    Each unordered pair is counted in both directions, so the matrix is symmetric and sums to
    twice the number of compared token pairs. ``matrix[i][j]``: one annotator said
    ``labels[i]`` where the other said ``labels[j]``.
    """

    labels: list[str]
    matrix: list[list[int]]


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


@dataclass(slots=True)
class PreparedItems:
    """Validated items: empty annotations dropped, tag lists checked against tokens and schema."""

    items: list[AnnotatedItem]
    annotators: tuple[str, ...]
    types: tuple[str, ...]
    warnings: list[str]


def to_jsonable(obj: Any) -> Any:
    """Dataclasses → dicts, tuples → lists, numpy scalars → Python, recursively."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


# --- tags and spans ------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def tag_type(tag: str) -> str:
    """The entity type of a BIO tag, ``"O"`` for outside; raises on anything else."""
    if tag == OUTSIDE:
        return OUTSIDE
    m = _BIO.match(tag)
    if m is None:
        raise AgreementError(f"{tag!r} is not a BIO tag (O, B-TYPE or I-TYPE)")
    return m.group(2)


def bio_to_spans(tags: Sequence[str]) -> list[TokenSpan]:
    """Entity spans of a BIO sequence. An ``I-X`` not continuing an ``X`` span starts one."""
    spans: list[TokenSpan] = []
    start: int | None = None
    current = ""
    for i, tag in enumerate(tags):
        typ = tag_type(tag)
        if typ == OUTSIDE or tag[0] == "B" or typ != current:
            if start is not None:
                spans.append(TokenSpan(start, i, current))
            start, current = (None, "") if typ == OUTSIDE else (i, typ)
    if start is not None:
        spans.append(TokenSpan(start, len(tags), current))
    return spans


def spans_to_bio(spans: Iterable[TokenSpan], n_tokens: int) -> list[str]:
    """BIO tags for non-overlapping spans over ``n_tokens`` tokens."""
    tags = [OUTSIDE] * n_tokens
    for s in sorted(spans):
        if not 0 <= s.start < s.end <= n_tokens:
            raise AgreementError(f"span {s} lies outside 0..{n_tokens}")
        if any(t != OUTSIDE for t in tags[s.start : s.end]):
            raise AgreementError(f"span {s} overlaps another span")
        tags[s.start] = f"B-{s.type}"
        for i in range(s.start + 1, s.end):
            tags[i] = f"I-{s.type}"
    return tags


@functools.lru_cache(maxsize=8192)
def _label(tag: str, mode: Mode) -> str:
    return tag if mode == "bio" else tag_type(tag)


def _check_match(match: str) -> None:
    if match not in MATCHES:
        raise AgreementError(f"unknown span match {match!r}; use one of {', '.join(MATCHES)}")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise AgreementError(f"unknown label mode {mode!r}; use one of {', '.join(MODES)}")


# --- validation ----------------------------------------------------------------------------


def normalise_labels(labels: Iterable[str] | None) -> tuple[str, ...] | None:
    """Entity types of a schema given as types (``PER``) or tags (``B-PER``); ``O`` is implied."""
    if labels is None:
        return None
    out: list[str] = []
    for lab in labels:
        typ = tag_type(lab) if _BIO.match(lab) or lab == OUTSIDE else lab
        if typ != OUTSIDE and typ not in out:
            out.append(typ)
    return tuple(out)


def prepare_items(
    items: Iterable[AnnotatedItem], labels: Iterable[str] | None = None
) -> PreparedItems:
    """Validate items and drop empty annotations; raise :class:`AgreementError` on bad input.

    An empty tag list means the annotator did not label that item. An annotator who labelled no
    item is excluded and named in ``warnings``.
    """
    schema = normalise_labels(labels)
    seen: set[str] = set()
    labelled: set[str] = set()
    with_entities: set[str] = set()
    types: set[str] = set()
    ids: set[str] = set()
    out: list[AnnotatedItem] = []
    for item in items:
        if item.item_id in ids:
            raise AgreementError(f"item id {item.item_id!r} appears more than once")
        ids.add(item.item_id)
        kept: dict[str, list[str]] = {}
        for ann, tags in item.by_annotator.items():
            seen.add(ann)
            if not tags:
                continue
            if len(tags) != len(item.tokens):
                raise AgreementError(
                    f"item {item.item_id!r}: annotator {ann!r} has {len(tags)} tags "
                    f"for {len(item.tokens)} tokens"
                )
            for tag in set(tags):
                try:
                    typ = tag_type(tag)
                except AgreementError:
                    raise AgreementError(
                        f"tag {tag!r} in item {item.item_id!r} (annotator {ann!r}) is not a "
                        "BIO tag (O, B-TYPE or I-TYPE)"
                    ) from None
                if typ == OUTSIDE:
                    continue
                if schema is not None and typ not in schema:
                    raise AgreementError(
                        f"label {tag!r} in item {item.item_id!r} (annotator {ann!r}) is not "
                        f"in the schema ({', '.join(schema)})"
                    )
                types.add(typ)
                with_entities.add(ann)
            kept[ann] = list(tags)
            labelled.add(ann)
        if item.tokens and kept:
            out.append(AnnotatedItem(item.item_id, item.lang, list(item.tokens), kept))
    warnings = [
        f"annotator {a!r} labelled nothing and is excluded" for a in sorted(seen - labelled)
    ]
    warnings += [
        f"annotator {a!r} marked no entity in any item" for a in sorted(labelled - with_entities)
    ]
    ordered = schema if schema is not None else tuple(sorted(types))
    return PreparedItems(out, tuple(sorted(labelled)), ordered, warnings)


def _overlapping(prep: PreparedItems, min_annotators: int) -> list[AnnotatedItem]:
    """Items labelled by at least ``min_annotators``; raise if agreement is impossible."""
    if min_annotators < 2:
        raise AgreementError(f"min_annotators must be at least 2, got {min_annotators}")
    if not prep.annotators:
        raise AgreementError("no annotations: no annotator labelled any item")
    if len(prep.annotators) == 1:
        raise AgreementError(
            f"only one annotator ({prep.annotators[0]!r}) labelled any item; "
            "agreement needs at least two"
        )
    kept = [it for it in prep.items if len(it.by_annotator) >= min_annotators]
    if not kept:
        raise AgreementError(
            f"no item was labelled by at least {min_annotators} annotators "
            f"({len(prep.annotators)} annotators, {len(prep.items)} items); "
            "agreement needs overlapping items"
        )
    return kept


def _shared(items: Sequence[AnnotatedItem], panel: Sequence[str]) -> list[AnnotatedItem]:
    return [it for it in items if all(a in it.by_annotator for a in panel)]


def _require_pair(items: Sequence[AnnotatedItem], a: str, b: str) -> list[AnnotatedItem]:
    if a == b:
        raise AgreementError(f"a pair needs two different annotators, got {a!r} twice")
    for ann in (a, b):
        if not any(ann in it.by_annotator for it in items):
            raise AgreementError(f"annotator {ann!r} labelled no item")
    shared = _shared(items, (a, b))
    if not shared:
        raise AgreementError(f"annotators {a!r} and {b!r} labelled no item in common")
    return shared


# --- integer codes -------------------------------------------------------------------------


@dataclass(slots=True)
class Coded:
    """All tokens of a set of items side by side, as integer category codes in one label mode.

    ``matrix[r, p]`` is annotator ``annotators[r]``'s code at token position ``p`` (-1 where that
    annotator did not label the item); code 0 is always ``O``; ``owner[p]`` is the index of the
    position's item in ``item_ids``.
    """

    mode: Mode
    categories: list[str]
    annotators: list[str]
    item_ids: list[str]
    matrix: np.ndarray
    owner: np.ndarray

    def rows(self, panel: Sequence[str]) -> np.ndarray:
        return self.matrix[[self.annotators.index(a) for a in panel]]

    def select(self, items: Iterable[AnnotatedItem]) -> np.ndarray:
        """Boolean mask of the positions that belong to ``items``."""
        index = {item_id: i for i, item_id in enumerate(self.item_ids)}
        return np.isin(self.owner, [index[it.item_id] for it in items])


def encode(items: Sequence[AnnotatedItem], mode: Mode) -> Coded:
    """Integer-code the (validated) items' tags in label ``mode``."""
    index = {OUTSIDE: 0}
    annotators = sorted({a for it in items for a in it.by_annotator})
    row = {a: r for r, a in enumerate(annotators)}
    lengths = [len(it.tokens) for it in items]
    matrix = np.full((len(annotators), sum(lengths)), -1, dtype=np.int64)
    offset = 0
    for it, n in zip(items, lengths, strict=True):
        for ann, tags in it.by_annotator.items():
            codes = [index.setdefault(_label(t, mode), len(index)) for t in tags]
            matrix[row[ann], offset : offset + n] = codes
        offset += n
    owner = np.repeat(np.arange(len(items)), lengths)
    return Coded(mode, list(index), annotators, [it.item_id for it in items], matrix, owner)


def _n_items(coded: Coded, mask: np.ndarray) -> int:
    return int(np.unique(coded.owner[mask]).size)


# --- Cohen's kappa -------------------------------------------------------------------------


def _kappa_codes(x: np.ndarray, y: np.ndarray, k: int) -> tuple[float | None, str | None]:
    n = int(x.size)
    if n == 0:
        return None, NO_TOKENS_NOTE
    observed = int(np.count_nonzero(x == y))
    marginal = int(np.bincount(x, minlength=k) @ np.bincount(y, minlength=k))  # n² · p_e
    if marginal == n * n:
        return 1.0, DEGENERATE_NOTE
    return 1.0 - n * (n - observed) / (n * n - marginal), None


def kappa_from_labels(y1: Sequence[str], y2: Sequence[str]) -> tuple[float | None, str | None]:
    """Cohen's kappa of two equal-length label sequences, and a note when it is a convention.

    ``kappa = (p_o - p_e) / (1 - p_e) = 1 - n (n - agreed) / (n² - Σ_k n_k^a n_k^b)``, in exact
    integer arithmetic with one final division. ``p_e = 1`` (both used one identical category)
    gives 1.0 with a note; no labels gives ``None``.
    """
    if len(y1) != len(y2):
        raise AgreementError(f"label sequences differ in length ({len(y1)} vs {len(y2)})")
    index: dict[str, int] = {}
    x = np.array([index.setdefault(v, len(index)) for v in y1], dtype=np.int64)
    y = np.array([index.setdefault(v, len(index)) for v in y2], dtype=np.int64)
    return _kappa_codes(x, y, len(index))


def _cohen_pair(coded: Coded, sel: np.ndarray, a: str, b: str, exclude_all_o: bool) -> Score:
    """Cohen's kappa of ``a`` and ``b`` over the selected positions both labelled."""
    a, b = sorted((a, b))
    x, y = coded.rows((a, b))
    mask = sel & (x >= 0) & (y >= 0)
    if exclude_all_o:
        mask &= (x > 0) | (y > 0)
    value, note = _kappa_codes(x[mask], y[mask], len(coded.categories))
    n_tokens = int(np.count_nonzero(mask))
    if n_tokens == 0 and exclude_all_o:
        note = NO_TOKENS_EXCL_NOTE
    return Score(value, _n_items(coded, mask), 2, n_tokens, (a, b), note)


def cohen_kappa(
    items: Iterable[AnnotatedItem],
    a: str,
    b: str,
    *,
    mode: Mode = "type",
    exclude_all_o: bool = False,
    labels: Iterable[str] | None = None,
) -> Score:
    """Cohen's kappa between annotators ``a`` and ``b`` on the tokens of the items both labelled."""
    _check_mode(mode)
    prep = prepare_items(items, labels)
    _overlapping(prep, 2)
    coded = encode(_require_pair(prep.items, a, b), mode)
    return _cohen_pair(coded, np.ones(coded.owner.size, dtype=bool), a, b, exclude_all_o)


def _pairs(items: Sequence[AnnotatedItem]) -> dict[tuple[str, str], list[AnnotatedItem]]:
    """Every annotator pair sharing an item, sorted, with the items they share."""
    found: dict[tuple[str, str], list[AnnotatedItem]] = {}
    for it in items:
        for pair in itertools.combinations(sorted(it.by_annotator), 2):
            found.setdefault(pair, []).append(it)
    return dict(sorted(found.items()))


def _mean_score(scores: Sequence[Score], n_items: int, n_tokens: int, what: str) -> Score:
    """Unweighted mean over pairs; ``n_tokens`` counts distinct token positions behind it."""
    defined = [s.value for s in scores if s.value is not None]
    anns = tuple(sorted({a for s in scores for a in s.annotators}))
    undefined = len(scores) - len(defined)
    note = f"unweighted mean over {len(defined)} annotator pairs"
    if undefined:
        note += f" ({undefined} undefined pairs skipped)"
    value = float(np.mean(defined)) if defined else None
    if value is None:
        note = f"no annotator pair has a defined {what}"
    detail: dict[str, int | float] = {
        "n_pairs": len(scores),
        "n_pairs_defined": len(defined),
        "n_token_pairs": sum(s.n_tokens for s in scores),
    }
    return Score(value, n_items, len(anns), n_tokens, anns, note, detail)


def _pairwise_cohen(
    items: Sequence[AnnotatedItem], coded: Coded, sel: np.ndarray, exclude_all_o: bool
) -> PairwiseKappa:
    scores = [_cohen_pair(coded, sel, a, b, exclude_all_o) for a, b in _pairs(items)]
    rated = coded.matrix >= 0
    compared = sel & (rated.sum(axis=0) >= 2)  # positions some pair compares
    if exclude_all_o:
        compared &= np.any(coded.matrix > 0, axis=0)
    n_items, n_tokens = _n_items(coded, compared), int(np.count_nonzero(compared))
    return PairwiseKappa(_mean_score(scores, n_items, n_tokens, "kappa"), scores)


def pairwise_cohen_kappa(
    items: Iterable[AnnotatedItem],
    *,
    mode: Mode = "type",
    exclude_all_o: bool = False,
    labels: Iterable[str] | None = None,
    min_annotators: int = 2,
) -> PairwiseKappa:
    """Cohen's kappa for every pair sharing an item (among items with ``min_annotators``+)."""
    _check_mode(mode)
    kept = _overlapping(prepare_items(items, labels), min_annotators)
    coded = encode(kept, mode)
    return _pairwise_cohen(kept, coded, np.ones(coded.owner.size, dtype=bool), exclude_all_o)


# --- Fleiss' kappa -------------------------------------------------------------------------


def fleiss_from_counts(counts: np.ndarray) -> tuple[float | None, str | None]:
    """Fleiss' kappa from a subjects × categories count table with a constant row sum.

    ``kappa = (P̄ - P_e) / (1 - P_e)``, exact integer arithmetic with one final division; one
    single category used throughout gives 1.0 with a note, no subjects gives ``None``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None, NO_TOKENS_NOTE
    per_row = counts.sum(axis=1)
    n = int(per_row[0])
    if n < 2 or np.any(per_row != n):
        raise AgreementError("Fleiss' kappa needs the same number (>= 2) of ratings per subject")
    n_subjects = counts.shape[0]
    totals = counts.sum(axis=0)
    if int(np.count_nonzero(totals)) == 1:
        return 1.0, DEGENERATE_NOTE
    agree = int((counts * (counts - 1)).sum())  # P̄ = agree / d1
    d1 = n_subjects * n * (n - 1)
    sq = sum(int(t) * int(t) for t in totals)  # P_e = sq / d2
    d2 = (n_subjects * n) ** 2
    return (agree * d2 - sq * d1) / (d1 * (d2 - sq)), None


def _fleiss(coded: Coded, sel: np.ndarray, panel: Sequence[str], exclude_all_o: bool) -> Score:
    panel = tuple(sorted(set(panel)))
    if len(panel) < 2:
        raise AgreementError(f"Fleiss' kappa needs at least two annotators, got {list(panel)}")
    unknown = [a for a in panel if a not in coded.annotators]
    rows = coded.rows([a for a in panel if a not in unknown])
    mask = sel & np.all(rows >= 0, axis=0) if not unknown else np.zeros_like(sel)
    if not mask.any():
        raise AgreementError(f"no item was labelled by all of {', '.join(repr(a) for a in panel)}")
    if exclude_all_o:
        mask &= np.any(rows > 0, axis=0)
    rows = rows[:, mask]
    k, n_tok = len(coded.categories), rows.shape[1]
    flat = (np.arange(n_tok)[None, :] * k + rows).ravel()
    counts = np.bincount(flat, minlength=n_tok * k).reshape(n_tok, k)
    value, note = fleiss_from_counts(counts)
    if n_tok == 0:
        note = NO_TOKENS_EXCL_NOTE if exclude_all_o else NO_TOKENS_NOTE
    return Score(value, _n_items(coded, mask), len(panel), int(n_tok), panel, note)


def fleiss_kappa(
    items: Iterable[AnnotatedItem],
    annotators: Sequence[str] | None = None,
    *,
    mode: Mode = "type",
    exclude_all_o: bool = False,
    labels: Iterable[str] | None = None,
) -> Score:
    """Fleiss' kappa over a panel of annotators (default: all) on the items all of them labelled.

    Only the panel's tags are used; other annotators of those items are ignored.
    """
    _check_mode(mode)
    prep = prepare_items(items, labels)
    _overlapping(prep, 2)
    coded = encode(prep.items, mode)
    sel = np.ones(coded.owner.size, dtype=bool)
    return _fleiss(coded, sel, annotators or prep.annotators, exclude_all_o)


def choose_panel(items: Sequence[AnnotatedItem]) -> tuple[str, ...] | None:
    """The annotator panel that maximises ratings (shared tokens × panel size) for Fleiss.

    Candidates are the annotator sets of the items and their pairwise intersections (size >= 2);
    ties go to the larger panel, then to the alphabetically first.
    """
    tokens_by_set: Counter[frozenset[str]] = Counter()
    for it in items:
        if len(it.by_annotator) >= 2:
            tokens_by_set[frozenset(it.by_annotator)] += len(it.tokens)
    sets = list(tokens_by_set)
    cands = set(sets) | {a & b for a, b in itertools.combinations(sets, 2) if len(a & b) >= 2}
    best: tuple[str, ...] | None = None
    best_key = (-1, -1)
    for cand in sorted(tuple(sorted(c)) for c in cands):
        covered = sum(n for s, n in tokens_by_set.items() if s.issuperset(cand))
        key = (covered * len(cand), len(cand))
        if key > best_key:
            best, best_key = cand, key
    return best


# --- Krippendorff's alpha ------------------------------------------------------------------


def _reliability(
    coded: Coded, sel: np.ndarray, exclude_all_o: bool
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Float annotators × tokens matrix (NaN = missing), its annotators and the column mask."""
    mask = sel.copy()
    if exclude_all_o:
        mask &= np.any(coded.matrix > 0, axis=0)
    sub = coded.matrix[:, mask]
    rated = np.any(sub >= 0, axis=1)
    matrix = np.where(sub[rated] >= 0, sub[rated], np.nan).astype(float)
    annotators = [a for a, r in zip(coded.annotators, rated, strict=True) if r]
    return matrix, annotators, mask


def reliability_matrix(
    items: Iterable[AnnotatedItem],
    *,
    mode: Mode = "type",
    exclude_all_o: bool = False,
    labels: Iterable[str] | None = None,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Annotators × tokens matrix of category codes, NaN where an annotator did not label.

    Returns the matrix, its row annotators and the categories (a code is an index into them).
    """
    _check_mode(mode)
    prep = prepare_items(items, labels)
    coded = encode(prep.items, mode)
    sel = np.ones(coded.owner.size, dtype=bool)
    matrix, annotators, _ = _reliability(coded, sel, exclude_all_o)
    return matrix, annotators, coded.categories


def alpha_from_matrix(matrix: np.ndarray) -> tuple[float | None, str | None]:
    """Nominal Krippendorff's alpha (``krippendorff`` package) with the kappa conventions."""
    pairable = np.sum(~np.isnan(matrix), axis=0) >= 2
    values = matrix[:, pairable]
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None, "no token rated by two or more annotators"
    if np.unique(values).size == 1:
        return 1.0, DEGENERATE_NOTE
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")), None


def _krippendorff(coded: Coded, sel: np.ndarray, exclude_all_o: bool) -> Score:
    matrix, annotators, mask = _reliability(coded, sel, exclude_all_o)
    value, note = alpha_from_matrix(matrix)
    if matrix.shape[1] == 0:
        note = NO_TOKENS_EXCL_NOTE if exclude_all_o else NO_TOKENS_NOTE
    detail: dict[str, int | float] = {"n_ratings": int(np.sum(~np.isnan(matrix)))}
    n_items, n_tokens = _n_items(coded, mask), int(matrix.shape[1])
    return Score(value, n_items, len(annotators), n_tokens, tuple(annotators), note, detail)


def krippendorff_alpha(
    items: Iterable[AnnotatedItem],
    *,
    mode: Mode = "type",
    exclude_all_o: bool = False,
    labels: Iterable[str] | None = None,
    min_annotators: int = 2,
) -> Score:
    """Nominal Krippendorff's alpha over tokens × annotators of items with ``min_annotators``+."""
    _check_mode(mode)
    kept = _overlapping(prepare_items(items, labels), min_annotators)
    coded = encode(kept, mode)
    return _krippendorff(coded, np.ones(coded.owner.size, dtype=bool), exclude_all_o)


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
    _check_match(match)
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


class _SpanCache:
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
    shared: Sequence[AnnotatedItem], a: str, b: str, match: Match, cache: _SpanCache
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


def _pairwise_span_f1(
    items: Sequence[AnnotatedItem],
    match: Match,
    types: Sequence[str],
    cache: _SpanCache | None = None,
) -> SpanF1Summary:
    cache = cache or _SpanCache()
    pairs = [_span_pair(sh, a, b, match, cache) for (a, b), sh in _pairs(items).items()]
    shared = [it for it in items if len(it.by_annotator) >= 2]
    n_items, n_tokens = len(shared), sum(len(it.tokens) for it in shared)
    mean = _mean_score([p.micro for p in pairs], n_items, n_tokens, "span F1")
    pooled = _pooled([p.micro for p in pairs], n_items, n_tokens)
    seen = {t for p in pairs for t in p.per_type}
    ordered = [t for t in types if t in seen] + sorted(seen - set(types))
    per_type_mean: dict[str, Score] = {}
    per_type_pooled: dict[str, Score] = {}
    for t in ordered:
        with_t = [p for p in pairs if t in p.per_type]
        per_type_mean[t] = _mean_score([p.per_type[t] for p in with_t], n_items, n_tokens, "F1")
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
    _overlapping(prep, 2)
    _check_match(match)
    return _span_pair(_require_pair(prep.items, a, b), a, b, match, _SpanCache())


def pairwise_span_f1(
    items: Iterable[AnnotatedItem],
    *,
    match: Match = "exact",
    labels: Iterable[str] | None = None,
    min_annotators: int = 2,
) -> SpanF1Summary:
    """Span F1 for every annotator pair, averaged over pairs and pooled, micro and per type."""
    prep = prepare_items(items, labels)
    _check_match(match)
    return _pairwise_span_f1(_overlapping(prep, min_annotators), match, prep.types)


# --- confusion -----------------------------------------------------------------------------


def _confusion(
    items: Sequence[AnnotatedItem], types: Sequence[str], coded: Coded, sel: np.ndarray
) -> Confusion:
    labels = [OUTSIDE, *types]
    k = len(labels)
    remap = np.array([labels.index(c) for c in coded.categories], dtype=np.int64)
    flat = np.zeros(k * k, dtype=np.int64)
    for a, b in _pairs(items):
        x, y = coded.rows((a, b))
        mask = sel & (x >= 0) & (y >= 0)
        flat += np.bincount(remap[x[mask]] * k + remap[y[mask]], minlength=k * k)
    m = flat.reshape(k, k)
    return Confusion(labels, (m + m.T).tolist())


def type_confusion(
    items: Iterable[AnnotatedItem], labels: Iterable[str] | None = None
) -> Confusion:
    """Token-level entity-type confusion pooled over all annotator pairs (symmetric)."""
    prep = prepare_items(items, labels)
    kept = _overlapping(prep, 2)
    coded = encode(kept, "type")
    return _confusion(kept, prep.types, coded, np.ones(coded.owner.size, dtype=bool))


# --- the report ----------------------------------------------------------------------------


def _section(
    scope: str,
    items: Sequence[AnnotatedItem],
    types: Sequence[str],
    coded: dict[Mode, Coded],
    spans: _SpanCache,
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
            section.cohen[mode][variant] = _pairwise_cohen(items, coded[mode], sel, excl)
            if panel is not None:
                fl = _fleiss(coded[mode], sel, panel, excl)
                if set(panel) != set(anns):
                    note = f"panel {', '.join(panel)}: the subset with the most shared ratings"
                    fl = replace(fl, note="; ".join(x for x in (fl.note, note) if x))
                section.fleiss[mode][variant] = fl
            section.krippendorff[mode][variant] = _krippendorff(coded[mode], sel, excl)
    for match in MATCHES:
        section.span_f1[match] = _pairwise_span_f1(items, match, types, spans)
    section.confusion = _confusion(items, types, coded["type"], sel)
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
    kept = _overlapping(prep, min_annotators)
    warnings = list(prep.warnings)
    dropped = len(prep.items) - len(kept)
    if dropped:
        warnings.append(
            f"{dropped} items labelled by fewer than {min_annotators} annotators ignored"
        )
    coded = {mode: encode(kept, mode) for mode in MODES}
    spans = _SpanCache()
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
