"""The one module that calls Ray (``pip install 'mmner-data[ray]'``).

* :func:`session` joins a cluster (``address`` / ``RAY_ADDRESS``) or starts a local one, offline
  (no usage stats, no dashboard), and shuts down only what it started.
* :func:`map_shards` runs a planned list of shard tasks through Ray Data: an optional CPU step
  ahead (image decoding) and a fixed pool of actors that load a model once each
  (``ActorPoolStrategy``, ``num_gpus`` per actor when the cluster has GPUs, fractional CPUs
  otherwise), or plain CPU tasks. Results stream back as shards finish, so the driver imports
  each one while the rest run. One task is one block (``repartition``), so every actor works.
* :func:`text_pairs` is dedup's text link finding: signatures and LSH buckets in parallel map
  tasks, a hash shuffle on the bucket value, candidate pairs per bucket partition, exact-Jaccard
  verification in parallel; the caller's global union-find then decides as the local engine.

Ray Data's API still moves (``concurrency=`` deprecated in 2.51, ``ray_remote_args`` going):
the range is pinned in pyproject.toml and nothing else imports ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from mmner_data.engines import EngineError, EngineSettings

try:
    import ray
    import ray.data
except ImportError as exc:  # pragma: no cover - the engine checks require_ray() first
    raise EngineError("--engine ray needs Ray Data: pip install 'mmner-data[ray]'") from exc

__all__ = ["cluster_gpus", "cluster_workers", "map_shards", "session", "text_pairs"]

log = logging.getLogger(__name__)
LOCAL_MIN_CPUS = 4
_local_cpus: int | None = None  # real CPUs when this process started a local cluster


@contextlib.contextmanager
def session(settings: EngineSettings) -> Iterator[None]:
    """Ray for the duration of a stage: joined or started here, and shut down if started here."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: no usage reports
    address = settings.resolved_address()
    if address:
        _reachable(address)  # even when Ray is up already: a wrong address is the user's error
    if ray.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "configure_logging": False,
    }
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # At least 4 logical CPUs, so that the actor pools plus Ray Data's own read,
            # repartition and shuffle tasks always find a slot (docs/scale.md: deadlocks).
            global _local_cpus
            _local_cpus = os.cpu_count() or 1
            ray.init(num_cpus=max(LOCAL_MIN_CPUS, _local_cpus), **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise EngineError(f"cannot start or join {where}: {exc}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield
    finally:
        _local_cpus = None
        ray.shutdown()


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in one line, and fast, when a ``host:port`` / ``ray://host:port`` cluster address does
    not answer (``ray.init`` would retry for a minute and print its own stack of warnings)."""
    import socket
    from urllib.parse import urlsplit

    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise EngineError(f"--ray-address {address!r}: give host:port or ray://host:port")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise EngineError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start one with "
            "`ray start --head`, or fix --ray-address / RAY_ADDRESS"
        ) from None


def cluster_workers(settings: EngineSettings) -> int:
    """Workers per stage: the setting, else what the cluster's CPUs hold at ``num_cpus`` each
    once one CPU is left free for Ray Data's own tasks (an actor pool that takes every CPU
    starves the repartition feeding it: a deadlock). Never more than that either."""
    cpus = float(ray.cluster_resources().get("CPU", 1))
    most = max(1, int((cpus - 1) / settings.num_cpus))
    if settings.workers:
        return min(settings.workers, most)
    # A local cluster on a small machine: one worker per real core (its logical CPUs are padded).
    return min(most, _local_cpus) if _local_cpus else most


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0))


def _prepare(
    batch: dict[str, np.ndarray], fn: Callable[[dict[str, Any]], bytes]
) -> dict[str, np.ndarray]:
    """Ray Data UDF (CPU tasks): a task row → the row plus the bytes ``fn(task)`` returns."""
    payloads = [fn(pickle.loads(t)) for t in batch["task"]]
    return {"task": batch["task"], "payload": np.array(payloads, dtype=object)}


def _run_tasks(
    batch: dict[str, np.ndarray], factory: Callable[..., Any], args: tuple
) -> dict[str, np.ndarray]:
    """Ray Data UDF (CPU tasks): ``factory(*args)(task)`` per task row."""
    return _Actor(factory, args)(batch)


class _Actor:
    """Ray Data UDF class: builds ``factory(*args)`` once per actor, then calls it per task."""

    def __init__(self, factory: Callable[..., Any], args: tuple) -> None:
        self.worker = factory(*args)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        for i, t in enumerate(batch["task"]):
            task = pickle.loads(t)
            if "payload" in batch:
                results.append(self.worker(task, batch["payload"][i]))
            else:
                results.append(self.worker(task))
        return {"result": np.array([pickle.dumps(r) for r in results], dtype=object)}


def map_shards(
    tasks: Sequence[dict[str, Any]],
    factory: Callable[..., Any],
    args: tuple,
    settings: EngineSettings,
    *,
    prepare: Callable[[dict[str, Any]], bytes] | None = None,
    actors: bool = True,
    uses_gpu: bool = False,
) -> Iterator[dict[str, Any]]:
    """Run ``factory(*args)(task[, payload])`` over ``tasks``; yield each result as it finishes.

    ``prepare(task)`` (a CPU task ahead) produces the payload; with ``actors`` the worker is built
    once per actor of a fixed pool, else once per task.
    """
    if not tasks:
        return
    n = len(tasks)
    workers = min(cluster_workers(settings), n)
    ds = ray.data.from_items(
        [{"task": pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL)} for t in tasks]
    ).repartition(n)
    if prepare is not None:
        ds = ds.map_batches(
            _prepare,
            fn_args=(prepare,),
            batch_size=1,
            compute=ray.data.TaskPoolStrategy(size=workers),
            num_cpus=settings.num_cpus,
        )
    gpus = 0.0
    if uses_gpu:
        gpus = (
            settings.gpus_per_actor
            if settings.gpus_per_actor is not None
            else (1.0 if cluster_gpus() else 0.0)
        )
    if gpus:
        workers = min(workers, max(1, int(cluster_gpus() / gpus)))
    if actors:
        ds = ds.map_batches(
            _Actor,
            fn_constructor_args=(factory, args),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=settings.num_cpus,
            num_gpus=gpus or None,
        )
    else:
        ds = ds.map_batches(
            _run_tasks,
            fn_args=(factory, args),
            batch_size=1,
            compute=ray.data.TaskPoolStrategy(size=workers),
            num_cpus=settings.num_cpus,
        )
    for row in ds.iter_rows():
        yield pickle.loads(row["result"])


class _Buckets:
    def __init__(self, keys_ref: list, settings: Any) -> None:
        self.keys = ray.get(keys_ref[0])
        self.settings = settings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from mmner_data.engines.work import text_bucket_rows

        out = [
            text_bucket_rows(self.keys[lo:hi], int(lo), self.settings)
            for lo, hi in zip(batch["lo"], batch["hi"], strict=True)
        ]
        return {k: np.concatenate([o[k] for o in out]) for k in ("bucket", "idx")}


def _pairs_in_partition(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from mmner_data.collect.dedup import bucket_pairs

    pairs = bucket_pairs(np.asarray(batch["idx"], np.int64), np.asarray(batch["bucket"], np.uint64))
    return {"a": pairs[:, 0], "b": pairs[:, 1]}


class _Verify:
    def __init__(self, keys_ref: list, settings: Any) -> None:
        self.keys = ray.get(keys_ref[0])
        self.settings = settings

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from mmner_data.engines.work import verified_text_pairs

        pairs = np.unique(np.stack([batch["a"], batch["b"]], axis=1).astype(np.int64), axis=0)
        ok = verified_text_pairs(pairs, self.keys, self.settings)
        return {"a": ok[:, 0], "b": ok[:, 1]}


def text_pairs(keys: Sequence[str], dedup_settings: Any, settings: EngineSettings) -> np.ndarray:
    """Near-duplicate text pairs of ``keys`` (as ``collect.dedup.near_text_pairs``), on Ray."""
    n = len(keys)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    workers = cluster_workers(settings)
    keys_ref = [ray.put(list(keys))]  # in a list: passed as a reference, fetched by each worker
    step = max(1, min(settings.shard_rows, -(-n // workers)))
    spans = [{"lo": lo, "hi": min(n, lo + step)} for lo in range(0, n, step)]
    pool = ray.data.TaskPoolStrategy(size=workers)
    buckets = (
        ray.data.from_items(spans)
        .repartition(len(spans))
        .map_batches(
            _Buckets,
            fn_constructor_args=(keys_ref, dedup_settings),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(workers, len(spans))),
            num_cpus=settings.num_cpus,
        )
    )
    candidates = buckets.repartition(workers, keys=["bucket"]).map_batches(
        _pairs_in_partition, batch_size=None, compute=pool, num_cpus=settings.num_cpus
    )
    # A pair shares buckets in several bands: a second shuffle on the pair makes each unique
    # within one partition, so it is verified once.
    verified = candidates.repartition(workers, keys=["a", "b"]).map_batches(
        _Verify,
        fn_constructor_args=(keys_ref, dedup_settings),
        batch_size=None,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=settings.num_cpus,
    )
    parts = [
        np.stack([np.asarray(b["a"], np.int64), np.asarray(b["b"], np.int64)], axis=1)
        for b in verified.iter_batches(batch_size=None, batch_format="numpy")
        if len(b["a"])
    ]
    if not parts:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(parts), axis=0)
