"""Bluesky / AT Protocol post search over XRPC (``app.bsky.feed.searchPosts``).

We speak XRPC with the same HTTP client as the other API sources (one retry/429 policy, one
timeout policy) instead of the ``atproto`` SDK: search is one GET with a cursor, and the post view
is plain JSON. ``record.langs`` is the author's tag (recorded, then checked); images come from
``app.bsky.embed.images#view`` and the media half of ``recordWithMedia``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from mmner_data.config import BlueskySource
from mmner_data.schema import Drop, ImageRef, Post
from mmner_data.sources.base import Page, SourceError, malformed
from mmner_data.sources.http import ApiClient
from mmner_data.sources.timeparse import to_utc_iso


class BlueskySearch:
    def __init__(self, settings: BlueskySource):
        self.settings = settings
        self.name = settings.name
        token = os.environ.get(settings.token_env) if settings.token_env else None
        if settings.token_env and not token:
            raise SourceError(
                f"source {self.name}: environment variable {settings.token_env} is not set"
            )
        self.client = ApiClient(
            timeout_s=settings.timeout_s,
            retries=settings.retries,
            backoff_max_s=settings.backoff_max_s,
            token=token,
        )

    def close(self) -> None:
        self.client.close()

    def iter_pages(self, cursor: str | None) -> Iterator[Page]:
        url = self.settings.base_url.rstrip("/") + "/xrpc/app.bsky.feed.searchPosts"
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
            posts: list[Post] = []
            drops: list[Drop] = []
            for i, view in enumerate(data["posts"]):
                try:
                    posts.append(self.parse_post(view))
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    uri = view.get("uri") if isinstance(view, dict) else None
                    drops.append(
                        malformed(
                            self.name,
                            str(uri or f"{cursor or 'head'}#{i}"),
                            f"post view: {type(exc).__name__}: {exc}",
                        )
                    )
            next_cursor = data.get("cursor")
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
            ImageRef(url=img.get("fullsize") or img.get("thumb"), alt=img.get("alt") or None)
            for img in embed.get("images") or []
            if img.get("fullsize") or img.get("thumb")
        ]
    return []
