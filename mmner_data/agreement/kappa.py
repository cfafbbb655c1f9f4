"""Token-level agreement: Cohen's kappa (pairs), Fleiss' kappa (a panel), Krippendorff's alpha,
and the entity-type confusion between annotators, as pure functions.

Token metrics come in two label modes (``"bio"``: the full tag; ``"type"``: entity type or ``O``)
and two variants: all tokens, and excluding the tokens every compared annotator tagged ``O``
(those inflate kappa). See ``docs/agreement.md`` for the formulas and which to trust.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import krippendorff
import numpy as np

from mmner_data.agreement.sequences import (
    DEGENERATE_NOTE,
    NO_TOKENS_EXCL_NOTE,
    NO_TOKENS_NOTE,
    OUTSIDE,
    AgreementError,
    AnnotatedItem,
    Coded,
    Mode,
    Score,
    annotator_pairs,
    check_mode,
    count_items,
    encode,
    mean_score,
    overlapping_items,
    prepare_items,
    require_pair,
)


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
class Confusion:
    """Token-level entity-type confusion between annotators, pooled over pairs.

    Each unordered pair is counted in both directions, so the matrix is symmetric and sums to
    twice the number of compared token pairs. ``matrix[i][j]``: one annotator said
    ``labels[i]`` where the other said ``labels[j]``.
    """

    labels: list[str]
    matrix: list[list[int]]


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
    return Score(value, count_items(coded, mask), 2, n_tokens, (a, b), note)


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
    check_mode(mode)
    prep = prepare_items(items, labels)
    overlapping_items(prep, 2)
    coded = encode(require_pair(prep.items, a, b), mode)
    return _cohen_pair(coded, np.ones(coded.owner.size, dtype=bool), a, b, exclude_all_o)


def pairwise_cohen(
    items: Sequence[AnnotatedItem], coded: Coded, sel: np.ndarray, exclude_all_o: bool
) -> PairwiseKappa:
    """Cohen's kappa of every pair over the ``sel`` positions of pre-encoded items."""
    scores = [_cohen_pair(coded, sel, a, b, exclude_all_o) for a, b in annotator_pairs(items)]
    rated = coded.matrix >= 0
    compared = sel & (rated.sum(axis=0) >= 2)  # positions some pair compares
    if exclude_all_o:
        compared &= np.any(coded.matrix > 0, axis=0)
    n_items, n_tokens = count_items(coded, compared), int(np.count_nonzero(compared))
    return PairwiseKappa(mean_score(scores, n_items, n_tokens, "kappa"), scores)


def pairwise_cohen_kappa(
    items: Iterable[AnnotatedItem],
    *,
    mode: Mode = "type",
    exclude_all_o: bool = False,
    labels: Iterable[str] | None = None,
    min_annotators: int = 2,
) -> PairwiseKappa:
    """Cohen's kappa for every pair sharing an item (among items with ``min_annotators``+)."""
    check_mode(mode)
    kept = overlapping_items(prepare_items(items, labels), min_annotators)
    coded = encode(kept, mode)
    return pairwise_cohen(kept, coded, np.ones(coded.owner.size, dtype=bool), exclude_all_o)


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


def fleiss_score(coded: Coded, sel: np.ndarray, panel: Sequence[str], exclude_all_o: bool) -> Score:
    """Fleiss' kappa of ``panel`` over the ``sel`` positions of pre-encoded items."""
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
    return Score(value, count_items(coded, mask), len(panel), int(n_tok), panel, note)


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
    check_mode(mode)
    prep = prepare_items(items, labels)
    overlapping_items(prep, 2)
    coded = encode(prep.items, mode)
    sel = np.ones(coded.owner.size, dtype=bool)
    return fleiss_score(coded, sel, annotators or prep.annotators, exclude_all_o)


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
    check_mode(mode)
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


def krippendorff_score(coded: Coded, sel: np.ndarray, exclude_all_o: bool) -> Score:
    """Krippendorff's alpha over the ``sel`` positions of pre-encoded items."""
    matrix, annotators, mask = _reliability(coded, sel, exclude_all_o)
    value, note = alpha_from_matrix(matrix)
    if matrix.shape[1] == 0:
        note = NO_TOKENS_EXCL_NOTE if exclude_all_o else NO_TOKENS_NOTE
    detail: dict[str, int | float] = {"n_ratings": int(np.sum(~np.isnan(matrix)))}
    n_items, n_tokens = count_items(coded, mask), int(matrix.shape[1])
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
    check_mode(mode)
    kept = overlapping_items(prepare_items(items, labels), min_annotators)
    coded = encode(kept, mode)
    return krippendorff_score(coded, np.ones(coded.owner.size, dtype=bool), exclude_all_o)


# --- confusion -----------------------------------------------------------------------------


def confusion_matrix(
    items: Sequence[AnnotatedItem], types: Sequence[str], coded: Coded, sel: np.ndarray
) -> Confusion:
    """Type confusion pooled over pairs, over the ``sel`` positions of pre-encoded items."""
    labels = [OUTSIDE, *types]
    k = len(labels)
    remap = np.array([labels.index(c) for c in coded.categories], dtype=np.int64)
    flat = np.zeros(k * k, dtype=np.int64)
    for a, b in annotator_pairs(items):
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
    kept = overlapping_items(prep, 2)
    coded = encode(kept, "type")
    return confusion_matrix(kept, prep.types, coded, np.ones(coded.owner.size, dtype=bool))
