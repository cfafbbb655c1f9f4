"""The HTTP connectors (Mastodon, Bluesky, RSS) against the loopback sample server and its faults.

Every record the server holds comes out of its connector once, with its text exactly as written
(NER offsets point into it), and every fault (malformed page, 429, 5xx, timeouts, bad status)
is either survived with nothing lost or stops the source with one clear line.
"""

from __future__ import annotations

import email.utils
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mmner_data.config import BlueskySource, MastodonSource, RssSource
from mmner_data.net import parse_ratelimit_reset, parse_retry_after
from mmner_data.sample import SampleServer, load_sample_posts, source_id
from mmner_data.sources import Page, SourceError, make_source

PUBLIC = "/api/v1/timelines/public"
SEARCH = "/xrpc/app.bsky.feed.searchPosts"
FEED = "/feeds/news.xml"
FAST = {"backoff_max_s": 0.05, "timeout_s": 5.0}  # no slow backoff in tests


@pytest.fixture(scope="module")
def posts() -> list[dict[str, Any]]:
    return load_sample_posts()


@pytest.fixture(scope="module")
def server() -> Iterator[SampleServer]:
    with SampleServer() as srv:
        yield srv


def _channel(posts: list[dict[str, Any]], channel: str) -> list[dict[str, Any]]:
    return [p for p in posts if p["channel"] == channel]


def _mastodon(url: str, **kw: Any) -> Any:
    settings = {"page_size": 10, **FAST, **kw}
    return make_source(MastodonSource(type="mastodon", name="masto", base_url=url, **settings))


def _bluesky(url: str, **kw: Any) -> Any:
    settings = {"page_size": 10, **FAST, **kw}
    return make_source(
        BlueskySource(type="bluesky", name="sky", base_url=url, query="*", **settings)
    )


def _rss(url: str, **kw: Any) -> Any:
    return make_source(RssSource(type="rss", name="news", url=url + FEED, **{**FAST, **kw}))


def _drain(source: Any, cursor: str | None = None) -> list[Page]:
    try:
        return list(source.iter_pages(cursor))
    finally:
        source.close()


def _ids(pages: list[Page]) -> list[str]:
    return [p.source_id for page in pages for p in page.posts]


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


# -- every record once, text intact ------------------------------------------------------------


