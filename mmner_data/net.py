"""HTTP header helpers shared by the API connectors and the image fetcher (one policy, one place).

Pure functions of header values: how long a server asked us to wait.
"""

from __future__ import annotations

import email.utils
import math
import time
from datetime import UTC, datetime

__all__ = ["parse_ratelimit_reset", "parse_retry_after"]


def _seconds_until(when: datetime, now: float | None) -> float:
    if when.tzinfo is None:  # "-0000" dates come back naive; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - (time.time() if now is None else now)


def _cap(secs: float, cap: float) -> float | None:
    if math.isnan(secs):
        return None
    return max(0.0, min(secs, cap))


def parse_retry_after(value: str | None, cap: float, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), in ``[0, cap]``.

    ``None`` when the header is absent or unreadable; ``now`` (epoch seconds) is for tests.
    """
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        secs = _seconds_until(when, now)
    return _cap(secs, cap)


def parse_ratelimit_reset(value: str | None, cap: float, now: float | None = None) -> float | None:
    """Seconds until Mastodon's ``X-RateLimit-Reset`` (an ISO 8601 time), in ``[0, cap]``."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return _cap(_seconds_until(when, now), cap)
