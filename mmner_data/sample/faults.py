"""Media and faults of the sample server: real images, broken ones, flaky ones, a huge one.

``/media/<file>`` serves the bundled images; ``/media/broken/`` truncated, HTML-as-JPEG, a
decompression bomb, a missing one, a 50 MB one and a slow one; ``/media/flaky/429|500/<file>``
fail twice then serve. Feed-level faults (delays, 429, malformed pages) live in the core
(:meth:`SampleServer._feed`).
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from PIL import Image

from mmner_data.sample.wire import _json

HUGE_BYTES = 50 * 1024 * 1024
BOMB_SIDE = 30_000
FLAKY_FAILURES = 2
_CHUNK = 64 * 1024


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


def _huge_chunks() -> Iterator[bytes]:
    """A JPEG header followed by zeros, ``HUGE_BYTES`` in all."""
    yield _JPEG_HEADER
    left = HUGE_BYTES - len(_JPEG_HEADER)
    zeros = bytes(_CHUNK)
    while left > 0:
        n = min(left, _CHUNK)
        yield zeros[:n]
        left -= n


class MediaFaults:
    """The ``/media/`` routes (a mixin of :class:`~mmner_data.sample.server.SampleServer`)."""

    data_dir: Path
    _alt: dict[str, str | None]
    _dims: dict[str, tuple[int, int]]
    _hits: Any
    _lock: Any
    _stop: Any
    slow_s: float
    _send: Any

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

    def _media(self, h: BaseHTTPRequestHandler, name: str, head: bool) -> None:
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

    def _broken(self, h: BaseHTTPRequestHandler, name: str, head: bool) -> None:
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