def test_mastodon_pages_every_status_once_and_resumes(server: SampleServer, posts: list) -> None:
    expected = {source_id(p): p for p in _channel(posts, "mastodon")}
    pages = _drain(_mastodon(server.url))
    ids = _ids(pages)
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == set(expected)
    assert [pg.exhausted for pg in pages] == [False] * (len(pages) - 1) + [True]
    assert len(pages) == -(-len(expected) // 10) + 1  # full pages, then the empty one

    by_id = {p.source_id: p for pg in pages for p in pg.posts}
    originals = {p["id"]: p for p in posts}
    for sid, sample in expected.items():
        got = by_id[sid]
        if sample["kind"] == "reblog":
            original = originals[sample["dup_of"]]
            assert got.is_reblog and got.text == original["text"]
            continue
        assert got.text == sample["text"], sample["id"]  # HTML → text gives back the original
        assert got.source_lang == sample["lang"] and got.author == sample["author"]
        assert got.created_at is not None and got.created_at.endswith("+00:00")
        assert [i.url for i in got.images] == [f"{server.url}/media/{sample['image']}"]

    # Resuming from the cursor of any page yields exactly what came after it.
    for k in (0, 3):
        rest = _ids(_drain(_mastodon(server.url), pages[k].cursor))
        assert rest == ids[sum(len(pg.posts) for pg in pages[: k + 1]) :]


def test_mastodon_hashtag_timeline(server: SampleServer, posts: list) -> None:
    tagged = [p for p in _channel(posts, "mastodon") if "#" in p["text"] and p["kind"] != "reblog"]
    tag = next(w for w in tagged[0]["text"].split() if w.startswith("#")).strip("#.,!?")
    ids = _ids(_drain(_mastodon(server.url, timeline=f"tag:{tag}")))
    assert source_id(tagged[0]) in ids and len(ids) == len(set(ids))
    assert len(ids) < len(_channel(posts, "mastodon"))


def test_bluesky_search_every_post_once(server: SampleServer, posts: list) -> None:
    expected = {source_id(p): p for p in _channel(posts, "bluesky")}
    pages = _drain(_bluesky(server.url))
    ids = _ids(pages)
    assert len(ids) == len(set(ids)) and set(ids) == set(expected)
    assert pages[-1].exhausted and not any(pg.exhausted for pg in pages[:-1])
    for pg in pages:
        for got in pg.posts:
            sample = expected[got.source_id]
            assert got.text == sample["text"] and got.source_lang == sample["lang"]
            assert [i.url for i in got.images] == [f"{server.url}/media/{sample['image']}"]
    # resume after the first page
    rest = _ids(_drain(_bluesky(server.url), pages[0].cursor))
    assert rest == ids[len(pages[0].posts) :]


def test_rss_every_entry_once_with_one_image(server: SampleServer, posts: list) -> None:
    expected = {source_id(p): p for p in _channel(posts, "rss")}
    pages = _drain(_rss(server.url))
    assert len(pages) == 1 and pages[0].exhausted and not pages[0].drops
    got = {p.source_id: p for p in pages[0].posts}
    assert set(got) == set(expected) and len(pages[0].posts) == len(expected)
    for sid, sample in expected.items():
        post = got[sid]
        assert post.text == sample["text"], sample["id"]
        assert post.created_at is not None
        # the enclosure and media:content name the same URL: one image, not two
        assert [i.url for i in post.images] == [f"{server.url}/media/{sample['image']}"]


# -- faults of the sample server ---------------------------------------------------------------


@pytest.mark.parametrize(("make", "path", "channel"), [(_mastodon, PUBLIC, "mastodon"),
                                                        (_bluesky, SEARCH, "bluesky")])  # fmt: skip
def test_malformed_page_is_retried_and_nothing_is_lost(
    make: Any, path: str, channel: str, posts: list
) -> None:
    with SampleServer(malformed_page=1) as srv:
        pages = _drain(make(srv.url))
        assert srv.requests[path] == len(pages) + 1  # page 1 was asked for twice
    ids = _ids(pages)
    assert len(ids) == len(set(ids)) == len(_channel(posts, channel))


def test_malformed_page_without_retries_stops_with_a_clear_error_and_resumes(
    posts: list,
) -> None:
    with SampleServer(malformed_page=2) as srv:
        got: list[Page] = []
        source = _mastodon(srv.url, retries=0)
        with pytest.raises(SourceError) as err:
            for page in source.iter_pages(None):
                got.append(page)
        source.close()
        msg = _one_line(err)
        assert msg.startswith("malformed JSON from ") and PUBLIC in msg
        assert len(got) == 2  # the two good pages came through before the bad one
        rest = _drain(_mastodon(srv.url, retries=0), got[-1].cursor)  # the re-run resumes
    ids = _ids(got) + _ids(rest)
    assert len(ids) == len(set(ids)) == len(_channel(posts, "mastodon"))


@pytest.mark.parametrize(("make", "path"), [(_mastodon, PUBLIC), (_bluesky, SEARCH),
                                             (_rss, FEED)])  # fmt: skip
def test_rate_limit_honours_retry_after(make: Any, path: str) -> None:
    with SampleServer(rate_limit_first_page=True) as srv:
        source = make(srv.url, backoff_max_s=5.0)
        t0 = time.monotonic()
        pages = _drain(source)
        waited = time.monotonic() - t0
        assert srv.requests[path] == len(pages) + 1
    assert source.client.n_retries == 1
    assert waited >= 0.9  # Retry-After: 1, not the 0.05 s backoff cap of these tests
    assert _ids(pages)


def test_page_timeout_is_retried_then_stops_the_source() -> None:
    with SampleServer(page_delay_s=2.0) as srv:
        source = _mastodon(srv.url, timeout_s=0.2, retries=1)
        t0 = time.monotonic()
        with pytest.raises(SourceError) as err:
            _drain(source)
        assert time.monotonic() - t0 < 1.9  # gave up on its own timeout, did not wait 2 s
        assert srv.requests[PUBLIC] == 2
    assert _one_line(err).startswith("timeout after 2 attempts")


def test_unknown_path_and_bad_timeline_are_clear_errors(server: SampleServer) -> None:
    with pytest.raises(SourceError) as err:
        _drain(_mastodon(server.url + "/nope", retries=3))
    assert "HTTP 404" in _one_line(err)
    with pytest.raises(SourceError) as err:
        _drain(_mastodon(server.url, timeline="home"))
    assert "tag:<hashtag>" in _one_line(err)


def test_connection_refused_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError) as err:
        _drain(_bluesky(f"http://127.0.0.1:{port}", retries=1))
    assert _one_line(err).startswith("connection_error after 2 attempts")


# -- scripted answers: 5xx, auth, headers ------------------------------------------------------


class Scripted:
    """A loopback server answering each request with the next scripted (status, headers, body)."""

    def __init__(self, script: list[tuple[int, dict[str, str], bytes]]):
        self.script = script
        self.seen: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.seen.append(dict(self.headers))
                i = min(len(outer.seen), len(outer.script)) - 1
                status, headers, body = outer.script[i]
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def __enter__(self) -> Scripted:
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


