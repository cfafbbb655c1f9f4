"""Safe image download and validation for ``mmner-data collect``.

Two layers:

* :func:`process_image_bytes` is pure: bytes in, a normalised JPEG (:class:`ProcessedImage`) out,
  or :class:`ImageRejected` with a stable reason slug. It never trusts the server's headers, checks
  the magic bytes, refuses decompression bombs from the header before decoding, and re-encodes
  every image (EXIF orientation applied, metadata dropped, RGB, long side capped) so that the
  stored bytes are deterministic for the same input. See ``docs/images.md``.
* :func:`fetch_images` downloads many images concurrently, every URL judged by the source's URL
  policy first (``collect/urlpolicy.py``: http(s) only, local files only for local sources,
  non-public hosts refused and every connection pinned to the checked address), (``asyncio`` + ``httpx.AsyncClient`` on
  a background thread), with streaming size limits, per-host concurrency, retries with
  ``tenacity`` (429 honours ``Retry-After``), and decoding in a thread pool. It is synchronous
  for the caller and calls ``on_result`` in the caller's thread as each image finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from struct import error as struct_error
from urllib.parse import urlsplit

import httpx
import imagehash
import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
)

from mmner_data.collect.urlpolicy import UrlPolicy, UrlRefused, classify
from mmner_data.net import guarded_async_client, parse_retry_after
from mmner_data.schema import Image

__all__ = [
    "FetchStats",
    "ImageLimits",
    "ImageRejected",
    "ImageRequest",
    "ProcessedImage",
    "RejectReason",
    "UrlPolicy",
    "fetch_images",
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
    concurrency: int = 16  # requests in flight overall
    per_host: int = 8  # requests in flight per (scheme, host, port)
    jpeg_quality: int = 90
    user_agent: str = "mmner-data/0.1"
    backoff_initial_s: float = 1.0  # first exponential backoff step (also the jitter range)
    max_redirects: int = 5
    workers: int | None = None  # decode/re-encode threads; None → os.cpu_count()


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
# Fetching
# ---------------------------------------------------------------------------------------------


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


@dataclass
class _Tally:
    bytes_in: int = 0
    attempts: int = 0


_Outcome = tuple[ImageRequest, "ProcessedImage | ImageRejected", _Tally]


class _Engine:
    """The event loop on a background thread, its HTTP client and the decode pool."""

    def __init__(self, limits: ImageLimits, policy: UrlPolicy):
        self.limits = limits
        self.policy = policy
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, limits.workers or os.cpu_count() or 2),
            thread_name_prefix="mmner-img",
        )
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="mmner-fetch", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
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
        self._host_sems: dict[tuple[str, str, int | None], asyncio.Semaphore] = {}
        self._not_before: dict[tuple[str, str, int | None], float] = {}
        # One client (one connection pool) per URL policy: a connection opened under one
        # source's policy is never reused by a request that another policy governs.
        self._clients: dict[UrlPolicy, httpx.AsyncClient] = {}
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
            n = max(1, lim.concurrency)
            client = guarded_async_client(
                policy,
                timeout=httpx.Timeout(lim.timeout_s, connect=lim.connect_timeout_s),
                limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
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
            loop = asyncio.get_running_loop()
            if kind == "file":
                tally.attempts = 1
                data = await loop.run_in_executor(self.pool, _read_local, target, self.limits)
                tally.bytes_in = len(data)
                ctype = None
            else:
                data, ctype = await self._download(target, tally, self._client(policy))
            result: ProcessedImage | ImageRejected = await loop.run_in_executor(
                self.pool, process_image_bytes, data, ctype, self.limits
            )
        except ImageRejected as exc:
            result = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an exotic failure: still one rejected image
            result = ImageRejected(RejectReason.CONNECTION_ERROR, f"{type(exc).__name__}: {exc}")
        return req, result, tally

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self.limits.backoff_max_s)
        lim = self.limits
        step = lim.backoff_initial_s * 2 ** (state.attempt_number - 1)
        return min(step + random.uniform(0, lim.backoff_initial_s), lim.backoff_max_s)

    async def _download(
        self, url: str, tally: _Tally, client: httpx.AsyncClient
    ) -> tuple[bytes, str | None]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(0, self.limits.retries) + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    tally.attempts += 1
                    return await self._attempt(url, tally, client)
        except _Retryable as exc:
            n = tally.attempts
            raise ImageRejected(
                exc.reason, f"{exc.detail} (after {n} attempt{'s' if n != 1 else ''})"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self, url: str, tally: _Tally, client: httpx.AsyncClient
    ) -> tuple[bytes, str | None]:
        lim = self.limits
        parts = urlsplit(url)
        host = (parts.scheme.lower(), (parts.hostname or "").lower(), parts.port)
        delay = self._not_before.get(host, 0.0) - time.monotonic()
        if delay > 0:  # the host asked everyone to back off (429 + Retry-After)
            await asyncio.sleep(min(delay, lim.backoff_max_s))
        host_sem = self._host_sems.setdefault(host, asyncio.Semaphore(max(1, lim.per_host)))
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
        self, url: str, host: tuple[str, str, int | None], tally: _Tally, client: httpx.AsyncClient
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
        self.pool.shutdown(wait=True, cancel_futures=True)


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
