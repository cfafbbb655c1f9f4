"""The loopback sample server: every channel parses, paging is complete, faults behave."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser

import feedparser
import httpx
import pytest
from PIL import Image

from mmner_data.sample import SAMPLE_DIR, SampleServer, load_sample_posts, source_id

PUBLIC = "/api/v1/timelines/public"
SEARCH = "/xrpc/app.bsky.feed.searchPosts"


class _Text(HTMLParser):
    """Mastodon/RSS HTML to plain text: <p> starts a paragraph, <br> is a newline."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "br":
            self.out.append("\n")
        elif tag == "p" and self.out:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        self.out.append(data)


def html_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return "".join(parser.out)


def _created(post: dict) -> datetime:
    return datetime.fromisoformat(post["created_at"].replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def posts() -> list[dict]:
    return load_sample_posts()


@pytest.fixture(scope="module")
def server() -> Iterator[SampleServer]:
    with SampleServer() as srv:
        yield srv


@pytest.fixture()
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def _channel(posts: list[dict], name: str) -> list[dict]:
    return [p for p in posts if p["channel"] == name]


# -- Mastodon ----------------------------------------------------------------------------------


def _page_all(client: httpx.Client, url: str, params: dict | None) -> list[list[dict]]:
    pages = []
    while True:
        resp = client.get(url, params=params)
        assert resp.status_code == 200
        page = resp.json()
        if not page:
            assert "next" not in resp.links
            return pages
        pages.append(page)
        url, params = resp.links["next"]["url"], None  # ({} would drop the URL's query)


def test_mastodon_pages_every_status_once(
    server: SampleServer, client: httpx.Client, posts: list[dict]
) -> None:
    pages = _page_all(client, server.url + PUBLIC, {"limit": 7})
    assert all(len(p) == 7 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 7
    ids = [s["id"] for page in pages for s in page]
    expected = {source_id(p) for p in _channel(posts, "mastodon")}
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
    assert [int(i) for i in ids] == sorted((int(i) for i in ids), reverse=True)  # newest first

    default = client.get(server.url + PUBLIC).json()
    assert len(default) == 20
    assert len(client.get(server.url + PUBLIC, params={"limit": 500}).json()) == 40
    since = client.get(server.url + PUBLIC, params={"since_id": ids[3]}).json()
    assert [s["id"] for s in since] == ids[:3]
    newer = client.get(server.url + PUBLIC, params={"min_id": ids[10], "limit": 2}).json()
    assert [s["id"] for s in newer] == ids[8:10]


def test_mastodon_statuses_are_real_entities(
    server: SampleServer, client: httpx.Client, posts: list[dict]
) -> None:
    by_sid = {source_id(p): p for p in _channel(posts, "mastodon")}
    by_id = {p["id"]: p for p in posts}
    statuses = client.get(server.url + PUBLIC, params={"limit": 40}).json()
    statuses += client.get(
        server.url + PUBLIC, params={"limit": 40, "max_id": statuses[-1]["id"]}
    ).json()
    reblogs = 0
    for status in statuses:
        post = by_sid[status["id"]]
        assert status["created_at"].startswith(post["created_at"][:19])
        assert status["account"]["acct"] == post["author"]
        assert {"id", "username", "display_name", "url"} <= set(status["account"])
        assert status["visibility"] == "public" and status["spoiler_text"] == ""
        body = status
        if post["kind"] == "reblog":
            reblogs += 1
            assert status["content"] == "" and status["media_attachments"] == []
            body = status["reblog"]
            assert body["id"] == source_id(by_id[post["dup_of"]])
        else:
            assert status["reblog"] is None
        assert html_text(body["content"]) == post["text"]
        assert body["content"].startswith("<p>") and body["language"] == post["lang"]
        if "#" in post["text"]:
            assert 'class="mention hashtag"' in body["content"] and body["tags"]
        if "@" in post["text"]:
            assert 'class="u-url mention"' in body["content"] and body["mentions"]
        if "http" in post["text"]:
            assert '<span class="invisible">https://</span>' in body["content"]
        (media,) = body["media_attachments"]
        assert media["type"] == "image" and media["url"].endswith("/media/" + post["image"])
        if not post["image"].startswith("broken/"):
            assert media["meta"]["original"]["width"] > 0
    assert reblogs == 2


def test_mastodon_tag_and_local_filters(server: SampleServer, client: httpx.Client) -> None:
    tagged = client.get(server.url + "/api/v1/timelines/tag/astronomy").json()
    assert len(tagged) >= 2
    assert all(any(t["name"] == "astronomy" for t in s["tags"]) for s in tagged)
    assert client.get(server.url + "/api/v1/timelines/tag/nosuchtag").json() == []
    local = client.get(server.url + PUBLIC, params={"local": "true", "limit": 40}).json()
    assert local and all("@" not in s["account"]["acct"] for s in local)
    remote = client.get(server.url + PUBLIC, params={"remote": "true", "limit": 40}).json()
    assert remote and all("@" in s["account"]["acct"] for s in remote)


# -- RSS ---------------------------------------------------------------------------------------


def test_rss_feed_parses_with_feedparser(
    server: SampleServer, client: httpx.Client, posts: list[dict]
) -> None:
    resp = client.get(server.url + "/feeds/news.xml")
    assert resp.headers["content-type"].startswith("application/rss+xml")
    feed = feedparser.parse(resp.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "rss20"
    expected = {source_id(p): p for p in _channel(posts, "rss")}
    assert len(feed.entries) == len(expected)
    assert {e.id for e in feed.entries} == set(expected)
    for entry in feed.entries:
        post = expected[entry.id]
        assert html_text(entry.summary) == post["text"]
        assert entry.title and post["text"].startswith(entry.title.rstrip("…"))
        assert parsedate_to_datetime(entry.published) == _created(post)
        (enc,) = entry.enclosures
        assert enc.href == f"{server.url}/media/{post['image']}" and enc.type == "image/jpeg"
        assert entry.media_content[0]["url"] == enc.href
        if not post["image"].startswith("broken/"):
            assert int(enc.length) == (SAMPLE_DIR / "images" / post["image"]).stat().st_size
    published = [parsedate_to_datetime(e.published) for e in feed.entries]
    assert published == sorted(published, reverse=True)


# -- Bluesky -----------------------------------------------------------------------------------


def test_bluesky_search_pages_every_post_once(
    server: SampleServer, client: httpx.Client, posts: list[dict]
) -> None:
    expected = {source_id(p): p for p in _channel(posts, "bluesky")}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"q": "*", "limit": 6} | ({"cursor": cursor} if cursor else {})
        body = client.get(server.url + SEARCH, params=params).json()
        seen += [v["uri"] for v in body["posts"]]
        cursor = body.get("cursor")
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == len(expected) and set(seen) == set(expected)
    body = client.get(server.url + SEARCH, params={"q": "*", "limit": 100}).json()
    for view in body["posts"]:
        post = expected[view["uri"]]
        assert view["uri"].startswith(f"at://{view['author']['did']}/app.bsky.feed.post/")
        assert view["cid"].startswith("bafyrei") and view["author"]["handle"] == post["author"]
        record = view["record"]
        assert record["$type"] == "app.bsky.feed.post" and record["text"] == post["text"]
        assert record["langs"] == [post["lang"]]
        assert datetime.fromisoformat(record["createdAt"].replace("Z", "+00:00")) == _created(post)
        raw = record["text"].encode()
        for facet in record.get("facets", []):
            piece = raw[facet["index"]["byteStart"] : facet["index"]["byteEnd"]].decode()
            kind = facet["features"][0]["$type"].rsplit("#", 1)[1]
            assert piece[0] == {"link": "h", "mention": "@", "tag": "#"}[kind], piece
        assert view["embed"]["$type"] == "app.bsky.embed.images#view"
        (image,) = view["embed"]["images"]
        assert image["fullsize"] == f"{server.url}/media/{post['image']}" and "thumb" in image
    assert any("facets" in v["record"] for v in body["posts"])


def test_bluesky_search_filters(server: SampleServer, client: httpx.Client) -> None:
    de = client.get(server.url + SEARCH, params={"q": "*", "lang": "de", "limit": 100}).json()
    assert de["posts"] and all(v["record"]["langs"] == ["de"] for v in de["posts"])
    hits = client.get(server.url + SEARCH, params={"q": "galaxie"}).json()["posts"]
    assert hits and all("galaxie" in v["record"]["text"].lower() for v in hits)
    resp = client.get(server.url + SEARCH)
    assert resp.status_code == 400 and resp.json()["error"] == "InvalidRequest"


# -- media -------------------------------------------------------------------------------------


def test_media_served_with_content_type(server: SampleServer, client: httpx.Client) -> None:
    path = SAMPLE_DIR / "images" / "en-001.jpg"
    resp = client.get(f"{server.url}/media/en-001.jpg")
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
    assert resp.content == path.read_bytes()
    head = client.head(f"{server.url}/media/en-001.jpg")
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(resp.content)
    assert client.get(f"{server.url}/media/nope.jpg").status_code == 404
    assert client.get(f"{server.url}/media/..%2Fposts.jsonl").status_code == 404


def test_broken_images(server: SampleServer, client: httpx.Client) -> None:
    base = f"{server.url}/media/broken"
    truncated = client.get(f"{base}/truncated.jpg")
    assert (
        truncated.headers["content-type"] == "image/jpeg" and truncated.content[:2] == b"\xff\xd8"
    )
    with Image.open(io.BytesIO(truncated.content)) as im, pytest.raises(OSError):
        im.load()

    page = client.get(f"{base}/html.jpg")
    assert page.status_code == 200 and page.headers["content-type"] == "image/jpeg"
    assert page.content.startswith(b"<!DOCTYPE html>")

    bomb = client.get(f"{base}/bomb.png")
    assert bomb.headers["content-type"] == "image/png" and len(bomb.content) < 1024
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb.content))
    assert bomb.content[16:24] == (30_000).to_bytes(4, "big") * 2  # IHDR width, height

    assert client.get(f"{base}/missing.jpg").status_code == 404

    t0 = time.monotonic()
    with client.stream("GET", f"{base}/huge.jpg") as resp:
        assert int(resp.headers["content-length"]) == 50 * 1024 * 1024
        first = next(resp.iter_bytes())
        assert first.startswith(b"\xff\xd8")
    assert time.monotonic() - t0 < 5


