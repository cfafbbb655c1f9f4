"""A loopback server that serves the bundled sample corpus in real wire formats.

Endpoints (all ``GET``; media also ``HEAD``):

- Mastodon REST: ``/api/v1/timelines/public`` and ``/api/v1/timelines/tag/{tag}`` with ``limit``
  (default 20, at most 40), ``max_id``, ``since_id``, ``min_id``, ``local``, ``remote`` and
  ``only_media``; newest first; a ``Link`` header with ``rel="next"`` / ``rel="prev"``.
- RSS 2.0: ``/feeds/news.xml`` (``description`` holds the whole post as HTML, ``title`` a headline).
- Bluesky XRPC: ``/xrpc/app.bsky.feed.searchPosts`` with ``q`` (``*`` matches all), ``lang``,
  ``author``, ``limit`` (default 25, at most 100) and ``cursor``.
- Images: ``/media/<file>``; broken ones under ``/media/broken/`` (``truncated.jpg``,
  ``html.jpg``, ``bomb.png``, ``missing.jpg``, ``huge.jpg``, ``slow.jpg``); flaky ones under
  ``/media/flaky/429/<file>`` and ``/media/flaky/500/<file>`` (the first two requests per path
  fail, then the image is served).

Fault options: ``page_delay_s`` (sleep before every feed page), ``malformed_page`` (that 0-based
page of each paginated JSON endpoint is answered once with invalid JSON), ``rate_limit_first_page``
(the first page of each feed endpoint is answered once with 429 and ``Retry-After: 1``),
``slow_s`` (how long ``/media/broken/slow.jpg`` sleeps). Pages are numbered by position
(``offset // limit``), so a retried page is recognised as the same page.

Run ``python -m mmner_data.sample.server --port 8765`` to serve it by hand.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import re
import struct
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from PIL import Image

SAMPLE_DIR = Path(__file__).resolve().parent / "data"
IMAGES_DIR = SAMPLE_DIR / "images"

MASTODON_DEFAULT_LIMIT, MASTODON_MAX_LIMIT = 20, 40
BLUESKY_DEFAULT_LIMIT, BLUESKY_MAX_LIMIT = 25, 100
HUGE_BYTES = 50 * 1024 * 1024
BOMB_SIDE = 30_000
FLAKY_FAILURES = 2
_CHUNK = 64 * 1024

_URL_RE = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]}»”’]", re.IGNORECASE)
_MENTION_RE = re.compile(r"(?<![\w@/])@[A-Za-z0-9_]+(?:@[A-Za-z0-9.\-]+\.[A-Za-z]{2,})?")
_HASHTAG_RE = re.compile(r"(?<![\w#&/])#(\w*[^\W\d_]\w*)")
_TOKEN_RE = re.compile(f"(?P<url>{_URL_RE.pattern})|(?P<mention>{_MENTION_RE.pattern})|"
                       f"(?P<tag>{_HASHTAG_RE.pattern})", re.IGNORECASE)  # fmt: skip
_B32_SORT = "234567abcdefghijklmnopqrstuvwxyz"


def load_sample_posts(data_dir: Path = SAMPLE_DIR) -> list[dict[str, Any]]:
    """The hand-written sample posts (``posts.jsonl``) with their expected outcomes."""
    with (data_dir / "posts.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# -- stable identifiers ------------------------------------------------------------------------


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


# -- broken images -----------------------------------------------------------------------------


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A tiny, well-formed PNG header declaring ``side`` x ``side`` grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (side + 1) * 4, 9)  # four rows of zeros, then nothing
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


_HTML_PAGE = (
    b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>'
    b'<body><h1>Please sign in to view this image</h1><form method="post" action="/login">'
    b'<input name="user"><input name="password" type="password"><button>Sign in</button>'
    b"</form></body></html>\n"
)
_JPEG_HEADER = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


# -- the server --------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: SampleServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client hung up mid-request: normal for image fetchers that abort
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "mmner-sample/1.0"

    def do_GET(self) -> None:
        self.server.app._dispatch(self, head=False)

    def do_HEAD(self) -> None:
        self.server.app._dispatch(self, head=True)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and the demo read the request log instead


class SampleServer:
    """The sample corpus over HTTP on a loopback port, served from a background thread.

    Use as a context manager (``with SampleServer() as srv: srv.url``) or call
    :meth:`start` / :meth:`stop`. ``requests`` counts requests per path.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        page_delay_s: float = 0.0,
        malformed_page: int | None = None,
        rate_limit_first_page: bool = False,
        slow_s: float = 30.0,
        data_dir: Path = SAMPLE_DIR,
    ) -> None:
        self.host, self.port = host, port
        self.page_delay_s = page_delay_s
        self.malformed_page = malformed_page
        self.rate_limit_first_page = rate_limit_first_page
        self.slow_s = slow_s
        self.data_dir = Path(data_dir)
        self.posts = load_sample_posts(self.data_dir)
        self.requests: Counter[str] = Counter()
        self._by_id = {p["id"]: p for p in self.posts}
        recipes = json.loads((self.data_dir / "images.json").read_text(encoding="utf-8"))
        self._alt: dict[str, str | None] = {r["file"]: r.get("alt") for r in recipes}
        self._dims: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._hits: Counter[str] = Counter()  # flaky paths
        self._faults_done: set[tuple[str, str]] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._statuses: list[dict[str, Any]] = []
        self._bsky: list[dict[str, Any]] = []

    # lifecycle

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> SampleServer:
        """Bind, build the feeds for this URL and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.app = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._stop.clear()
        self._statuses = sorted(
            (self._status(p) for p in self.posts if p["channel"] == "mastodon"),
            key=lambda s: int(s["id"]),
            reverse=True,
        )
        self._bsky = sorted(
            (self._post_view(p) for p in self.posts if p["channel"] == "bluesky"),
            key=lambda v: (v["record"]["createdAt"], v["uri"]),
            reverse=True,
        )
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="sample-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (wakes any sleeping slow request)."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> SampleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def endpoints(self) -> dict[str, str]:
        """The main URLs, for recipes and for humans."""
        return {
            "mastodon_public": f"{self.url}/api/v1/timelines/public",
            "mastodon_tag": f"{self.url}/api/v1/timelines/tag/{{tag}}",
            "mastodon_base_url": self.url,
            "rss": f"{self.url}/feeds/news.xml",
            "bluesky_search": f"{self.url}/xrpc/app.bsky.feed.searchPosts",
            "bluesky_base_url": self.url,
            "media": f"{self.url}/media/",
            "local_jsonl": str(self.data_dir / "local.jsonl"),
        }

    # routing

    def _dispatch(self, h: _Handler, head: bool) -> None:
        parts = urlsplit(h.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests[path] += 1
        try:
            if path.startswith("/media/"):
                self._media(h, path[len("/media/") :], head)
            elif path == "/api/v1/timelines/public":
                self._feed(h, path, head, lambda: self._mastodon_page(path, query, None))
            elif path.startswith("/api/v1/timelines/tag/"):
                tag = path.rsplit("/", 1)[1]
                self._feed(h, path, head, lambda: self._mastodon_page(path, query, tag))
            elif path == "/xrpc/app.bsky.feed.searchPosts":
                self._feed(h, path, head, lambda: self._bluesky_page(query))
            elif path == "/feeds/news.xml":
                self._feed(h, path, head, lambda: (0, self._rss(), "application/rss+xml", {}))
            elif path in ("/", "/index.json"):
                self._send(h, 200, _json(self.endpoints()), "application/json", head=head)
            else:
                self._send(
                    h, 404, _json({"error": "Record not found"}), "application/json", head=head
                )
        except _BadRequest as exc:
            body = {"error": "InvalidRequest", "message": str(exc)}
            self._send(h, 400, _json(body), "application/json", head=head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up (e.g. on the 50 MB image)

    def _send(
        self,
        h: _Handler,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _once(self, key: tuple[str, str]) -> bool:
        """True the first time ``key`` is seen."""
        with self._lock:
            if key in self._faults_done:
                return False
            self._faults_done.add(key)
            return True

    def _feed(self, h: _Handler, path: str, head: bool, page: Any) -> None:
        """Serve one feed page, applying the delay, rate-limit and malformed-page faults."""
        if self.page_delay_s:
            self._stop.wait(self.page_delay_s)
        index, body, ctype, headers = page()
        if self.rate_limit_first_page and index == 0 and self._once(("429", path)):
            reset = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
            limit_headers = {
                "Retry-After": "1",
                "X-RateLimit-Limit": "300",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset,
                "RateLimit-Limit": "3000",
                "RateLimit-Remaining": "0",
            }
            err = {"error": "RateLimitExceeded", "message": "Too many requests"}
            self._send(h, 429, _json(err), "application/json", limit_headers, head)
            return
        if (
            self.malformed_page is not None
            and index == self.malformed_page
            and ctype == "application/json"
            and self._once((f"malformed:{index}", path))
        ):
            self._send(h, 200, body[: max(1, len(body) // 3)], ctype, headers, head)
            return
        self._send(h, 200, body, ctype + "; charset=utf-8", headers, head)

    # media

    def _image_path(self, name: str) -> Path | None:
        if "/" in name or "\\" in name or name.startswith("."):
            return None
        path = self.data_dir / "images" / name
        return path if path.is_file() else None

    def image_size(self, name: str) -> tuple[int, int] | None:
        """Pixel size of a bundled image (``None`` for broken names)."""
        if name not in self._dims:
            path = self._image_path(name)
            if path is None:
                return None
            with Image.open(path) as im:
                self._dims[name] = im.size
        return self._dims[name]

    def _media(self, h: _Handler, name: str, head: bool) -> None:
        if name.startswith("broken/"):
            self._broken(h, name[len("broken/") :], head)
            return
        m = re.fullmatch(r"flaky/(429|500)/(.+)", name)
        if m:
            with self._lock:
                self._hits[name] += 1
                hits = self._hits[name]
            if hits <= FLAKY_FAILURES:
                if m.group(1) == "429":
                    err = _json({"error": "Too many requests"})
                    self._send(h, 429, err, "application/json", {"Retry-After": "1"}, head)
                else:
                    self._send(h, 500, b"Internal Server Error\n", "text/plain", head=head)
                return
            name = m.group(2)
        path = self._image_path(name)
        if path is None:
            self._send(h, 404, _json({"error": "Record not found"}), "application/json", head=head)
            return
        ctype = "image/png" if path.suffix == ".png" else "image/jpeg"
        self._send(h, 200, path.read_bytes(), ctype, {"Cache-Control": "max-age=3600"}, head)

    def _sample_jpeg(self) -> bytes:
        return (self.data_dir / "images" / min(self._alt)).read_bytes()

    def _broken(self, h: _Handler, name: str, head: bool) -> None:
        if name == "truncated.jpg":
            data = self._sample_jpeg()
            self._send(h, 200, data[: len(data) // 2], "image/jpeg", head=head)
        elif name == "html.jpg":
            self._send(h, 200, _HTML_PAGE, "image/jpeg", head=head)
        elif name == "bomb.png":
            self._send(h, 200, bomb_png(), "image/png", head=head)
        elif name == "slow.jpg":
            if self._stop.wait(self.slow_s):
                return  # shutting down
            self._send(h, 200, self._sample_jpeg(), "image/jpeg", head=head)
        elif name == "huge.jpg":
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(HUGE_BYTES))
            h.end_headers()
            if not head:
                for chunk in _huge_chunks():
                    if self._stop.is_set():
                        break
                    h.wfile.write(chunk)
        else:  # missing.jpg and anything else
            self._send(h, 404, b"<h1>Not Found</h1>\n", "text/html; charset=utf-8", head=head)

    def _media_size(self, name: str) -> int:
        sizes = {
            "broken/truncated.jpg": len(self._sample_jpeg()) // 2,
            "broken/html.jpg": len(_HTML_PAGE),
            "broken/bomb.png": len(bomb_png()),
            "broken/huge.jpg": HUGE_BYTES,
            "broken/slow.jpg": len(self._sample_jpeg()),
        }
        if name in sizes:
            return sizes[name]
        path = self._image_path(name)
        return path.stat().st_size if path else 0

    # Mastodon

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

    # Bluesky

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

    # RSS

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


class _BadRequest(Exception):
    pass


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes", "on")


def _int_param(value: str | None, default: int, low: int | None, high: int | None) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise _BadRequest(f"Error: expected an integer, got {value!r}") from None
    if low is not None:
        n = max(low, n)
    if high is not None:
        n = min(high, n)
    return n


def _headline(text: str, width: int = 90) -> str:
    first = text.split("\n", 1)[0].strip()
    if len(first) <= width:
        return first
    cut = first[:width].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:—-") + "…"


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


def _huge_chunks() -> Iterator[bytes]:
    """A JPEG header followed by zeros, ``HUGE_BYTES`` in all."""
    yield _JPEG_HEADER
    left = HUGE_BYTES - len(_JPEG_HEADER)
    zeros = bytes(_CHUNK)
    while left > 0:
        n = min(left, _CHUNK)
        yield zeros[:n]
        left -= n


def main(argv: list[str] | None = None) -> int:
    """Serve the sample corpus until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m mmner_data.sample.server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--page-delay", type=float, default=0.0, help="seconds before each page")
    parser.add_argument(
        "--malformed-page", type=int, default=None, help="0-based page to break once"
    )
    parser.add_argument("--rate-limit-first-page", action="store_true")
    parser.add_argument("--slow-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    server = SampleServer(
        args.host,
        args.port,
        page_delay_s=args.page_delay,
        malformed_page=args.malformed_page,
        rate_limit_first_page=args.rate_limit_first_page,
        slow_s=args.slow_s,
    ).start()
    print(f"serving the sample corpus on {server.url} (Ctrl-C to stop)")
    for name, url in server.endpoints().items():
        print(f"  {name:18} {url}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
