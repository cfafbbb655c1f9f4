"""What an import accepts from a lake it did not write: every row checked before it is stored.

Types and NOT NULL come from the target store's own schema; on top of that each table has its
rules (allowed status values, sha256 hex, JSON columns that parse, bounded lengths). A row that
fails makes the whole shard fail with the first reason (:class:`Invalid`), so a shard is imported
whole or not at all.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mmner_data.lake.layout import MAX_IMAGE_BYTES, image_ext
from mmner_data.lake.tables import DROPS, IMAGES, POST_IMAGES, POSTS, SELECTION, Column
from mmner_data.schema import PostStatus

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
PHASH_HEX = re.compile(r"[0-9a-f]{16}")
MAX_ID_CHARS = 1024
MAX_SHORT_CHARS = 65_536
MAX_LONG_CHARS = 2_000_000
LONG_COLUMNS = {"text", "text_key", "raw_json", "entities_json", "spans_json", "detail", "alt"}
MAX_INT = 2**63 - 1
MAX_POSITION = 10_000
MAX_PIXELS_SIDE = 1_000_000
MAX_SPANS = 10_000

POST_STATUSES = {s.value for s in PostStatus}
POST_IMAGE_STATUSES = {"pending", "ok", "failed"}
SELECTION_STATUSES = {"kept", "dropped_low_relevance", "no_image", "image_unreadable"}
IMAGE_FORMATS = {"jpeg", "png", "webp", "gif"}


class Invalid(Exception):
    """A row the lake cannot be trusted with; the message is the reason (internal)."""


def check_rows(
    rows: Sequence[Mapping[str, Any]],
    cols: Sequence[Column],
    rule: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Each row typed and checked against the store's columns (+ ``rule``); Invalid on the first."""
    out = []
    for i, row in enumerate(rows):
        try:
            clean = {c.name: _value(c, row.get(c.name)) for c in cols}
            if rule is not None:
                rule(clean)
        except Invalid as exc:
            raise Invalid(f"row {i}: {exc}") from None
        out.append(clean)
    return out


def _value(col: Column, value: object) -> object:
    if value is None:
        if col.not_null:
            if col.default is None:
                raise Invalid(f"{col.name} is missing")
            return col.default
        return None
    if col.type == "TEXT":
        if not isinstance(value, str):
            raise Invalid(f"{col.name} is {type(value).__name__}, not text")
        limit = MAX_LONG_CHARS if col.name in LONG_COLUMNS else MAX_SHORT_CHARS
        if len(value) > limit:
            raise Invalid(f"{col.name} is longer than {limit} characters")
        if "\x00" in value:
            raise Invalid(f"{col.name} holds a NUL character")
        return value
    if col.type == "INTEGER":
        if not isinstance(value, int) or abs(value) > MAX_INT:
            raise Invalid(f"{col.name} is {type(value).__name__}, not an integer")
        return int(value)
    if col.type == "REAL":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"{col.name} is {type(value).__name__}, not a number")
        if not math.isfinite(float(value)):
            raise Invalid(f"{col.name} is not finite")
        return float(value)
    raise Invalid(f"{col.name}: the store declares an unknown type {col.type}")


# -- shared checks ----------------------------------------------------------------------------


def need_id(row: Mapping[str, Any], name: str) -> None:
    value = row.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise Invalid(f"{name} must be 1..{MAX_ID_CHARS} characters")


def need_sha(row: Mapping[str, Any], name: str, *, optional: bool = False) -> None:
    value = row.get(name)
    if value is None and optional:
        return
    if not isinstance(value, str) or not SHA256_HEX.fullmatch(value):
        raise Invalid(f"{name} {value!r} is not 64 lowercase hex digits")


def need_in(row: Mapping[str, Any], name: str, allowed: set, *, optional: bool = False) -> None:
    value = row.get(name)
    if value is None and optional:
        return
    if value not in allowed:
        raise Invalid(f"{name} {value!r} is not one of {', '.join(sorted(map(str, allowed)))}")


def need_range(row: Mapping[str, Any], name: str, low: float, high: float) -> None:
    value = row.get(name)
    if value is not None and not low <= value <= high:
        raise Invalid(f"{name} {value!r} is outside {low}..{high}")


def need_json(row: Mapping[str, Any], name: str, kind: type | None = None) -> Any:
    raw = row.get(name)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise Invalid(f"{name} is not valid JSON") from None
    if kind is not None and not isinstance(value, kind):
        raise Invalid(f"{name} is not a JSON {kind.__name__}")
    return value


