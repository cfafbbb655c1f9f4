"""Benchmark: image fetching (download + validate + re-encode + phash) over loopback HTTP.

Serves ``--n`` distinct real-photo JPEGs (640x480 crops of the scikit-image / scikit-learn sample
photographs, generated in memory at start) from stdlib HTTP/1.1 servers in a child process, on
``--hosts`` ports of 127.0.0.1 (each port is a host for the per-host limit: social-media images
come from one or a few CDN hosts), and measures in this process:

* ``fetch_images``: the collect stage's concurrent fetcher (URL policy, per-host limits,
  retries, streaming limits, decoding off the event loop);
* ``img2dataset-style``: what a user would pick instead, at its fastest documented use: a pool of
  ``--threads`` threads, each doing a blocking ``urllib`` GET (a new connection per request, as
  img2dataset's downloader does) and then the same ``process_image_bytes``; no per-host limit, no
  URL policy, no retries (img2dataset's ``thread_count`` per process, one process here);
* with ``--sequential``: a plain ``httpx.Client`` loop, GET then ``process_image_bytes``.

Every method must produce byte-identical images (sha256 and phash). ``--latency-ms`` adds a
server-side delay per request to imitate a remote host (0 measures the CPU-bound case). The
server's own CPU time is reported apart: on a small machine it competes for the same cores.

    python benchmarks/fetch.py [--n 400] [--latency-ms 0] [--hosts 1] [--repeat 1]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import random
import resource
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from mmner_data.collect.images import (
    ImageLimits,
    ImageRejected,
    ImageRequest,
    ProcessedImage,
    fetch_images,
    process_image_bytes,
)
from mmner_data.collect.urlpolicy import UrlPolicy

SIZE = (640, 480)
LOOPBACK = UrlPolicy.build(allow_hosts=["127.0.0.1"])  # the benchmark's hosts are on loopback


def _source_photos() -> list[Image.Image]:
    """The real colour photographs that ship with scikit-image and scikit-learn."""
    from skimage import data

    arrays = [
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.hubble_deep_field(),
        data.immunohistochemistry(),
        data.retina(),
        data.stereo_motorcycle()[0],
        data.colorwheel(),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from sklearn.datasets import load_sample_images

        arrays += list(load_sample_images().images)
    return [Image.fromarray(np.ascontiguousarray(a)).convert("RGB") for a in arrays]


def make_images(n: int, seed: int = 0) -> list[bytes]:
    """``n`` distinct 640x480 JPEG crops (random scale, offset and mirror of real photos)."""
    rng = random.Random(seed)
    scaled: list[Image.Image] = []  # each photo at a few zoom levels, so crops differ in scale too
    for src in _source_photos():
        w, h = src.size
        base = max(SIZE[0] / w, SIZE[1] / h)
        for zoom in (1.0, 1.3, 1.7):
            size = (int(w * base * zoom) + 1, int(h * base * zoom) + 1)
            scaled.append(src.resize(size, Image.Resampling.BILINEAR))
    out: list[bytes] = []
    seen: set[bytes] = set()
    while len(out) < n:
        big = scaled[len(out) % len(scaled)]
        x = rng.randint(0, big.width - SIZE[0])
        y = rng.randint(0, big.height - SIZE[1])
        crop = big.crop((x, y, x + SIZE[0], y + SIZE[1]))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=85)
        body = buf.getvalue()
        if body not in seen:
            seen.add(body)
            out.append(body)
    return out


# --------------------------------------------------------------------------- the server


def _serve(images: list[bytes], latency_s: float, n_hosts: int, port_q: mp.Queue) -> None:
    """``n_hosts`` HTTP/1.1 servers (one port each); ``GET /cpu`` answers this process's CPU s."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else Nagle + delayed ACK stall each sequential request

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/cpu":
                body = repr(time.process_time()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            try:
                i = int(self.path.rsplit("/", 1)[-1].split(".")[0])
                body = images[i]
            except (ValueError, IndexError):
                self.send_error(404)
                return
            if latency_s:
                time.sleep(latency_s)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ThreadingHTTPServer.request_queue_size = 1024
    ports = []
    for _ in range(n_hosts):
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        ports.append(httpd.server_address[1])
        threading.Thread(target=httpd.serve_forever, args=(0.1,), daemon=True).start()
    port_q.put(ports)
    threading.Event().wait()


def _server_cpu(port: int) -> float:
    return float(httpx.get(f"http://127.0.0.1:{port}/cpu").text)


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (decode workers, not the server)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


# --------------------------------------------------------------------------- the methods

Shas = dict[int, tuple[str, str]]  # key → (sha256, phash)


def run_fetch_images(urls: list[str], limits: ImageLimits) -> Shas:
    shas: Shas = {}

    def on_result(req: ImageRequest, res: ProcessedImage | ImageRejected) -> None:
        if isinstance(res, ImageRejected):
            raise SystemExit(f"fetch_images rejected {req.url}: {res}")
        shas[int(req.key)] = (res.image.sha256, res.image.phash)

    fetch_images(
        (ImageRequest(i, u) for i, u in enumerate(urls)), limits, on_result, policy=LOOPBACK
    )
    return shas


def run_img2dataset_style(urls: list[str], limits: ImageLimits, threads: int) -> Shas:
    """img2dataset's downloader design: ``thread_count`` threads of blocking urllib GETs."""

    def one(i: int) -> tuple[int, tuple[str, str]]:
        req = urllib.request.Request(urls[i], headers={"User-Agent": limits.user_agent})
        with urllib.request.urlopen(req, timeout=limits.timeout_s) as r:
            data = r.read()
            ctype = r.headers.get("content-type")
        res = process_image_bytes(data, ctype, limits)
        return i, (res.image.sha256, res.image.phash)

    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(one, range(len(urls))))


