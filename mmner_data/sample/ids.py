"""Stable identifiers of the sample posts on each channel (status ids, at:// URIs, guids)."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from typing import Any

_B32_SORT = "234567abcdefghijklmnopqrstuvwxyz"


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode()).digest()


def _epoch(created_at: str) -> datetime:
    return datetime.fromisoformat(created_at.replace("Z", "+00:00")).astimezone(UTC)


def mastodon_status_id(post: dict[str, Any]) -> str:
    """A Mastodon snowflake id (milliseconds << 16 | sequence), stable across runs and ports."""
    ms = int(_epoch(post["created_at"]).timestamp() * 1000)
    seq = int.from_bytes(_digest("status", post["id"])[:2], "big")
    return str((ms << 16) | seq)


def bluesky_did(handle: str) -> str:
    """A ``did:plc:`` identifier derived from a handle."""
    return "did:plc:" + base64.b32encode(_digest("did", handle)).decode().lower()[:24]


def bluesky_uri(post: dict[str, Any]) -> str:
    """``at://`` URI of a post, with a TID record key derived from its creation time."""
    us = int(_epoch(post["created_at"]).timestamp() * 1_000_000)
    value = (us << 10) | (int.from_bytes(_digest("tid", post["id"])[:2], "big") & 0x3FF)
    rkey = "".join(_B32_SORT[(value >> (5 * i)) & 31] for i in range(12, -1, -1))
    return f"at://{bluesky_did(post['author'])}/app.bsky.feed.post/{rkey}"


def bluesky_cid(post: dict[str, Any]) -> str:
    """A CIDv1 (dag-cbor, sha-256) look-alike for a post record."""
    return (
        "bafyrei" + base64.b32encode(_digest("cid", post["id"], post["text"])).decode().lower()[:52]
    )


def rss_guid(post: dict[str, Any]) -> str:
    """The ``<guid>`` of a feed item."""
    return f"urn:mmner-sample:news:{post['id']}"


def source_id(post: dict[str, Any]) -> str:
    """The id a connector sees for ``post`` on its channel (status id, guid, at:// URI, id)."""
    channel = post["channel"]
    if channel == "mastodon":
        return mastodon_status_id(post)
    if channel == "bluesky":
        return bluesky_uri(post)
    if channel == "rss":
        return rss_guid(post)
    return post["id"]


def _display_name(handle: str) -> str:
    base = handle.split("@")[0].split(".")[0]
    return " ".join(w.capitalize() for w in re.split(r"[_\-]+", base) if w)