def test_slow_image_sleeps() -> None:
    with SampleServer(slow_s=1.0) as srv, httpx.Client() as c:
        with pytest.raises(httpx.ReadTimeout):
            c.get(f"{srv.url}/media/broken/slow.jpg", timeout=0.3)
        t0 = time.monotonic()
        resp = c.get(f"{srv.url}/media/broken/slow.jpg", timeout=5)
        assert resp.status_code == 200 and time.monotonic() - t0 >= 0.9
        assert resp.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("code", [429, 500])
def test_flaky_images_recover(server: SampleServer, client: httpx.Client, code: int) -> None:
    url = f"{server.url}/media/flaky/{code}/fr-005.jpg"
    for _ in range(2):
        resp = client.get(url)
        assert resp.status_code == code
        if code == 429:
            assert resp.headers["retry-after"] == "1"
    resp = client.get(url)
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
    assert resp.content == (SAMPLE_DIR / "images" / "fr-005.jpg").read_bytes()
    assert client.get(f"{server.url}/media/flaky/{code}/fr-006.jpg").status_code == code


# -- fault options -----------------------------------------------------------------------------


def test_rate_limit_first_page_once() -> None:
    with SampleServer(rate_limit_first_page=True) as srv, httpx.Client() as c:
        for path, params in ((PUBLIC, {}), (SEARCH, {"q": "*"}), ("/feeds/news.xml", {})):
            first = c.get(srv.url + path, params=params)
            assert first.status_code == 429 and first.headers["retry-after"] == "1"
            assert c.get(srv.url + path, params=params).status_code == 200
            assert c.get(srv.url + path, params=params).status_code == 200


