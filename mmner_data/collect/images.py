"""Safe image download and validation for ``mmner-data collect``.

Two layers:

* :func:`process_image_bytes` is pure: bytes in, a normalised JPEG (:class:`ProcessedImage`) out,
  or :class:`ImageRejected` with a stable reason slug. It never trusts the server's headers, checks
  the magic bytes, refuses decompression bombs from the header before decoding, and re-encodes
  every image (EXIF orientation applied, metadata dropped, RGB, long side capped) so that the
  stored bytes are deterministic for the same input. See ``docs/images.md``.
* :func:`fetch_images` downloads many images concurrently, every URL judged by the source's URL
  policy first (``collect/urlpolicy.py``: http(s) only, local files only for local sources,
  non-public hosts refused and every connection pinned to the checked address), (``asyncio`` +
  ``httpx.AsyncClient`` on a background thread), with streaming size limits, per-host concurrency
  (:func:`host_key`), retries (429 honours ``Retry-After``), and decoding in worker processes
  (:class:`_DecodePool`). It is synchronous for the caller and calls ``on_result`` in the caller's
  thread as each image finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import importlib.util
import io
import json
import logging
import os
import queue
import random
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from struct import error as struct_error
from typing import IO, Any
from urllib.parse import urlsplit

import httpcore
import httpx
import imagehash
import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile, ImageOps, UnidentifiedImageError

from mmner_data.collect.urlpolicy import UrlPolicy, UrlRefused, classify
from mmner_data.net import AsyncGuardedBackend, parse_retry_after
from mmner_data.schema import Image

log = logging.getLogger(__name__)

__all__ = [
    "FetchStats",
    "ImageLimits",
    "ImageRejected",
    "ImageRequest",
    "ProcessedImage",
    "RejectReason",
    "UrlPolicy",
    "fetch_images",
    "host_key",
    "parse_retry_after",
    "process_image_bytes",
    "sniff_format",
]


class RejectReason(StrEnum):
    """Why an image was rejected. Stable slugs (docs/architecture.md): reports key on them."""

    HTTP_STATUS = "http_status"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    TOO_LARGE = "too_large"
    BAD_CONTENT_TYPE = "bad_content_type"
    NOT_AN_IMAGE = "not_an_image"
    DECOMPRESSION_BOMB = "decompression_bomb"
    TRUNCATED = "truncated"
    UNDECODABLE = "undecodable"
    TOO_SMALL = "too_small"
    UNSUPPORTED_URL = "unsupported_url"
    FILE_NOT_FOUND = "file_not_found"
    URL_REFUSED = "url_refused"  # the URL policy: local file, non-public host, bad redirect


@dataclass(frozen=True)
class ImageLimits:
    """Limits and network settings for fetching and validating images."""

    max_bytes: int = 20 * 2**20  # body size cap (decoded bytes), checked while streaming
    max_pixels: int = 40_000_000  # width * height from the header; above → decompression_bomb
    min_side: int = 32  # shorter side below this (before or after downscaling) → too_small
    max_side: int = 1024  # long side of the stored image
    timeout_s: float = 15.0  # per attempt: the whole request, headers and body
    connect_timeout_s: float = 5.0
    retries: int = 4  # retries after the first attempt (429, 5xx, timeouts, connection errors)
    backoff_max_s: float = 30.0  # cap on any single wait, Retry-After included
    concurrency: int = 32  # requests in flight overall
    per_host: int = 16  # requests in flight per host_key(url): (scheme, host, port)
    jpeg_quality: int = 90
    user_agent: str = "mmner-data/0.1"
    backoff_initial_s: float = 1.0  # first exponential backoff step (also the jitter range)
    max_redirects: int = 5
    workers: int | None = None  # decode/re-encode workers; None → the usable CPUs
    # Decode in worker processes (a GIL each; a decoder crash costs one image, not the run). False:
    # in threads of this process, for callers that already run one fetch per process.
    decode_processes: bool = True


class ImageRejected(Exception):
    """An image that cannot be used; ``reason`` is a stable slug, ``detail`` one line of text."""

    def __init__(self, reason: str, detail: str = ""):
        detail = " ".join(str(detail).split())[:300]
        super().__init__(reason, detail)
        self.reason = str(reason)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass(frozen=True)
class ProcessedImage:
    """The normalised JPEG bytes and their record (``image.sha256`` is the sha256 of ``data``)."""

    data: bytes = field(repr=False)
    image: Image


@dataclass(frozen=True)
class ImageRequest:
    """One image to fetch: ``key`` is the caller's handle, ``url`` http(s)://, file:// or a path.

    ``policy`` is the URL policy of the source the URL came from (``None``: the policy given to
    :func:`fetch_images`).
    """

    key: Hashable
    url: str
    policy: UrlPolicy | None = None


@dataclass
class FetchStats:
    """What a :func:`fetch_images` run did."""

    counts: Counter[str] = field(default_factory=Counter)  # "ok" or a reason slug → count
    bytes_in: int = 0  # bytes read from the network or disk (aborted bodies included)
    bytes_out: int = 0  # bytes of the processed JPEGs
    retries: int = 0  # extra attempts made
    seconds: float = 0.0

    @property
    def n_ok(self) -> int:
        return self.counts.get("ok", 0)

    @property
    def n_total(self) -> int:
        return sum(self.counts.values())

    @property
    def n_rejected(self) -> int:
        return self.n_total - self.n_ok

    @property
    def images_per_s(self) -> float:
        return self.n_total / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Validation and normalisation (pure)
# ---------------------------------------------------------------------------------------------

_ALLOWED_FORMATS = {"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"}


def sniff_format(head: bytes) -> str | None:
    """The image format the magic bytes announce (a Pillow format name), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 14:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def _describe_head(head: bytes) -> str:
    """A short, printable hint of what the bytes are (for the rejection detail)."""
    text = head[:64].lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "looks like HTML"
    if text.startswith((b"<?xml", b"<svg")):
        return "looks like XML/SVG (vector images are not accepted)"
    if text.startswith((b"{", b"[")):
        return "looks like JSON"
    if head[4:12] in (b"ftypavif", b"ftypheic", b"ftypheix", b"ftypmif1"):
        return "AVIF/HEIF is not supported"
    if not head:
        return "empty body"
    return "no known image signature"  # the bytes themselves are never echoed (local files)


