"""Fuzzing every input a user or a remote server controls: none ends in a traceback or a hang.

Generated with hypothesis (derandomized, so CI runs the same cases every time): recipes, API
pages of each HTTP source type served on loopback, Label Studio exports, image bytes and media
URLs. Each case must end in a result or in the input's own error type (a ``MmnerError``, an
``ImageRejected``, a ``UrlRefused``); anything else is a traceback and fails the test. The last
test prints the counts (cases per input kind, tracebacks 0, hangs 0) so CI shows them.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mmner_data.collect.images import ImageLimits, ImageRejected, process_image_bytes
from mmner_data.collect.urlpolicy import UrlPolicy, UrlRefused, classify
from mmner_data.config import BlueskySource, MastodonSource, RecipeError, RssSource, build_recipe
from mmner_data.errors import MmnerError
from mmner_data.sources import SourceError, make_source

CASES: Counter[str] = Counter()
TRACEBACKS: Counter[str] = Counter()
HANGS: Counter[str] = Counter()
HANG_S = 10.0  # one case taking longer than this counts as a hang


def fuzz(n: int) -> settings:
    """``n`` derandomized cases (the same ones on every run), no per-case deadline."""
    return settings(
        max_examples=n,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def _run(kind: str, fn: Callable[[], Any], expected: tuple[type[BaseException], ...]) -> None:
    CASES[kind] += 1
    t0 = time.monotonic()
    try:
        fn()
    except expected:
        pass
    except Exception:
        TRACEBACKS[kind] += 1
        raise
    finally:
        if time.monotonic() - t0 > HANG_S:
            HANGS[kind] += 1


# -- JSON-ish values ----------------------------------------------------------------------------

scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4)
    ),
    max_leaves=20,
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value of the right shape, or any JSON value instead."""
    return st.one_of(strategy, json_values)


# -- recipes ------------------------------------------------------------------------------------

source_dicts = st.fixed_dictionaries(
    {
        "name": _maybe(st.from_regex(r"[a-z]{1,8}", fullmatch=True)),
        "type": _maybe(st.sampled_from(["mastodon", "bluesky", "rss", "jsonl", "csv", "hf"])),
    },
    optional={
        "base_url": _maybe(st.sampled_from(["http://127.0.0.1:9", "x.org", "file:///etc", ""])),
        "url": _maybe(st.sampled_from(["https://x.org/f.xml", "/f.xml", "http://h:bad/"])),
        "path": _maybe(st.text(max_size=20)),
        "query": _maybe(st.text(max_size=10)),
        "max_posts": json_values,
        "timeout_s": json_values,
    },
)
recipes = st.fixed_dictionaries(
    {"sources": _maybe(st.lists(source_dicts, max_size=3))},
    optional={
        "languages": _maybe(st.lists(st.text(max_size=4), max_size=3)),
        "quotas": json_values,
        "url_policy": _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "allow_hosts": _maybe(st.lists(st.text(max_size=20), max_size=3)),
                    "local_roots": _maybe(st.lists(st.text(max_size=20), max_size=2)),
                },
            )
        ),
        "images": json_values,
        "entity_types": json_values,
        "name": json_values,
    },
)


