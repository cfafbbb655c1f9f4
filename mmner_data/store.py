"""The corpus store: one SQLite file (WAL) plus a content-addressed image folder.

Layout of a store directory::

    corpus.sqlite          posts, images, cursors, drops, runs (schema versioned, migrated on open)
    images/ab/abcdef....jpg   bytes named by their sha256, written by atomic rename

Every write happens inside :meth:`CorpusStore.transaction`, so a run killed at any point leaves
either the whole page/batch or none of it. Image files are written before the row that points to
them; an orphan file (killed between the two) is harmless and reused on the next run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from mmner_data.errors import MmnerError
from mmner_data.schema import Drop, Image

DB_NAME = "corpus.sqlite"
IMAGES_DIR = "images"

# Each migration moves the schema from version i to i+1. Never edit a released one: append.
MIGRATIONS: list[str] = [
    # v1: collect
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE posts (
        post_id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        source_id TEXT NOT NULL,
        url TEXT,
        created_at TEXT,
        author TEXT,
        text TEXT NOT NULL,
        text_key TEXT NOT NULL,
        entities_json TEXT NOT NULL DEFAULT '[]',
        lang TEXT,
        lang_confidence REAL,
        source_lang TEXT,
        is_reblog INTEGER NOT NULL DEFAULT 0,
        licence TEXT,
        status TEXT NOT NULL,
        drop_reason TEXT,
        dup_of TEXT,
        cluster_id TEXT,
        ingest_seq INTEGER NOT NULL,
        raw_json TEXT,
        UNIQUE (source, source_id)
    );
    CREATE INDEX posts_status ON posts(status, lang);
    CREATE TABLE images (
        sha256 TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        format TEXT NOT NULL,
        n_bytes INTEGER NOT NULL,
        phash TEXT NOT NULL,
        source_sha256 TEXT
    );
    CREATE TABLE post_images (
        post_id TEXT NOT NULL REFERENCES posts(post_id),
        position INTEGER NOT NULL,
        url TEXT,
        alt TEXT,
        sha256 TEXT REFERENCES images(sha256),
        status TEXT NOT NULL,          -- pending | ok | failed
        error TEXT,
        detail TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (post_id, position)
    );
    CREATE INDEX post_images_status ON post_images(status);
    CREATE TABLE cursors (
        source TEXT PRIMARY KEY,
        cursor TEXT,
        exhausted INTEGER NOT NULL DEFAULT 0,
        n_pages INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE drops (
        stage TEXT NOT NULL,
        item_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        source TEXT,
        lang TEXT,
        detail TEXT,
        PRIMARY KEY (stage, item_id)
    );
    CREATE TABLE runs (
        run_id INTEGER PRIMARY KEY AUTOINCREMENT,
        stage TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        params_json TEXT,
        summary_json TEXT
    );
    """,
    # v2: filter (CLIP text-image relevance, one score per post and model; the selection)
    """
    CREATE TABLE relevance_models (
        model_id TEXT PRIMARY KEY,
        backend TEXT NOT NULL,
        name TEXT NOT NULL,
        pretrained TEXT,
        checkpoint_sha256 TEXT,
        library_version TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE relevance (
        post_id TEXT NOT NULL,
        model_id TEXT NOT NULL REFERENCES relevance_models(model_id),
        image_sha256 TEXT NOT NULL,
        score REAL NOT NULL,
        scored_at TEXT NOT NULL,
        PRIMARY KEY (post_id, model_id)
    );
    CREATE INDEX relevance_model_score ON relevance(model_id, score);
    CREATE TABLE relevance_selection (
        post_id TEXT PRIMARY KEY,
        model_id TEXT NOT NULL,
        lang TEXT,
        status TEXT NOT NULL,          -- kept | dropped_low_relevance | no_image | image_unreadable
        kept INTEGER NOT NULL,
        score REAL,
        threshold REAL,
        rule TEXT NOT NULL,
        selected_at TEXT NOT NULL
    );
    CREATE INDEX relevance_selection_kept ON relevance_selection(kept, lang);
    """,
    # v3: pre-annotations, Label Studio projects/tasks, annotations per annotator, adjudication.
    # Every *_json span list is [{"start": int, "end": int, "label": str, "score"?: float}] with
    # character offsets into posts.text (see schema.EntitySpan).
    """
    CREATE TABLE predictions (
        post_id TEXT NOT NULL REFERENCES posts(post_id),
        model_version TEXT NOT NULL,
        spans_json TEXT NOT NULL,
        score REAL,                    -- item-level confidence
        created_at TEXT NOT NULL,
        PRIMARY KEY (post_id, model_version)
    );
    CREATE TABLE ls_projects (
        project_key TEXT PRIMARY KEY,  -- "<server url>#<project id>"
        url TEXT NOT NULL,
        project_id INTEGER NOT NULL,
        title TEXT NOT NULL,
        kind TEXT NOT NULL,            -- annotate | review
        label_config_sha256 TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE ls_tasks (
        project_key TEXT NOT NULL REFERENCES ls_projects(project_key),
        post_id TEXT NOT NULL REFERENCES posts(post_id),
        task_id INTEGER NOT NULL,
        model_version TEXT,
        pushed_at TEXT NOT NULL,
        PRIMARY KEY (project_key, post_id)
    );
    CREATE TABLE annotations (
        annotation_key TEXT PRIMARY KEY,  -- "<project_key>#<annotation id>" or "<file>#<id>"
        post_id TEXT NOT NULL REFERENCES posts(post_id),
        annotator TEXT NOT NULL,          -- stable id, e.g. "ls:<user id>"
        origin TEXT NOT NULL,             -- label-studio | ls-export
        project_key TEXT,
        task_id INTEGER,
        status TEXT NOT NULL,             -- submitted | skipped | cancelled
        spans_json TEXT NOT NULL,
        tags_json TEXT,                   -- BIO per token of mmner_data.text.tokenize
        lead_time REAL,
        created_at TEXT,
        updated_at TEXT,
        pulled_at TEXT NOT NULL
    );
    CREATE INDEX annotations_post ON annotations(post_id, annotator);
    CREATE TABLE adjudication (
        post_id TEXT PRIMARY KEY REFERENCES posts(post_id),
        status TEXT NOT NULL,             -- gold | review
        spans_json TEXT NOT NULL,
        method TEXT NOT NULL,             -- unanimous | majority | single | reviewed
        reason TEXT,                      -- why it went to review
        provenance_json TEXT NOT NULL,    -- annotators, annotation keys, votes
        updated_at TEXT NOT NULL
    );
    CREATE INDEX adjudication_status ON adjudication(status);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(MmnerError):
    """The store cannot be opened or is in a state this version does not understand."""


_ENVIRONMENTAL = ("readonly", "read-only", "disk", "full", "unable to open", "locked", "i/o")


def _is_environmental(exc: sqlite3.OperationalError) -> bool:
    """A database error the user's environment caused (permissions, disk), not a bug."""
    return any(word in str(exc).lower() for word in _ENVIRONMENTAL)