def _check_content_type(content_type: str | None) -> None:
    if not content_type:
        return
    mime = content_type.split(";", 1)[0].strip().lower()
    if (
        not mime
        or mime.startswith("image/")
        or mime in {"application/octet-stream", "binary/octet-stream"}
    ):
        return
    raise ImageRejected(RejectReason.BAD_CONTENT_TYPE, f"Content-Type {mime}")


def _is_truncation(exc: BaseException) -> bool:
    """Pillow reports missing data as EOFError or an OSError/SyntaxError saying "truncated"."""
    return isinstance(exc, EOFError) or "truncated" in str(exc).lower()


def _to_rgb(img: PILImage.Image) -> PILImage.Image:
    """RGB with any alpha composited on white; 16-bit and float modes scaled to 8 bits."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if arr.size and arr.max() > 255:
            arr = arr / 257.0
        img = PILImage.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
        return img.convert("RGB")
    has_alpha = mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return img.convert("RGB")


def process_image_bytes(
    data: bytes, content_type: str | None, limits: ImageLimits | None = None
) -> ProcessedImage:
    """Validate ``data`` and re-encode it as a normalised JPEG; raises :class:`ImageRejected`.

    Deterministic: the same bytes and limits always give the same output bytes and phash.
    """
    limits = limits or ImageLimits()
    try:
        return _process(data, content_type, limits)
    except ImageRejected:
        raise
    except PILImage.DecompressionBombError as exc:  # raised by Image.open past 2x its own cap
        raise ImageRejected(RejectReason.DECOMPRESSION_BOMB, str(exc)) from None
    except Exception as exc:  # never crash on one image
        raise ImageRejected(RejectReason.UNDECODABLE, f"{type(exc).__name__}: {exc}") from None


def _process(data: bytes, content_type: str | None, limits: ImageLimits) -> ProcessedImage:
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            RejectReason.TOO_LARGE, f"{len(data)} bytes > max_bytes {limits.max_bytes}"
        )
    _check_content_type(content_type)
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise ImageRejected(RejectReason.NOT_AN_IMAGE, _describe_head(data[:64]))

    # Header only: Image.open parses the header, it does not decode pixels.
    try:
        img = PILImage.open(io.BytesIO(data), formats=[fmt])
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageRejected(RejectReason.DECOMPRESSION_BOMB, str(exc)) from None
    except (UnidentifiedImageError, SyntaxError, OSError, ValueError, EOFError) as exc:
        reason = RejectReason.TRUNCATED if _is_truncation(exc) else RejectReason.UNDECODABLE
        raise ImageRejected(reason, f"{fmt} header: {type(exc).__name__}: {exc}") from None
    width, height = img.size
    # Image.open only warns (not raises) between MAX_IMAGE_PIXELS and twice that; anything it would
    # warn about counts as a bomb here too.
    cap = limits.max_pixels
    if PILImage.MAX_IMAGE_PIXELS:
        cap = min(cap, PILImage.MAX_IMAGE_PIXELS)
    if width * height > cap:
        raise ImageRejected(
            RejectReason.DECOMPRESSION_BOMB,
            f"{fmt} declares {width}x{height} = {width * height} pixels > {cap}",
        )
    if min(width, height) < limits.min_side:
        raise ImageRejected(
            RejectReason.TOO_SMALL, f"{width}x{height}, shorter side < {limits.min_side}"
        )

    long_side = max(width, height)
    if fmt == "JPEG" and long_side > limits.max_side:
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale; the result stays >= the target size.
        ratio = limits.max_side / long_side
        img.draft(None, (max(1, int(width * ratio)), max(1, int(height * ratio))))

    try:
        img.load()  # frame 0 for animations
    except PILImage.DecompressionBombError as exc:
        raise ImageRejected(RejectReason.DECOMPRESSION_BOMB, str(exc)) from None
    except (OSError, SyntaxError, EOFError, ValueError, IndexError, struct_error) as exc:
        reason = RejectReason.TRUNCATED if _is_truncation(exc) else RejectReason.UNDECODABLE
        raise ImageRejected(reason, f"{fmt}: {type(exc).__name__}: {exc}") from None

    with contextlib.suppress(Exception):  # a malformed EXIF block must not lose the image
        ImageOps.exif_transpose(img, in_place=True)
    img = _to_rgb(img)

    w, h = img.size
    if max(w, h) > limits.max_side:
        scale = limits.max_side / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = img.resize(size, PILImage.Resampling.LANCZOS, reducing_gap=3.0)
    w, h = img.size
    if min(w, h) < limits.min_side:
        raise ImageRejected(
            RejectReason.TOO_SMALL,
            f"{width}x{height} becomes {w}x{h} at max_side {limits.max_side}, "
            f"shorter side < {limits.min_side}",
        )

    img.info = {}  # nothing of the source's metadata (EXIF, GPS, ICC, XMP, comments) survives
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=limits.jpeg_quality, optimize=False, progressive=False)
    out = buf.getvalue()
    # phash of the stored bytes as anyone re-reading the store would decode them.
    with PILImage.open(io.BytesIO(out)) as stored:
        phash = str(imagehash.phash(stored))
    return ProcessedImage(
        data=out,
        image=Image(
            sha256=hashlib.sha256(out).hexdigest(),
            width=w,
            height=h,
            format="jpeg",
            n_bytes=len(out),
            phash=phash,
            source_sha256=hashlib.sha256(data).hexdigest(),
        ),
    )


# ---------------------------------------------------------------------------------------------
# Decoding in worker processes
# ---------------------------------------------------------------------------------------------
#
# Pillow releases the GIL while it decodes and resizes, but not everywhere (the JPEG encoder
# writing to a BytesIO keeps it, and so does the Python glue between the C calls), and the event
# loop thread needs the GIL for every HTTP request. In one process the two convoy on the GIL; in
# worker processes each decoder has a GIL of its own. A worker is a plain ``python -c`` child that
# imports this module (never the caller's ``__main__``, so no ``if __name__ == "__main__"`` guard
# is needed anywhere) and talks frames over its stdin/stdout: a JSON header and a byte payload,
# never pickle, so that the parent trusts nothing it reads back beyond bytes and a few fields.

_FRAME = struct.Struct(">IQ")  # header length, payload length
_MAX_HEADER = 1 << 20
# A worker is one thread of image work: numpy's BLAS need not start a thread per core in each.
_WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_WORKER_BOOT = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
    "from mmner_data.collect.images import _decode_worker; _decode_worker()"
)


def _write_frame(fh: IO[bytes], header: dict[str, Any], payload: bytes = b"") -> None:
    head = json.dumps(header, separators=(",", ":")).encode()
    fh.write(_FRAME.pack(len(head), len(payload)) + head)
    if payload:
        fh.write(payload)
    fh.flush()


def _read_frame(fh: IO[bytes], max_payload: int) -> tuple[dict[str, Any], bytes] | None:
    """The next frame; None at the end of the stream (the other side exited)."""
    raw = fh.read(_FRAME.size)
    if len(raw) < _FRAME.size:
        return None
    n_head, n_payload = _FRAME.unpack(raw)
    if n_head > _MAX_HEADER or n_payload > max_payload:
        raise ValueError(f"a frame of {n_head} + {n_payload} bytes")
    head = fh.read(n_head)
    payload = fh.read(n_payload) if n_payload else b""
    if len(head) < n_head or len(payload) < n_payload:
        return None
    return json.loads(head), payload


def _decode_worker() -> None:
    """A decode worker process: settings, then one image per frame on stdin, results on stdout.

    Runs until stdin closes: when the pool shuts it down, and also when the parent dies, however
    it dies, since only the parent holds the other end of the pipe.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it closes our stdin
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print, or a C library, must not write into the result stream
    inp = sys.stdin.buffer
    first = _read_frame(inp, 0)
    if first is None:
        return
    settings = first[0]
    limits = ImageLimits(**settings["limits"])
    # The parent's Pillow settings that process_image_bytes depends on.
    PILImage.MAX_IMAGE_PIXELS = settings["max_image_pixels"]
    ImageFile.LOAD_TRUNCATED_IMAGES = settings["load_truncated_images"]
    warnings.simplefilter("ignore")  # Pillow's warnings about one image are noise on the terminal
    # Keep freed image memory for the next image: without a cache each image's pixels come from
    # fresh pages of the OS (~500 page faults, a fifth of the CPU time per image, measured).
    PILImage.core.set_blocks_max(8)
    import scipy.fftpack  # noqa: F401 - imagehash.phash imports it on first use; do it before

    try:
        _write_frame(out, {"ready": True})
        while (frame := _read_frame(inp, 1 << 62)) is not None:
            header, data = frame
            try:
                res = process_image_bytes(data, header.get("content_type"), limits)
            except ImageRejected as exc:
                _write_frame(out, {"reason": exc.reason, "detail": exc.detail})
            else:
                _write_frame(out, {"image": dataclasses.asdict(res.image)}, res.data)
    except BrokenPipeError:  # the parent is gone
        pass


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


