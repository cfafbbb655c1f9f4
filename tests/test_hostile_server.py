"""A hostile server on loopback: crawled content must never read local files or reach private hosts.

The hostile server plays a Mastodon instance and an RSS feed whose posts point their media at a
local file (``file://``, a bare path, ``~``), at another loopback service (by name, and by a
redirect from the server itself), at a relative path, and at a host whose DNS answer changes
between check and connect. Every one is refused with a recorded reason; media on the configured
origin is still fetched. Everything stays on loopback: other address classes are tested on the
pure functions (test_urlpolicy.py). The API client's own limits (overall deadline, body cap,
redirect checks) are tested here too.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from test_images import send  # the loopback servers of both files answer alike

from mmner_data.collect import urlpolicy
from mmner_data.collect.pipeline import run_collect
from mmner_data.collect.urlpolicy import UrlPolicy, UrlRefused
from mmner_data.config import MastodonSource, RssSource, build_recipe
from mmner_data.net import guarded_client
from mmner_data.sample import load_sample_posts
from mmner_data.sources import SourceError, make_source
from mmner_data.store import CorpusStore

pytestmark = pytest.mark.timeout(120)

Handler = Callable[[BaseHTTPRequestHandler], None]


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 64), color).save(buf, "JPEG")
    return buf.getvalue()


class Loopback:
    """A tiny programmable HTTP server on one loopback address; counts requests per path."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.routes: dict[str, Handler] = {}
        self.hits: list[str] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.hits.append(self.path)
                route = outer.routes.get(self.path.split("?")[0])
                if route is None:
                    send(self, 404, b"not found", "text/plain")
                else:
                    route(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, port), H)
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _pair_on_one_port() -> tuple[Loopback, Loopback]:
    """A "good" server on 127.0.0.2:P and a "bad" one on 127.0.0.1:P (same port number)."""
    for _ in range(20):
        try:
            good = Loopback("127.0.0.2")
        except OSError:
            pytest.skip("127.0.0.2 is not usable on this machine")
        try:
            return good, Loopback("127.0.0.1", good.port)
        except OSError:
            good.close()
    pytest.skip("no port free on both loopback addresses")


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Loopback, Loopback]]:
    """``rebind.test`` answers 127.0.0.2 (allowed) the first time, 127.0.0.1 afterwards."""
    good, bad = _pair_on_one_port()
    good.routes["/img.jpg"] = lambda h: send(h, 200, _jpeg((0, 128, 0)), "image/jpeg")
    bad.routes["/img.jpg"] = lambda h: send(h, 200, _jpeg((200, 0, 0)), "image/jpeg")
    real = urlpolicy.system_resolve
    answers = iter([["127.0.0.2"]])

    def resolve(host: str, port: int) -> list[str]:
        if host == "rebind.test":
            return next(answers, ["127.0.0.1"])
        return real(host, port)

    monkeypatch.setattr(urlpolicy, "system_resolve", resolve)
    yield good, bad
    good.close()
    bad.close()


# -- the whole collect stage against a hostile Mastodon instance and feed ---------------------


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid JPEG on the researcher's disk: if it were ever read, its post would be kept."""
    path = tmp_path_factory.mktemp("home") / "secret.jpg"
    path.write_bytes(_jpeg((10, 20, 30)))
    return path


def _status(i: int, text: str, media_url: str) -> dict[str, Any]:
    return {
        "id": str(1000 - i),
        "created_at": f"2026-01-01T00:00:{i:02d}.000Z",
        "content": f"<p>{text}</p>",
        "language": "en",
        "account": {"acct": f"user{i}"},
        "media_attachments": [{"type": "image", "url": media_url}],
        "visibility": "public",
    }


