"""What every protocol of the sample server shares: paths, limits, text patterns, helpers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SAMPLE_DIR = Path(__file__).resolve().parent / "data"
IMAGES_DIR = SAMPLE_DIR / "images"

MASTODON_DEFAULT_LIMIT, MASTODON_MAX_LIMIT = 20, 40
BLUESKY_DEFAULT_LIMIT, BLUESKY_MAX_LIMIT = 25, 100

_URL_RE = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]}»”’]", re.IGNORECASE)
_MENTION_RE = re.compile(r"(?<![\w@/])@[A-Za-z0-9_]+(?:@[A-Za-z0-9.\-]+\.[A-Za-z]{2,})?")
_HASHTAG_RE = re.compile(r"(?<![\w#&/])#(\w*[^\W\d_]\w*)")
_TOKEN_RE = re.compile(f"(?P<url>{_URL_RE.pattern})|(?P<mention>{_MENTION_RE.pattern})|"
                       f"(?P<tag>{_HASHTAG_RE.pattern})", re.IGNORECASE)  # fmt: skip


def load_sample_posts(data_dir: Path = SAMPLE_DIR) -> list[dict[str, Any]]:
    """The hand-written sample posts (``posts.jsonl``) with their expected outcomes."""
    with (data_dir / "posts.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class _BadRequest(Exception):
    pass


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes", "on")


def _int_param(value: str | None, default: int, low: int | None, high: int | None) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise _BadRequest(f"Error: expected an integer, got {value!r}") from None
    if low is not None:
        n = max(low, n)
    if high is not None:
        n = min(high, n)
    return n


def _headline(text: str, width: int = 90) -> str:
    first = text.split("\n", 1)[0].strip()
    if len(first) <= width:
        return first
    cut = first[:width].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:—-") + "…"
