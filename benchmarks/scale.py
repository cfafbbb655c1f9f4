"""Benchmark: the same work through the local engine and through Ray with 1 and 2 workers.

For each stage the same input runs at two sizes, ``--repeat`` times each (median); a line through
the two medians separates a run's **fixed overhead** (the intercept: Ray Data planning, actor
start-up and model loading, lake export) from its **steady-state throughput** (the slope). The
Ray cluster's own start (``ray.init``) is measured once and shown apart.

* ``dedup``: near-duplicate text links of synthetic posts (``benchmarks/dedup.py``'s corpus):
  ``collect.dedup.near_text_pairs`` vs ``engines.ray.text_pairs``; the links must be identical.
* ``fetch``: images from loopback servers with ``--latency-ms`` per request over ``--hosts``
  ports (``benchmarks/fetch.py``'s server): ``collect.images.fetch_images`` vs the Ray engine's
  host-partitioned fetch through the lake; the images must be identical.
* ``score``: CLIP scoring of kept posts (``benchmarks/clip_filter.py``'s store; the tiny
  random-weight CLIP of the tests, so this measures the engine's cost per pair, not a model):
  ``filter.pipeline.run_filter`` vs the same with the Ray scoring hook (lake export included);
  the scores must be identical.

On a 2-core machine this measures overhead honestly, not a speed-up: the Ray workers share the
same two cores with the driver, so Ray's throughput can only match the local engine's at best.

    python benchmarks/scale.py                       # all stages, small sizes (~10 min on 2 cores)
    python benchmarks/scale.py --stages dedup --sizes 20000,80000 --repeat 3
    python benchmarks/scale.py --json results.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from mmner_data.engines import EngineSettings  # noqa: E402

console = Console(width=120)
CONFIGS = [("local", None), ("ray, 1 worker", 1), ("ray, 2 workers", 2)]


def fit(sizes: list[int], seconds: list[float]) -> tuple[float, float]:
    """``(overhead s, items/s)`` of the line through (size, median seconds) at two sizes."""
    (n0, n1), (t0, t1) = sizes, seconds
    rate = (n1 - n0) / (t1 - t0) if t1 > t0 else float("inf")
    return max(0.0, t0 - n0 / rate), rate


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


# --------------------------------------------------------------------------- stages


def dedup_case(n: int, tmp: Path) -> tuple[Callable[[int | None], Any], Callable[[Any], Any]]:
    from dedup import make_posts, text_key

    from mmner_data.collect.dedup import DedupSettings, near_text_pairs
    from mmner_data.engines import ray as rx

    keys = list(dict.fromkeys(text_key(p.text) for p in make_posts(n, seed=0)))
    settings = DedupSettings()

    def run(workers: int | None) -> Any:
        if workers is None:
            return near_text_pairs(keys, settings)
        eng = EngineSettings(name="ray", workers=workers, lake=str(tmp / "lake"))
        return rx.text_pairs(keys, settings, eng)

    return run, lambda pairs: pairs.tobytes()


def fetch_case(
    n: int, tmp: Path, urls: list[str]
) -> tuple[Callable[[int | None], Any], Callable[[Any], Any]]:
    from fetch import LOOPBACK

    from mmner_data.collect.images import ImageLimits, ImageRequest, fetch_images
    from mmner_data.engines.stages import fetch_on_ray

    limits = ImageLimits()
    reqs = [ImageRequest(key=(f"p{i}", 0), url=u, policy=LOOPBACK) for i, u in enumerate(urls[:n])]

    def run(workers: int | None) -> Any:
        got: dict[Any, str] = {}

        def on_result(req: Any, res: Any) -> None:
            got[req.key] = getattr(getattr(res, "image", None), "sha256", None) or res.reason

        if workers is None:
            fetch_images(reqs, limits, on_result)
        else:
            eng = EngineSettings(
                name="ray", workers=workers, lake=str(tmp / f"lake-{time.time_ns()}")
            )
            fetch_on_ray(reqs, limits, on_result, eng, tmp)
        return got

    return run, lambda got: sorted(got.items())


def score_case(n: int, tmp: Path) -> tuple[Callable[[int | None], Any], Callable[[Any], Any]]:
    from clip_filter import build_store
    from tiny_clip import write_tiny_clip

    from mmner_data.engines.stages import clip_scorer_on_ray
    from mmner_data.filter.pipeline import run_filter
    from mmner_data.filter.settings import FilterSettings
    from mmner_data.store import CorpusStore

    template = tmp / f"store-{n}"
    if not template.exists():
        build_store(template, n).close()
    model = write_tiny_clip(tmp / "clip")
    settings = FilterSettings(model=str(model), device="cpu", num_workers=1, keep_top=1.0)

    def run(workers: int | None) -> Any:
        store = tmp / f"run-{time.time_ns()}"
        shutil.copytree(template, store)
        score = None
        if workers is not None:
            eng = EngineSettings(name="ray", workers=workers, lake=str(store / "lake"))
            score = clip_scorer_on_ray(eng)
        with CorpusStore(store) as st:
            run_filter(st, settings, score=score, write_report=False)
            return st.query("SELECT post_id, score FROM relevance ORDER BY post_id")

    return run, lambda rows: [tuple(r) for r in rows]


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stages", default="dedup,fetch,score")
    ap.add_argument("--sizes", default="", help="two sizes for every stage (default per stage)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--latency-ms", type=float, default=100.0)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    default_sizes = {"dedup": [5000, 20000], "fetch": [200, 800], "score": [200, 800]}
    stages = [s for s in args.stages.split(",") if s]

    from mmner_data.engines import ray as rx

    tmp = Path(tempfile.mkdtemp(prefix="mmner-scale-"))
    server = None
    urls: list[str] = []
    report: dict[str, Any] = {"cpus": os.cpu_count(), "repeat": args.repeat, "stages": {}}
    try:
        if "fetch" in stages:
            from fetch import _serve, make_images

            n_max = max(int(x) for x in (args.sizes or "0,800").split(","))
            images = make_images(n_max or 800)
            ctx = mp.get_context("fork")
            port_q: mp.Queue = ctx.Queue()
            server = ctx.Process(
                target=_serve,
                args=(images, args.latency_ms / 1000, args.hosts, port_q),
                daemon=True,
            )
            server.start()
            ports = port_q.get(timeout=60)
            urls = [
                f"http://127.0.0.1:{ports[i % len(ports)]}/img/{i}.jpg" for i in range(len(images))
            ]
        cluster = rx.session(EngineSettings(name="ray"))  # held open for the whole run
        _, init_s = timed(cluster.__enter__)
        report["ray_init_s"] = round(init_s, 2)
        console.print(f"ray.init (local cluster, once): {init_s:.1f} s; {os.cpu_count()} CPUs")
        table = Table(title=f"engines, median of {args.repeat} (fixed overhead + steady state)")
        for col in ("stage", "engine", "sizes", "median s", "overhead s", "items/s", "vs local"):
            table.add_column(col, justify="left" if col in ("stage", "engine") else "right")
        for stage in stages:
            sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else default_sizes[stage]
            cases = {}
            for n in sizes:
                if stage == "dedup":
                    cases[n] = dedup_case(n, tmp)
                elif stage == "fetch":
                    cases[n] = fetch_case(n, tmp, urls)
                else:
                    cases[n] = score_case(n, tmp)
            local_rate = None
            ref: dict[int, Any] = {}
            for name, workers in CONFIGS:
                medians = []
                for n in sizes:
                    run, key = cases[n]
                    times = []
                    for _ in range(args.repeat):
                        out, s = timed(lambda run=run, w=workers: run(w))
                        times.append(s)
                        k = key(out)
                        if n not in ref:
                            ref[n] = k
                        elif k != ref[n]:
                            raise SystemExit(f"{stage}: {name} differs from local at n={n}")
                    medians.append(statistics.median(times))
                overhead, rate = fit(sizes, medians)
                local_rate = local_rate or rate
                report["stages"].setdefault(stage, {})[name] = {
                    "sizes": sizes,
                    "median_s": [round(t, 3) for t in medians],
                    "overhead_s": round(overhead, 2),
                    "items_per_s": round(rate, 1),
                }
                table.add_row(
                    stage,
                    name,
                    ",".join(map(str, sizes)),
                    " / ".join(f"{t:.2f}" for t in medians),
                    f"{overhead:.1f}",
                    f"{rate:,.0f}",
                    f"{rate / local_rate:.2f}x",
                )
                console.print(f"{stage} / {name}: {overhead:.1f} s + {rate:,.0f} items/s")
        console.print(table)
        console.print("results identical across engines (checked on every run)")
    finally:
        if server is not None:
            server.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