JSON = {"Content-Type": "application/json"}
EMPTY_TIMELINE = (200, JSON, b"[]")


def test_server_errors_are_retried_then_succeed() -> None:
    with Scripted([(500, {}, b"oops"), (503, {}, b"busy"), EMPTY_TIMELINE]) as srv:
        source = _mastodon(srv.url, retries=2)
        pages = _drain(source)
    assert len(srv.seen) == 3 and source.client.n_retries == 2
    assert len(pages) == 1 and pages[0].exhausted and not pages[0].posts


def test_server_errors_forever_stop_the_source_with_one_line() -> None:
    srv = Scripted([(502, {}, b"<html>bad gateway</html>")])
    with srv, pytest.raises(SourceError) as err:
        _drain(_bluesky(srv.url, retries=2))
    assert len(srv.seen) == 3
    assert _one_line(err).startswith("server_error after 3 attempts") and "HTTP 502" in str(
        err.value
    )


def test_mastodon_ratelimit_reset_header_is_honoured_without_retry_after() -> None:
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    with Scripted([(429, {"X-RateLimit-Reset": reset}, b"{}"), EMPTY_TIMELINE]) as srv:
        t0 = time.monotonic()
        _drain(_mastodon(srv.url, backoff_max_s=3.0))
        waited = time.monotonic() - t0
    assert len(srv.seen) == 2 and waited >= 0.5  # ~1-2 s to the reset (second resolution)


def test_token_is_sent_from_env_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-token-value"
    monkeypatch.setenv("MASTO_TOKEN", secret)
    srv = Scripted([(401, JSON, b'{"error": "The access token is invalid"}')])
    with srv, pytest.raises(SourceError) as err:
        _drain(_mastodon(srv.url, token_env="MASTO_TOKEN"))
    assert srv.seen[0]["Authorization"] == f"Bearer {secret}"
    assert len(srv.seen) == 1  # 401 is not retried
    msg = _one_line(err)
    assert "HTTP 401" in msg and "token_env" in msg and secret not in msg
    monkeypatch.delenv("MASTO_TOKEN")
    with pytest.raises(SourceError) as err:
        _mastodon(srv.url, token_env="MASTO_TOKEN")
    assert "MASTO_TOKEN is not set" in _one_line(err)


def test_wrong_shape_and_bad_records_are_recorded_not_fatal() -> None:
    statuses = [
        {"id": "20", "created_at": "2026-01-01T00:00:00.000Z", "content": "<p>fine post</p>",
         "account": {"acct": "a"}, "media_attachments": []},
        {"id": "19", "created_at": "2026-01-01T00:00:00.000Z"},  # no content
        "not a status",
    ]  # fmt: skip
    with Scripted([(200, JSON, json.dumps(statuses).encode()), EMPTY_TIMELINE]) as srv:
        pages = _drain(_mastodon(srv.url))
    assert _ids(pages) == ["20"]
    drops = [d for pg in pages for d in pg.drops]
    assert [(d.item_id, d.reason) for d in drops] == [
        ("masto:19", "malformed_record"),
        ("masto:head#2", "malformed_record"),
    ]
    assert "KeyError" in drops[0].detail
    srv = Scripted([(200, JSON, b'{"statuses": []}')])
    with srv, pytest.raises(SourceError) as err:
        _drain(_mastodon(srv.url))
    assert "expected a list of statuses" in _one_line(err)


# -- one Retry-After parser for the connectors and the image fetcher ---------------------------


def test_one_retry_after_parser_everywhere() -> None:
    from mmner_data.collect import images
    from mmner_data.sources import http

    assert images.parse_retry_after is parse_retry_after
    assert http.parse_retry_after is parse_retry_after


def test_parse_retry_after_and_ratelimit_reset() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(" 2.5 ", 30) == 2.5
    assert parse_retry_after("-4", 30) == 0.0
    assert parse_retry_after("nan", 30) is None
    assert parse_retry_after("inf", 30) == 30.0
    assert parse_retry_after("", 30) is None
    date = email.utils.formatdate(now + 12, usegmt=True)
    assert parse_retry_after(date, 30, now=now) == pytest.approx(12.0)
    # "-0000" dates parse to naive datetimes: still GMT, not local time
    naive = email.utils.formatdate(now + 12).rsplit(" ", 1)[0] + " -0000"
    assert parse_retry_after(naive, 30, now=now) == pytest.approx(12.0)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now + 8))
    assert parse_ratelimit_reset(iso, 30, now=now) == pytest.approx(8.0)
    assert parse_ratelimit_reset(iso, 5, now=now) == 5.0
    assert parse_ratelimit_reset("tomorrow", 30, now=now) is None
    assert parse_ratelimit_reset(None, 30) is None
