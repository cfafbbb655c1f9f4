"""Export records: a labelled post tokenised, tagged (BIO) and pseudonymised."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmner_data.errors import MmnerError
from mmner_data.export.pseudonymise import pseudonymise
from mmner_data.labels import LabelledPost
from mmner_data.schema import EntitySpan
from mmner_data.text.spans import SpanError, spans_to_tags, tags_to_spans
from mmner_data.text.tokenize import Token, tokenize


def bio_names(entity_types: Sequence[str]) -> list[str]:
    """ClassLabel names: ``O``, then ``B-T``, ``I-T`` for each type in recipe order."""
    names = ["O"]
    for t in entity_types:
        names += [f"B-{t}", f"I-{t}"]
    return names


def export_id(salt: str, post_id: str, lang: str) -> str:
    """``<lang>_<16 hex>``: a keyed hash of the post id (source ids can name their author)."""
    digest = hmac.new(salt.encode(), f"export\x00{post_id}".encode(), hashlib.sha256)
    return f"{lang}_{digest.hexdigest()[:16]}"


@dataclass(slots=True)
class ExportRecord:
    id: str
    post_id: str  # never exported; for the store-side summary only
    lang: str
    text: str
    tokens: list[Token]
    tags: list[str]
    source: str
    licence: str | None
    author: str | None
    created_at: str | None
    label_source: str
    label_origin: str
    clip_score: float | None
    image_path: Path | None
    image_sha256: str | None
    types: frozenset[str] = field(default_factory=frozenset)
    n_replaced: int = 0
    split: str = ""

    def spans(self) -> list[EntitySpan]:
        return tags_to_spans(self.tokens, self.tags)


class RecordError(MmnerError):
    """A post whose labels cannot be turned into tags (overlaps, unknown label)."""


def build_record(
    post: LabelledPost,
    *,
    salt: str,
    entity_types: Sequence[str],
    snap: str = "expand",
    clip_score: float | None = None,
) -> ExportRecord:
    """Tokenise, tag and pseudonymise one post. Raises :class:`RecordError`."""
    tokens = tokenize(post.text)
    try:
        tags = spans_to_tags(post.text, tokens, post.spans, snap=snap, labels=set(entity_types))
    except SpanError as exc:
        raise RecordError(f"{post.post_id} ({post.label_source}): {exc}") from None
    pseudo = pseudonymise(post.text, tokens, salt, post.source)
    return ExportRecord(
        id=export_id(salt, post.post_id, post.lang),
        post_id=post.post_id,
        lang=post.lang,
        text=pseudo.text,
        tokens=pseudo.tokens,
        tags=tags,
        source=post.source,
        licence=post.licence,
        author=post.author,
        created_at=post.created_at,
        label_source=post.label_source,
        label_origin=post.label_origin,
        clip_score=clip_score,
        image_path=post.image_path,
        image_sha256=post.image_sha256,
        types=frozenset(t[2:] for t in tags if t != "O"),
        n_replaced=len(pseudo.replacements),
    )
