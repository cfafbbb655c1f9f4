"""Store → lake: the subset's posts and everything keyed by them, shard by shard.

Posts are taken in ``(ingest_seq, post_id)`` order and cut into shards of ``shard_rows``; every
other table follows the posts' shard numbering (shard k of ``post_images``, ``images``,
``scores/<slug>``... holds the rows of the posts in shard k of ``posts``). A shard whose done
marker has the same ids and content as what would be written is skipped, so a killed export
re-run writes only what is missing; shards past the end of a shrunken export are deleted. A
``scores``/``predictions`` shard that another writer made (an engine's worker: its marker's meta
has no ``writer`` of export's) is that writer's output and is left as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from mmner_data.lake.lake import Lake, table_fingerprint
from mmner_data.lake.layout import (
    MAX_SHARD_ROWS,
    LakeError,
    content_digest,
    digest_ids,
    model_slug,
    n_shards_for,
)
from mmner_data.lake.tables import (
    DROPS,
    ID_COLUMNS,
    IMAGES,
    POST_IMAGES,
    POSTS,
    PREDICTIONS,
    SCORES,
    SELECTION,
    STORE_TABLE,
    Column,
    columns,
    to_arrow,
)
from mmner_data.store import CorpusStore

SUBSETS = ("candidates", "kept", "all")
WRITER = "mmner-data lake export"  # in the meta of the derived shards export writes
IN_IDS = "(SELECT value FROM json_each(?))"


def subset_ids(store: CorpusStore, subset: str) -> list[str]:
    """The subset's post ids in export order (ingest_seq, post_id)."""
    if subset == "all":
        where, keep = "", None
    elif subset == "candidates":
        where, keep = "WHERE status IN ('candidate', 'kept')", None
    elif subset == "kept":
        from mmner_data.labels import eligible_posts

        where, keep = "WHERE status='kept'", {p.post_id for p in eligible_posts(store).posts}
    else:
        raise LakeError(f"unknown subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    rows = store.query(f"SELECT post_id FROM posts {where} ORDER BY ingest_seq, post_id")
    return [r[0] for r in rows if keep is None or r[0] in keep]


class _Exporter:
    def __init__(self, store: CorpusStore, lake: Lake):
        self.store, self.lake = store, lake
        self.cols: dict[str, list[Column]] = {
            t: columns(store, STORE_TABLE[t])
            for t in (POSTS, POST_IMAGES, DROPS, SELECTION, IMAGES, SCORES, PREDICTIONS)
        }
        self.models = [
            dict(r) for r in store.query("SELECT * FROM relevance_models ORDER BY model_id")
        ]
        self.versions = [
            r[0] for r in store.query("SELECT DISTINCT model_version FROM predictions ORDER BY 1")
        ]
        self.done: dict[str, dict[int, dict]] = {}
        self.tables: dict[str, dict[str, int]] = {}

    def _stats(self, table: str) -> dict[str, int]:
        return self.tables.setdefault(table, {"shards_written": 0, "shards_skipped": 0, "rows": 0})

    def _marker(self, table: str, shard: int) -> dict | None:
        if table not in self.done:
            self.done[table] = self.lake.done(table)
        return self.done[table].get(shard)

    def put_rows(
        self,
        table: str,
        shard: int,
        rows: pa.Table,
        id_columns: Sequence[str],
        meta: dict | None = None,
    ) -> None:
        stats = self._stats(table)
        stats["rows"] += rows.num_rows
        marker = self._marker(table, shard)
        derived = table.startswith((SCORES + "/", PREDICTIONS + "/"))
        if marker is not None and derived and marker["meta"].get("writer") != WRITER:
            # a derived shard another writer (an engine's worker) made: its output, left alone
            stats["shards_skipped"] += 1
            stats["shards_foreign"] = stats.get("shards_foreign", 0) + 1
            return
        if marker is not None:
            digest, content = table_fingerprint(rows, id_columns, meta)
            if marker["digest"] == digest and marker["content_digest"] == content:
                stats["shards_skipped"] += 1
                return
        self.lake.write_rows(table, shard, rows, id_columns=id_columns, meta=meta)
        stats["shards_written"] += 1

    def query(self, table: str, where: str, params: Sequence[object], order: str) -> pa.Table:
        cols = self.cols[table]
        names = ", ".join(c.name for c in cols)
        sql = f"SELECT {names} FROM {STORE_TABLE[table]} WHERE {where} ORDER BY {order}"
        return to_arrow(self.store.query(sql, params), cols)

    def shard(self, k: int, ids: list[str]) -> None:
        key = json.dumps(ids)
        posts = self.query(POSTS, f"post_id IN {IN_IDS}", [key], "ingest_seq, post_id")
        self.put_rows(POSTS, k, posts, ID_COLUMNS[POSTS])
        pimgs = self.query(POST_IMAGES, f"post_id IN {IN_IDS}", [key], "post_id, position")
        self.put_rows(POST_IMAGES, k, pimgs, ID_COLUMNS[POST_IMAGES])
        items = ids + [
            f"{p}#{n}"
            for p, n in zip(
                pimgs.column("post_id").to_pylist(),
                pimgs.column("position").to_pylist(),
                strict=True,
            )
        ]
        drops = self.query(DROPS, f"item_id IN {IN_IDS}", [json.dumps(items)], "stage, item_id")
        self.put_rows(DROPS, k, drops, ID_COLUMNS[DROPS])
        sel = self.query(SELECTION, f"post_id IN {IN_IDS}", [key], "post_id")
        self.put_rows(SELECTION, k, sel, ID_COLUMNS[SELECTION])
        self.images(k, pimgs)
        for model in self.models:
            mid = model["model_id"]
            rows = self.query(SCORES, f"model_id=? AND post_id IN {IN_IDS}", [mid, key], "post_id")
            meta = {
                "model_version": mid,
                "model_id": mid,
                "relevance_model": model,
                "writer": WRITER,
            }
            self.put_rows(f"{SCORES}/{model_slug(mid)}", k, rows, ID_COLUMNS[SCORES], meta)
        for version in self.versions:
            rows = self.query(
                PREDICTIONS, f"model_version=? AND post_id IN {IN_IDS}", [version, key], "post_id"
            )
            self.put_rows(
                f"{PREDICTIONS}/{model_slug(version)}",
                k,
                rows,
                ID_COLUMNS[PREDICTIONS],
                {"model_version": version, "writer": WRITER},
            )

    def images(self, k: int, pimgs: pa.Table) -> None:
        shas = list(
            dict.fromkeys(
                s
                for s, status in zip(
                    pimgs.column("sha256").to_pylist(),
                    pimgs.column("status").to_pylist(),
                    strict=True,
                )
                if status == "ok" and s
            )
        )
        found = {
            r["sha256"]: r
            for r in self.store.query(
                f"SELECT * FROM images WHERE sha256 IN {IN_IDS}", [json.dumps(shas)]
            )
        }
        missing = [s for s in shas if s not in found]
        if missing:
            raise LakeError(f"the store has no images row for {missing[0]} (a damaged store?)")
        names = [c.name for c in self.cols[IMAGES]]
        rows = [{n: found[s][n] for n in names} for s in shas]
        stats = self._stats(IMAGES)
        marker = self._marker(IMAGES, k)
        if marker is not None:  # the same images as last time, less those it had to skip
            meta = marker["meta"]
            bad = meta.get("skipped") or {}
            kept = [r for r in rows if r["sha256"] not in bad]
            if marker["digest"] == digest_ids(r["sha256"] for r in kept) and marker[
                "content_digest"
            ] == content_digest(kept, meta or None):
                stats["shards_skipped"] += 1
                stats["rows"] += len(kept)
                stats["images_skipped"] = stats.get("images_skipped", 0) + len(bad)
                return
        paths = {s: found[s]["path"] for s in shas}
        # Filled while the tar is written, before the marker that records it (write_images
        # writes the marker last): a damaged file in the store is skipped and named, not fatal.
        meta_out: dict = {}
        index = self.lake.write_images(
            IMAGES, k, self._image_bytes(rows, paths, meta_out), meta_out
        )
        skipped = meta_out.get("skipped") or {}
        stats["rows"] += int(index["rows"])
        stats["images_skipped"] = stats.get("images_skipped", 0) + len(skipped)
        stats["shards_written"] += 1

    def _image_bytes(
        self, rows: list[dict], paths: dict[str, str], meta: dict
    ) -> Iterator[tuple[dict, bytes]]:
        """Each row with its file's bytes; a file that cannot be read or does not match its
        sha256 is left out and recorded in ``meta["skipped"]`` (sha256 → reason)."""
        for row in rows:
            path = self.store.resolve_image(paths[row["sha256"]])
            try:
                data = path.read_bytes()
            except OSError as exc:
                meta.setdefault("skipped", {})[row["sha256"]] = f"unreadable: {exc.strerror or exc}"
                continue
            if hashlib.sha256(data).hexdigest() != row["sha256"]:
                meta.setdefault("skipped", {})[row["sha256"]] = "bytes do not match the sha256"
                continue
            yield row, data

    def remove_stale(self, n_shards: int) -> int:
        """Delete shards numbered n_shards and up (an earlier, longer export left them)."""
        removed = 0
        tables = [POSTS, POST_IMAGES, DROPS, SELECTION, IMAGES]
        tables += [f"{SCORES}/{model_slug(m['model_id'])}" for m in self.models]
        tables += [f"{PREDICTIONS}/{model_slug(v)}" for v in self.versions]
        for table in tables:
            for shard in sorted(self.lake.shards(table)):
                if shard >= n_shards and self.lake.drop_shard(table, shard):
                    removed += 1
        return removed


def export_store(
    store: CorpusStore,
    lake: Lake,
    *,
    subset: str = "candidates",
    shard_rows: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write the subset's posts and their rows to ``lake``; ``progress(n)`` after each shard.

    ``subset``: ``candidates`` (posts with status candidate or kept), ``kept`` (eligible for
    labelling: kept by collect and, when the filter ran, by the filter) or ``all``.
    """
    if subset not in SUBSETS:
        raise LakeError(f"unknown subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    if isinstance(shard_rows, bool) or not isinstance(shard_rows, int):
        raise LakeError("shard_rows must be an integer")
    if not 1 <= shard_rows <= MAX_SHARD_ROWS:
        raise LakeError(f"shard_rows must be 1..{MAX_SHARD_ROWS}, not {shard_rows}")
    ids = subset_ids(store, subset)
    n_shards = n_shards_for(len(ids), shard_rows)
    exporter = _Exporter(store, lake)
    lake.ensure_root()
    for k in range(n_shards):
        chunk = ids[k * shard_rows : (k + 1) * shard_rows]
        exporter.shard(k, chunk)
        if progress is not None:
            progress(len(chunk))
    removed = exporter.remove_stale(n_shards)
    tables = dict(sorted(exporter.tables.items()))
    return {
        "root": lake.root,
        "subset": subset,
        "shard_rows": shard_rows,
        "shards": n_shards,
        "posts": len(ids),
        "tables": tables,
        "shards_written": sum(t["shards_written"] for t in tables.values()),
        "shards_skipped": sum(t["shards_skipped"] for t in tables.values()),
        "relevance_models": {model_slug(m["model_id"]): m["model_id"] for m in exporter.models},
        "model_versions": {model_slug(v): v for v in exporter.versions},
        "stale_shards_removed": removed,
    }
