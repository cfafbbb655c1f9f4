"""Lake → store: the kept subset (or all) back into a store, for annotation, agreement and export.

The lake is never trusted. Only shards with a valid done marker are read; every row is checked
(:mod:`mmner_data.lake.validate`); image bytes are read by the index's offset and size, checked
against their sha256 and header, and placed by the store itself (``put_image``: the path comes
from sha256 + format, never from the lake). A shard that fails any check is skipped whole and
recorded with its reason. Each posts shard (with its post_images, images, drops and selection)
is written in one transaction, each derived shard (scores, predictions) in another; rows already
in the store are left as they are (INSERT OR IGNORE) and scores/predictions are upserted, so an
import run twice adds nothing.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mmner_data.lake.images_tar import check_index_row, read_member
from mmner_data.lake.lake import Lake
from mmner_data.lake.layout import LakeError, part_name
from mmner_data.lake.tables import (
    DROPS,
    IMAGES,
    POST_IMAGES,
    POSTS,
    PREDICTIONS,
    SCORES,
    SELECTION,
    STORE_TABLE,
    Column,
    columns,
)
from mmner_data.lake.validate import (
    RULES,
    Invalid,
    check_image_header,
    check_rows,
    index_rule,
    model_rule,
    need_id,
    prediction_rule,
    relevance_rule,
)
from mmner_data.schema import Image
from mmner_data.store import CorpusStore

SUBSETS = ("kept", "all")
MAX_REASONS = 200
IN_IDS = "(SELECT value FROM json_each(?))"
PRIMARY_KEYS = {"relevance": ("post_id", "model_id"), "predictions": ("post_id", "model_version")}


class _Importer:
    def __init__(self, lake: Lake, store: CorpusStore, subset: str):
        self.lake, self.store, self.subset = lake, store, subset
        self.cols: dict[str, list[Column]] = {
            t: columns(store, STORE_TABLE[t])
            for t in (POSTS, POST_IMAGES, DROPS, SELECTION, IMAGES, SCORES, PREDICTIONS)
        }
        self.cols["relevance_models"] = columns(store, "relevance_models")
        self.done = {t: lake.done(t) for t in (POSTS, POST_IMAGES, IMAGES, DROPS, SELECTION)}
        # like labels.eligible_posts: the filter counts when it made a selection
        self.filter_applied = any(m["rows"] for m in self.done[SELECTION].values())
        self.new: Counter[str] = Counter()
        self.count: Counter[str] = Counter()
        self.skipped: list[dict[str, Any]] = []

    # -- helpers -----------------------------------------------------------------------------
    def skip(self, table: str, shard: int, reason: str) -> None:
        self.count["shards_skipped"] += 1
        if len(self.skipped) < MAX_REASONS:
            self.skipped.append({"table": table, "shard": shard, "reason": reason})

    def rows(self, table: str, shard: int, rule: Callable[[dict], None]) -> list[dict]:
        raw = self.lake.read_rows(table, shard).to_pylist()
        try:
            return check_rows(raw, self.cols[table], rule)
        except Invalid as exc:
            raise Invalid(f"{table} shard {shard}: {exc}") from None

    def existing(self, table: str, column: str, values: Iterable[str]) -> set[str]:
        sql = f"SELECT {column} FROM {table} WHERE {column} IN {IN_IDS}"
        return {r[0] for r in self.store.query(sql, [json.dumps(sorted(set(values)))])}

    # -- posts shards ------------------------------------------------------------------------
    def wanted(self, post: dict, selection: dict[str, dict]) -> bool:
        if self.subset == "all":
            return True
        if post["status"] != "kept":
            return False
        return not self.filter_applied or selection.get(post["post_id"], {}).get("kept") == 1

    def base_shard(self, k: int) -> int:
        for table in (POST_IMAGES, IMAGES) + ((SELECTION,) if self.filter_applied else ()):
            if k not in self.done[table]:
                raise Invalid(f"{table} shard {k} has no done marker (the export did not finish)")
        posts = self.rows(POSTS, k, RULES[POSTS])
        selection = {}
        if k in self.done[SELECTION]:
            selection = {r["post_id"]: r for r in self.rows(SELECTION, k, RULES[SELECTION])}
        chosen = [p for p in posts if self.wanted(p, selection)]
        ids = {p["post_id"] for p in chosen}
        pimgs = [r for r in self.rows(POST_IMAGES, k, RULES[POST_IMAGES]) if r["post_id"] in ids]
        drops = []
        if k in self.done[DROPS]:
            drops = [
                r
                for r in self.rows(DROPS, k, RULES[DROPS])
                if r["item_id"] in ids or r["item_id"].rsplit("#", 1)[0] in ids
            ]
        needed = list(dict.fromkeys(r["sha256"] for r in pimgs if r["sha256"]))
        have = self.existing("images", "sha256", needed)
        to_put = [s for s in needed if s not in have]
        index = self.image_index(k, to_put) if to_put else {}
        tar_size = self.done[IMAGES][k]["files"].get(part_name(k, "tar"), 0)
        where = f"{IMAGES} shard {k}"
        opened = self.lake.local_tar(IMAGES, k) if to_put else contextlib.nullcontext(None)
        with opened as fh:
            for sha in to_put:  # check every image before anything is written
                raw, image = index[sha]
                try:
                    check_image_header(image, read_member(fh, raw, tar_size, where))
                except Invalid as exc:
                    raise Invalid(f"{where}: {exc}") from None
            with self.store.transaction() as conn:
                self.new[POSTS] += _insert(conn, "posts", self.cols[POSTS], chosen)
                present = _existing(conn, "posts", "post_id", ids)
                self.count["post_conflicts"] += len(ids - present)
                before = conn.total_changes
                for sha in to_put:
                    raw, image = index[sha]
                    self.store.put_image(
                        conn, Image(**image), read_member(fh, raw, tar_size, where)
                    )
                self.new[IMAGES] += conn.total_changes - before
                for table, rows in ((POST_IMAGES, pimgs), (SELECTION, selection.values())):
                    keep = [r for r in rows if r["post_id"] in present]
                    self.new[table] += _insert(conn, STORE_TABLE[table], self.cols[table], keep)
                keep = [
                    r
                    for r in drops
                    if r["item_id"] in present or r["item_id"].rsplit("#", 1)[0] in present
                ]
                self.new[DROPS] += _insert(conn, "drops", self.cols[DROPS], keep)
        self.count["posts_in_lake"] += len(posts)
        self.count["posts_selected"] += len(chosen)
        self.count["shards_imported"] += 1
        return len(posts)

    def image_index(self, k: int, needed: Sequence[str]) -> dict[str, tuple[dict, dict]]:
        """sha256 → (index row, checked images row) for the images this shard must bring."""
        marker = self.done[IMAGES][k]
        tar_size = marker["files"].get(part_name(k, "tar"))
        if not isinstance(tar_size, int):
            raise Invalid(f"{IMAGES} shard {k}: its marker names no tar")
        raw = self.lake.read_rows(IMAGES, k).to_pylist()
        try:
            clean = check_rows(raw, self.cols[IMAGES], RULES[IMAGES])
            for r, image in zip(raw, clean, strict=True):
                problem = check_index_row(r, tar_size)
                if problem:
                    raise Invalid(problem)
                index_rule(r, image)
        except Invalid as exc:
            raise Invalid(f"{IMAGES} shard {k}: {exc}") from None
        index = {image["sha256"]: (r, image) for r, image in zip(raw, clean, strict=True)}
        for sha in needed:
            if sha not in index:
                raise Invalid(f"post_images shard {k} references image {sha}, not in {IMAGES}")
        return index

    # -- derived shards ----------------------------------------------------------------------
    def model_row(self, meta: dict, fallback: dict | None) -> dict:
        """The relevance_models row of a scores shard: its marker's, else one from another
        marker of the same table (``fallback``), else the store's."""
        model = meta.get("relevance_model")
        if not isinstance(model, dict) and fallback is not None:
            model = fallback
        if not isinstance(model, dict):
            mid = meta.get("model_id", meta.get("model_version"))
            found = self.store.query("SELECT * FROM relevance_models WHERE model_id=?", [mid])
            if not isinstance(mid, str) or not found:
                raise Invalid(
                    "its marker has no relevance_model row and the store knows no such model"
                )
            model = dict(found[0])
        (row,) = check_rows([model], self.cols["relevance_models"], model_rule)
        if meta.get("model_id", row["model_id"]) != row["model_id"]:
            raise Invalid("its marker's model_id and relevance_model disagree")
        return row

    def derived(self, table: str, k: int, marker: dict, model: dict | None = None) -> None:
        meta = marker["meta"]
        raw = self.lake.read_rows(table, k).to_pylist()
        post_ids = [r.get("post_id") for r in raw if isinstance(r.get("post_id"), str)]
        # an engine's shards may leave the time out (the marker's then) and hold rows it could
        # not score (score null: not a relevance row)
        stamp = "scored_at" if table.startswith(SCORES + "/") else "created_at"
        raw = [{**r, stamp: r.get(stamp) or marker["written_at"]} for r in raw]
        try:
            if table.startswith(SCORES + "/"):
                model_row = self.model_row(meta, model)
                mid = model_row["model_id"]
                scored = [r for r in raw if r.get("score") is not None]
                rows = check_rows(scored, self.cols[SCORES], relevance_rule(mid))
                self.count["derived_rows_without_score"] += len(raw) - len(scored)
                store_table, models = "relevance", [model_row]
            else:
                version = meta.get("model_version")
                need_id({"model_version": version}, "model_version")
                lengths = {
                    r[0]: int(r[1])
                    for r in self.store.query(
                        f"SELECT post_id, length(text) FROM posts WHERE post_id IN {IN_IDS}",
                        [json.dumps(post_ids)],
                    )
                }
                rows = check_rows(raw, self.cols[PREDICTIONS], prediction_rule(version, lengths))
                store_table, models = "predictions", []
        except Invalid as exc:
            raise Invalid(f"{table} shard {k}: {exc}") from None
        present = self.existing("posts", "post_id", post_ids)
        keep = [r for r in rows if r["post_id"] in present]
        self.count["derived_rows_without_post"] += len(rows) - len(keep)
        cols = self.cols[SCORES if store_table == "relevance" else PREDICTIONS]
        with self.store.transaction() as conn:
            self.new["relevance_models"] += _insert(
                conn, "relevance_models", self.cols["relevance_models"], models
            )
            self.new[store_table] += _upsert(conn, store_table, cols, keep)

    # -- the run -----------------------------------------------------------------------------
    def run(self, progress: Callable[[int], None] | None) -> None:
        for k in sorted(self.lake.shards(POSTS) - set(self.done[POSTS])):
            self.skip(POSTS, k, "no done marker (the export of this shard did not finish)")
        for k in self.done[POSTS]:
            try:
                n = self.base_shard(k)
            except (LakeError, Invalid) as exc:
                self.skip(POSTS, k, str(exc))
                n = self.done[POSTS][k]["rows"]
            if progress is not None:
                progress(n)
        for prefix in (SCORES, PREDICTIONS):
            for table in self.lake.tables(prefix):
                done = self.lake.done(table)
                for k in sorted(self.lake.shards(table) - set(done)):
                    self.skip(table, k, "no done marker (its writer did not finish)")
                models = [m["meta"].get("relevance_model") for m in done.values()]
                model = next((m for m in models if isinstance(m, dict)), None)
                for k, marker in done.items():
                    try:
                        self.derived(table, k, marker, model)
                    except (LakeError, Invalid) as exc:
                        self.skip(table, k, str(exc))

    def summary(self) -> dict[str, Any]:
        tables = (POSTS, POST_IMAGES, IMAGES, DROPS, SELECTION, "relevance_models")
        return {
            "root": self.lake.root,
            "subset": self.subset,
            "filter_applied": self.filter_applied,
            "posts_shards": len(self.done[POSTS]),
            "shards_imported": self.count["shards_imported"],
            "posts_in_lake": self.count["posts_in_lake"],
            "posts_selected": self.count["posts_selected"],
            "post_conflicts": self.count["post_conflicts"],
            "new": {t: self.new[t] for t in (*tables, "relevance", "predictions")},
            "derived_rows_without_post": self.count["derived_rows_without_post"],
            "derived_rows_without_score": self.count["derived_rows_without_score"],
            "shards_skipped": self.count["shards_skipped"],
            "skipped": self.skipped,
        }


