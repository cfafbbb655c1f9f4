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
import json
import sys
import threading
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# The protocols live one per module; this module is the core (lifecycle, routing, feed faults).
from mmner_data.sample.bluesky_api import BlueskyApi
from mmner_data.sample.faults import MediaFaults, bomb_png
from mmner_data.sample.ids import (
    bluesky_cid,
    bluesky_did,
    bluesky_uri,
    mastodon_status_id,
    rss_guid,
    source_id,
)
from mmner_data.sample.mastodon_api import MastodonApi
from mmner_data.sample.rss import RssApi
from mmner_data.sample.wire import IMAGES_DIR, SAMPLE_DIR, _BadRequest, _json, load_sample_posts

__all__ = [
    "IMAGES_DIR",
    "SAMPLE_DIR",
    "SampleServer",
    "bluesky_cid",
    "bluesky_did",
    "bluesky_uri",
    "bomb_png",
    "load_sample_posts",
    "main",
    "mastodon_status_id",
    "rss_guid",
    "source_id",
]


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


class SampleServer(MastodonApi, BlueskyApi, RssApi, MediaFaults):
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
