"""The data model of agreement: items, annotators' BIO label sequences, scores, validation.

Input to every metric is a list of :class:`AnnotatedItem` records, one per post, holding BIO tags
per annotator for the same tokens (annotators who did not label an item are absent, or present
with an empty tag list). :func:`prepare_items` validates them; :func:`encode` turns them into
integer category codes (tokens × annotators) for the token-level metrics
(:mod:`mmner_data.agreement.kappa`); :class:`TokenSpan` and :func:`bio_to_spans` serve span F1
(:mod:`mmner_data.agreement.span_f1`) and adjudication. Every number is a :class:`Score` carrying
the ``n_items``, ``n_annotators`` and ``n_tokens`` behind it; undefined numbers are ``None`` with a
note, never NaN; inputs agreement cannot be computed on raise :class:`AgreementError`.

Token spans here are token indices of one item's tokenisation; character spans
(:class:`mmner_data.schema.EntitySpan`) convert to tags in :mod:`mmner_data.text.spans`.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, Literal

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

BIO_TAG = re.compile(r"^([BI])-(\S.*)$")


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
    m = BIO_TAG.match(tag)
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
def label_of(tag: str, mode: Mode) -> str:
    return tag if mode == "bio" else tag_type(tag)


def check_match(match: str) -> None:
    if match not in MATCHES:
        raise AgreementError(f"unknown span match {match!r}; use one of {', '.join(MATCHES)}")


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise AgreementError(f"unknown label mode {mode!r}; use one of {', '.join(MODES)}")


# --- validation ----------------------------------------------------------------------------


def normalise_labels(labels: Iterable[str] | None) -> tuple[str, ...] | None:
    """Entity types of a schema given as types (``PER``) or tags (``B-PER``); ``O`` is implied."""
    if labels is None:
        return None
    out: list[str] = []
    for lab in labels:
        typ = tag_type(lab) if BIO_TAG.match(lab) or lab == OUTSIDE else lab
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


def overlapping_items(prep: PreparedItems, min_annotators: int) -> list[AnnotatedItem]:
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


def shared_items(items: Sequence[AnnotatedItem], panel: Sequence[str]) -> list[AnnotatedItem]:
    return [it for it in items if all(a in it.by_annotator for a in panel)]


def require_pair(items: Sequence[AnnotatedItem], a: str, b: str) -> list[AnnotatedItem]:
    if a == b:
        raise AgreementError(f"a pair needs two different annotators, got {a!r} twice")
    for ann in (a, b):
        if not any(ann in it.by_annotator for it in items):
            raise AgreementError(f"annotator {ann!r} labelled no item")
    shared = shared_items(items, (a, b))
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
            codes = [index.setdefault(label_of(t, mode), len(index)) for t in tags]
            matrix[row[ann], offset : offset + n] = codes
        offset += n
    owner = np.repeat(np.arange(len(items)), lengths)
    return Coded(mode, list(index), annotators, [it.item_id for it in items], matrix, owner)


def count_items(coded: Coded, mask: np.ndarray) -> int:
    return int(np.unique(coded.owner[mask]).size)


# --- annotator pairs ---------------------------------------------------------------------


def annotator_pairs(items: Sequence[AnnotatedItem]) -> dict[tuple[str, str], list[AnnotatedItem]]:
    """Every annotator pair sharing an item, sorted, with the items they share."""
    found: dict[tuple[str, str], list[AnnotatedItem]] = {}
    for it in items:
        for pair in itertools.combinations(sorted(it.by_annotator), 2):
            found.setdefault(pair, []).append(it)
    return dict(sorted(found.items()))


def mean_score(scores: Sequence[Score], n_items: int, n_tokens: int, what: str) -> Score:
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