def _insert(
    conn: sqlite3.Connection, table: str, cols: Sequence[Column], rows: Iterable[dict]
) -> int:
    names = [c.name for c in cols]
    sql = f"INSERT OR IGNORE INTO {table}({', '.join(names)}) VALUES({', '.join('?' * len(names))})"
    cur = conn.executemany(sql, [[r[n] for n in names] for r in rows])
    return max(cur.rowcount, 0)


def _upsert(
    conn: sqlite3.Connection, table: str, cols: Sequence[Column], rows: Iterable[dict]
) -> int:
    """Insert or update (only when a value differs): the count of rows that changed."""
    names = [c.name for c in cols]
    key = PRIMARY_KEYS[table]
    rest = [n for n in names if n not in key]
    sql = (
        f"INSERT INTO {table}({', '.join(names)}) VALUES({', '.join('?' * len(names))}) "
        f"ON CONFLICT({', '.join(key)}) DO UPDATE SET "
        + ", ".join(f"{n}=excluded.{n}" for n in rest)
        + " WHERE "
        + " OR ".join(f"{table}.{n} IS NOT excluded.{n}" for n in rest)
    )
    cur = conn.executemany(sql, [[r[n] for n in names] for r in rows])
    return max(cur.rowcount, 0)


def _existing(conn: sqlite3.Connection, table: str, column: str, values: Iterable[str]) -> set[str]:
    sql = f"SELECT {column} FROM {table} WHERE {column} IN {IN_IDS}"
    return {r[0] for r in conn.execute(sql, [json.dumps(sorted(set(values)))]).fetchall()}


def import_store(
    lake: Lake,
    store: CorpusStore,
    *,
    subset: str = "kept",
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Import the lake's ``kept`` posts (or ``all``) and their rows into ``store``.

    ``progress(n)`` is called after each posts shard with its number of rows. Malformed or
    unfinished shards are skipped and listed in the summary's ``skipped`` with their reason.
    """
    if subset not in SUBSETS:
        raise LakeError(f"unknown subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    lake.require()
    store.require_writable("lake import")
    importer = _Importer(lake, store, subset)
    importer.run(progress)
    return importer.summary()