def test_malformed_page_once() -> None:
    with SampleServer(malformed_page=1) as srv, httpx.Client() as c:
        first = c.get(srv.url + PUBLIC, params={"limit": 5})
        assert len(first.json()) == 5
        nxt = first.links["next"]["url"]
        bad = c.get(nxt)
        assert bad.status_code == 200 and bad.headers["content-type"].startswith("application/json")
        with pytest.raises(json.JSONDecodeError):
            json.loads(bad.content)
        assert len(c.get(nxt).json()) == 5  # the retry is fine
        page1 = {"q": "*", "limit": 5, "cursor": "5"}
        with pytest.raises(json.JSONDecodeError):
            json.loads(c.get(srv.url + SEARCH, params=page1).content)
        assert len(c.get(srv.url + SEARCH, params=page1).json()["posts"]) == 5


def test_page_delay() -> None:
    with SampleServer(page_delay_s=0.3) as srv, httpx.Client() as c:
        t0 = time.monotonic()
        assert c.get(srv.url + PUBLIC).status_code == 200
        assert time.monotonic() - t0 >= 0.3
        t0 = time.monotonic()
        assert c.get(f"{srv.url}/media/en-001.jpg").status_code == 200
        assert time.monotonic() - t0 < 0.3  # media is not delayed


def test_stop_releases_the_port() -> None:
    srv = SampleServer().start()
    url = srv.url
    assert httpx.get(url + "/").json()["rss"] == url + "/feeds/news.xml"
    srv.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/", timeout=1)


def test_command_line_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmner_data.sample.server", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}{PUBLIC}", params={"limit": 1})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert resp.status_code == 200 and len(resp.json()) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_stable_ids_across_servers() -> None:
    with SampleServer() as a, SampleServer() as b, httpx.Client() as c:
        assert a.url != b.url
        ids_a = [s["id"] for s in c.get(a.url + PUBLIC).json()]
        ids_b = [s["id"] for s in c.get(b.url + PUBLIC).json()]
        assert ids_a == ids_b
