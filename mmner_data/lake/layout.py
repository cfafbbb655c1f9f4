"""The lake's names and fingerprints: paths, model slugs, digests, partitioning, done markers.

Everything here is pure (no I/O), so that any process (an export, an import, a Ray worker) names
the same shard the same way and computes the same digest for the same ids.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import xxhash

from mmner_data.errors import MmnerError

FORMAT = "mmner-lake"
FORMAT_VERSION = 1
ROOT_FILE = "_lake.json"
MARKER_EXT = "done"

# what a reader accepts from a lake it did not write (nothing bigger is read into memory)
MAX_MARKER_BYTES = 1 << 20
MAX_PARQUET_BYTES = 1 << 30
MAX_IMAGE_BYTES = 64 << 20
MAX_TAR_BYTES = 64 << 30
MAX_SHARD_ROWS = 1_000_000
MAX_SHARD = 99_999  # part-NNNNN

_TABLE = re.compile(r"[a-z][a-z0-9_]*(/[A-Za-z0-9][A-Za-z0-9._-]{0,127})*")
_PART = re.compile(r"part-(\d{5})\.([a-z0-9]+(?:\.[a-z0-9]+)*)")
_IMAGE_EXT = {"jpeg": "jpg", "jpg": "jpg", "png": "png", "webp": "webp", "gif": "gif"}
ID_SEPARATOR = "\x1f"  # joins the id columns of a row into one id (unit separator)


class LakeError(MmnerError):
    """A lake that cannot be read or written (wrong format, unreadable shard, bad root...)."""


def check_table(table: str) -> str:
    """``table`` if it is a safe table name (``posts``, ``scores/<slug>``), else ValueError."""
    if not isinstance(table, str) or not _TABLE.fullmatch(table) or ".." in table.split("/"):
        raise ValueError(f"not a lake table name: {table!r}")
    return table


def check_shard(shard: int) -> int:
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard <= MAX_SHARD:
        raise ValueError(f"not a shard number (0..{MAX_SHARD}): {shard!r}")
    return shard


def part_name(shard: int, ext: str) -> str:
    """``part-00003.parquet``: the file name of one shard's file."""
    return f"part-{check_shard(shard):05d}.{ext}"


def parse_part(name: str) -> tuple[int, str] | None:
    """``part-00003.parquet`` → ``(3, "parquet")``; anything else → None."""
    m = _PART.fullmatch(name)
    return None if m is None else (int(m.group(1)), m.group(2))


def image_ext(fmt: object) -> str:
    """The file extension of an image format (``jpeg`` → ``jpg``); ``bin`` when unknown."""
    return _IMAGE_EXT.get(str(fmt or "").lower(), "bin")


def model_slug(model_version: str) -> str:
    """A path-safe, collision-free folder name for a model version: readable prefix + hash."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", model_version).strip("-._")[:48].rstrip("-._")
    digest = hashlib.sha256(model_version.encode("utf-8")).hexdigest()[:12]
    return f"{readable or 'model'}-{digest}"


def row_id(values: Sequence[object]) -> str:
    """One row's id from its id columns' values (joined by the unit separator)."""
    return ID_SEPARATOR.join("" if v is None else str(v) for v in values)


def digest_ids(ids: Iterable[str]) -> str:
    """sha256 of the sorted ids (order-free: two writers of the same shard agree)."""
    h = hashlib.sha256()
    for one in sorted(str(i) for i in ids):
        data = one.encode("utf-8")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def content_digest(rows: Iterable[Mapping[str, Any]], meta: Mapping[str, Any] | None) -> str:
    """sha256 of the rows (in order) and the meta: a rerun rewrites a shard whose content changed."""
    h = hashlib.sha256()
    h.update(_canonical(dict(meta or {})))
    for row in rows:
        h.update(_canonical(dict(row)))
    return h.hexdigest()


def _canonical(obj: object) -> bytes:
    return (
        json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str, allow_nan=True) + "\n"
    ).encode("utf-8")


def shard_of(key: str, n_shards: int) -> int:
    """The shard of ``key`` among ``n_shards``: xxh64, the same in every process and machine."""
    if n_shards < 1:
        raise ValueError("n_shards must be at least 1")
    return xxhash.xxh64_intdigest(key.encode("utf-8")) % n_shards


def n_shards_for(n_rows: int, shard_rows: int) -> int:
    return math.ceil(n_rows / shard_rows) if n_rows else 0


# -- the root file and the done markers ----------------------------------------------------


def root_info(created_at: str, created_by: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": created_at,
        "created_by": created_by,
    }


def check_root_info(raw: bytes, where: str) -> dict[str, Any]:
    """The parsed ``_lake.json``; LakeError when it is not this format and version."""
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LakeError(f"{where} is not a valid {ROOT_FILE} (not JSON)") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        got = info.get("format") if isinstance(info, dict) else None
        raise LakeError(f"{where} holds format {got!r}, not an {FORMAT} lake")
    if info.get("format_version") != FORMAT_VERSION:
        raise LakeError(
            f"{where} is {FORMAT} version {info.get('format_version')!r}; this mmner-data reads "
            f"version {FORMAT_VERSION} (use a matching mmner-data, or another root)"
        )
    return info


def make_marker(
    *,
    table: str,
    shard: int,
    rows: int,
    digest: str,
    content: str,
    id_columns: Sequence[str],
    files: Mapping[str, int],
    written_at: str,
    meta: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The JSON a shard's done marker holds (written after the shard's data files)."""
    marker: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "table": table,
        "shard": shard,
        "rows": rows,
        "digest": digest,
        "content_digest": content,
        "id_columns": list(id_columns),
        "files": dict(files),
        "written_at": written_at,
        "meta": dict(meta or {}),
    }
    if meta and "model_version" in meta:
        marker["model_version"] = meta["model_version"]
    return marker


def parse_marker(raw: bytes, table: str, shard: int, sizes: Mapping[str, int]) -> dict | None:
    """The marker if it is valid for (table, shard) and its files are there with their sizes."""
    try:
        marker = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(marker, dict):
        return None
    files = marker.get("files")
    ok = (
        marker.get("format") == FORMAT
        and marker.get("format_version") == FORMAT_VERSION
        and marker.get("table") == table
        and marker.get("shard") == shard
        and _is_int(marker.get("rows"))
        and 0 <= marker["rows"] <= MAX_SHARD_ROWS
        and isinstance(marker.get("digest"), str)
        and isinstance(marker.get("content_digest"), str)
        and isinstance(marker.get("id_columns"), list)
        and all(isinstance(c, str) for c in marker["id_columns"])
        and isinstance(marker.get("meta"), dict)
        and isinstance(marker.get("written_at"), str)
        and isinstance(files, dict)
        and bool(files)
    )
    if not ok:
        return None
    for name, size in files.items():
        parsed = parse_part(str(name))
        if parsed is None or parsed[0] != shard or parsed[1] == MARKER_EXT or not _is_int(size):
            return None
        if sizes.get(name) != size:  # missing, or replaced after the marker was written
            return None
    return marker


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
