"""The lake: sharded Parquet tables and image tars under one fsspec root, with done markers.

A shard's data files are written whole first, its done marker (``part-NNNNN.done``) last;
a reader trusts only shards whose marker is valid and whose files still have the sizes the marker
recorded, and checks the row count and the digest of the ids against the marker.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import mmner_data.lake.fsio as fsio
from mmner_data import __version__
from mmner_data.lake.images_tar import INDEX_COLUMNS, read_member, write_tar
from mmner_data.lake.layout import (
    MARKER_EXT,
    MAX_IMAGE_BYTES,
    MAX_MARKER_BYTES,
    MAX_PARQUET_BYTES,
    MAX_SHARD_ROWS,
    MAX_TAR_BYTES,
    ROOT_FILE,
    LakeError,
    check_root_info,
    check_shard,
    check_table,
    content_digest,
    digest_ids,
    make_marker,
    parse_marker,
    parse_part,
    part_name,
    root_info,
    row_id,
)
from mmner_data.store import utcnow

MAX_UNCOMPRESSED_BYTES = 8 << 30  # what a shard's Parquet metadata may claim, decompressed


def table_fingerprint(
    rows: pa.Table, id_columns: Sequence[str], meta: Mapping[str, Any] | None
) -> tuple[str, str]:
    """``(digest of the ids, content digest)`` of the rows a shard would hold."""
    return digest_ids(row_ids(rows, id_columns)), content_digest(rows.to_pylist(), meta)


def row_ids(rows: pa.Table, id_columns: Sequence[str]) -> list[str]:
    if not id_columns:
        raise ValueError("id_columns must name at least one column")
    missing = [c for c in id_columns if c not in rows.column_names]
    if missing:
        raise LakeError(f"the rows lack their id column(s) {', '.join(missing)}")
    columns = [rows.column(c).to_pylist() for c in id_columns]
    return [row_id(values) for values in zip(*columns, strict=True)]


class Lake:
    """A lake at ``root``: a local folder (created on the first write) or any fsspec URL."""

    def __init__(self, root: str, storage_options: dict | None = None):
        self.fs, self._base, self.root = fsio.open_root(str(root), storage_options)
        self.storage_options = dict(storage_options or {})
        self.info: dict[str, Any] | None = self._read_root_info()

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    # -- the root ----------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        """The root holds a lake (its ``_lake.json``)."""
        return self.info is not None

    def require(self) -> Lake:
        """``self`` when the root holds a lake; LakeError saying there is none otherwise."""
        if self.info is None:
            raise LakeError(
                f"no lake at {self.root} (no {ROOT_FILE}); write one with `mmner-data lake export`"
            )
        return self

    def _read_root_info(self) -> dict[str, Any] | None:
        path = fsio.join(self._base, ROOT_FILE)
        local = fsio.is_local(self.fs)
        if local and os.path.exists(self._base) and not os.path.isdir(self._base):
            raise LakeError(f"the lake root {self.root} is a file; a lake is a folder")
        try:
            if not self.fs.isfile(path):
                return None
        except OSError as exc:
            raise LakeError(f"cannot read the lake root {self.root}: {exc}") from None
        raw = fsio.read_bytes(self.fs, path, MAX_MARKER_BYTES)
        return check_root_info(raw, f"{self.root}/{ROOT_FILE}")

    def ensure_root(self) -> None:
        """Write ``_lake.json`` once, refusing a root that holds something else."""
        if self.info is not None:
            return
        self.info = self._read_root_info()
        if self.info is not None:
            return
        existing = set(fsio.list_sizes(self.fs, self._base)) | set(
            fsio.list_dirs(self.fs, self._base)
        )
        if ROOT_FILE in existing:  # another writer made it meanwhile
            self.info = self._read_root_info()
            return
        if existing:
            raise LakeError(
                f"{self.root} is not empty and holds no {ROOT_FILE}: not a lake (choose an "
                "empty or new folder)"
            )
        info = root_info(utcnow(), f"mmner-data {__version__}")
        fsio.write_bytes(self.fs, fsio.join(self._base, ROOT_FILE), _json_bytes(info))
        self.info = info

    # -- names -------------------------------------------------------------------------------
    def path(self, table: str, shard: int, ext: str) -> str:
        """``<root>/<table>/part-<shard:05d>.<ext>`` (as a URL for remote roots)."""
        return f"{self.root}/{check_table(table)}/{part_name(shard, ext)}"

    def _file(self, table: str, name: str) -> str:
        return fsio.join(self._base, check_table(table), name)

    def tables(self, prefix: str) -> list[str]:
        """The tables one level under ``prefix`` (``scores`` → ``["scores/<slug>", ...]``)."""
        found = []
        for name in fsio.list_dirs(self.fs, fsio.join(self._base, check_table(prefix))):
            try:
                found.append(check_table(f"{prefix}/{name}"))
            except ValueError:
                continue
        return found

    # -- markers -----------------------------------------------------------------------------
    def done(self, table: str) -> dict[int, dict]:
        """shard → its marker, for the shards of ``table`` with a valid done marker."""
        sizes = fsio.list_sizes(self.fs, fsio.join(self._base, check_table(table)))
        wanted: dict[str, int] = {}
        for name, size in sizes.items():
            parsed = parse_part(name)
            if parsed and parsed[1] == MARKER_EXT and size <= MAX_MARKER_BYTES:
                wanted[self._file(table, name)] = parsed[0]
        if not wanted:
            return {}
        raw = self.fs.cat(list(wanted), on_error="return")
        found: dict[int, dict] = {}
        for path, shard in wanted.items():
            data = raw.get(path)
            if isinstance(data, bytes):
                marker = parse_marker(data, table, shard, sizes)
                if marker is not None:
                    found[shard] = marker
        return dict(sorted(found.items()))

    def marker(self, table: str, shard: int) -> dict | None:
        """The valid done marker of one shard, or None."""
        sizes = fsio.list_sizes(self.fs, fsio.join(self._base, check_table(table)))
        name = part_name(shard, MARKER_EXT)
        if name not in sizes or sizes[name] > MAX_MARKER_BYTES:
            return None
        try:
            data = self.fs.cat_file(self._file(table, name))
        except OSError:
            return None
        return parse_marker(data, table, shard, sizes)

    def shards(self, table: str) -> set[int]:
        """Every shard number that has any file in ``table`` (done or not)."""
        sizes = fsio.list_sizes(self.fs, fsio.join(self._base, check_table(table)))
        return {p[0] for n in sizes if (p := parse_part(n))}

    def is_done(self, table: str, shard: int, digest: str | None = None) -> bool:
        """The shard has a valid done marker (for ``digest``'s ids, when given)."""
        marker = self.marker(table, shard)
        return marker is not None and (digest is None or marker["digest"] == digest)

    def drop_shard(self, table: str, shard: int) -> bool:
        """Delete a shard: its marker first (so nobody trusts it), then its files."""
        check_shard(shard)
        sizes = fsio.list_sizes(self.fs, fsio.join(self._base, check_table(table)))
        names = sorted(n for n in sizes if (p := parse_part(n)) and p[0] == shard)
        names.sort(key=lambda n: n != part_name(shard, MARKER_EXT))
        for name in names:
            fsio.remove(self.fs, self._file(table, name))
        return bool(names)

    def _write_marker(
        self,
        table: str,
        shard: int,
        *,
        rows: int,
        digest: str,
        content: str,
        id_columns: Sequence[str],
        files: Mapping[str, int],
        meta: Mapping[str, Any] | None,
    ) -> dict:
        marker = make_marker(
            table=table,
            shard=shard,
            rows=rows,
            digest=digest,
            content=content,
            id_columns=id_columns,
            files=files,
            written_at=utcnow(),
            meta=meta,
        )
        fsio.write_bytes(
            self.fs, self._file(table, part_name(shard, MARKER_EXT)), _json_bytes(marker)
        )
        return marker

    # -- rows --------------------------------------------------------------------------------
    def write_rows(
        self,
        table: str,
        shard: int,
        rows: pa.Table,
        *,
        id_columns: Sequence[str],
        meta: dict | None = None,
    ) -> dict:
        """Write one Parquet shard whole, then its done marker; return the marker."""
        check_table(table)
        check_shard(shard)
        if rows.num_rows > MAX_SHARD_ROWS:
            raise ValueError(f"a shard holds at most {MAX_SHARD_ROWS} rows")
        digest, content = table_fingerprint(rows, id_columns, meta)
        self.ensure_root()
        fsio.remove(self.fs, self._file(table, part_name(shard, MARKER_EXT)))
        files = self._put_parquet(table, shard, rows)
        return self._write_marker(
            table,
            shard,
            rows=rows.num_rows,
            digest=digest,
            content=content,
            id_columns=id_columns,
            files=files,
            meta=meta,
        )

    def _put_parquet(self, table: str, shard: int, rows: pa.Table) -> dict[str, int]:
        """Write one shard's Parquet file whole; ``{file name: size}`` for its marker."""
        buf = io.BytesIO()
        pq.write_table(rows, buf, compression="zstd")
        data = buf.getvalue()
        name = part_name(shard, "parquet")
        fsio.write_bytes(self.fs, self._file(table, name), data)
        return {name: len(data)}

    def read_rows(
        self, table: str, shard: int | None = None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """One done shard, or every done shard concatenated in shard order."""
        check_table(table)
        if shard is not None:
            marker = self.marker(table, shard)
            if marker is None:
                raise LakeError(f"{table} shard {shard} has no valid done marker")
            return self._read_shard(table, shard, marker, columns)
        parts = [self._read_shard(table, k, m, columns) for k, m in self.done(table).items()]
        if not parts:
            return pa.table({})
        return pa.concat_tables(parts, promote_options="default")

    def _read_shard(
        self, table: str, shard: int, marker: Mapping[str, Any], columns: Sequence[str] | None
    ) -> pa.Table:
        where = f"{table} shard {shard}"
        name = part_name(shard, "parquet")
        if name not in marker["files"]:
            raise LakeError(f"{where}: its marker names no {name}")
        data = fsio.read_bytes(self.fs, self._file(table, name), MAX_PARQUET_BYTES)
        if len(data) != marker["files"][name]:
            raise LakeError(f"{where}: {name} changed after its done marker was written")
        id_columns = list(marker["id_columns"])
        wanted = None if columns is None else list(dict.fromkeys([*columns, *id_columns]))
        try:
            reader = pq.ParquetFile(pa.BufferReader(data))
            meta = reader.metadata
            claimed = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            if meta.num_rows != marker["rows"] or claimed > MAX_UNCOMPRESSED_BYTES:
                raise LakeError(
                    f"{where}: holds {meta.num_rows} rows ({claimed} bytes), its marker says "
                    f"{marker['rows']}"
                )
            rows = reader.read(columns=wanted)
        except (pa.ArrowException, OSError) as exc:
            raise LakeError(f"{where}: unreadable Parquet ({exc})") from None
        if rows.num_rows != marker["rows"]:
            raise LakeError(
                f"{where}: holds {rows.num_rows} rows, its marker says {marker['rows']}"
            )
        if digest_ids(row_ids(rows, id_columns)) != marker["digest"]:
            raise LakeError(f"{where}: its ids do not match the digest in its done marker")
        return rows if columns is None else rows.select(list(columns))

    # -- images ------------------------------------------------------------------------------
    def write_images(
        self,
        table: str,
        shard: int,
        images: Iterable[tuple[dict, bytes]],
        meta: dict | None = None,
    ) -> dict:
        """A tar of ``<sha256>.<ext>`` members + an index Parquet + the done marker."""
        check_table(table)
        check_shard(shard)
        self.ensure_root()
        fsio.remove(self.fs, self._file(table, part_name(shard, MARKER_EXT)))
        tar_name = part_name(shard, "tar")
        with fsio.whole_file(self.fs, self._file(table, tar_name)) as fh:
            index = write_tar(fh, images)
            tar_size = fh.tell()
        if len(index) > MAX_SHARD_ROWS:
            raise ValueError(f"a shard holds at most {MAX_SHARD_ROWS} images")
        files = {tar_name: tar_size, **self._put_parquet(table, shard, index_table(index))}
        return self._write_marker(
            table,
            shard,
            rows=len(index),
            digest=digest_ids(r["sha256"] for r in index),
            content=content_digest(image_rows(index), meta),
            id_columns=["sha256"],
            files=files,
            meta=meta,
        )

    def read_images(self, table: str, shard: int) -> Iterator[tuple[dict, bytes]]:
        """The index rows of a done image shard with their bytes (each checked by sha256)."""
        marker = self.marker(check_table(table), shard)
        if marker is None:
            raise LakeError(f"{table} shard {shard} has no valid done marker")
        index = self._read_shard(table, shard, marker, None)
        tar_name = part_name(shard, "tar")
        if tar_name not in marker["files"]:
            raise LakeError(f"{table} shard {shard}: its marker names no {tar_name}")
        tar_size = int(marker["files"][tar_name])
        where = f"{table} shard {shard}"
        with fsio.local_copy(self.fs, self._file(table, tar_name), MAX_TAR_BYTES) as fh:
            for row in index.to_pylist():
                yield row, read_member(fh, row, tar_size, where)

    def read_image(self, table: str, shard: int, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of a shard's tar (a ranged read; no checks on content)."""
        for name, value in (("offset", offset), ("size", size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise LakeError(f"{name} {value!r} is not a non-negative integer")
        if size > MAX_IMAGE_BYTES:
            raise LakeError(f"an image is at most {MAX_IMAGE_BYTES} bytes")
        return fsio.read_range(self.fs, self._file(table, part_name(shard, "tar")), offset, size)

    def local_tar(self, table: str, shard: int):  # -> ContextManager[IO[bytes]]
        """A shard's tar opened for random access (downloaded first when the root is remote)."""
        return fsio.local_copy(self.fs, self._file(table, part_name(shard, "tar")), MAX_TAR_BYTES)


def image_rows(index: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Index rows without the tar placement: what an image shard's content digest covers."""
    return [{k: v for k, v in r.items() if k not in INDEX_COLUMNS[1:]} for r in index]


def index_table(index: list[dict]) -> pa.Table:
    if not index:
        return pa.table(
            {
                "sha256": pa.array([], pa.string()),
                "member": pa.array([], pa.string()),
                "offset": pa.array([], pa.int64()),
                "size": pa.array([], pa.int64()),
            }
        )
    return pa.Table.from_pylist(index)


def _json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