@fuzz(300)
@given(raw=recipes)
def test_fuzz_recipes(raw: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    _run("recipe", lambda: build_recipe(raw, recipe_dir=Path(".")), (RecipeError,))


# -- API pages from a loopback server -------------------------------------------------------------


class _PageServer:
    """Serves whatever body (status, content type) the current case sets, on every path."""

    def __init__(self) -> None:
        self.answer: tuple[int, str, bytes] = (200, "application/json", b"[]")
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status, ctype, body = outer.answer
                if "max_id=" in self.path or "cursor=" in self.path:
                    status, ctype, body = 200, "application/json", b"[]"
                    if "cursor=" in self.path:
                        body = b'{"posts": []}'
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def pages() -> Iterator[_PageServer]:
    srv = _PageServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


media = st.fixed_dictionaries(
    {
        "type": _maybe(st.just("image")),
        "url": _maybe(st.sampled_from(["/x.jpg", "file:///e", "~/a"])),
    },
    optional={"description": json_values},
)
statuses = st.fixed_dictionaries(
    {"id": _maybe(st.integers(1, 10**6).map(str)), "content": _maybe(st.text(max_size=40))},
    optional={
        "reblog": json_values,
        "account": _maybe(st.fixed_dictionaries({"acct": json_values})),
        "media_attachments": _maybe(st.lists(media, max_size=2)),
        "created_at": _maybe(st.sampled_from(["2026-01-01T00:00:00Z", "yesterday"])),
        "language": json_values,
        "url": json_values,
    },
)
post_views = st.fixed_dictionaries(
    {
        "uri": _maybe(st.text(max_size=30)),
        "record": _maybe(
            st.fixed_dictionaries(
                {"text": _maybe(st.text(max_size=40))},
                optional={"langs": json_values, "createdAt": json_values},
            )
        ),
    },
    optional={"author": json_values, "embed": json_values, "indexedAt": json_values},
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
)


def _drain(source: Any) -> None:
    try:
        for _ in source.iter_pages(None):
            pass
    finally:
        source.close()


FAST = {"retries": 0, "timeout_s": 5.0, "backoff_max_s": 0.01}


@fuzz(150)
@given(
    body=st.one_of(st.lists(statuses, max_size=4).map(lambda v: json.dumps(v).encode()), bodies),
    status=st.sampled_from([200, 200, 200, 404, 500, 429, 301]),
)
def test_fuzz_mastodon_pages(pages: _PageServer, body: bytes, status: int) -> None:
    pages.answer = (status, "application/json", body)
    src = MastodonSource(type="mastodon", name="m", base_url=pages.url, **FAST)
    _run("mastodon page", lambda: _drain(make_source(src)), (SourceError,))


@fuzz(150)
@given(
    body=st.one_of(
        st.fixed_dictionaries(
            {"posts": _maybe(st.lists(post_views, max_size=4))}, optional={"cursor": json_values}
        ).map(lambda v: json.dumps(v).encode()),
        bodies,
    )
)
def test_fuzz_bluesky_pages(pages: _PageServer, body: bytes) -> None:
    pages.answer = (200, "application/json", body)
    src = BlueskySource(type="bluesky", name="b", base_url=pages.url, query="*", **FAST)
    _run("bluesky page", lambda: _drain(make_source(src)), (SourceError,))


xml_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)
items = st.builds(
    lambda guid, title, desc, enc: (
        f"<item><guid>{guid}</guid><title>{title}</title><description>{desc}</description>"
        f'<enclosure url="{enc}" type="image/jpeg"/></item>'
    ),
    xml_text,
    xml_text,
    xml_text,
    st.sampled_from(["/a.jpg", "file:///etc/passwd", "~/x", "http://10.0.0.1/x", "&bad;", ""]),
)


@fuzz(150)
@given(
    body=st.one_of(
        st.lists(items, max_size=4).map(
            lambda xs: (
                '<?xml version="1.0"?><rss><channel>' + "".join(xs) + "</channel></rss>"
            ).encode("utf-8", "replace")
        ),
        bodies,
    )
)
def test_fuzz_rss_feeds(pages: _PageServer, body: bytes) -> None:
    pages.answer = (200, "application/rss+xml", body)
    src = RssSource(type="rss", name="r", url=pages.url + "/feed.xml", **FAST)
    _run("rss feed", lambda: _drain(make_source(src)), (SourceError,))


# -- Label Studio exports ---------------------------------------------------------------------------