def test_hostile_media_urls_are_refused_and_same_origin_media_is_fetched(
    secret: Path, tmp_path: Path, rebinding: tuple[Loopback, Loopback]
) -> None:
    good, bad = rebinding
    internal = Loopback()  # another loopback service: must never be reached
    internal.routes["/img.jpg"] = lambda h: send(h, 200, _jpeg((1, 2, 3)), "image/jpeg")
    hostile = Loopback()
    hostile.routes["/media/ok.jpg"] = lambda h: send(h, 200, _jpeg((0, 0, 200)), "image/jpeg")
    hostile.routes["/media/redirect.jpg"] = lambda h: send(
        h, 302, b"", None, {"Location": f"{internal.url}/img.jpg"}
    )
    cases = {
        "file_url": secret.as_uri(),
        "bare_path": str(secret),
        "tilde": "~/secret.jpg",
        "loopback_by_name": f"http://localhost:{internal.port}/img.jpg",
        "loopback_by_redirect": f"{hostile.url}/media/redirect.jpg",
        "rebinding": f"http://rebind.test:{good.port}/img.jpg",
        "same_origin": f"{hostile.url}/media/ok.jpg",
    }
    texts = [p["text"] for p in load_sample_posts() if p["lang"] == "en" and p["kind"] == "normal"]
    statuses = [_status(i, texts[i], url) for i, url in enumerate(cases.values())]
    hostile.routes["/api/v1/timelines/public"] = lambda h: send(
        h, 200, json.dumps(statuses if "max_id" not in h.path else []).encode(), "application/json"
    )
    feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<item><guid>rel</guid><title>x</title><description>{texts[10]} "
        f'&lt;img src="{secret}"&gt;</description></item>'
        f"<item><guid>enc</guid><title>x</title><description>{texts[11]}</description>"
        f'<enclosure url="{secret.as_uri()}" type="image/jpeg" length="1"/></item>'
        "</channel></rss>"
    ).encode()
    hostile.routes["/feed.xml"] = lambda h: send(h, 200, feed, "application/rss+xml")
    recipe = build_recipe(
        {
            "name": "hostile",
            "languages": ["en"],
            "sources": [
                {"name": "masto", "type": "mastodon", "base_url": hostile.url, "retries": 0},
                {"name": "feed", "type": "rss", "url": f"{hostile.url}/feed.xml", "retries": 0},
            ],
            "images": {"timeout_s": 2, "retries": 0},
            "text": {"min_words": 1},
            "langid": {"min_confidence": 0.0},
            "url_policy": {"allow_hosts": ["127.0.0.2"]},  # rebind.test's first answer
        },
        recipe_dir=tmp_path,
    )
    try:
        with CorpusStore(tmp_path / "store") as store:
            run_collect(recipe, store)
            rows = store.query(
                "SELECT p.source, p.text, pi.url, pi.status, pi.error, pi.detail FROM posts p "
                "JOIN post_images pi USING (post_id) ORDER BY p.source, pi.url"
            )
            drops = {
                r["item_id"]: r["reason"]
                for r in store.query("SELECT item_id, reason FROM drops WHERE stage='fetch'")
            }
    finally:
        internal.close()
        hostile.close()
    by_url = {r["url"]: r for r in rows if r["source"] == "masto"}
    outcome = {name: (by_url[url]["status"], by_url[url]["error"]) for name, url in cases.items()}
    assert outcome == {
        "file_url": ("failed", "url_refused"),
        "bare_path": ("failed", "url_refused"),
        "tilde": ("failed", "url_refused"),
        "loopback_by_name": ("failed", "url_refused"),
        "loopback_by_redirect": ("failed", "url_refused"),
        "rebinding": ("ok", None),  # fetched from the address that was checked
        "same_origin": ("ok", None),
    }
    assert "loopback address" in by_url[cases["loopback_by_name"]]["detail"]
    assert "remote source" in by_url[cases["file_url"]]["detail"]
    assert list(drops.values()).count("url_refused") >= 5  # each refusal is a recorded drop
    assert internal.hits == [] and bad.hits == []  # never reached
    assert good.hits == ["/img.jpg"]
    feed_rows = {r["url"]: r for r in rows if r["source"] == "feed"}
    # the relative <img src="/abs/path"> is a path on the feed's own server, never a local file
    rel = f"{hostile.url}{secret}"
    assert feed_rows[rel]["error"] == "http_status"
    assert feed_rows[secret.as_uri()]["error"] == "url_refused"


