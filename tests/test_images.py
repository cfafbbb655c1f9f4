"""Image download and validation against a real loopback HTTP server and real photos."""

from __future__ import annotations

import email.utils
import hashlib
import io
import pickle
import socket
import struct
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import ExifTags
from PIL import Image as PILImage
from skimage import data as skdata

from mmner_data.collect.images import (
    FetchStats,
    ImageLimits,
    ImageRejected,
    ImageRequest,
    ProcessedImage,
    fetch_images,
    parse_retry_after,
    process_image_bytes,
    sniff_format,
)
from mmner_data.collect.urlpolicy import UrlPolicy

# These tests exercise fetching itself, on loopback and local files: a policy that allows both.
# The policy's own refusals are tested in test_urlpolicy.py and test_hostile_server.py.
LOOPBACK_AND_FILES = UrlPolicy.build(local_roots=["/"], allow_hosts=["127.0.0.1"])

pytestmark = pytest.mark.timeout(60)

FAST = ImageLimits(
    timeout_s=5.0,
    connect_timeout_s=2.0,
    retries=2,
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    concurrency=8,
    per_host=4,
)


# --------------------------------------------------------------------------- real photos


def _photo(name: str, size: tuple[int, int] | None = None) -> PILImage.Image:
    arr = getattr(skdata, name)()
    img = PILImage.fromarray(arr).convert("RGB")
    return img.resize(size, PILImage.Resampling.BILINEAR) if size else img


