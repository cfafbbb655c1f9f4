"""RSS/Atom feeds with images (feedparser), fetched with the shared HTTP client.

Images come from, in order: enclosures of an image type, ``media:content``,
``media:thumbnail``, the first ``<img>`` in the entry's HTML, and (``og_image: true``) the
``og:image`` of the linked page. Relative URLs are resolved against the feed's URL (or the
page's, for ``og:image``), as a browser would: they never name local files. A feed has no paging:
one pass is one page, and entries already in the store are skipped by their id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import feedparser

from mmner_data.collect.normalise import html_to_text
from mmner_data.collect.urlpolicy import UrlPolicy
from mmner_data.config import RssSource
from mmner_data.schema import Drop, ImageRef, Post
from mmner_data.sources.base import Page, SourceError, malformed
from mmner_data.sources.http import HttpSource
from mmner_data.sources.timeparse import struct_to_iso, to_utc_iso

_IMG_RE = re.compile(r"<img\b[^>]*?\bsrc=[\"']([^\"']+)[\"']", re.IGNORECASE)
_OG_RE = re.compile(
    r"<meta\b[^>]*?property=[\"']og:image[\"'][^>]*?content=[\"']([^\"']+)[\"']"
    r"|<meta\b[^>]*?content=[\"']([^\"']+)[\"'][^>]*?property=[\"']og:image[\"']",
    re.IGNORECASE,
)


class RssFeed(HttpSource):
    settings: RssSource

    def __init__(self, settings: RssSource, policy: UrlPolicy | None = None):
        super().__init__(settings, policy, auth=False)
        self.base_url = settings.url

    def iter_pages(self, cursor: str | None) -> Iterator[Page]:
        resp = self.client.get(self.settings.url)
        self.base_url = resp.url  # after redirects: what relative URLs are relative to
        # parsed without a base on purpose: ids (guids) stay exactly as the feed writes them;
        # image URLs are resolved against self.base_url below, one by one
        feed = feedparser.parse(resp.content)
        posts: list[Post] = []
        drops: list[Drop] = []
        if feed.bozo and not feed.entries:
            drops.append(
                malformed(
                    self.name,
                    self.settings.url,
                    f"feed does not parse: {feed.get('bozo_exception')}",
                )
            )
        for i, entry in enumerate(feed.entries):
            try:
                posts.append(self.parse_entry(entry))
            except (KeyError, TypeError, ValueError) as exc:
                drops.append(
                    malformed(
                        self.name,
                        str(entry.get("id") or f"entry#{i}"),
                        f"entry: {type(exc).__name__}: {exc}",
                    )
                )
        yield Page(posts, cursor=None, exhausted=True, drops=drops)

    def parse_entry(self, entry: Any) -> Post:
        eid = entry.get("id") or entry.get("link")
        if not eid:
            raise ValueError("entry has neither id nor link")
        summary_html = entry.get("summary") or ""
        if not summary_html and entry.get("content"):
            summary_html = entry["content"][0].get("value", "")
        title = html_to_text(entry.get("title") or "")
        summary = html_to_text(summary_html)
        mode = self.settings.text
        text = {
            "title": title,
            "summary": summary or title,
            "title+summary": "\n\n".join(x for x in (title, summary) if x),
        }[mode]
        images = self._images(entry, summary_html)
        created = struct_to_iso(entry.get("published_parsed") or entry.get("updated_parsed"))
        return Post(
            source=self.name,
            source_id=str(eid),
            text=text,
            url=entry.get("link"),
            created_at=created or to_utc_iso(entry.get("published")),
            author=entry.get("author"),
            source_lang=(entry.get("language") or None),
            images=images,
            licence=self.settings.licence or entry.get("rights"),
            raw={"title": title},
        )

    def _images(self, entry: Any, summary_html: str) -> list[ImageRef]:
        urls: list[str] = []
        for enc in entry.get("enclosures") or []:
            if str(enc.get("type", "")).startswith("image/") and enc.get("href"):
                urls.append(enc["href"])
        for media in entry.get("media_content") or []:
            if (
                media.get("medium") == "image" or str(media.get("type", "")).startswith("image/")
            ) and media.get("url"):
                urls.append(media["url"])
        if not urls:
            urls += [m["url"] for m in entry.get("media_thumbnail") or [] if m.get("url")]
        if not urls:
            urls += _IMG_RE.findall(summary_html)[:1]
        if not urls and self.settings.og_image and entry.get("link"):
            urls += self._og_image(entry["link"])
        seen: list[str] = []
        for u in urls:
            u = _absolute(self.base_url, u)
            if u and u not in seen:
                seen.append(u)
        return [ImageRef(url=u) for u in seen]

    def _og_image(self, link: str) -> list[str]:
        link = _absolute(self.base_url, link)
        if not link:
            return []
        try:
            page = self.client.get(link)
        except SourceError:  # a missing og:image is not an error of the feed
            return []
        m = _OG_RE.search(page.text)
        return [_absolute(page.url, m.group(1) or m.group(2))] if m else []


def _absolute(base: str, url: Any) -> str:
    """``url`` resolved against ``base`` (a feed or page URL); "" for what is not a URL."""
    if not isinstance(url, str) or not url.strip():
        return ""
    try:
        return urljoin(base, url.strip())
    except ValueError:
        return url.strip()