_Job = tuple["Future[ProcessedImage | ImageRejected]", bytes, "str | None"]


class _DecodePool:
    """Runs :func:`process_image_bytes` in ``n`` worker processes, one image at a time each.

    Each worker has a thread here that feeds it (``submit`` is thread-safe and returns a
    ``concurrent.futures.Future``); workers start on first use. A worker that dies on an image (a
    decoder crash, the OOM killer) costs only that image: it is retried once on a new worker, then
    rejected as ``undecodable``. With ``limits.decode_processes`` off, or where no worker can start
    at all (no usable ``sys.executable``), images are decoded in the feeding threads instead.
    """

    def __init__(self, limits: ImageLimits, n: int) -> None:
        self.limits = limits
        # What a worker may send back: a JPEG of at most max_side² pixels, with room to spare.
        self._max_out = 4 * limits.max_side * limits.max_side + (1 << 20)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._busy: set[subprocess.Popen[bytes]] = set()  # decoding an image now
        self._live: set[subprocess.Popen[bytes]] = set()  # started and not yet reaped
        self._closing = False
        self._in_process = not limits.decode_processes
        self._threads = [
            threading.Thread(target=self._feed, name=f"mmner-decode_{i}", daemon=True)
            for i in range(max(1, n))
        ]
        for t in self._threads:
            t.start()

    def submit(
        self, data: bytes, content_type: str | None
    ) -> Future[ProcessedImage | ImageRejected]:
        fut: Future[ProcessedImage | ImageRejected] = Future()
        self._jobs.put((fut, data, content_type))
        return fut

    def close(self) -> None:
        """Cancel what has not started, stop every worker (a busy one is killed), join."""
        self._closing = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[0].cancel()
        for _ in self._threads:
            self._jobs.put(None)
        with self._lock:
            busy = list(self._busy)
        for proc in busy:  # only when fetch_images is cut short: its result is not wanted
            with contextlib.suppress(OSError):
                proc.kill()
        for t in self._threads:
            t.join()
        with self._lock:
            left = list(self._live)
        for proc in left:  # none, unless a feeding thread failed in between
            self._stop(proc, kill=True)

    # -- feeding threads -----------------------------------------------------------------------
    def _feed(self) -> None:
        proc: subprocess.Popen[bytes] | None = None
        try:
            while (job := self._jobs.get()) is not None:
                fut, data, content_type = job
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    result, proc = self._decode(proc, data, content_type)
                except Exception as exc:  # a bug here must not leave the caller waiting
                    result = ImageRejected(RejectReason.UNDECODABLE, f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(InvalidStateError):
                    fut.set_result(result)
        finally:
            if proc is not None:
                self._stop(proc)

    def _decode(
        self, proc: subprocess.Popen[bytes] | None, data: bytes, content_type: str | None
    ) -> tuple[ProcessedImage | ImageRejected, subprocess.Popen[bytes] | None]:
        detail = ""
        for _ in range(2):
            if proc is None and not self._in_process:
                proc = self._start()
            if proc is None:
                try:
                    return process_image_bytes(data, content_type, self.limits), None
                except ImageRejected as exc:
                    return exc, None
            with self._lock:
                self._busy.add(proc)
            try:
                assert proc.stdin is not None and proc.stdout is not None
                _write_frame(proc.stdin, {"content_type": content_type}, data)
                frame = _read_frame(proc.stdout, self._max_out)
            except (OSError, ValueError):
                frame = None
            finally:
                with self._lock:
                    self._busy.discard(proc)
            if frame is not None:
                header, payload = frame
                if "image" in header:
                    return ProcessedImage(data=payload, image=Image(**header["image"])), proc
                return ImageRejected(header["reason"], header["detail"]), proc
            code = self._stop(proc, kill=True)
            proc = None
            if self._closing:
                return ImageRejected(RejectReason.UNDECODABLE, "cancelled"), None
            detail = f"the decoder process died on this image (exit code {code})"
            log.warning("image decoder process died (exit code %s); starting another", code)
        return ImageRejected(RejectReason.UNDECODABLE, detail), None

    def _start(self) -> subprocess.Popen[bytes] | None:
        """A ready worker, or None (and decode in-process from now on) if none can start."""
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_BOOT, json.dumps([str(p) for p in sys.path])],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, **_WORKER_ENV},
            )
        except (OSError, ValueError) as exc:
            return self._no_workers(f"cannot start {sys.executable!r}: {exc}")
        with self._lock:
            self._live.add(proc)
        assert proc.stdin is not None and proc.stdout is not None
        settings = {
            "limits": dataclasses.asdict(self.limits),
            "max_image_pixels": PILImage.MAX_IMAGE_PIXELS,
            "load_truncated_images": ImageFile.LOAD_TRUNCATED_IMAGES,
        }
        try:
            _write_frame(proc.stdin, settings)
            ready = _read_frame(proc.stdout, 0)
        except (OSError, ValueError):
            ready = None
        if ready is None or not isinstance(ready[0], dict) or not ready[0].get("ready"):
            code = self._stop(proc, kill=True)
            return self._no_workers(f"the worker process exited at start (exit code {code})")
        return proc

    def _no_workers(self, why: str) -> None:
        if not self._in_process:
            log.warning("images are decoded in-process: %s", why)
        self._in_process = True
        return None

    def _stop(self, proc: subprocess.Popen[bytes], kill: bool = False) -> int | None:
        """Close the worker's stdin (it exits at once) and reap it."""
        if kill:
            with contextlib.suppress(OSError):
                proc.kill()
        for fh in (proc.stdin, proc.stdout):
            if fh is not None:
                with contextlib.suppress(OSError):
                    fh.close()
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        with self._lock:
            self._live.discard(proc)
        return code