regions = st.fixed_dictionaries(
    {"type": _maybe(st.just("labels")), "value": _maybe(
        st.fixed_dictionaries(
            {"start": _maybe(st.integers(-3, 40)), "end": _maybe(st.integers(-3, 40)),
             "labels": _maybe(st.lists(st.sampled_from(["PER", "LOC", ""]), max_size=2))},
            optional={"text": _maybe(st.sampled_from(["Macron", "Paris", "🎉", ""]))},
        )
    )},
    optional={"from_name": json_values},
)  # fmt: skip
annotations = st.fixed_dictionaries(
    {"id": _maybe(st.integers(1, 5)), "completed_by": _maybe(st.integers(1, 3))},
    optional={
        "result": _maybe(st.lists(regions, max_size=3)),
        "was_cancelled": json_values,
        "lead_time": json_values,
        "updated_at": json_values,
    },
)
tasks = st.fixed_dictionaries(
    {
        "data": _maybe(
            st.fixed_dictionaries(
                {"text": _maybe(st.sampled_from(["🎉 Macron in Paris", "Macron à Paris", ""]))},
                optional={"post_id": json_values, "lang": json_values},
            )
        ),
        "annotations": _maybe(st.lists(annotations, max_size=3)),
    },
    optional={"id": json_values},
)


@fuzz(300)
@given(export=_maybe(st.lists(tasks, max_size=3)))
def test_fuzz_label_studio_exports(export: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    from mmner_data.agreement.load import load_from_export
    from mmner_data.agreement.pipeline import select_items
    from mmner_data.agreement.settings import AgreementSettings

    path = tmp_path_factory.mktemp("ls") / "export.json"
    path.write_text(json.dumps(export), encoding="utf-8")

    def case() -> None:
        loaded = load_from_export(path)
        select_items(loaded, AgreementSettings(bad_spans="exclude"))

    _run("label studio export", case, (MmnerError,))


# -- image bytes --------------------------------------------------------------------------------------


def _seed_images() -> list[bytes]:
    out = []
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"):
        buf = io.BytesIO()
        Image.new("RGB", (48, 40), (120, 30, 200)).save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_images()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i : i + draw(st.integers(1, 64))]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


LIMITS = ImageLimits(max_pixels=2_000_000, min_side=8, max_side=64)


@fuzz(300)
@given(
    data=st.one_of(mutated_images(), st.binary(max_size=64)),
    ctype=st.sampled_from([None, "image/jpeg", "text/html"]),
)
def test_fuzz_image_bytes(data: bytes, ctype: str | None) -> None:
    _run("image bytes", lambda: process_image_bytes(data, ctype, LIMITS), (ImageRejected,))


# -- media URLs -----------------------------------------------------------------------------------------

urls = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda scheme, host, path: f"{scheme}{host}{path}",
        st.sampled_from(["http://", "https://", "file://", "ftp://", "", "HTTP://", "//"]),
        st.sampled_from(["", "localhost", "127.0.0.1:80", "[::1]", "x.org:99999", "a b", "%00"]),
        st.text(max_size=20),
    ),
)


@fuzz(200)
@given(url=urls)
def test_fuzz_media_urls(url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    remote, local = UrlPolicy(), UrlPolicy.build(local_roots=[Path.cwd()])
    for policy in (remote, local):
        _run("media url", lambda p=policy: classify(url, p), (UrlRefused, ValueError))


# -- the counts, for CI -----------------------------------------------------------------------------------


def test_fuzz_counts_are_printed(capsys: pytest.CaptureFixture[str]) -> None:
    total = sum(CASES.values())
    with capsys.disabled():
        print("\nfuzz cases per input kind:")
        for kind, n in sorted(CASES.items()):
            print(f"  {kind:22} {n:5d}")
        print(
            f"fuzz total {total} cases, tracebacks {sum(TRACEBACKS.values())}, "
            f"hangs {sum(HANGS.values())}"
        )
    if total:  # when run alone (-k), the other fuzz tests did not run
        assert not TRACEBACKS and not HANGS