def check_spans(raw: str | None, text_length: int | None) -> None:
    """A span list as the store keeps it: ``[{"start", "end", "label", "score"?, "text"?}]``."""
    spans = need_json({"spans_json": raw}, "spans_json", list) or []
    if len(spans) > MAX_SPANS:
        raise Invalid(f"spans_json holds more than {MAX_SPANS} spans")
    for s in spans:
        if not isinstance(s, dict):
            raise Invalid("spans_json holds a span that is not an object")
        start, end, label = s.get("start"), s.get("end"), s.get("label")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            raise Invalid("a span's start/end are not integers")
        if not 0 <= start < end or (text_length is not None and end > text_length):
            raise Invalid(f"span [{start}, {end}) is outside the post's text")
        if not isinstance(label, str) or not 0 < len(label) <= 64:
            raise Invalid("a span's label is not 1..64 characters")
        score = s.get("score")
        if score is not None and (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
        ):
            raise Invalid("a span's score is not a finite number")
        if s.get("text") is not None and not isinstance(s.get("text"), str):
            raise Invalid("a span's text is not a string")


# -- per table --------------------------------------------------------------------------------


def post_rule(row: dict) -> None:
    need_id(row, "post_id")
    need_id(row, "source")
    need_id(row, "source_id")
    need_in(row, "status", POST_STATUSES)
    need_in(row, "is_reblog", {0, 1})
    need_range(row, "lang_confidence", 0.0, 1.0)
    need_range(row, "ingest_seq", 0, MAX_INT)
    need_json(row, "entities_json", list)
    need_json(row, "raw_json")


def post_image_rule(row: dict) -> None:
    need_id(row, "post_id")
    need_range(row, "position", 0, MAX_POSITION)
    need_in(row, "status", POST_IMAGE_STATUSES)
    need_sha(row, "sha256", optional=row.get("status") != "ok")
    need_range(row, "attempts", 0, MAX_INT)


def image_rule(row: dict) -> None:
    need_sha(row, "sha256")
    need_sha(row, "source_sha256", optional=True)
    need_in(row, "format", IMAGE_FORMATS)
    need_range(row, "width", 1, MAX_PIXELS_SIDE)
    need_range(row, "height", 1, MAX_PIXELS_SIDE)
    need_range(row, "n_bytes", 1, MAX_IMAGE_BYTES)
    if not isinstance(row.get("phash"), str) or not PHASH_HEX.fullmatch(row["phash"]):
        raise Invalid(f"phash {row.get('phash')!r} is not 16 lowercase hex digits")


def index_rule(row: Mapping[str, Any], image: Mapping[str, Any]) -> None:
    """An image index row agrees with its image row (size, member name)."""
    if row.get("size") != image["n_bytes"]:
        raise Invalid(f"image {image['sha256']}: size {row.get('size')!r} != n_bytes")
    if row.get("member") != f"{image['sha256']}.{image_ext(image['format'])}":
        raise Invalid(f"image {image['sha256']}: member {row.get('member')!r} is misnamed")


def drop_rule(row: dict) -> None:
    need_id(row, "stage")
    need_id(row, "item_id")
    need_id(row, "reason")


def selection_rule(row: dict) -> None:
    need_id(row, "post_id")
    need_id(row, "model_id")
    need_in(row, "status", SELECTION_STATUSES)
    need_in(row, "kept", {0, 1})


def relevance_rule(model_id: str) -> Callable[[dict], None]:
    def rule(row: dict) -> None:
        need_id(row, "post_id")
        if row.get("model_id") != model_id:
            raise Invalid(f"model_id {row.get('model_id')!r} is not the shard's {model_id!r}")
        need_sha(row, "image_sha256")

    return rule


def prediction_rule(model_version: str, text_lengths: Mapping[str, int]) -> Callable[[dict], None]:
    def rule(row: dict) -> None:
        need_id(row, "post_id")
        if row.get("model_version") != model_version:
            raise Invalid(
                f"model_version {row.get('model_version')!r} is not the shard's {model_version!r}"
            )
        check_spans(row.get("spans_json"), text_lengths.get(row["post_id"]))

    return rule


def model_rule(row: dict) -> None:
    need_id(row, "model_id")
    need_id(row, "backend")
    need_id(row, "name")
    need_sha(row, "checkpoint_sha256", optional=True)


RULES: dict[str, Callable[[dict], None]] = {
    POSTS: post_rule,
    POST_IMAGES: post_image_rule,
    IMAGES: image_rule,
    DROPS: drop_rule,
    SELECTION: selection_rule,
}


def check_image_header(row: Mapping[str, Any], data: bytes) -> None:
    """The bytes' header says the row's format and size (header only: no pixels decoded)."""
    import io
    import warnings

    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    fmt = str(row["format"]).upper()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data), formats=[fmt]) as img:
                size = img.size
    except (
        PILImage.DecompressionBombError,
        PILImage.DecompressionBombWarning,
        UnidentifiedImageError,
        SyntaxError,
        OSError,
        ValueError,
        EOFError,
    ) as exc:
        raise Invalid(
            f"image {row['sha256']}: not a readable {fmt} ({type(exc).__name__})"
        ) from None
    if size != (row["width"], row["height"]):
        raise Invalid(
            f"image {row['sha256']}: {size[0]}x{size[1]} in its header, the row says "
            f"{row['width']}x{row['height']}"
        )