# ---------------------------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------------------------


def host_key(url: str) -> str:
    """The host a URL's request counts against: ``"https://cdn.example:443"``, or ``""``.

    ``fetch_images`` keeps at most ``per_host`` requests in flight per key and pauses a whole key
    after a 429/503 with ``Retry-After``; callers that split work across processes partition by
    it. Scheme and host are lower-cased (a trailing dot dropped, international names in their
    ASCII form) and the default port filled in, so spellings of one origin share one key. ``""``
    for anything that is not an http(s) URL with a host.
    """
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").rstrip(".")
        if scheme not in ("http", "https") or not host:
            return ""
        port = parts.port or (443 if scheme == "https" else 80)
    except (AttributeError, TypeError, ValueError):  # not a string, bad port, bad brackets
        return ""
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class _Retryable(Exception):
    """An attempt failed in a way worth retrying; becomes ImageRejected(reason) when exhausted."""

    def __init__(self, reason: str, detail: str, retry_after: float | None = None):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


def _classify_url(url: str, policy: UrlPolicy) -> tuple[str, str]:
    """("http", url) or ("file", resolved path); raises unsupported_url or url_refused."""
    try:
        return classify(url, policy)
    except UrlRefused as exc:
        raise ImageRejected(RejectReason.URL_REFUSED, exc.detail) from None
    except ValueError as exc:
        raise ImageRejected(RejectReason.UNSUPPORTED_URL, str(exc)) from None


