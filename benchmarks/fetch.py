"""Benchmark: image fetching (download + validate + re-encode + phash) over loopback HTTP.

Serves ``--n`` distinct real-photo JPEGs (640x480 crops of the scikit-image / scikit-learn sample
photographs, generated in memory at start) from a stdlib HTTP/1.1 server in a child process, then
measures in this process:

* ``fetch_images``: the collect stage's concurrent fetcher (asyncio + httpx + decode thread pool);
* baseline: a plain sequential ``httpx.Client`` loop, GET then the same ``process_image_bytes``.

Both must produce byte-identical images. ``--latency-ms`` adds a server-side delay per request
to imitate a remote host (the default, 0, measures the CPU-bound case).

    python benchmarks/fetch.py [--n 400] [--latency-ms 0] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import random
import resource
import time
import warnings
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

SIZE = (640, 480)


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


def _serve(images: list[bytes], latency_s: float, port_q: mp.Queue) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else Nagle + delayed ACK stall each sequential request

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
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

    ThreadingHTTPServer.request_queue_size = 128
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    port_q.put(httpd.server_address[1])
    httpd.serve_forever(poll_interval=0.1)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_fetch_images(urls: list[str], limits: ImageLimits) -> tuple[float, float, dict[int, str]]:
    shas: dict[int, str] = {}

    def on_result(req: ImageRequest, res: ProcessedImage | ImageRejected) -> None:
        if isinstance(res, ImageRejected):
            raise SystemExit(f"fetch_images rejected {req.url}: {res}")
        shas[req.key] = res.image.sha256

    cpu0, t0 = _cpu(), time.perf_counter()
    fetch_images((ImageRequest(i, u) for i, u in enumerate(urls)), limits, on_result)
    return time.perf_counter() - t0, _cpu() - cpu0, shas


def run_baseline(urls: list[str], limits: ImageLimits) -> tuple[float, float, dict[int, str]]:
    shas: dict[int, str] = {}
    cpu0, t0 = _cpu(), time.perf_counter()
    with httpx.Client(timeout=limits.timeout_s) as client:
        for i, url in enumerate(urls):
            resp = client.get(url)
            resp.raise_for_status()
            res = process_image_bytes(resp.content, resp.headers.get("content-type"), limits)
            shas[i] = res.image.sha256
    return time.perf_counter() - t0, _cpu() - cpu0, shas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400, help="number of distinct images")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="server delay per request")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--per-host", type=int, default=8)
    ap.add_argument("--workers", type=int, default=None, help="decode threads (default: CPUs)")
    args = ap.parse_args()
    console = Console()

    t0 = time.perf_counter()
    images = make_images(args.n)
    gen_s = time.perf_counter() - t0
    mb = sum(map(len, images)) / 2**20
    console.print(
        f"generated {len(images)} distinct {SIZE[0]}x{SIZE[1]} JPEGs ({mb:.1f} MiB) in {gen_s:.1f}s; "
        f"{os.cpu_count()} CPUs, server latency {args.latency_ms:g} ms"
    )

    ctx = mp.get_context("fork")
    port_q: mp.Queue = ctx.Queue()
    server = ctx.Process(target=_serve, args=(images, args.latency_ms / 1000, port_q), daemon=True)
    server.start()
    try:
        port = port_q.get(timeout=30)
        urls = [f"http://127.0.0.1:{port}/img/{i}.jpg" for i in range(len(images))]
        limits = ImageLimits(
            concurrency=args.concurrency, per_host=args.per_host, workers=args.workers
        )
        # warm-up: imports (scipy for phash), first connection
        process_image_bytes(images[0], "image/jpeg", limits)
        httpx.get(urls[0]).raise_for_status()

        fast_s, fast_cpu, fast_shas = run_fetch_images(urls, limits)
        base_s, base_cpu, base_shas = run_baseline(urls, limits)
    finally:
        server.kill()
        server.join()

    if fast_shas != base_shas or len(fast_shas) != len(urls):
        raise SystemExit("fetch_images and the baseline disagree on the output bytes")
    n = len(urls)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    table = Table(title=f"image fetch: {n} images over loopback HTTP")
    for col in ("method", "seconds", "images/s", "CPU s/image (ms)", "MiB/s in"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for name, secs, cpu in (
        (f"fetch_images (c={args.concurrency})", fast_s, fast_cpu),
        ("baseline: sequential httpx.Client", base_s, base_cpu),
    ):
        table.add_row(
            name, f"{secs:.2f}", f"{n / secs:.1f}", f"{cpu / n * 1000:.1f}", f"{mb / secs:.1f}"
        )
    console.print(table)
    ratio = base_s / fast_s
    goal = "meets" if n / fast_s >= 50 else "MISSES"
    console.print(
        f"speed-up vs baseline: [bold]{ratio:.2f}x[/bold]   "
        f"fetch_images {n / fast_s:.1f} images/s ({goal} the 50 images/s goal)   "
        f"peak RSS {peak_mib:.0f} MiB   outputs identical: yes"
    )


if __name__ == "__main__":
    main()
