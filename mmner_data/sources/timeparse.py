"""Timestamps from sources → ISO 8601 UTC strings (the store's one time format)."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime


def to_utc_iso(value: str | None) -> str | None:
    """ISO 8601 or RFC 2822 (RSS) → ``YYYY-MM-DDTHH:MM:SS+00:00``; ``None`` if unparseable."""
    if not value:
        return None
    v = value.strip()
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        try:
            dt = email.utils.parsedate_to_datetime(v)
        except (TypeError, ValueError):
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def struct_to_iso(st: time.struct_time | None) -> str | None:
    """feedparser's ``*_parsed`` (UTC struct_time) → ISO 8601 UTC."""
    if st is None:
        return None
    return datetime(*st[:6], tzinfo=UTC).isoformat(timespec="seconds")