def _read_local(path: str, limits: ImageLimits) -> bytes:
    p = Path(path)  # already resolved and checked by the URL policy; "~" is never expanded
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise ImageRejected(RejectReason.FILE_NOT_FOUND, f"not a regular file: {path}")
        if size > limits.max_bytes:
            raise ImageRejected(
                RejectReason.TOO_LARGE, f"{size} bytes > max_bytes {limits.max_bytes}"
            )
        with p.open("rb") as fh:
            data = fh.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise ImageRejected(RejectReason.FILE_NOT_FOUND, f"no such file: {path}") from None
    except OSError as exc:
        raise ImageRejected(
            RejectReason.FILE_NOT_FOUND, f"cannot read {path}: {exc.strerror or exc}"
        ) from None
    if len(data) > limits.max_bytes:
        raise ImageRejected(RejectReason.TOO_LARGE, f"more than max_bytes {limits.max_bytes}")
    return data


def _skip_sniffio_lookups() -> None:
    """Make the missing optional ``sniffio`` fail to import at once instead of after a path search.

    httpcore tries ``import sniffio`` for every lock, event and cancellation shield it makes
    (several per request). Where the package is not installed each try walks ``sys.path`` with a
    ``stat`` per entry: 0.3-0.7 ms of the event loop's ~2.5 ms per image, measured. An entry of
    ``None`` in ``sys.modules`` is Python's own record of "not importable": the same
    ``ImportError``, at once. Nothing changes where ``sniffio`` is installed.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


class _HostPools(httpx.AsyncBaseTransport):
    """An httpx transport with one connection pool per :func:`host_key`, for one URL policy.

    Every pool connects through the policy's :class:`~mmner_data.net.AsyncGuardedBackend`, as
    :func:`~mmner_data.net.guarded_async_client` does (resolve once, check every address, connect
    to the checked one, no proxies from the environment; each redirect hop is a request of its own
    and so goes through it too). One pool per host instead of one for all: httpcore looks at every
    connection of a pool on each request (an expiry poll per idle connection, a count of idle
    connections per idle connection): 41 % of the event loop's time with 32 connections in one
    pool, measured; per host a pool has at most ``per_host``. Pools are
    kept for the ``max_pools`` hosts used last; an older one is closed once it has no request in
    flight, so that idle keep-alive sockets stay bounded with many hosts.
    """

    def __init__(self, policy: UrlPolicy, per_host: int, max_pools: int, ssl_context: Any) -> None:
        self._backend = AsyncGuardedBackend(policy)
        self._ssl = ssl_context
        self._per_host = max(1, per_host)
        self._max_pools = max(1, max_pools)
        self._pools: OrderedDict[str, tuple[httpx.AsyncHTTPTransport, Any]] = OrderedDict()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = host_key(str(request.url))
        entry = self._pools.get(key)
        if entry is None:
            await self._evict()
            entry = self._pools[key] = self._new_pool()
        else:
            self._pools.move_to_end(key)
        return await entry[0].handle_async_request(request)

    def _new_pool(self) -> tuple[httpx.AsyncHTTPTransport, Any]:
        n = self._per_host
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        transport = httpx.AsyncHTTPTransport(verify=self._ssl, limits=limits, trust_env=False)
        pool = httpcore.AsyncConnectionPool(
            ssl_context=self._ssl,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=self._backend,
        )
        transport._pool = pool  # as net.guarded_async_client: the hook for a network backend
        return transport, pool

    async def _evict(self) -> None:
        for key in list(self._pools):
            if len(self._pools) < self._max_pools:
                return
            transport, pool = self._pools[key]
            if all(c.is_idle() or c.is_closed() for c in pool.connections):
                del self._pools[key]
                await transport.aclose()

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), OrderedDict()
        for transport, _ in pools:
            await transport.aclose()


@dataclass
class _Tally:
    bytes_in: int = 0
    attempts: int = 0


_Outcome = tuple[ImageRequest, "ProcessedImage | ImageRejected", _Tally]


class _Engine:
    """The event loop on a background thread, its HTTP clients and the decode workers.

    Everything lives in the instance: each :func:`fetch_images` call makes one and closes it
    (threads joined, worker processes reaped), so calls can follow each other in one process.
    """

    def __init__(self, limits: ImageLimits, policy: UrlPolicy):
        self.limits = limits
        self.policy = policy
        _skip_sniffio_lookups()
        self.decoder = _DecodePool(limits, limits.workers or _usable_cpus())
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="mmner-fetch", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self.decoder.close()
            raise self._error

    # -- loop thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to the caller if start-up failed
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        lim = self.limits
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._sem = asyncio.Semaphore(max(1, lim.concurrency))
        self._host_sems: dict[str, asyncio.Semaphore] = {}
        self._not_before: dict[str, float] = {}
        # One client (with its pools) per URL policy: a connection opened under one source's
        # policy is never reused by a request that another policy governs.
        self._clients: dict[UrlPolicy, httpx.AsyncClient] = {}
        self._ssl_context: Any = None
        try:
            self._ready.set()
            await self._stop.wait()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for client in self._clients.values():
                await client.aclose()

    def _client(self, policy: UrlPolicy) -> httpx.AsyncClient:
        client = self._clients.get(policy)
        if client is None:
            lim = self.limits
            if self._ssl_context is None:  # ~50 ms to load the CA store: once, for all pools
                self._ssl_context = httpx.create_ssl_context()
            per_host = max(1, lim.per_host)
            transport = _HostPools(
                policy,
                per_host=per_host,
                max_pools=max(8, 2 * max(1, lim.concurrency) // per_host),
                ssl_context=self._ssl_context,
            )
            client = httpx.AsyncClient(
                transport=transport,
                trust_env=False,
                timeout=httpx.Timeout(lim.timeout_s, connect=lim.connect_timeout_s),
                headers={
                    "User-Agent": lim.user_agent,
                    "Accept": "image/webp,image/png,image/jpeg,image/gif,image/*;q=0.8,*/*;q=0.5",
                },
                follow_redirects=True,
                max_redirects=lim.max_redirects,
            )
            self._clients[policy] = client
        return client

    async def _one(self, req: ImageRequest) -> _Outcome:
        tally = _Tally()
        try:
            policy = req.policy or self.policy
            kind, target = _classify_url(req.url, policy)
            if kind == "file":
                tally.attempts = 1
                data = await asyncio.to_thread(_read_local, target, self.limits)
                tally.bytes_in = len(data)
                ctype = None
            else:
                data, ctype = await self._download(target, tally, self._client(policy))
            result: ProcessedImage | ImageRejected = await asyncio.wrap_future(
                self.decoder.submit(data, ctype)
            )
        except ImageRejected as exc:
            result = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an exotic failure: still one rejected image
            result = ImageRejected(RejectReason.CONNECTION_ERROR, f"{type(exc).__name__}: {exc}")
        return req, result, tally

    def _backoff(self, attempt: int, exc: _Retryable) -> float:
        """Seconds before the next attempt: Retry-After if the server sent one, else exponential."""
        lim = self.limits
        if exc.retry_after is not None:
            return min(exc.retry_after, lim.backoff_max_s)
        step = lim.backoff_initial_s * 2 ** (attempt - 1)
        return min(step + random.uniform(0, lim.backoff_initial_s), lim.backoff_max_s)

    async def _download(
        self, url: str, tally: _Tally, client: httpx.AsyncClient
    ) -> tuple[bytes, str | None]:
        attempts = max(0, self.limits.retries) + 1
        for attempt in range(1, attempts + 1):
            tally.attempts += 1
            try:
                return await self._attempt(url, tally, client)
            except _Retryable as exc:
                if attempt == attempts:
                    s = "s" if attempt != 1 else ""
                    raise ImageRejected(
                        exc.reason, f"{exc.detail} (after {attempt} attempt{s})"
                    ) from None
                await asyncio.sleep(self._backoff(attempt, exc))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self, url: str, tally: _Tally, client: httpx.AsyncClient
    ) -> tuple[bytes, str | None]:
        lim = self.limits
        host = host_key(url)
        delay = self._not_before.get(host, 0.0) - time.monotonic()
        if delay > 0:  # the host asked everyone to back off (429 + Retry-After)
            await asyncio.sleep(min(delay, lim.backoff_max_s))
        host_sem = self._host_sems.get(host)
        if host_sem is None:
            host_sem = self._host_sems[host] = asyncio.Semaphore(max(1, lim.per_host))
        async with self._sem, host_sem:
            try:
                async with asyncio.timeout(lim.timeout_s):
                    return await self._get(url, host, tally, client)
            except UrlRefused as exc:  # this host, or a redirect hop, is not allowed
                raise ImageRejected(RejectReason.URL_REFUSED, exc.detail) from None
            except TimeoutError:
                raise _Retryable(
                    RejectReason.TIMEOUT, f"no complete response in {lim.timeout_s}s"
                ) from None
            except httpx.TimeoutException as exc:
                raise _Retryable(RejectReason.TIMEOUT, f"{type(exc).__name__}") from None
            except httpx.UnsupportedProtocol as exc:
                raise ImageRejected(RejectReason.UNSUPPORTED_URL, str(exc)) from None
            except httpx.TooManyRedirects:
                raise ImageRejected(
                    RejectReason.HTTP_STATUS, f"more than {lim.max_redirects} redirects"
                ) from None
            except httpx.DecodingError as exc:
                raise ImageRejected(RejectReason.UNDECODABLE, f"content encoding: {exc}") from None
            except (httpx.TransportError, httpx.InvalidURL) as exc:
                if isinstance(exc, httpx.InvalidURL):
                    raise ImageRejected(RejectReason.UNSUPPORTED_URL, str(exc)) from None
                raise _Retryable(
                    RejectReason.CONNECTION_ERROR, f"{type(exc).__name__}: {exc}"
                ) from None

    async def _get(
        self, url: str, host: str, tally: _Tally, client: httpx.AsyncClient
    ) -> tuple[bytes, str | None]:
        lim = self.limits
        async with client.stream("GET", url) as resp:
            status = resp.status_code
            if status == 429 or status >= 500:
                wait = parse_retry_after(resp.headers.get("retry-after"), lim.backoff_max_s)
                if wait:
                    self._not_before[host] = time.monotonic() + wait
                if status == 429:
                    raise _Retryable(RejectReason.RATE_LIMITED, "HTTP 429", wait)
                raise _Retryable(RejectReason.SERVER_ERROR, f"HTTP {status}", wait)
            if not 200 <= status < 300:
                raise ImageRejected(RejectReason.HTTP_STATUS, str(status))
            ctype = resp.headers.get("content-type")
            _check_content_type(ctype)
            length = resp.headers.get("content-length")
            if length is not None and length.strip().isdigit() and int(length) > lim.max_bytes:
                raise ImageRejected(
                    RejectReason.TOO_LARGE,
                    f"Content-Length {int(length)} > max_bytes {lim.max_bytes}",
                )
            buf = bytearray()
            sniffed = False
            async for chunk in resp.aiter_bytes():
                buf += chunk
                tally.bytes_in += len(chunk)
                if len(buf) > lim.max_bytes:
                    raise ImageRejected(
                        RejectReason.TOO_LARGE,
                        f"body over max_bytes {lim.max_bytes} (stopped reading)",
                    )
                if not sniffed and len(buf) >= 16:
                    sniffed = True
                    if sniff_format(bytes(buf[:16])) is None:
                        raise ImageRejected(
                            RejectReason.NOT_AN_IMAGE, _describe_head(bytes(buf[:64]))
                        )
            return bytes(buf), ctype

    # -- caller thread -------------------------------------------------------------------------
    def submit(self, req: ImageRequest, done: Callable[[Future[_Outcome]], None]) -> None:
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(self._one(req), self._loop)
        fut.add_done_callback(done)

    def close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join()
        self.decoder.close()


def fetch_images(
    requests: Iterable[ImageRequest],
    limits: ImageLimits,
    on_result: Callable[[ImageRequest, ProcessedImage | ImageRejected], None],
    progress: Callable[[int], None] | None = None,
    policy: UrlPolicy | None = None,
) -> FetchStats:
    """Fetch, validate and normalise images concurrently; returns when all are done.

    Each request's URL is judged by its own ``policy``, else by ``policy`` here, else by the
    strictest one (public http(s) hosts only, no local files).

    ``requests`` is iterated lazily in the caller's thread (a generator over a database cursor is
    fine); at most ``2 * concurrency`` requests are outstanding. ``on_result`` is called in the
    caller's thread, once per request, in completion order; ``progress(1)`` after each. An
    exception from ``on_result`` (or Ctrl-C) cancels the remaining work and propagates.

    Each call starts its own event loop thread and decode workers (``limits.workers`` processes,
    or threads with ``decode_processes=False``) and stops them all before it returns, however it
    returns: calls may follow one another in one process. ``per_host`` and ``Retry-After`` hold
    per :func:`host_key` within a call; callers that run several calls at once partition the
    requests by it.
    """
    stats = FetchStats()
    results: queue.SimpleQueue[Future[_Outcome] | Future[None]] = queue.SimpleQueue()
    window = 2 * max(1, limits.concurrency)
    start = time.perf_counter()
    engine = _Engine(limits, policy or UrlPolicy())
    try:
        it = iter(requests)
        outstanding = 0
        exhausted = False
        while True:
            while not exhausted and outstanding < window:
                try:
                    req = next(it)
                except StopIteration:
                    exhausted = True
                    break
                engine.submit(req, results.put)
                outstanding += 1
            if outstanding == 0:
                break
            fut = results.get()
            outstanding -= 1
            req, outcome, tally = fut.result()
            stats.bytes_in += tally.bytes_in
            stats.retries += max(0, tally.attempts - 1)
            if isinstance(outcome, ProcessedImage):
                stats.counts["ok"] += 1
                stats.bytes_out += outcome.image.n_bytes
            else:
                stats.counts[outcome.reason] += 1
            on_result(req, outcome)
            if progress is not None:
                progress(1)
    finally:
        engine.close()
        stats.seconds = time.perf_counter() - start
    return stats
