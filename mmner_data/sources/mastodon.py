"""Mastodon public and hashtag timelines over the REST API (``/api/v1/timelines/...``).

Pages go backwards in time with ``max_id``; the cursor is the ``max_id`` of the next page.
``language`` is the author's own tag (recorded, then checked by language ID); reblogs are kept
as records flagged ``is_reblog`` so that the drop report can count them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from mmner_data.collect.normalise import html_to_text
from mmner_data.config import MastodonSource
from mmner_data.schema import ImageRef, Post
from mmner_data.sources.base import Page, SourceError
from mmner_data.sources.http import HttpSource


class MastodonTimeline(HttpSource):
    settings: MastodonSource

    def _endpoint(self) -> str:
        base = self.settings.base_url.rstrip("/")
        timeline = self.settings.timeline
        if timeline == "public":
            return f"{base}/api/v1/timelines/public"
        if timeline.startswith("tag:") and len(timeline) > 4:
            return f"{base}/api/v1/timelines/tag/{quote(timeline[4:].lstrip('#'))}"
        raise SourceError(
            f"source {self.name}: timeline must be 'public' or 'tag:<hashtag>', got {timeline!r}"
        )

    def iter_pages(self, cursor: str | None) -> Iterator[Page]:
        url = self._endpoint()
        max_id = cursor
        while True:
            params: dict[str, Any] = {"limit": self.settings.page_size}
            if self.settings.local:
                params["local"] = "true"
            if self.settings.only_media:
                params["only_media"] = "true"
            if max_id:
                params["max_id"] = max_id
            data, _resp = self.client.get_json(url, params)
            if not isinstance(data, list):
                raise SourceError(f"source {self.name}: expected a list of statuses from {url}")
            ids = [
                str(st["id"]) for st in data if isinstance(st, dict) and st.get("id") is not None
            ]
            posts, drops = self.parse_items(
                data,
                self.parse_status,
                lambda st: st.get("id"),
                where=max_id or "head",
                what="status",
            )
            if not ids:
                yield Page(posts, cursor=max_id, exhausted=True, drops=drops)
                return
            oldest = min(ids, key=_id_order)
            if max_id is not None and _id_order(oldest) >= _id_order(max_id):
                raise SourceError(
                    f"source {self.name}: the page from {url} is not older than max_id "
                    f"{max_id[:40]}; stopped to avoid a loop"
                )
            max_id = oldest
            yield Page(posts, cursor=max_id, exhausted=False, drops=drops)

    def parse_status(self, status: dict[str, Any]) -> Post:
        sid = str(status["id"])
        reblog = status.get("reblog")
        body = reblog if isinstance(reblog, dict) else status
        text = html_to_text(body["content"])
        cw = body.get("spoiler_text") or ""
        images = [
            ImageRef(url=str(m["url"]), alt=_str_or_none(m.get("description")))
            for m in body.get("media_attachments") or []
            if m.get("type") == "image" and m.get("url")
        ]
        account = status.get("account") or {}
        return Post(
            source=self.name,
            source_id=sid,
            text=text,
            url=status.get("url") or status.get("uri"),
            created_at=_iso(status.get("created_at")),
            author=account.get("acct") or account.get("username"),
            source_lang=body.get("language"),
            images=images,
            is_reblog=isinstance(reblog, dict),
            licence=self.settings.licence,
            raw={
                "id": sid,
                "sensitive": bool(body.get("sensitive")),
                "spoiler_text": cw,
                "visibility": status.get("visibility"),
            },
        )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _id_order(sid: str) -> tuple[int, str]:
    """Mastodon ids are numeric strings (snowflakes); compare them as numbers."""
    return (int(sid), sid) if sid.isdigit() else (0, sid)


def _iso(value: Any) -> str | None:
    if not value:
        return None
    from mmner_data.sources.timeparse import to_utc_iso

    return to_utc_iso(str(value))
