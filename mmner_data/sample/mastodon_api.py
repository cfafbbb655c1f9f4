"""The Mastodon REST API of the sample server: Status entities and timeline pages."""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote, urlencode

from mmner_data.sample.ids import _digest, _display_name, _epoch, mastodon_status_id
from mmner_data.sample.wire import (
    _HASHTAG_RE,
    _MENTION_RE,
    _TOKEN_RE,
    MASTODON_DEFAULT_LIMIT,
    MASTODON_MAX_LIMIT,
    _flag,
    _int_param,
    _json,
)


class MastodonApi:
    """``/api/v1/timelines/...`` (a mixin of :class:`~mmner_data.sample.server.SampleServer`)."""

    url: str
    _by_id: dict[str, dict[str, Any]]
    _statuses: list[dict[str, Any]]
    _alt: dict[str, str | None]
    image_size: Any

    def _account(self, handle: str) -> dict[str, Any]:
        user, _, domain = handle.partition("@")
        url = f"https://{domain}/@{user}" if domain else f"{self.url}/@{user}"
        aid = str(int.from_bytes(_digest("account", handle)[:6], "big"))
        return {
            "id": aid,
            "username": user,
            "acct": handle,
            "display_name": _display_name(handle),
            "locked": False,
            "bot": False,
            "group": False,
            "created_at": "2022-11-05T00:00:00.000Z",
            "note": "",
            "url": url,
            "avatar": f"{self.url}/avatars/{aid}.png",
            "avatar_static": f"{self.url}/avatars/{aid}.png",
            "followers_count": int(aid) % 900,
            "following_count": int(aid) % 400,
            "statuses_count": int(aid) % 5000,
            "emojis": [],
            "fields": [],
        }

    def _mention_url(self, mention: str) -> str:
        user, _, domain = mention[1:].partition("@")
        return f"https://{domain}/@{user}" if domain else f"{self.url}/@{user}"

    def _mastodon_html(self, text: str) -> str:
        """Post text as Mastodon renders it (paragraphs, ``<br />``, mention/hashtag/link markup)."""
        paragraphs = []
        for para in text.split("\n\n"):
            out: list[str] = []
            pos = 0
            for m in _TOKEN_RE.finditer(para):
                out.append(html.escape(para[pos : m.start()]))
                token = m.group()
                if m.group("url"):
                    scheme, _, rest = token.partition("://")
                    shown, hidden = rest[:30], rest[30:]
                    cls = "ellipsis" if hidden else ""
                    out.append(
                        f'<a href="{html.escape(token)}" target="_blank" rel="nofollow noopener '
                        f'noreferrer" translate="no"><span class="invisible">{scheme}://</span>'
                        f'<span class="{cls}">{html.escape(shown)}</span>'
                        f'<span class="invisible">{html.escape(hidden)}</span></a>'
                    )
                elif m.group("mention"):
                    out.append(
                        f'<span class="h-card" translate="no"><a href="{self._mention_url(token)}"'
                        f' class="u-url mention">@<span>{html.escape(token[1:])}</span></a></span>'
                    )
                else:
                    tag = token[1:]
                    out.append(
                        f'<a href="{self.url}/tags/{quote(tag.lower())}" class="mention hashtag"'
                        f' rel="tag">#<span>{html.escape(tag)}</span></a>'
                    )
                pos = m.end()
            out.append(html.escape(para[pos:]))
            paragraphs.append("<p>" + "".join(out).replace("\n", "<br />") + "</p>")
        return "".join(paragraphs)

    def _attachment(self, post: dict[str, Any]) -> dict[str, Any]:
        name = post["image"]
        mid = str(int.from_bytes(_digest("media", post["id"])[:7], "big"))
        size = self.image_size(name)
        meta: dict[str, Any] = {}
        if size:
            w, hgt = size
            dims = {"width": w, "height": hgt, "size": f"{w}x{hgt}", "aspect": round(w / hgt, 6)}
            meta = {"original": dims, "small": dims}
        return {
            "id": mid,
            "type": "image",
            "url": f"{self.url}/media/{name}",
            "preview_url": f"{self.url}/media/{name}",
            "remote_url": None,
            "preview_remote_url": None,
            "text_url": None,
            "meta": meta,
            "description": self._alt.get(name),
            "blurhash": None,
        }

    def _status(self, post: dict[str, Any]) -> dict[str, Any]:
        """A Mastodon Status entity for ``post`` (a reblog wraps its original)."""
        sid = mastodon_status_id(post)
        account = self._account(post["author"])
        created = _epoch(post["created_at"]).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        user, _, domain = post["author"].partition("@")
        home = f"https://{domain}" if domain else self.url
        status: dict[str, Any] = {
            "id": sid,
            "created_at": created,
            "in_reply_to_id": None,
            "in_reply_to_account_id": None,
            "sensitive": False,
            "spoiler_text": "",
            "visibility": "public",
            "language": None,
            "uri": f"{home}/users/{user}/statuses/{sid}",
            "url": f"{home}/@{user}/{sid}",
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "edited_at": None,
            "content": "",
            "reblog": None,
            "application": None,
            "account": account,
            "media_attachments": [],
            "mentions": [],
            "tags": [],
            "emojis": [],
            "card": None,
            "poll": None,
        }
        if post["kind"] == "reblog":
            status["uri"] = f"{home}/users/{user}/statuses/{sid}/activity"
            status["url"] = None
            status["reblog"] = self._status(self._by_id[post["dup_of"]])
            return status
        text = post["text"]
        status["language"] = post["lang"]
        status["content"] = self._mastodon_html(text)
        status["application"] = {"name": "Web", "website": None}
        status["mentions"] = [
            {"id": str(int.from_bytes(_digest("account", m[1:])[:6], "big")),
             "username": m[1:].split("@")[0], "url": self._mention_url(m), "acct": m[1:]}
            for m in _MENTION_RE.findall(text)
        ]  # fmt: skip
        status["tags"] = [
            {"name": t.lower(), "url": f"{self.url}/tags/{quote(t.lower())}"}
            for t in dict.fromkeys(_HASHTAG_RE.findall(text))
        ]
        if post["image"]:
            status["media_attachments"] = [self._attachment(post)]
        return status

    def _mastodon_page(
        self, path: str, query: dict[str, str], tag: str | None
    ) -> tuple[int, bytes, str, dict[str, str]]:
        items = self._statuses
        if tag is not None:
            tag = tag.lstrip("#").lower()
            items = [
                s for s in items if s["reblog"] is None and any(t["name"] == tag for t in s["tags"])
            ]
        if _flag(query.get("local")):
            items = [s for s in items if "@" not in s["account"]["acct"]]
        if _flag(query.get("remote")):
            items = [s for s in items if "@" in s["account"]["acct"]]
        if _flag(query.get("only_media")):
            items = [s for s in items if (s["reblog"] or s)["media_attachments"]]
        limit = _int_param(query.get("limit"), MASTODON_DEFAULT_LIMIT, 1, MASTODON_MAX_LIMIT)
        ids = [int(s["id"]) for s in items]
        lo, hi = 0, len(items)  # newest first: ids decrease with the index
        if query.get("max_id"):
            max_id = _int_param(query["max_id"], 0, None, None)
            lo = next((i for i, x in enumerate(ids) if x < max_id), len(items))
        if query.get("since_id"):
            since = _int_param(query["since_id"], 0, None, None)
            hi = next((i for i, x in enumerate(ids) if x <= since), len(items))
        if query.get("min_id"):
            min_id = _int_param(query["min_id"], 0, None, None)
            hi = min(hi, next((i for i, x in enumerate(ids) if x <= min_id), len(items)))
            lo = max(lo, hi - limit)
        page = items[lo : min(hi, lo + limit)]
        headers = {}
        if page:
            keep = {k: v for k, v in query.items() if k not in ("max_id", "min_id", "since_id")}
            keep["limit"] = str(limit)
            base = self.url + path
            nxt = urlencode({**keep, "max_id": page[-1]["id"]})
            prev = urlencode({**keep, "min_id": page[0]["id"]})
            headers["Link"] = f'<{base}?{nxt}>; rel="next", <{base}?{prev}>; rel="prev"'
        return lo // limit, _json(page), "application/json", headers
