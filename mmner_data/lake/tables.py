"""Store tables as Arrow: each store table's columns (from SQLite itself) and their Arrow types.

The lake's Parquet columns are the store's columns, so a column added by a later store migration
travels without a change here. ``images.path`` is local to one store and never leaves it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from mmner_data.store import CorpusStore

ARROW_TYPES = {"TEXT": pa.string(), "INTEGER": pa.int64(), "REAL": pa.float64()}
LOCAL_ONLY = {"images": ("path",)}  # columns that never leave the store

# lake table → store table, for the tables that are plain copies of store rows
POSTS, POST_IMAGES, IMAGES, DROPS, SELECTION = (
    "posts",
    "post_images",
    "images",
    "drops",
    "selection",
)
SCORES, PREDICTIONS = "scores", "predictions"
STORE_TABLE = {
    POSTS: "posts",
    POST_IMAGES: "post_images",
    DROPS: "drops",
    SELECTION: "relevance_selection",
    IMAGES: "images",
    SCORES: "relevance",
    PREDICTIONS: "predictions",
}
ID_COLUMNS = {
    POSTS: ("post_id",),
    POST_IMAGES: ("post_id", "position"),
    DROPS: ("stage", "item_id"),
    SELECTION: ("post_id",),
    IMAGES: ("sha256",),
    SCORES: ("post_id", "model_id"),
    PREDICTIONS: ("post_id", "model_version"),
}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # TEXT | INTEGER | REAL
    not_null: bool
    default: object  # the column's default value (already parsed), or None


def columns(store: CorpusStore, table: str) -> list[Column]:
    """The store table's columns in order (without the store-local ones)."""
    out = []
    for r in store.query(f"PRAGMA table_info({table})"):
        if r["name"] in LOCAL_ONLY.get(table, ()):
            continue
        out.append(
            Column(r["name"], str(r["type"]).upper(), bool(r["notnull"]), _default(r["dflt_value"]))
        )
    return out


def _default(raw: str | None) -> object:
    if raw is None:
        return None
    if raw.startswith("'") and raw.endswith("'"):
        return raw[1:-1].replace("''", "'")
    try:
        return int(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            return None


def arrow_schema(cols: Sequence[Column]) -> pa.Schema:
    return pa.schema([(c.name, ARROW_TYPES.get(c.type, pa.string())) for c in cols])


def to_arrow(rows: Iterable[sqlite3.Row], cols: Sequence[Column]) -> pa.Table:
    """Store rows → an Arrow table with the store's column types."""
    names = [c.name for c in cols]
    return pa.Table.from_pylist([{n: r[n] for n in names} for r in rows], arrow_schema(cols))
