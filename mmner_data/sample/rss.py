"""The RSS 2.0 feed of the sample server (``/feeds/news.xml``)."""

from __future__ import annotations

import html
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from mmner_data.sample.ids import _epoch, rss_guid
from mmner_data.sample.wire import _HASHTAG_RE, _headline


class RssApi:
    """``/feeds/news.xml`` (a mixin of the sample server)."""

    url: str
    posts: list[dict[str, Any]]
    _alt: dict[str, str | None]
    image_size: Any
    _media_size: Any

    def _rss(self) -> bytes:
        """The RSS 2.0 feed of the ``rss`` channel, newest first."""
        posts = sorted(
            (p for p in self.posts if p["channel"] == "rss"),
            key=lambda p: (p["created_at"], p["id"]),
            reverse=True,
        )
        items = []
        for p in posts:
            text = p["text"]
            body = "<p>" + html.escape(text).replace("\n\n", "</p><p>").replace("\n", "<br />")
            parts = [
                f"<title>{xml_escape(_headline(text))}</title>",
                f"<link>{xml_escape(self.url)}/news/{p['id']}</link>",
                f'<guid isPermaLink="false">{xml_escape(rss_guid(p))}</guid>',
                f"<pubDate>{format_datetime(_epoch(p['created_at']), usegmt=True)}</pubDate>",
                f"<dc:creator>{xml_escape(p['author'])}</dc:creator>",
                f"<description>{xml_escape(body + '</p>')}</description>",
            ]
            parts += [f"<category>{xml_escape(t)}</category>" for t in _HASHTAG_RE.findall(text)]
            if p["image"]:
                name = p["image"]
                url = quoteattr(f"{self.url}/media/{name}")
                ctype = "image/png" if name.endswith(".png") else "image/jpeg"
                parts.append(
                    f'<enclosure url={url} length="{self._media_size(name)}" type="{ctype}"/>'
                )
                size = self.image_size(name)
                dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
                alt = self._alt.get(name)
                desc = f"<media:description>{xml_escape(alt)}</media:description>" if alt else ""
                parts.append(
                    f'<media:content url={url} type="{ctype}" medium="image"{dims}>{desc}'
                    "</media:content>"
                )
            items.append("<item>" + "".join(parts) + "</item>")
        newest = format_datetime(_epoch(posts[0]["created_at"]), usegmt=True) if posts else ""
        feed = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom">'
            "<channel><title>Sample news and community posts</title>"
            f"<link>{xml_escape(self.url)}/</link>"
            f'<atom:link href="{xml_escape(self.url)}/feeds/news.xml" rel="self" '
            'type="application/rss+xml"/>'
            "<description>Multilingual sample posts for mmner-data</description>"
            f"<lastBuildDate>{newest}</lastBuildDate><ttl>30</ttl>"
            + "".join(items)
            + "</channel></rss>\n"
        )
        return feed.encode("utf-8")