def run_sequential(urls: list[str], limits: ImageLimits) -> Shas:
    shas: Shas = {}
    with httpx.Client(timeout=limits.timeout_s) as client:
        for i, url in enumerate(urls):
            resp = client.get(url)
            resp.raise_for_status()
            res = process_image_bytes(resp.content, resp.headers.get("content-type"), limits)
            shas[i] = (res.image.sha256, res.image.phash)
    return shas


@dataclass
class Result:
    name: str
    seconds: float
    cpu_s: float  # this process
    server_cpu_s: float


def measure(name: str, fn: Callable[[], Shas], n: int, port: int, expected: Shas) -> Result:
    s0 = _server_cpu(port)
    cpu0, t0 = _cpu(), time.perf_counter()
    shas = fn()
    secs, cpu = time.perf_counter() - t0, _cpu() - cpu0
    server = _server_cpu(port) - s0
    if shas != expected or len(shas) != n:
        raise SystemExit(f"{name}: outputs differ from process_image_bytes on the source bytes")
    return Result(name, secs, cpu, server)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="number of distinct images")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="server delay per request")
    ap.add_argument("--hosts", type=int, default=1, help="hosts (ports) the images come from")
    defaults = ImageLimits()
    ap.add_argument("--concurrency", type=int, default=defaults.concurrency)
    ap.add_argument("--per-host", type=int, default=defaults.per_host)
    ap.add_argument("--workers", type=int, default=None, help="decode workers (default: CPUs)")
    ap.add_argument("--threads", type=int, default=256, help="img2dataset-style thread_count")
    ap.add_argument("--sequential", action="store_true", help="also run a sequential httpx loop")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each method; the best counts")
    args = ap.parse_args()
    console = Console(width=160)
    cpus = os.cpu_count() or 1

    t0 = time.perf_counter()
    images = make_images(args.n)
    gen_s = time.perf_counter() - t0
    mb = sum(map(len, images)) / 2**20
    console.print(
        f"{len(images)} distinct {SIZE[0]}x{SIZE[1]} JPEGs ({mb:.1f} MiB, made in {gen_s:.1f}s); "
        f"{cpus} CPUs; {args.hosts} host(s), server latency {args.latency_ms:g} ms"
    )

    limits = ImageLimits(concurrency=args.concurrency, per_host=args.per_host, workers=args.workers)
    expected: Shas = {}
    for i, body in enumerate(images):  # the reference, and the warm-up (scipy import for phash)
        ref = process_image_bytes(body, "image/jpeg", limits)
        expected[i] = (ref.image.sha256, ref.image.phash)

    ctx = mp.get_context("fork")
    port_q: mp.Queue = ctx.Queue()
    server = ctx.Process(
        target=_serve, args=(images, args.latency_ms / 1000, args.hosts, port_q), daemon=True
    )
    server.start()
    results: dict[str, Result] = {}
    try:
        ports = port_q.get(timeout=30)
        urls = [f"http://127.0.0.1:{ports[i % len(ports)]}/img/{i}.jpg" for i in range(len(images))]
        httpx.get(urls[0]).raise_for_status()
        methods: list[tuple[str, Callable[[], Shas]]] = [
            (
                f"fetch_images (concurrency {limits.concurrency}, per_host {limits.per_host})",
                lambda: run_fetch_images(urls, limits),
            ),
            (
                f"img2dataset-style ({args.threads} threads)",
                lambda: run_img2dataset_style(urls, limits, args.threads),
            ),
        ]
        if args.sequential:
            methods.append(("sequential httpx.Client", lambda: run_sequential(urls, limits)))
        for _ in range(max(1, args.repeat)):
            for name, fn in methods:
                r = measure(name, fn, len(urls), ports[0], expected)
                if name not in results or r.seconds < results[name].seconds:
                    results[name] = r
    finally:
        server.kill()
        server.join()

    n = len(images)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = Table(title=f"image fetch: {n} images over loopback HTTP, best of {args.repeat}")
    cols = (
        "method",
        "seconds",
        "images/s",
        "images/s per core",
        "CPU ms/image",
        "images per CPU-s",
        "server CPU ms/image",
    )
    for col in cols:
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in results.values():
        table.add_row(
            r.name,
            f"{r.seconds:.2f}",
            f"{n / r.seconds:.1f}",
            f"{n / r.seconds / cpus:.1f}",
            f"{r.cpu_s / n * 1000:.2f}",
            f"{n / r.cpu_s:.0f}",
            f"{r.server_cpu_s / n * 1000:.2f}",
        )
    console.print(table)
    ours, theirs = list(results.values())[:2]
    console.print(
        f"fetch_images / img2dataset-style: [bold]{theirs.seconds / ours.seconds:.2f}x[/bold] "
        f"images/s; CPU per image {ours.cpu_s / theirs.cpu_s:.2f}x.  "
        f"peak RSS {peak_mib:.0f} MiB; outputs identical (sha256 and phash): yes"
    )


if __name__ == "__main__":
    main()
