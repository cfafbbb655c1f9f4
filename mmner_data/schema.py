"""Typed records that flow between stages.

Every stage reads and writes these; nothing else crosses a stage boundary. Offsets are
always character offsets into the post's original ``text`` (Python ``str`` indices).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

TARGET_LANGS: tuple[str, ...] = ("en", "fr", "de", "es")


class PostStatus(StrEnum):
    """Where a post stands after ``collect``."""

    CANDIDATE = "candidate"  # ingested, not yet judged by dedup/quotas
    KEPT = "kept"
    DROPPED = "dropped"


class DropReason(StrEnum):
    """Why an item left the pipeline. Stable slugs: reports and tests key on them."""

    MALFORMED_RECORD = "malformed_record"
    EMPTY_TEXT = "empty_text"
    TOO_SHORT = "too_short"
    LANG_OTHER = "lang_other"
    LANG_LOW_CONFIDENCE = "lang_low_confidence"
    REBLOG = "reblog"
    RETWEET = "retweet"
    NO_IMAGE = "no_image"
    IMAGE_FAILED = "image_failed"
    EXACT_DUP_TEXT = "exact_dup_text"
    NEAR_DUP_TEXT = "near_dup_text"
    EXACT_DUP_IMAGE = "exact_dup_image"
    NEAR_DUP_IMAGE = "near_dup_image"
    OVER_QUOTA = "over_quota"
    IMAGE_UNREADABLE = "image_unreadable"  # filter: stored image cannot be decoded
    LOW_RELEVANCE = "low_relevance"  # filter: CLIP text-image score under the threshold


@dataclass(frozen=True, slots=True)
class TextEntity:
    """A span of the original text that normalisation recognised (never removed from text)."""

    kind: str  # "url" | "mention" | "hashtag" | "emoji"
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Where a post's image comes from: a URL (http/https/file) or bytes a source already holds."""

    url: str | None = None
    data: bytes | None = field(default=None, repr=False)
    alt: str | None = None
    content_type: str | None = None


@dataclass(slots=True)
class Post:
    """One social-media post as a source yields it (before language ID and dedup)."""

    source: str  # the recipe's source name
    source_id: str  # id inside that source
    text: str
    url: str | None = None
    created_at: str | None = None  # ISO 8601, UTC
    author: str | None = None  # raw handle; pseudonymised before it is stored
    source_lang: str | None = None  # the source's own language tag, if any
    images: list[ImageRef] = field(default_factory=list)
    is_reblog: bool = False
    licence: str | None = None
    raw: dict | None = field(default=None, repr=False)

    @property
    def post_id(self) -> str:
        return f"{self.source}:{self.source_id}"


@dataclass(frozen=True, slots=True)
class Image:
    """An image stored in the content-addressed folder."""

    sha256: str
    width: int
    height: int
    format: str
    n_bytes: int
    phash: str  # 64-bit perceptual hash as 16 hex digits
    source_sha256: str | None = None  # sha256 of the bytes as downloaded


@dataclass(frozen=True, slots=True)
class Drop:
    """A record of something skipped, with the reason; the drop report is built from these."""

    stage: str
    item_id: str
    reason: str
    source: str | None = None
    lang: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True, order=True)
class EntitySpan:
    """A named entity as character offsets ``[start, end)`` into a post's original text.

    The one span type of the package: pre-annotations, Label Studio annotations, gold and the
    span ↔ token ↔ BIO converters (:mod:`mmner_data.text.spans`) all use it. An entity is
    ``(start, end, label)``: equality, hashing and ordering use those three only.
    ``score`` is a confidence in [0, 1] for model predictions and None for human annotations;
    ``text`` optionally records the covered text (e.g. the quote an annotation UI sent).
    Stored as JSON objects ``{"start", "end", "label", "score"?, "text"?}`` (:meth:`to_json`).
    """

    start: int
    end: int
    label: str
    score: float | None = field(default=None, compare=False)
    text: str | None = field(default=None, compare=False)

    def text_in(self, text: str) -> str:
        """The covered substring of ``text``."""
        return text[self.start : self.end]

    def to_json(self) -> dict:
        d: dict = {"start": self.start, "end": self.end, "label": self.label}
        if self.score is not None:
            d["score"] = self.score
        if self.text is not None:
            d["text"] = self.text
        return d

    @classmethod
    def from_json(cls, d: dict) -> EntitySpan:
        return cls(int(d["start"]), int(d["end"]), str(d["label"]), d.get("score"), d.get("text"))


def spans_from_json(raw: str | None) -> tuple[EntitySpan, ...]:
    """A store ``*_json`` span column → spans (NULL or empty → none)."""
    return tuple(EntitySpan.from_json(d) for d in json.loads(raw or "[]"))


def spans_to_json(spans: Iterable[EntitySpan]) -> str:
    """Spans → the store's ``*_json`` column text (the inverse of :func:`spans_from_json`)."""
    return json.dumps([s.to_json() for s in spans], ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Prediction:
    """Pre-annotations of one post by one model version (``preannotate`` → ``annotate push``)."""

    post_id: str
    model_version: str
    spans: tuple[EntitySpan, ...]
    score: float | None = None


@dataclass(frozen=True, slots=True)
class Annotation:
    """One annotator's labels for one post (``annotate pull`` → ``agreement`` → ``export``)."""

    annotation_key: str
    post_id: str
    annotator: str
    status: str  # submitted | skipped | cancelled
    spans: tuple[EntitySpan, ...]
    origin: str = "label-studio"
    lead_time: float | None = None
    created_at: str | None = None
    updated_at: str | None = None