def _encode(img: PILImage.Image, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    return {
        "astronaut": _encode(_photo("astronaut", (320, 240)), quality=88),
        "chelsea": _encode(_photo("chelsea"), quality=88),
        "coffee": _encode(_photo("coffee", (300, 200)), quality=88),
        "rocket": _encode(_photo("rocket", (320, 214)), quality=88),
    }


def _diff(a: PILImage.Image, b: PILImage.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def _decode(p: ProcessedImage) -> PILImage.Image:
    img = PILImage.open(io.BytesIO(p.data))
    img.load()
    return img


def _reject(data: bytes, ctype: str | None = None, limits: ImageLimits = FAST) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        process_image_bytes(data, ctype, limits)
    assert "\n" not in info.value.detail
    return info.value


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header declares ``width`` x ``height`` gray pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- loopback server


Handler = Callable[[BaseHTTPRequestHandler], None]


class LoopbackServer:
    """A stdlib HTTP/1.1 server on 127.0.0.1 with per-path handlers and accounting."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: defaultdict[str, list[float]] = defaultdict(list)
        self.sent: Counter[str] = Counter()  # body bytes written per path
        self.finished: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.inflight = 0
        self.max_inflight = 0
        self._lock = threading.Lock()
        server = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path
                with server._lock:
                    server.hits[path].append(time.monotonic())
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    server.routes.get(path, lambda h: send(h, 404, b"not found", "text/plain"))(
                        self
                    )
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                    self.close_connection = True
                finally:
                    with server._lock:
                        server.inflight -= 1
                    server.finished[path].set()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def add(self, path: str, handler: Handler) -> str:
        self.routes[path] = handler
        return self.url(path)

    def write(self, h: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        h.wfile.write(body)
        h.wfile.flush()
        with self._lock:
            self.sent[path] += len(body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    ctype: str | None = "image/jpeg",
    headers: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    if ctype:
        h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(body)


def serve(body: bytes, ctype: str | None = "image/jpeg", delay: float = 0.0) -> Handler:
    def handler(h: BaseHTTPRequestHandler) -> None:
        if delay:
            time.sleep(delay)
        send(h, 200, body, ctype)

    return handler


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    srv = LoopbackServer()
    yield srv
    srv.close()


def fetch_all(
    urls: list[str], limits: ImageLimits = FAST
) -> tuple[list[ProcessedImage | ImageRejected], FetchStats]:
    results: dict[int, ProcessedImage | ImageRejected] = {}

    def on_result(req: ImageRequest, res: ProcessedImage | ImageRejected) -> None:
        assert req.key not in results
        results[req.key] = res

    stats = fetch_images(
        [ImageRequest(i, u) for i, u in enumerate(urls)],
        limits,
        on_result=on_result,
        policy=LOOPBACK_AND_FILES,
    )
    assert sorted(results) == list(range(len(urls)))
    return [results[i] for i in range(len(urls))], stats


def fetch_one(url: str, limits: ImageLimits = FAST) -> ProcessedImage | ImageRejected:
    (res,), _ = fetch_all([url], limits)
    return res


def rejected(res: ProcessedImage | ImageRejected, reason: str) -> ImageRejected:
    assert isinstance(res, ImageRejected), res
    assert res.reason == reason, str(res)
    assert res.detail and "\n" not in res.detail
    return res


# --------------------------------------------------------------------------- pure processing


def test_jpeg_is_normalised_and_deterministic(photos: dict[str, bytes]) -> None:
    src = photos["chelsea"]
    a = process_image_bytes(src, "image/jpeg", FAST)
    b = process_image_bytes(bytes(src), "image/jpeg; charset=binary", FAST)
    assert a.data == b.data and a.image == b.image
    img = a.image
    assert (img.width, img.height, img.format) == (451, 300, "jpeg")
    assert img.n_bytes == len(a.data)
    assert img.sha256 == hashlib.sha256(a.data).hexdigest()
    assert img.source_sha256 == hashlib.sha256(src).hexdigest() != img.sha256
    assert len(img.phash) == 16 and int(img.phash, 16) >= 0
    # the phash is the one anyone re-reading the stored file computes
    assert img.phash == str(imagehash.phash(PILImage.open(io.BytesIO(a.data))))
    out = _decode(a)
    assert out.format == "JPEG" and out.mode == "RGB"
    assert _diff(out, PILImage.open(io.BytesIO(src)).convert("RGB")) < 4
    other = process_image_bytes(photos["coffee"], None, FAST)
    assert other.image.sha256 != img.sha256 and other.image.phash != img.phash


def test_downscale_long_side(photos: dict[str, bytes]) -> None:
    big = _photo("astronaut", (1600, 1200))
    for fmt in ("JPEG", "PNG"):
        p = process_image_bytes(_encode(big, fmt), None, FAST)
        assert (p.image.width, p.image.height) == (1024, 768), fmt
        assert _diff(_decode(p), big.resize((1024, 768))) < 6
    p = process_image_bytes(_encode(big), None, ImageLimits(max_side=300))
    assert (p.image.width, p.image.height) == (300, 225)


def test_exif_orientation_applied_and_metadata_stripped() -> None:
    upright = _photo("astronaut", (240, 120))  # landscape, asymmetric content
    stored = upright.transpose(PILImage.Transpose.ROTATE_90)  # what a sideways camera writes
    exif = PILImage.Exif()
    exif[ExifTags.Base.Orientation] = 6  # "rotate 90° clockwise to display"
    exif[ExifTags.Base.ImageDescription] = "SECRET-LOCATION-MARKER"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
    src = _encode(stored, quality=95, exif=exif)
    assert PILImage.open(io.BytesIO(src)).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # GPS went in
    assert PILImage.open(io.BytesIO(src)).size == (120, 240)

    p = process_image_bytes(src, "image/jpeg", FAST)
    out = _decode(p)
    assert out.size == (240, 120) == (p.image.width, p.image.height)
    assert _diff(out, upright) < 8
    assert _diff(out, upright.transpose(PILImage.Transpose.ROTATE_180)) > 20
    assert not out.getexif() and "exif" not in out.info
    assert b"Exif" not in p.data and b"SECRET-LOCATION-MARKER" not in p.data


def test_png_alpha_is_composited_on_white() -> None:
    rgba = np.zeros((64, 128, 4), np.uint8)
    rgba[:, :, 0] = 255  # red everywhere underneath...
    rgba[:, 64:, :3] = (0, 0, 255)
    rgba[:, 64:, 3] = 255  # ...transparent left half, opaque blue right half
    p = process_image_bytes(_encode(PILImage.fromarray(rgba, "RGBA"), "PNG"), "image/png", FAST)
    out = np.asarray(_decode(p), np.int16)
    assert out.shape == (64, 128, 3)
    assert np.abs(out[:, 4:56] - 255).max() < 10  # white, not red or black
    assert np.abs(out[:, 72:124] - (0, 0, 255)).max() < 10


def test_gif_first_frame_webp_bmp_tiff_and_16bit() -> None:
    red = PILImage.new("RGB", (80, 60), (220, 20, 20))
    green = PILImage.new("RGB", (80, 60), (20, 220, 20))
    gif = _encode(red, "GIF", save_all=True, append_images=[green], duration=100, loop=0)
    assert PILImage.open(io.BytesIO(gif)).n_frames == 2
    first = np.asarray(_decode(process_image_bytes(gif, "image/gif", FAST)), np.int16)
    assert np.abs(first - (220, 20, 20)).max() < 12

    cat = _photo("chelsea")
    for fmt, ctype in (("WEBP", "image/webp"), ("BMP", "image/bmp"), ("TIFF", "image/tiff")):
        src = _encode(cat, fmt)
        assert sniff_format(src[:16]) == fmt
        p = process_image_bytes(src, ctype, FAST)
        assert (p.image.width, p.image.height) == cat.size
        assert _diff(_decode(p), cat) < 6, fmt

    camera = skdata.camera()  # 16-bit grayscale PNG must not clip to white
    png16 = _encode(PILImage.fromarray(camera.astype(np.uint16) * 257), "PNG")
    out = _decode(process_image_bytes(png16, "image/png", FAST))
    assert _diff(out.convert("L"), PILImage.fromarray(camera)) < 3


def test_rejections_from_bytes(photos: dict[str, bytes]) -> None:
    jpeg = photos["chelsea"]
    html = b"<!DOCTYPE html><html><body>Login required</body></html>"
    assert _reject(html, "image/jpeg").reason == "not_an_image"
    assert "HTML" in _reject(html, None).detail
    assert _reject(jpeg, "text/html; charset=utf-8").reason == "bad_content_type"
    assert _reject(jpeg, "application/json").reason == "bad_content_type"
    assert process_image_bytes(jpeg, "application/octet-stream", FAST).image.width == 451
    assert _reject(b"", None).reason == "not_an_image"
    assert _reject(_encode(_photo("chelsea"), "PNG")[:200] + b"junk", None).reason in {
        "truncated",
        "undecodable",
    }
    assert _reject(jpeg, None, ImageLimits(max_bytes=1000)).reason == "too_large"


def test_truncated_and_corrupt(photos: dict[str, bytes]) -> None:
    jpeg = photos["chelsea"]
    for cut in (len(jpeg) // 2, 2000, 300):
        assert _reject(jpeg[:cut]).reason == "truncated", cut
    png = _encode(_photo("coffee"), "PNG")
    assert _reject(png[: len(png) // 3]).reason == "truncated"
    corrupt = bytearray(png)
    corrupt[100:400] = b"\x00" * 300  # broken zlib stream inside IDAT
    assert _reject(bytes(corrupt)).reason in {"undecodable", "truncated"}
    assert _reject(b"\xff\xd8\xff" + b"\x00" * 100).reason in {"undecodable", "truncated"}


def test_decompression_bombs(photos: dict[str, bytes]) -> None:
    bomb = _png_declaring(30000, 30000)
    assert len(bomb) < 200
    err = _reject(bomb, "image/png")
    assert err.reason == "decompression_bomb"
    # below Pillow's own limit but above ours: refused from the header, before decoding
    err = _reject(_png_declaring(8000, 8000), "image/png", ImageLimits())
    assert err.reason == "decompression_bomb" and "8000x8000" in err.detail
    # a real photo over a small pixel budget
    assert _reject(photos["chelsea"], None, ImageLimits(max_pixels=10_000)).reason == (
        "decompression_bomb"
    )


def test_too_small() -> None:
    assert _reject(_encode(_photo("chelsea", (20, 20)), "PNG")).reason == "too_small"
    assert _reject(_encode(_photo("chelsea", (100, 31)))).reason == "too_small"
    # a sliver that would be 1024x10 after downscaling is not an image worth keeping
    err = _reject(_encode(_photo("chelsea", (4000, 40))))
    assert err.reason == "too_small" and "1024x10" in err.detail
    assert process_image_bytes(_encode(_photo("chelsea", (64, 32))), None, FAST).image.height == 32


def test_parse_retry_after() -> None:
    assert parse_retry_after("3", 30) == 3.0
    assert parse_retry_after("120", 30) == 30.0
    assert parse_retry_after(None, 30) is None
    assert parse_retry_after("soon", 30) is None
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after(date, 30, now=now) == pytest.approx(7.0)
    assert parse_retry_after(email.utils.formatdate(now - 50, usegmt=True), 30, now=now) == 0.0


# --------------------------------------------------------------------------- over HTTP


def test_http_ok_and_same_bytes_as_direct(server: LoopbackServer, photos: dict[str, bytes]) -> None:
    url = server.add("/cat.jpg", serve(photos["chelsea"]))
    res = fetch_one(url)
    assert isinstance(res, ProcessedImage)
    assert res == process_image_bytes(photos["chelsea"], "image/jpeg", FAST)
    assert len(server.hits["/cat.jpg"]) == 1


def test_too_large_by_content_length_without_reading(
    server: LoopbackServer, photos: dict[str, bytes]
) -> None:
    total = 50 * 2**20
    head = photos["chelsea"][:1024]

    def huge(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(total))
        h.end_headers()
        server.write(h, "/huge.jpg", head)
        block = b"\x00" * 2**16
        for _ in range((total - len(head)) // len(block)):
            server.write(h, "/huge.jpg", block)

    url = server.add("/huge.jpg", huge)
    limits = ImageLimits(**{**FAST.__dict__, "max_bytes": 2**20})
    t0 = time.monotonic()
    (res,), stats = fetch_all([url], limits)
    assert "Content-Length" in rejected(res, "too_large").detail
    assert stats.bytes_in == 0  # rejected from the header alone
    assert server.finished["/huge.jpg"].wait(10)
    assert server.sent["/huge.jpg"] < total // 4
    assert time.monotonic() - t0 < 10


def test_too_large_streamed_body_is_cut_off(
    server: LoopbackServer, photos: dict[str, bytes]
) -> None:
    total = 50 * 2**20
    head = photos["chelsea"][:1024]

    def endless(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Connection", "close")  # no Content-Length: body runs to EOF
        h.end_headers()
        h.close_connection = True
        server.write(h, "/stream.jpg", head)
        block = b"\x00" * 2**16
        for _ in range((total - len(head)) // len(block)):
            server.write(h, "/stream.jpg", block)

    url = server.add("/stream.jpg", endless)
    max_bytes = 2**20
    limits = ImageLimits(**{**FAST.__dict__, "max_bytes": max_bytes})
    (res,), stats = fetch_all([url], limits)
    rejected(res, "too_large")
    assert max_bytes < stats.bytes_in <= max_bytes + 2**17  # stopped within one read
    assert len(server.hits["/stream.jpg"]) == 1  # not retried
    assert server.finished["/stream.jpg"].wait(10)
    assert server.sent["/stream.jpg"] < total // 4


def test_html_served_as_jpeg(server: LoopbackServer) -> None:
    page = b"<!doctype html><html><head><title>Cloudflare</title></head>" + b"x" * 5000
    assert "HTML" in rejected(fetch_one(server.add("/a.jpg", serve(page))), "not_an_image").detail
    res = fetch_one(server.add("/b.jpg", serve(page, "text/html")))
    assert rejected(res, "bad_content_type").detail == "Content-Type text/html"


def test_429_retry_after_is_honoured(server: LoopbackServer, photos: dict[str, bytes]) -> None:
    calls = Counter()

    def flaky(h: BaseHTTPRequestHandler) -> None:
        calls["n"] += 1
        if calls["n"] <= 2:
            send(h, 429, b"slow down", "text/plain", {"Retry-After": "1"})
        else:
            send(h, 200, photos["coffee"])

    url = server.add("/rl.jpg", flaky)
    limits = ImageLimits(**{**FAST.__dict__, "backoff_max_s": 5.0, "retries": 3})
    t0 = time.monotonic()
    (res,), stats = fetch_all([url], limits)
    assert isinstance(res, ProcessedImage)
    hits = server.hits["/rl.jpg"]
    assert len(hits) == 3 and stats.retries == 2
    assert hits[1] - hits[0] >= 0.95 and hits[2] - hits[1] >= 0.95  # not the 10 ms backoff
    assert time.monotonic() - t0 >= 2.0


def test_429_forever_is_rate_limited_and_wait_is_capped(server: LoopbackServer) -> None:
    url = server.add("/rl.jpg", lambda h: send(h, 429, b"", "text/plain", {"Retry-After": "3600"}))
    limits = ImageLimits(**{**FAST.__dict__, "backoff_max_s": 0.2, "retries": 2})
    t0 = time.monotonic()
    res = fetch_one(url, limits)
    elapsed = time.monotonic() - t0
    assert "429" in rejected(res, "rate_limited").detail
    assert len(server.hits["/rl.jpg"]) == 3
    assert 0.38 <= elapsed < 3.0  # two waits of backoff_max_s, not an hour


def test_500_is_retried_then_server_error(server: LoopbackServer, photos: dict[str, bytes]) -> None:
    url = server.add("/err.jpg", lambda h: send(h, 503, b"oops", "text/plain"))
    res = fetch_one(url)
    assert "503" in rejected(res, "server_error").detail
    assert len(server.hits["/err.jpg"]) == FAST.retries + 1
    # a transient 500 recovers
    calls = Counter()

    def once(h: BaseHTTPRequestHandler) -> None:
        calls["n"] += 1
        send(h, 500, b"", "text/plain") if calls["n"] == 1 else send(h, 200, photos["rocket"])

    assert isinstance(fetch_one(server.add("/once.jpg", once)), ProcessedImage)


def test_404_is_not_retried(server: LoopbackServer) -> None:
    res = fetch_one(server.url("/missing.jpg"))
    assert rejected(res, "http_status").detail == "404"
    assert len(server.hits["/missing.jpg"]) == 1
    server.add("/gone.jpg", lambda h: send(h, 410, b"", "text/plain"))
    assert rejected(fetch_one(server.url("/gone.jpg")), "http_status").detail == "410"
    server.add(
        "/to-file.jpg", lambda h: send(h, 302, b"", None, {"Location": "file:///etc/passwd"})
    )
    rejected(fetch_one(server.url("/to-file.jpg")), "unsupported_url")
    server.add("/loop.jpg", lambda h: send(h, 302, b"", None, {"Location": "/loop.jpg"}))
    rejected(fetch_one(server.url("/loop.jpg")), "http_status")
    assert len(server.hits["/loop.jpg"]) == FAST.max_redirects + 1


def test_slow_server_times_out(server: LoopbackServer, photos: dict[str, bytes]) -> None:
    url = server.add("/slow.jpg", serve(photos["coffee"], delay=1.5))
    limits = ImageLimits(**{**FAST.__dict__, "timeout_s": 0.2, "retries": 1})
    t0 = time.monotonic()
    rejected(fetch_one(url, limits), "timeout")
    assert time.monotonic() - t0 < 1.4
    assert len(server.hits["/slow.jpg"]) == 2

    def drip(h: BaseHTTPRequestHandler) -> None:  # headers at once, then a byte at a time
        body = photos["coffee"]
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        for i in range(len(body)):
            server.write(h, "/drip.jpg", body[i : i + 1])
            time.sleep(0.05)

    url = server.add("/drip.jpg", drip)
    limits = ImageLimits(**{**FAST.__dict__, "timeout_s": 0.5, "retries": 0})
    t0 = time.monotonic()
    rejected(fetch_one(url, limits), "timeout")  # no read ever waits 0.5 s; the deadline does
    assert time.monotonic() - t0 < 2.0


def test_connection_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    res = fetch_one(
        f"http://127.0.0.1:{port}/x.jpg", ImageLimits(**{**FAST.__dict__, "retries": 1})
    )
    assert "after 2 attempts" in rejected(res, "connection_error").detail


def test_local_files_and_bad_urls(tmp_path: Path, photos: dict[str, bytes]) -> None:
    path = tmp_path / "dir with space" / "cat.jpg"
    path.parent.mkdir()
    path.write_bytes(photos["chelsea"])
    expected = process_image_bytes(photos["chelsea"], None, FAST)
    res = fetch_all(
        [
            str(path),
            path.as_uri(),
            str(tmp_path / "nope.jpg"),
            (tmp_path / "nope.jpg").as_uri(),
            str(tmp_path),
            "ftp://example.org/a.jpg",
            "data:image/png;base64,AAAA",
            "http:///nohost.jpg",
            "",
        ]
    )[0]
    assert res[0] == expected and res[1] == expected
    for r in res[2:5]:
        rejected(r, "file_not_found")
    for r in res[5:]:
        rejected(r, "unsupported_url")
    big = tmp_path / "big.jpg"
    big.write_bytes(photos["chelsea"])
    rejected(fetch_one(str(big), ImageLimits(max_bytes=1000)), "too_large")


def test_mixed_batch_every_good_image_succeeds(
    server: LoopbackServer, photos: dict[str, bytes], tmp_path: Path
) -> None:
    base = _photo("astronaut", (512, 512))
    good: dict[str, bytes] = {}
    for i in range(16):  # distinct real-photo crops
        crop = base.crop((i * 8, i * 5, i * 8 + 300, i * 5 + 220))
        good[f"/good/{i}.jpg"] = _encode(crop, quality=85)
    for path, body in good.items():
        ctype = "application/octet-stream" if path.endswith("3.jpg") else "image/jpeg"
        server.add(path, serve(body, ctype, delay=0.05))
    server.add("/redirect.jpg", lambda h: send(h, 302, b"", None, {"Location": "/good/0.jpg"}))
    server.add("/html.jpg", serve(b"<html><body>nope</body></html>"))
    server.add("/trunc.jpg", serve(photos["rocket"][:3000]))
    server.add("/bomb.png", serve(_png_declaring(30000, 30000), "image/png"))
    server.add("/tiny.png", serve(_encode(_photo("chelsea", (16, 16)), "PNG"), "image/png"))
    server.add("/500.jpg", lambda h: send(h, 500, b"", "text/plain"))
    local = tmp_path / "local.jpg"
    local.write_bytes(photos["coffee"])

    bad = {
        server.url("/html.jpg"): "not_an_image",
        server.url("/trunc.jpg"): "truncated",
        server.url("/bomb.png"): "decompression_bomb",
        server.url("/tiny.png"): "too_small",
        server.url("/500.jpg"): "server_error",
        server.url("/404.jpg"): "http_status",
        str(tmp_path / "missing.jpg"): "file_not_found",
        "gopher://x/y.jpg": "unsupported_url",
    }
    urls = [server.url(p) for p in good]
    bad_urls = list(bad)
    mixed: list[str] = []
    for i, u in enumerate(urls):
        mixed.append(u)
        if i < len(bad_urls):
            mixed.append(bad_urls[i])
    mixed += [server.url("/redirect.jpg"), str(local)]

    expected = {server.url(p): body for p, body in good.items()}
    expected[server.url("/redirect.jpg")] = good["/good/0.jpg"]
    expected[str(local)] = photos["coffee"]

    caller = threading.get_ident()
    seen: dict[int, ProcessedImage | ImageRejected] = {}
    progressed: list[int] = []

    def requests() -> Iterator[ImageRequest]:
        for i, u in enumerate(mixed):
            yield ImageRequest(key=i, url=u)

    def on_result(req: ImageRequest, res: ProcessedImage | ImageRejected) -> None:
        assert threading.get_ident() == caller
        assert req.key not in seen and mixed[req.key] == req.url
        seen[req.key] = res

    limits = ImageLimits(**{**FAST.__dict__, "concurrency": 4, "per_host": 3})
    stats = fetch_images(
        requests(), limits, on_result, progress=progressed.append, policy=LOOPBACK_AND_FILES
    )
    assert sorted(seen) == list(range(len(mixed)))
    assert sum(progressed) == len(mixed) == stats.n_total

    for key, url in enumerate(mixed):
        res = seen[key]
        if url in bad:
            rejected(res, bad[url])
            continue
        assert isinstance(res, ProcessedImage), (url, res)
        assert res == process_image_bytes(expected[url], None, limits)

    assert stats.n_ok == len(good) + 2
    assert stats.counts == Counter({"ok": len(good) + 2, **Counter(bad.values())})
    assert stats.retries == limits.retries  # only the 500 was retried
    assert 2 <= server.max_inflight <= limits.per_host  # concurrent, yet per-host bounded
    assert stats.bytes_out == sum(
        r.image.n_bytes for r in seen.values() if isinstance(r, ProcessedImage)
    )
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("mmner-")]
    assert not leftover  # the event loop thread and the decode pool are shut down


def test_empty_input() -> None:
    calls: list[object] = []
    stats = fetch_images([], FAST, lambda req, res: calls.append(res))
    assert calls == [] and stats.n_total == 0 and stats.images_per_s == 0.0


def test_requests_are_consumed_lazily_and_errors_propagate(
    server: LoopbackServer, photos: dict[str, bytes]
) -> None:
    server.add("/p.jpg", serve(photos["rocket"]))
    consumed = Counter()

    def requests() -> Iterator[ImageRequest]:
        for i in range(10_000):
            consumed["n"] += 1
            yield ImageRequest(i, server.url("/p.jpg"))

    class Stop(Exception):
        pass

    def on_result(req: ImageRequest, res: ProcessedImage | ImageRejected) -> None:
        assert isinstance(res, ProcessedImage)
        assert consumed["n"] <= 2 * FAST.concurrency + 1  # not list(requests) up front
        raise Stop

    t0 = time.monotonic()
    with pytest.raises(Stop):
        fetch_images(requests(), FAST, on_result, policy=LOOPBACK_AND_FILES)
    assert time.monotonic() - t0 < 10
    assert consumed["n"] <= 2 * FAST.concurrency + 1


def test_rejected_is_one_line_and_picklable() -> None:
    err = ImageRejected("undecodable", "line one\nline two")
    assert err.detail == "line one line two" and str(err) == "undecodable: line one line two"
    again = pickle.loads(pickle.dumps(err))
    assert (again.reason, again.detail) == (err.reason, err.detail)
