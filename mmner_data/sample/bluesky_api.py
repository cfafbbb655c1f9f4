"""The Bluesky XRPC search of the sample server: post views and ``searchPosts`` pages."""

from __future__ import annotations

import base64
from typing import Any

from mmner_data.sample.ids import (
    _digest,
    _display_name,
    _epoch,
    bluesky_cid,
    bluesky_did,
    bluesky_uri,
)
from mmner_data.sample.wire import (
    _TOKEN_RE,
    BLUESKY_DEFAULT_LIMIT,
    BLUESKY_MAX_LIMIT,
    _BadRequest,
    _int_param,
    _json,
)


class BlueskyApi:
    """``/xrpc/app.bsky.feed.searchPosts`` (a mixin of the sample server)."""

    url: str
    _bsky: list[dict[str, Any]]
    _alt: dict[str, str | None]
    image_size: Any
    _media_size: Any

    def _post_view(self, post: dict[str, Any]) -> dict[str, Any]:
        """An ``app.bsky.feed.defs#postView`` for ``post``."""
        handle = post["author"]
        did = bluesky_did(handle)
        text = post["text"]
        record: dict[str, Any] = {
            "$type": "app.bsky.feed.post",
            "text": text,
            "langs": [post["lang"]],
            "createdAt": _epoch(post["created_at"]).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
        facets = _bluesky_facets(text)
        if facets:
            record["facets"] = facets
        view: dict[str, Any] = {
            "uri": bluesky_uri(post),
            "cid": bluesky_cid(post),
            "author": {
                "did": did,
                "handle": handle,
                "displayName": _display_name(handle),
                "avatar": f"{self.url}/avatars/{did.rsplit(':', 1)[1]}.jpg",
                "labels": [],
                "createdAt": "2023-09-12T00:00:00.000Z",
            },
            "record": record,
            "replyCount": 0,
            "repostCount": 0,
            "likeCount": 0,
            "quoteCount": 0,
            "indexedAt": record["createdAt"],
            "labels": [],
        }
        if post["image"]:
            name = post["image"]
            alt = self._alt.get(name) or ""
            size = self.image_size(name)
            image_cid = "bafkrei" + base64.b32encode(_digest("blob", name)).decode().lower()[:52]
            blob: dict[str, Any] = {
                "alt": alt,
                "image": {
                    "$type": "blob",
                    "ref": {"$link": image_cid},
                    "mimeType": "image/png" if name.endswith(".png") else "image/jpeg",
                    "size": self._media_size(name),
                },
            }
            shown: dict[str, Any] = {
                "thumb": f"{self.url}/media/{name}",
                "fullsize": f"{self.url}/media/{name}",
                "alt": alt,
            }
            if size:
                blob["aspectRatio"] = shown["aspectRatio"] = {"width": size[0], "height": size[1]}
            record["embed"] = {"$type": "app.bsky.embed.images", "images": [blob]}
            view["embed"] = {"$type": "app.bsky.embed.images#view", "images": [shown]}
        return view

    def _bluesky_page(self, query: dict[str, str]) -> tuple[int, bytes, str, dict[str, str]]:
        q = query.get("q")
        if not q:
            raise _BadRequest('Error: Params must have the property "q"')
        items = self._bsky
        terms = [t.lstrip("#").casefold() for t in q.split() if t != "*"]
        if terms:
            items = [v for v in items if all(t in v["record"]["text"].casefold() for t in terms)]
        if query.get("lang"):
            items = [v for v in items if query["lang"] in v["record"]["langs"]]
        if query.get("author"):
            who = query["author"].lstrip("@")
            items = [v for v in items if who in (v["author"]["handle"], v["author"]["did"])]
        if query.get("since"):
            items = [v for v in items if v["record"]["createdAt"] >= query["since"]]
        if query.get("until"):
            items = [v for v in items if v["record"]["createdAt"] < query["until"]]
        limit = _int_param(query.get("limit"), BLUESKY_DEFAULT_LIMIT, 1, BLUESKY_MAX_LIMIT)
        offset = 0
        if query.get("cursor"):
            try:
                offset = int(query["cursor"])
            except ValueError:
                raise _BadRequest("Error: invalid cursor") from None
        page = items[offset : offset + limit]
        body: dict[str, Any] = {"posts": page, "hitsTotal": len(items)}
        if offset + limit < len(items):
            body["cursor"] = str(offset + limit)
        return offset // limit, _json(body), "application/json", {}


def _bluesky_facets(text: str) -> list[dict[str, Any]]:
    """Rich-text facets (links, mentions, hashtags) with UTF-8 byte offsets."""
    facets = []
    for m in _TOKEN_RE.finditer(text):
        start = len(text[: m.start()].encode("utf-8"))
        end = start + len(m.group().encode("utf-8"))
        token = m.group()
        if m.group("url"):
            feature = {"$type": "app.bsky.richtext.facet#link", "uri": token}
        elif m.group("mention"):
            feature = {"$type": "app.bsky.richtext.facet#mention", "did": bluesky_did(token[1:])}
        else:
            feature = {"$type": "app.bsky.richtext.facet#tag", "tag": token[1:]}
        facets.append({"index": {"byteStart": start, "byteEnd": end}, "features": [feature]})
    return facets
