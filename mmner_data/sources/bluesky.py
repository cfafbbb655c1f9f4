"""Bluesky / AT Protocol post search over XRPC (``app.bsky.feed.searchPosts``).

We speak XRPC with the same HTTP client as the other API sources (one retry/429 policy, one
timeout policy) instead of the ``atproto`` SDK: search is one GET with a cursor, and the post view
is plain JSON. ``record.langs`` is the author's tag (recorded, then checked); images come from
``app.bsky.embed.images#view`` and the media half of ``recordWithMedia``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mmner_data.config import BlueskySource
from mmner_data.schema import ImageRef, Post
from mmner_data.sources.base import Page, SourceError
from mmner_data.sources.http import HttpSource
from mmner_data.sources.timeparse import to_utc_iso


class BlueskySearch(HttpSource):
    settings: BlueskySource

    def iter_pages(self, cursor: str | None) -> Iterator[Page]:
        url = self.settings.base_url.rstrip("/") + "/xrpc/app.bsky.feed.searchPosts"
        seen: set[str] = {cursor} if cursor else set()
        while True:
            params: dict[str, Any] = {
                "q": self.settings.query,
                "limit": self.settings.page_size,
                "sort": "latest",
            }
            if self.settings.lang:
                params["lang"] = self.settings.lang
            if cursor:
                params["cursor"] = cursor
            data, _ = self.client.get_json(url, params)
            if not isinstance(data, dict) or not isinstance(data.get("posts"), list):
                raise SourceError(f"source {self.name}: no 'posts' list in the answer from {url}")
            posts, drops = self.parse_items(
                data["posts"],
                self.parse_post,
                lambda view: view.get("uri"),
                where=cursor or "head",
                what="post view",
            )
            next_cursor = data.get("cursor")
            if next_cursor is not None and not isinstance(next_cursor, str | int):
                raise SourceError(f"source {self.name}: the cursor from {url} is not a string")
            next_cursor = str(next_cursor) if next_cursor not in (None, "") else None
            if next_cursor is not None and next_cursor in seen:
                raise SourceError(
                    f"source {self.name}: the server repeated cursor {next_cursor[:40]!r} "
                    f"from {url}; stopped to avoid a loop"
                )
            if next_cursor is not None:
                seen.add(next_cursor)
            exhausted = not next_cursor or not data["posts"]
            yield Page(
                posts,
                cursor=next_cursor if not exhausted else cursor,
                exhausted=exhausted,
                drops=drops,
            )
            if exhausted:
                return
            cursor = next_cursor

    def parse_post(self, view: dict[str, Any]) -> Post:
        uri: str = view["uri"]
        record = view["record"]
        author = view.get("author") or {}
        handle = author.get("handle") or author.get("did")
        rkey = uri.rsplit("/", 1)[-1]
        langs = record.get("langs") or []
        return Post(
            source=self.name,
            source_id=uri,
            text=str(record["text"]),
            url=f"https://bsky.app/profile/{handle}/post/{rkey}" if handle else None,
            created_at=to_utc_iso(record.get("createdAt") or view.get("indexedAt")),
            author=handle,
            source_lang=langs[0] if langs else None,
            images=_embed_images(view.get("embed")),
            licence=self.settings.licence,
            raw={"uri": uri, "cid": view.get("cid"), "langs": langs},
        )


def _embed_images(embed: Any) -> list[ImageRef]:
    if not isinstance(embed, dict):
        return []
    kind = embed.get("$type", "")
    if kind.startswith("app.bsky.embed.recordWithMedia"):
        return _embed_images(embed.get("media"))
    if kind.startswith("app.bsky.embed.images"):
        return [
            ImageRef(
                url=str(img.get("fullsize") or img.get("thumb")),
                alt=str(img.get("alt")) if img.get("alt") else None,
            )
            for img in embed.get("images") or []
            if img.get("fullsize") or img.get("thumb")
        ]
    return []