def _sqlite_reason(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "readonly" in text.lower():
        return "the store is read-only for this user (check the folder's permissions)"
    return text


def _store_error(root: Path, exc: sqlite3.OperationalError) -> Exception:
    if not _is_environmental(exc):
        return exc
    return StoreError(f"cannot write to the store {root}: {_sqlite_reason(exc)}")


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class OutputError(MmnerError):
    """An output file or folder cannot be written (a part of its path is a file, permissions...)."""


def ensure_dir(folder: str | os.PathLike[str]) -> Path:
    """``mkdir -p folder``; an OutputError (one line) when the user's filesystem says no."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(
            f"cannot create the folder {path}: a part of its path is a file"
        ) from None
    except OSError as exc:
        raise OutputError(f"cannot create the folder {path}: {exc.strerror or exc}") from None
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either nothing or the whole file."""
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write in {path.parent}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class CorpusStore:
    """Open (creating or migrating) the store at ``root``.

    ``create=False`` is for stages that only make sense on a collected store (export, stats,
    agreement...): a missing store is a :class:`StoreError` instead of a new, empty one. A store
    the user cannot write to opens read-only (reads work; the first write is a StoreError). Every
    condition the user can fix (a ``--store`` that is a file, a folder that cannot be created, a
    file that is not a database, a read-only or full disk) is a one-line StoreError.
    """

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True):
        self.root = Path(root)
        self.images_dir = self.root / IMAGES_DIR
        self.db_path = self.root / DB_NAME
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"the store {self.root} is a file; a store is a folder")
        if not self.db_path.exists():
            if not create:
                raise StoreError(
                    f"no corpus store at {self.root} (no {DB_NAME}); run `mmner-data collect` "
                    "first or point --store at a collected store"
                )
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise StoreError(
                    f"cannot create the store {self.root}: a part of its path is a file"
                ) from None
            except OSError as exc:
                raise StoreError(
                    f"cannot create the store {self.root}: {exc.strerror or exc}"
                ) from None
        elif not self.db_path.is_file():
            raise StoreError(f"{self.db_path} is not a file")
        self.read_only = not os.access(self.root, os.W_OK) or (
            self.db_path.exists() and not os.access(self.db_path, os.W_OK)
        )
        try:
            self.conn = self._connect()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the store {self.db_path}: {exc}") from None
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StoreError(
                f"cannot open the store {self.db_path}: {_sqlite_reason(exc)}"
            ) from None
        except BaseException:
            self.conn.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            uri = self.db_path.resolve().as_uri()
            try:
                conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
                conn.execute("PRAGMA user_version").fetchone()
            except sqlite3.OperationalError:  # a WAL database in a folder we cannot write
                conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
        else:
            conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=30.0)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA user_version").fetchone()  # "file is not a database" here
            if not self.read_only:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def require_writable(self, what: str = "this command") -> None:
        """Raise StoreError if the store is read-only (before a stage starts writing)."""
        if self.read_only:
            raise StoreError(
                f"the store {self.root} is read-only for this user; {what} writes to it "
                "(check the folder's permissions, or copy the store)"
            )

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> CorpusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.schema_version
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.db_path} has schema v{current}; this mmner-data understands up to "
                f"v{SCHEMA_VERSION}. Upgrade mmner-data."
            )
        if current < SCHEMA_VERSION:
            self.require_writable("opening it with this version (a schema upgrade)")
        for version in range(current, SCHEMA_VERSION):
            with self.transaction() as conn:
                for statement in _split_sql(MIGRATIONS[version]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={version + 1}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; rolls back on any exception (KeyboardInterrupt too).

        A read-only store, a full disk or an image folder that cannot be written is a
        :class:`StoreError` (one line, nothing written); other database errors are bugs.
        """
        self.require_writable()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _store_error(self.root, exc) from None
        try:
            yield self.conn
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _is_environmental(exc):
                raise _store_error(self.root, exc) from None
            if isinstance(exc, PermissionError | IsADirectoryError | NotADirectoryError) or (
                isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT)
            ):
                raise StoreError(
                    f"cannot write to the store {self.root}: {exc.strerror or exc}"
                ) from None
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise _store_error(self.root, exc) from None

    # -- meta ------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str, conn: sqlite3.Connection | None = None) -> None:
        (conn or self.conn).execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def pseudonym_salt(self) -> str:
        """The salt for pseudonyms: ``MMNER_PSEUDONYM_SALT`` or one made once per store.

        The salt lives in the store only; exports never carry it.
        """
        env = os.environ.get("MMNER_PSEUDONYM_SALT")
        if env:
            return env
        salt = self.get_meta("pseudonym_salt")
        if salt is None:
            with self.transaction() as conn:
                salt = self.get_meta("pseudonym_salt") or os.urandom(16).hex()
                self.set_meta("pseudonym_salt", salt, conn)
        return salt

    # -- cursors ---------------------------------------------------------------------------
    def get_cursor(self, source: str) -> tuple[str | None, bool]:
        row = self.conn.execute(
            "SELECT cursor, exhausted FROM cursors WHERE source=?", (source,)
        ).fetchone()
        return (None, False) if row is None else (row["cursor"], bool(row["exhausted"]))

    @staticmethod
    def set_cursor(
        conn: sqlite3.Connection, source: str, cursor: str | None, exhausted: bool
    ) -> None:
        conn.execute(
            "INSERT INTO cursors(source, cursor, exhausted, n_pages) VALUES(?, ?, ?, 1) "
            "ON CONFLICT(source) DO UPDATE SET cursor=excluded.cursor, "
            "exhausted=excluded.exhausted, n_pages=n_pages+1",
            (source, cursor, int(exhausted)),
        )

    # -- drops -----------------------------------------------------------------------------
    @staticmethod
    def record_drop(conn: sqlite3.Connection, drop: Drop) -> None:
        conn.execute(
            "INSERT INTO drops(stage, item_id, reason, source, lang, detail) "
            "VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(stage, item_id) DO UPDATE SET "
            "reason=excluded.reason, source=excluded.source, lang=excluded.lang, "
            "detail=excluded.detail",
            (drop.stage, drop.item_id, drop.reason, drop.source, drop.lang, drop.detail),
        )

    # -- images ----------------------------------------------------------------------------
    def image_path(self, sha256: str, fmt: str) -> Path:
        ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}.get(fmt.upper(), "bin")
        return self.images_dir / sha256[:2] / f"{sha256}.{ext}"

    def put_image(self, conn: sqlite3.Connection, image: Image, data: bytes) -> Path:
        """Write the bytes (atomic rename) and the row; idempotent for the same content."""
        if hashlib.sha256(data).hexdigest() != image.sha256:
            raise ValueError("image bytes do not match their sha256")
        path = self.image_path(image.sha256, image.format)
        if not path.exists():
            atomic_write_bytes(path, data)
        conn.execute(
            "INSERT OR IGNORE INTO images(sha256, path, width, height, format, n_bytes, phash, "
            "source_sha256) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
            (
                image.sha256,
                str(path.relative_to(self.root)),
                image.width,
                image.height,
                image.format,
                image.n_bytes,
                image.phash,
                image.source_sha256,
            ),
        )
        return path

    def resolve_image(self, rel_path: str) -> Path:
        return self.root / rel_path

    # -- runs ------------------------------------------------------------------------------
    def start_run(self, stage: str, params: dict) -> int:
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO runs(stage, started_at, status, params_json) VALUES(?, ?, ?, ?)",
                (stage, utcnow(), "running", json.dumps(params, sort_keys=True, default=str)),
            )
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, status: str, summary: dict) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE runs SET finished_at=?, status=?, summary_json=? WHERE run_id=?",
                (utcnow(), status, json.dumps(summary, sort_keys=True, default=str), run_id),
            )

    # -- reading ---------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for table in ("posts", "images", "post_images", "drops"):
            out[table] = int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        return out


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