def test_local_sources_read_their_folder_only(secret: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.jpg").write_bytes(_jpeg((50, 60, 70)))
    texts = [p["text"] for p in load_sample_posts() if p["lang"] == "en" and p["kind"] == "normal"]
    lines = [
        {"id": "in", "text": texts[0], "image": "in.jpg"},
        {"id": "out", "text": texts[1], "image": str(secret)},
        {"id": "up", "text": texts[2], "image": "../../" + secret.parent.name + "/secret.jpg"},
        {"id": "tilde", "text": texts[3], "image": "~/secret.jpg"},
    ]
    (data / "posts.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    recipe = build_recipe(
        {
            "languages": ["en"],
            "sources": [{"name": "local", "type": "jsonl", "path": str(data / "posts.jsonl")}],
            "text": {"min_words": 1},
            "langid": {"min_confidence": 0.0},
        },
        recipe_dir=tmp_path,
    )
    with CorpusStore(tmp_path / "store") as store:
        run_collect(recipe, store)
        got = {
            r["source_id"]: r["error"]
            for r in store.query(
                "SELECT p.source_id, pi.error FROM posts p JOIN post_images pi USING (post_id)"
            )
        }
    assert got == {
        "in": None,
        "out": "url_refused",
        "up": "url_refused",
        "tilde": "file_not_found",  # a folder literally named "~" below the file: never $HOME
    }


# -- the guarded client itself -------------------------------------------------------------------


def test_dns_answer_changing_between_check_and_connect_cannot_redirect_the_connection(
    rebinding: tuple[Loopback, Loopback],
) -> None:
    good, bad = rebinding
    policy = UrlPolicy.build(allow_hosts=["127.0.0.2"])
    with guarded_client(policy) as client:
        resp = client.get(f"http://rebind.test:{good.port}/img.jpg")
        assert resp.status_code == 200 and resp.content == _jpeg((0, 128, 0))
    # a new connection resolves again and now gets 127.0.0.1: refused, not connected
    with guarded_client(policy) as client, pytest.raises(UrlRefused, match="loopback"):
        client.get(f"http://rebind.test:{good.port}/img.jpg")
    assert bad.hits == [] and good.hits == ["/img.jpg"]


def _source(kind: str, url: str, **kw: Any) -> Any:
    common = {"name": "s", "retries": 0, "backoff_max_s": 0.01, **kw}
    if kind == "mastodon":
        return make_source(MastodonSource(type="mastodon", base_url=url, **common))
    return make_source(RssSource(type="rss", url=url + "/feed.xml", **common))


@pytest.fixture
def server() -> Iterator[Loopback]:
    srv = Loopback()
    yield srv
    srv.close()


def test_api_redirect_to_another_private_host_is_refused(server: Loopback) -> None:
    internal = Loopback()
    internal.routes["/api/v1/timelines/public"] = lambda h: send(h, 200, b"[]", "application/json")
    server.routes["/api/v1/timelines/public"] = lambda h: send(
        h, 302, b"", None, {"Location": f"{internal.url}/api/v1/timelines/public"}
    )
    try:
        with pytest.raises(SourceError, match=r"refused by the URL policy.*loopback"):
            list(_source("mastodon", server.url).iter_pages(None))
        assert internal.hits == []
    finally:
        internal.close()


def test_api_redirect_loops_stop(server: Loopback) -> None:
    server.routes["/feed.xml"] = lambda h: send(h, 302, b"", None, {"Location": "/feed.xml"})
    with pytest.raises(SourceError, match="more than 5 redirects"):
        list(_source("rss", server.url).iter_pages(None))
    assert len(server.hits) == 6


def test_a_dripping_page_is_cut_by_the_overall_deadline(server: Loopback) -> None:
    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        try:
            for _ in range(100):
                h.wfile.write(b" ")
                h.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    server.routes["/api/v1/timelines/public"] = drip
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="timeout"):
        list(_source("mastodon", server.url, timeout_s=1.0).iter_pages(None))
    assert time.monotonic() - t0 < 3.0


def test_a_huge_page_is_cut_by_the_body_cap(server: Loopback) -> None:
    def huge(h: BaseHTTPRequestHandler, declare: bool) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        if declare:
            h.send_header("Content-Length", str(10 * 2**20))
        h.end_headers()
        try:
            for _ in range(160):
                h.wfile.write(b"<" * 65536)
        except OSError:
            pass

    server.routes["/feed.xml"] = lambda h: huge(h, True)
    with pytest.raises(SourceError, match="declares 10485760 bytes > max_body_bytes"):
        list(_source("rss", server.url, max_body_bytes=2**20).iter_pages(None))
    server.routes["/feed.xml"] = lambda h: huge(h, False)
    with pytest.raises(SourceError, match="over max_body_bytes 1048576"):
        list(_source("rss", server.url, max_body_bytes=2**20).iter_pages(None))


def test_og_image_of_a_private_link_is_not_fetched(server: Loopback) -> None:
    internal = Loopback()
    internal.routes["/page"] = lambda h: send(
        h, 200, b'<meta property="og:image" content="/i.jpg">', "text/html"
    )
    feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><guid>a</guid>'
        f"<title>x</title><link>{internal.url}/page</link><description>words here</description>"
        "</item><item><guid>b</guid><title>y</title><link>/own-page</link>"
        "<description>more words here</description></item></channel></rss>"
    ).encode()
    server.routes["/feed.xml"] = lambda h: send(h, 200, feed, "application/rss+xml")
    server.routes["/own-page"] = lambda h: send(
        h, 200, b'<meta property="og:image" content="img/b.jpg">', "text/html"
    )
    try:
        (page,) = list(_source("rss", server.url, og_image=True).iter_pages(None))
    finally:
        internal.close()
    images = {p.source_id: [i.url for i in p.images] for p in page.posts}
    assert images == {"a": [], "b": [f"{server.url}/img/b.jpg"]}
    assert internal.hits == []


def test_repeating_cursors_stop_instead_of_looping(server: Loopback) -> None:
    status = {"id": "5", "content": "<p>hello there</p>", "account": {"acct": "a"}}
    server.routes["/api/v1/timelines/public"] = lambda h: send(
        h, 200, json.dumps([status]).encode(), "application/json"
    )
    with pytest.raises(SourceError, match="not older than max_id"):
        list(_source("mastodon", server.url).iter_pages(None))


def test_unreachable_port_is_a_connection_error_not_a_refusal() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(SourceError, match="connection_error"):
        list(_source("mastodon", f"http://127.0.0.1:{port}").iter_pages(None))
