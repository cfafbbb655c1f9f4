"""The Ray engine's drivers: plan shard tasks from the store, run them, import their output.

Each stage keeps the store as its source of truth and the local engine's write path:

* image fetch: pending requests grouped by host (``collect.images.host_key``), hosts spread over
  partitions by a stable hash; each partition fetches into ``engine/fetch/<batch>/`` and
  the driver records every result through the collect stage's own ``on_result``;
* dedup: text link finding on Ray (:func:`mmner_data.engines.ray.text_pairs`), the global
  union-find and decisions in ``collect.dedup.find_duplicates`` as always;
* filter and preannotate: the store's pending items, exported to the lake
  (:func:`mmner_data.lake.export_store`, incremental), are scored / predicted per posts shard
  by actor pools into ``engine/scores/<model>`` / ``engine/predictions/<model>`` (apart from the
  tables ``lake export`` writes), and imported shard by shard.

Resume: every output shard's done marker records a digest of the items it was planned for; a
rerun skips a shard whose marker matches (importing it again is idempotent) and redoes the rest,
so a killed driver loses at most the shards in flight.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from mmner_data.engines import EngineSettings, require_ray

__all__ = [
    "clip_scorer_on_ray",
    "collect_engine",
    "fetch_on_ray",
    "items_digest",
    "preannotate_on_ray",
    "predict_on_ray",
    "score_on_ray",
    "text_pairs_on_ray",
]

Progress = Callable[[str, int, int | None], None]
#: The engine's own output tables (``engine/scores/<model>``, ``engine/predictions/<model>``,
#: ``engine/fetch/<batch>``): apart from what ``lake export`` writes, so neither overwrites the
#: other's shards.
ENGINE_TABLES = "engine"


def items_digest(items: Iterable[Any]) -> str:
    """A digest of a task's planned items (JSON of each, in order)."""
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps(it, sort_keys=True, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def _ray() -> Any:
    require_ray()
    from mmner_data.engines import ray as rx

    return rx


# --------------------------------------------------------------------------- collect: fetch


def fetch_on_ray(
    requests: Sequence[Any],
    limits: Any,
    on_result: Callable[[Any, Any], None],
    engine: EngineSettings,
    store_root: Any,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Fetch ``requests`` (``collect.images.ImageRequest`` keyed ``(post_id, position)``) on Ray;
    call ``on_result(request, ProcessedImage | ImageRejected)`` in this process for each.

    Output left by a killed run (``engine/fetch/<batch>`` shards with a done marker) is imported first
    for the requests still pending, then removed; the rest is partitioned by host and fetched.
    """
    from mmner_data.collect.images import host_key
    from mmner_data.engines.work import FetchShard
    from mmner_data.lake import Lake, shard_of

    rx = _ray()
    lake = Lake(engine.lake_root(store_root))
    by_key = {req.key: req for req in requests}
    counts = {"resumed": 0, "fetched": 0, "partitions": 0}
    for table in lake.tables(f"{ENGINE_TABLES}/fetch"):
        for shard in lake.done(f"{table}/results"):
            counts["resumed"] += _import_fetch(lake, table, shard, by_key, on_result, progress)
        _remove_fetch(lake, table)
    if not by_key:
        return counts
    host_of = {key: host_key(req.url) for key, req in by_key.items()}
    hosts = set(host_of.values())
    batch = items_digest([(k[0], k[1], by_key[k].url) for k in sorted(by_key)])[:16]
    table = f"{ENGINE_TABLES}/fetch/{batch}"
    with rx.session(engine):
        # Several partitions per worker so a slow host does not hold a whole worker's share.
        n_parts = max(1, min(len(hosts), 4 * rx.cluster_workers(engine)))
        parts: dict[int, list[tuple[str, int, str, Any]]] = {}
        for key in sorted(by_key):
            req = by_key[key]
            parts.setdefault(shard_of(host_of[key], n_parts), []).append(
                (key[0], key[1], req.url, req.policy)
            )
        tasks = [
            {"lake": lake.root, "table": table, "shard": k, "requests": reqs}
            for k, reqs in sorted(parts.items())
        ]
        counts["partitions"] = len(tasks)
        for res in rx.map_shards(tasks, FetchShard, (limits,), engine, actors=False):
            counts["fetched"] += _import_fetch(
                lake, table, res["shard"], by_key, on_result, progress
            )
    _remove_fetch(lake, table)
    return counts


def _remove_fetch(lake: Any, table: str) -> None:
    """Drop a fetch batch's shards once recorded in the store (markers first, then data)."""
    for sub in (f"{table}/results", f"{table}/images"):
        for shard in sorted(lake.shards(sub)):
            lake.drop_shard(sub, shard)


def _import_fetch(
    lake: Any,
    table: str,
    shard: int,
    pending: dict[Any, Any],
    on_result: Callable[[Any, Any], None],
    progress: Callable[[int], None] | None,
) -> int:
    """Record one finished fetch shard's results for the requests still ``pending`` (popped)."""
    from mmner_data.collect.images import ImageRejected, ProcessedImage
    from mmner_data.schema import Image

    rows = lake.read_rows(f"{table}/results", shard).to_pylist()
    wanted = {
        r["sha256"]
        for r in rows
        if r["status"] == "ok" and (r["post_id"], r["position"]) in pending
    }
    images: dict[str, tuple[dict, bytes]] = {}
    if wanted:
        for meta, data in lake.read_images(f"{table}/images", shard):
            if meta["sha256"] in wanted:
                images[meta["sha256"]] = (meta, data)
    n = 0
    for r in rows:
        req = pending.pop((r["post_id"], r["position"]), None)
        if req is None:
            continue
        if r["status"] == "ok" and r["sha256"] in images:
            meta, data = images[r["sha256"]]
            image = Image(**{f.name: meta.get(f.name) for f in dataclasses.fields(Image)})
            result: Any = ProcessedImage(data=data, image=image)
        elif r["status"] == "ok":
            result = ImageRejected("connection_error", "the image went missing from the lake shard")
        else:
            result = ImageRejected(r["reason"] or "connection_error", r["detail"] or "")
        on_result(req, result)
        n += 1
        if progress:
            progress(1)
    return n


# --------------------------------------------------------------------------- collect: dedup


def text_pairs_on_ray(engine: EngineSettings) -> Callable[[Sequence[str], Any], Any]:
    """A ``text_pairs`` for ``collect.dedup.find_duplicates`` that finds the links on Ray."""
    rx = _ray()

    def pairs(keys: Sequence[str], settings: Any) -> Any:
        with rx.session(engine):
            return rx.text_pairs(keys, settings, engine)

    return pairs


@contextlib.contextmanager
def collect_engine(engine: EngineSettings, store_root: Any) -> Iterator[Any]:
    """``collect.pipeline.Engine`` hooks that fetch and find text links on Ray, in one session."""
    from mmner_data.collect.pipeline import Engine

    rx = _ray()

    def fetch(requests: Any, limits: Any, on_result: Any, progress: Any = None) -> Any:
        return fetch_on_ray(requests, limits, on_result, engine, store_root, progress)

    with rx.session(engine):
        yield Engine(name="ray", fetch=fetch, text_pairs=text_pairs_on_ray(engine))


# --------------------------------------------------------------------------- lake input


def _exported(store: Any, engine: EngineSettings, progress: Progress | None) -> tuple[Any, dict]:
    """Export the store's candidates to the lake (done shards skipped); post_id → shard."""
    from mmner_data.lake import Lake, export_store

    lake = Lake(engine.lake_root(store.root))
    export_store(
        store,
        lake,
        subset="candidates",
        shard_rows=engine.shard_rows,
        progress=(lambda n: progress("export to lake", n, None)) if progress else None,
    )
    where: dict[str, int] = {}
    for shard in lake.done("posts"):
        for pid in lake.read_rows("posts", shard, columns=["post_id"]).column(0).to_pylist():
            where[pid] = shard
    return lake, where


def _plan(
    lake: Any, table: str, where: dict[str, int], items: Sequence[tuple]
) -> tuple[list[dict], list[int]]:
    """Tasks per posts shard for ``items`` (``post_id`` first); shards whose output marker was
    written for exactly these items are returned as done instead."""
    by_shard: dict[int, list[tuple]] = {}
    for it in items:
        by_shard.setdefault(where[it[0]], []).append(it)
    todo, done = [], []
    markers = lake.done(table)
    for shard, its in sorted(by_shard.items()):
        its.sort(key=lambda it: it[0])
        digest = items_digest(its)
        if markers.get(shard, {}).get("meta", {}).get("input") == digest:
            done.append(shard)
            continue
        todo.append(
            {
                "lake": lake.root,
                "table": table,
                "shard": shard,
                "items": its,
                "input": digest,
                "images_table": "images",
                "images_shard": shard,
            }
        )
    return todo, done


def _run_planned(
    done: list[int],
    todo: list[dict[str, Any]],
    commit: Callable[[int], None],
    factory: Callable[..., Any],
    args: tuple,
    engine: EngineSettings,
    prepare: Callable[[dict[str, Any]], bytes],
) -> None:
    """Commit the shards already done, then run the rest on model actors (a CPU ``prepare``
    ahead of them) and commit each as it finishes."""
    for shard in done:
        commit(shard)
    if todo:
        rx = _ray()
        with rx.session(engine):
            for res in rx.map_shards(todo, factory, args, engine, prepare=prepare, uses_gpu=True):
                commit(res["shard"])


# --------------------------------------------------------------------------- filter


def score_on_ray(
    store: Any,
    scorer_args: tuple,
    model_id: str,
    pairs: Sequence[Any],
    engine: EngineSettings,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score ``pairs`` (``filter.scoring.Pair``) with CLIP actors; commit each shard's scores
    and unreadable-image drops through ``filter.scoring.commit_scores``."""
    from mmner_data.engines.work import ScoreShard, decode_for_scoring
    from mmner_data.filter.scoring import commit_scores
    from mmner_data.lake import model_slug

    require_ray()  # before the export: a missing Ray is one line, not a wasted export
    t0 = time.perf_counter()
    lake, where = _exported(store, engine, progress)
    by_id = {p.post_id: p for p in pairs}
    missing = [p.post_id for p in pairs if p.post_id not in where]
    items = [(p.post_id, p.lang, p.text, p.image_sha256) for p in pairs if p.post_id in where]
    table = f"{ENGINE_TABLES}/scores/{model_slug(model_id)}"
    todo, done = _plan(lake, table, where, items)
    counts: Counter[str] = Counter(unreadable=0, scored=0, shards_skipped=len(done))
    unreadable: list[str] = []

    def commit(shard: int) -> None:
        rows = lake.read_rows(table, shard).to_pylist()
        scored = [
            (by_id[r["post_id"]], r["score"])
            for r in rows
            if r["post_id"] in by_id and r["error"] is None
        ]
        failed = [
            (by_id[r["post_id"]], r["error"])
            for r in rows
            if r["post_id"] in by_id and r["error"] is not None
        ]
        commit_scores(store, model_id, scored, failed)
        counts["scored"] += len(scored)
        counts["unreadable"] += len(failed)
        unreadable.extend(pair.post_id for pair, _ in failed)
        counts["batches"] += 1
        if progress:
            progress("score", len(rows), len(pairs))

    _run_planned(done, todo, commit, ScoreShard, scorer_args, engine, decode_for_scoring)
    return {
        **counts,
        "missing_from_lake": len(missing),
        "seconds": time.perf_counter() - t0,
        "unreadable_items": unreadable,
    }


def clip_scorer_on_ray(engine: EngineSettings) -> Callable[..., Any]:
    """A ``score`` hook for ``filter.pipeline.run_filter``: the pending pairs scored by CLIP
    actors on Ray; returns the ``ScoreSummary`` the local loop would."""
    from mmner_data.filter.scoring import ScoreSummary, register_model

    def score(store: Any, settings: Any, spec: Any, pairs: list[Any], progress: Any) -> Any:
        register_model(store, spec)
        threads = max(1, int(engine.num_cpus))
        args = (
            spec,
            settings.device,
            settings.precision,
            settings.cache_dir,
            settings.batch_size,
            threads,
        )
        res = score_on_ray(store, args, spec.model_id, pairs, engine, progress)
        return ScoreSummary(
            model_id=spec.model_id,
            pending=len(pairs),
            scored=res["scored"],
            unreadable=res["unreadable"],
            batches=res["batches"],
            seconds=res["seconds"],
            unreadable_items=res["unreadable_items"],
        )

    score.engine = "ray"  # type: ignore[attr-defined]  # recorded in the run's params
    return score


# --------------------------------------------------------------------------- preannotate


def predict_on_ray(
    store: Any,
    predictor_args: tuple,
    model_version: str,
    items: Sequence[tuple[str, str | None, str, str | None]],
    engine: EngineSettings,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Predict ``items`` (``(post_id, lang, text, image sha256 | None)``) with predictor actors;
    return the prediction rows of every shard (already written to the store by ``commit``)."""
    from mmner_data.engines.work import PredictShard, fetch_for_predict
    from mmner_data.lake import model_slug
    from mmner_data.preannotate.predict import write_prediction_rows

    require_ray()  # before the export: a missing Ray is one line, not a wasted export
    lake, where = _exported(store, engine, progress)
    wanted = {it[0] for it in items}
    table = f"{ENGINE_TABLES}/predictions/{model_slug(model_version)}"
    todo, done = _plan(lake, table, where, [it for it in items if it[0] in where])
    out: list[dict[str, Any]] = []

    def commit(shard: int) -> None:
        rows = [r for r in lake.read_rows(table, shard).to_pylist() if r["post_id"] in wanted]
        rows = [r for r in rows if r["model_version"] == model_version]
        write_prediction_rows(store, rows)
        out.extend(rows)
        if progress:
            progress("preannotate", len(rows), len(items))

    _run_planned(done, todo, commit, PredictShard, predictor_args, engine, fetch_for_predict)
    return out


def preannotate_on_ray(engine: EngineSettings) -> Callable[..., dict[str, Any]]:
    """``preannotate.predict.run_preannotate`` with the predictions made by actors on Ray."""

    def run(store: Any, model: str, **kw: Any) -> dict[str, Any]:
        return _preannotate(store, model, engine=engine, **kw)

    return run


def _preannotate(
    st: Any,
    model: str,
    *,
    engine: EngineSettings,
    batch_size: int = 32,
    device: str | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
    entity_types: Sequence[str] | None = None,
    label_map: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Same summary and store writes as ``run_preannotate``; one ``runs`` row."""
    from mmner_data.preannotate.predict import prediction_summary, predictor_version, select_rows
    from mmner_data.stage import recorded_run

    version = predictor_version(model)
    items = [
        (r["post_id"], r["lang"], r["text"], r["sha256"])
        for r in select_rows(st, version, overwrite=overwrite)
    ]
    params = {"model": model, "model_version": version, "batch_size": batch_size, "engine": "ray"}
    with recorded_run(st, "preannotate", params) as rec:
        t0 = time.perf_counter()
        threads = max(1, int(engine.num_cpus))
        args = (model, device, batch_size, list(entity_types or []) or None, label_map, threads)
        rows = predict_on_ray(st, args, version, items, engine, progress) if items else []
        by_label: Counter[str] = Counter()
        for r in rows:
            by_label.update(s["label"] for s in json.loads(r["spans_json"]))
        summary = prediction_summary(
            st,
            model,
            version,
            list(entity_types or sorted(by_label)),
            predicted=len(rows),
            with_image=sum(bool(r["has_image"]) for r in rows),
            by_label=by_label,
            unmapped=sum(int(r["unmapped"]) for r in rows),
            tokens=sum(int(r["n_words"]) for r in rows),
            seconds=time.perf_counter() - t0,
        )
        summary["engine"] = "ray"
        rec.summary = summary
    return summary
