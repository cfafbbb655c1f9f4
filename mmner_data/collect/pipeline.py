"""The ``collect`` stage: crawl → language ID → image fetch → dedup → quotas → drop report.

Resume rules (see docs/architecture.md): each source page is one transaction (posts, drops,
cursor); images are fetched for pending rows only; dedup and quotas are recomputed from the whole
store in a fixed order, so a run killed anywhere and re-run ends in the state an uninterrupted
run reaches.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mmner_data.collect.langid import DEFAULT_CANDIDATES, LangResult, LanguageIdentifier
from mmner_data.collect.normalise import content_words, find_entities, is_retweet, text_key
from mmner_data.collect.urlpolicy import UrlPolicy, policy_for_source
from mmner_data.config import Recipe
from mmner_data.schema import Drop, DropReason, Post, PostStatus
from mmner_data.sources import SourceError, make_source
from mmner_data.stage import recorded_run
from mmner_data.store import CorpusStore, StoreError

log = logging.getLogger(__name__)

# Reasons decided once at ingest; the others are recomputed by every finalize().
INGEST_REASONS = frozenset(
    {
        DropReason.EMPTY_TEXT,
        DropReason.TOO_SHORT,
        DropReason.LANG_OTHER,
        DropReason.LANG_LOW_CONFIDENCE,
        DropReason.REBLOG,
        DropReason.RETWEET,
        DropReason.NO_IMAGE,
    }
)
FINAL_REASONS = frozenset(
    {
        DropReason.IMAGE_FAILED,
        DropReason.EXACT_DUP_TEXT,
        DropReason.NEAR_DUP_TEXT,
        DropReason.EXACT_DUP_IMAGE,
        DropReason.NEAR_DUP_IMAGE,
        DropReason.OVER_QUOTA,
    }
)

Progress = Callable[[str, int, int | None], None]  # (task, advance, total)


@dataclass
class CollectSummary:
    ingested: dict[str, int] = field(default_factory=dict)  # per source, this run
    pages: dict[str, int] = field(default_factory=dict)
    source_errors: dict[str, str] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)  # per language, whole store
    dropped: dict[str, int] = field(default_factory=dict)  # per reason, whole store

    def to_dict(self) -> dict[str, Any]:
        return {
            "ingested": self.ingested,
            "pages": self.pages,
            "source_errors": self.source_errors,
            "images": self.images,
            "kept": self.kept,
            "dropped": self.dropped,
        }


def pseudonym(salt: str, source: str, handle: str | None) -> str | None:
    """A stable, salted pseudonym for an author handle (no way back without the salt)."""
    if not handle:
        return None
    digest = hmac.new(salt.encode(), f"{source}\x00{handle.lower()}".encode(), hashlib.sha256)
    return "user_" + digest.hexdigest()[:12]


class Ingestor:
    """Turns source pages into store rows; one transaction per page."""

    def __init__(self, recipe: Recipe, store: CorpusStore):
        self.recipe = recipe
        self.store = store
        self.langid = LanguageIdentifier(
            targets=recipe.languages,
            candidates=recipe.langid.candidates or DEFAULT_CANDIDATES,
            low_accuracy=recipe.langid.low_accuracy,
        )
        self.salt = store.pseudonym_salt()
        row = store.conn.execute("SELECT COALESCE(MAX(ingest_seq), 0) FROM posts").fetchone()
        self.seq = int(row[0])

    def judge(self, post: Post, res: LangResult) -> str | None:
        """The ingest-time drop reason, or None for a candidate."""
        r = self.recipe
        lang, conf = res.lang, res.confidence
        if not post.text.strip():
            return DropReason.EMPTY_TEXT
        if post.is_reblog and r.text.drop_reblogs:
            return DropReason.REBLOG
        if r.text.drop_retweets and is_retweet(post.text):
            return DropReason.RETWEET
        if lang not in r.languages:
            ambiguous = (
                res.runner_up in r.languages
                and conf - res.runner_up_confidence < r.langid.ambiguity_margin
            )
            return DropReason.LANG_LOW_CONFIDENCE if ambiguous else DropReason.LANG_OTHER
        if conf < r.langid.min_confidence:
            return DropReason.LANG_LOW_CONFIDENCE
        if content_words(post.text) < r.text.min_words:
            return DropReason.TOO_SHORT
        if r.images.require and not post.images:
            return DropReason.NO_IMAGE
        return None

    def write_page(self, conn: sqlite3.Connection, posts: list[Post], drops: list[Drop]) -> int:
        from mmner_data.collect.images import ImageRejected, process_image_bytes

        new = 0
        limits = image_limits(self.recipe)
        for post in posts:
            exists = conn.execute(
                "SELECT 1 FROM posts WHERE source=? AND source_id=?", (post.source, post.source_id)
            ).fetchone()
            if exists:
                continue
            res = self.langid.detect(post.text) if post.text.strip() else LangResult(None, 0.0)
            lang, conf = res.lang, res.confidence
            reason = self.judge(post, res)
            self.seq += 1
            conn.execute(
                "INSERT INTO posts(post_id, source, source_id, url, created_at, author, text, "
                "text_key, entities_json, lang, lang_confidence, source_lang, is_reblog, licence, "
                "status, drop_reason, ingest_seq, raw_json) "
                "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    post.post_id,
                    post.source,
                    post.source_id,
                    post.url,
                    post.created_at,
                    pseudonym(self.salt, post.source, post.author),
                    post.text,
                    text_key(post.text),
                    json.dumps([_entity(e) for e in find_entities(post.text)]),
                    lang,
                    round(conf, 6),
                    (post.source_lang or None),
                    int(post.is_reblog),
                    post.licence,
                    PostStatus.DROPPED if reason else PostStatus.CANDIDATE,
                    reason,
                    self.seq,
                    json.dumps(post.raw, sort_keys=True, default=str) if post.raw else None,
                ),
            )
            new += 1
            if reason:
                continue
            for pos, ref in enumerate(post.images):
                if ref.data is not None:  # bytes the source already holds: validate now
                    try:
                        processed = process_image_bytes(ref.data, ref.content_type, limits)
                    except ImageRejected as exc:
                        conn.execute(
                            "INSERT INTO post_images(post_id, position, url, alt, status, error, "
                            "detail, attempts) VALUES(?, ?, ?, ?, 'failed', ?, ?, 1)",
                            (post.post_id, pos, ref.url, ref.alt, exc.reason, exc.detail),
                        )
                        self.store.record_drop(
                            conn, _image_drop(post.post_id, pos, post.source, lang, exc)
                        )
                        continue
                    self.store.put_image(conn, processed.image, processed.data)
                    conn.execute(
                        "INSERT INTO post_images(post_id, position, url, alt, sha256, status, "
                        "attempts) VALUES(?, ?, ?, ?, ?, 'ok', 1)",
                        (post.post_id, pos, ref.url, ref.alt, processed.image.sha256),
                    )
                else:
                    conn.execute(
                        "INSERT INTO post_images(post_id, position, url, alt, status) "
                        "VALUES(?, ?, ?, ?, 'pending')",
                        (post.post_id, pos, ref.url, ref.alt),
                    )
        for drop in drops:
            self.store.record_drop(conn, drop)
        return new


def _entity(e: Any) -> dict[str, Any]:
    return {"kind": e.kind, "start": e.start, "end": e.end, "text": e.text}


def _image_drop(post_id: str, pos: int, source: str | None, lang: str | None, exc: Any) -> Drop:
    return Drop(
        stage="fetch",
        item_id=f"{post_id}#{pos}",
        reason=exc.reason,
        source=source,
        lang=lang,
        detail=exc.detail[:500],
    )


def image_limits(recipe: Recipe) -> Any:
    from mmner_data.collect.images import ImageLimits

    s = recipe.images
    return ImageLimits(
        max_bytes=s.max_bytes,
        max_pixels=s.max_pixels,
        min_side=s.min_side,
        max_side=s.max_side,
        timeout_s=s.timeout_s,
        retries=s.retries,
        backoff_max_s=s.backoff_max_s,
        concurrency=s.concurrency,
        per_host=s.per_host,
        jpeg_quality=s.jpeg_quality,
    )


def source_policy(recipe: Recipe, settings: Any) -> UrlPolicy:
    """The URL policy of one recipe source (docs/security.md)."""
    return policy_for_source(
        settings,
        allow_hosts=recipe.url_policy.allow_hosts,
        local_roots=recipe.url_policy.local_roots,
    )


def quotas_met(recipe: Recipe, store: CorpusStore) -> bool:
    """True once every target language with a quota has enough candidates or kept posts."""
    if not recipe.quotas or not recipe.stop_when_quotas_met:
        return False
    rows = dict(
        store.conn.execute(
            "SELECT lang, COUNT(*) FROM posts WHERE status IN ('candidate', 'kept') GROUP BY lang"
        ).fetchall()
    )
    return all(rows.get(lang, 0) >= q for lang, q in recipe.quotas.items())


def crawl(
    recipe: Recipe,
    store: CorpusStore,
    summary: CollectSummary,
    progress: Progress | None = None,
    refresh: bool = False,
) -> None:
    """Ingest every source from its stored cursor until exhausted, max_posts, or quotas met."""
    ingestor = Ingestor(recipe, store)
    for settings in recipe.sources:
        name = settings.name
        cursor, exhausted = store.get_cursor(name)
        if exhausted and not refresh:
            log.info("source %s: exhausted on an earlier run; skipped (use --refresh)", name)
            continue
        if quotas_met(recipe, store):
            break
        n_before = int(
            store.conn.execute("SELECT COUNT(*) FROM posts WHERE source=?", (name,)).fetchone()[0]
        )
        summary.ingested[name] = 0
        summary.pages[name] = 0
        try:
            source = make_source(settings, source_policy(recipe, settings))
        except SourceError as exc:
            summary.source_errors[name] = str(exc)
            log.info("source %s cannot start: %s", name, exc)
            continue
        start = None if (exhausted and refresh) else cursor
        try:
            for page in source.iter_pages(start):
                posts = page.posts
                if settings.max_posts is not None:
                    room = settings.max_posts - n_before - summary.ingested[name]
                    posts = posts[: max(0, room)]
                cut = len(posts) < len(page.posts)
                with store.transaction() as conn:
                    new = ingestor.write_page(conn, posts, page.drops)
                    done = page.exhausted or (
                        settings.max_posts is not None
                        and n_before + summary.ingested[name] + new >= settings.max_posts
                    )
                    if cut:
                        # max_posts cut this page short: keep the cursor before it, so that a
                        # later run with a higher max_posts reads the rest of it (posts already
                        # stored are skipped by their id).
                        store.set_cursor(conn, name, start, False)
                    else:
                        store.set_cursor(conn, name, page.cursor, page.exhausted)
                        start = page.cursor
                summary.ingested[name] += new
                summary.pages[name] += 1
                if progress:
                    progress(f"crawl {name}", len(page.posts), None)
                if done or quotas_met(recipe, store):
                    break
        except SourceError as exc:
            summary.source_errors[name] = str(exc)
            # reported once, by the caller's summary (the CLI prints one line per source)
            log.info("source %s stopped: %s (the cursor is kept; re-run to resume)", name, exc)
        finally:
            source.close()


def fetch_pending(
    recipe: Recipe,
    store: CorpusStore,
    summary: CollectSummary,
    progress: Progress | None = None,
    retry_failed: bool = False,
    engine: Engine | None = None,
) -> None:
    """Download and validate every pending image of candidate posts; one transaction each."""
    from mmner_data.collect.images import ImageRejected, ImageRequest, fetch_images

    if retry_failed:
        with store.transaction() as conn:
            conn.execute(
                "UPDATE post_images SET status='pending' WHERE status='failed' AND error IN "
                "('timeout', 'rate_limited', 'server_error', 'connection_error')"
            )
    # Posts that finalize() dropped (image_failed, duplicates) are judged again by the next
    # finalize, so their pending images are fetched too: that is what --retry-failed resets.
    final = tuple(str(r) for r in FINAL_REASONS)
    rows = store.query(
        "SELECT pi.post_id, pi.position, pi.url, p.source, p.lang FROM post_images pi "
        "JOIN posts p ON p.post_id = pi.post_id WHERE pi.status='pending' AND "
        f"(p.status != 'dropped' OR p.drop_reason IN ({','.join('?' * len(final))})) "
        "ORDER BY p.ingest_seq, pi.position",
        final,
    )
    meta = {(r["post_id"], r["position"]): (r["source"], r["lang"]) for r in rows}
    # Each image is judged by the policy of the source its post came from; a source no longer in
    # the recipe gets the strictest policy (public http(s) hosts only, no local files).
    policies = {s.name: source_policy(recipe, s) for s in recipe.sources}
    requests = [
        ImageRequest(
            key=(r["post_id"], r["position"]),
            url=r["url"] or "",
            policy=policies.get(r["source"], UrlPolicy()),
        )
        for r in rows
    ]
    counts: dict[str, int] = {}

    def on_result(req: Any, result: Any) -> None:
        post_id, pos = req.key
        source, lang = meta[req.key]
        with store.transaction() as conn:
            if isinstance(result, ImageRejected):
                conn.execute(
                    "UPDATE post_images SET status='failed', error=?, detail=?, "
                    "attempts=attempts+1 WHERE post_id=? AND position=?",
                    (result.reason, result.detail[:500], post_id, pos),
                )
                store.record_drop(conn, _image_drop(post_id, pos, source, lang, result))
                counts[result.reason] = counts.get(result.reason, 0) + 1
            else:
                store.put_image(conn, result.image, result.data)
                conn.execute(
                    "UPDATE post_images SET status='ok', sha256=?, error=NULL, detail=NULL, "
                    "attempts=attempts+1 WHERE post_id=? AND position=?",
                    (result.image.sha256, post_id, pos),
                )
                conn.execute(
                    "DELETE FROM drops WHERE stage='fetch' AND item_id=?", (f"{post_id}#{pos}",)
                )
                counts["ok"] = counts.get("ok", 0) + 1

    tick = (lambda n: progress("fetch images", n, len(requests))) if progress else None
    if requests:
        fetch = engine.fetch if engine is not None and engine.fetch else fetch_images
        fetch(requests, image_limits(recipe), on_result, progress=tick)
    summary.images = counts


def finalize(
    recipe: Recipe, store: CorpusStore, text_pairs: Callable[..., Any] | None = None
) -> None:
    """Recompute image failures, dedup and quotas over the whole store, in one transaction.

    ``text_pairs``: another engine's near-duplicate text link finder (same links, same decisions).
    """
    from mmner_data.collect.dedup import DedupItem, DedupSettings, find_duplicates

    settings = DedupSettings.from_recipe(recipe.dedup)
    final = tuple(str(r) for r in FINAL_REASONS)
    with store.transaction() as conn:
        conn.execute(
            f"UPDATE posts SET status='candidate', drop_reason=NULL, dup_of=NULL, cluster_id=NULL "
            f"WHERE status='kept' OR drop_reason IN ({','.join('?' * len(final))})",
            final,
        )
        conn.execute("UPDATE posts SET dup_of=NULL, cluster_id=NULL WHERE status='dropped'")
        images: dict[str, list[sqlite3.Row]] = {}
        for r in conn.execute(
            "SELECT pi.post_id, pi.status, pi.error, pi.sha256, i.phash FROM post_images pi "
            "JOIN posts p ON p.post_id = pi.post_id LEFT JOIN images i ON i.sha256 = pi.sha256 "
            "WHERE p.status='candidate' ORDER BY pi.post_id, pi.position"
        ):
            images.setdefault(r["post_id"], []).append(r)
        candidates = conn.execute(
            "SELECT post_id, source, source_id, created_at, lang, text_key FROM posts "
            "WHERE status='candidate'"
        ).fetchall()
        items: list[DedupItem] = []
        for p in candidates:
            rows = images.get(p["post_id"], [])
            if any(r["status"] == "pending" for r in rows):
                continue  # not fetched yet (killed run): stays a candidate until the next run
            ok = [r for r in rows if r["status"] == "ok"]
            failed = [r for r in rows if r["status"] == "failed"]
            if failed and not ok and recipe.images.on_failure == "drop_post":
                conn.execute(
                    "UPDATE posts SET status='dropped', drop_reason=? WHERE post_id=?",
                    (DropReason.IMAGE_FAILED, p["post_id"]),
                )
                continue
            items.append(
                DedupItem(
                    post_id=p["post_id"],
                    order_key=(p["created_at"] or "", p["source"], p["source_id"]),
                    text_key=p["text_key"],
                    image_sha256=tuple(r["sha256"] for r in ok),
                    image_phash=tuple(r["phash"] for r in ok),
                )
            )
        decisions = find_duplicates(items, settings, text_pairs=text_pairs)
        order = {it.post_id: it.order_key for it in items}
        lang_of = {p["post_id"]: p["lang"] for p in candidates}
        kept_by_lang: dict[str, int] = {}
        for dec in sorted(decisions, key=lambda x: order[x.post_id]):
            if dec.reason:
                conn.execute(
                    "UPDATE posts SET status='dropped', drop_reason=?, dup_of=?, cluster_id=? "
                    "WHERE post_id=?",
                    (dec.reason, dec.dup_of, dec.cluster_id, dec.post_id),
                )
                continue
            lang = lang_of[dec.post_id]
            quota = recipe.quota(lang)
            if quota is not None and kept_by_lang.get(lang, 0) >= quota:
                conn.execute(
                    "UPDATE posts SET status='dropped', drop_reason=?, cluster_id=? WHERE post_id=?",
                    (DropReason.OVER_QUOTA, dec.cluster_id, dec.post_id),
                )
                continue
            kept_by_lang[lang] = kept_by_lang.get(lang, 0) + 1
            conn.execute(
                "UPDATE posts SET status='kept', cluster_id=? WHERE post_id=?",
                (dec.cluster_id, dec.post_id),
            )


def store_summary(store: CorpusStore, summary: CollectSummary) -> None:
    summary.kept = {
        r[0] or "und": r[1]
        for r in store.query(
            "SELECT lang, COUNT(*) FROM posts WHERE status='kept' GROUP BY lang ORDER BY lang"
        )
    }
    dropped = {
        r[0]: r[1]
        for r in store.query(
            "SELECT drop_reason, COUNT(*) FROM posts WHERE status='dropped' GROUP BY drop_reason"
        )
    }
    for r in store.query(
        "SELECT reason, COUNT(*) FROM drops WHERE stage='collect' GROUP BY reason"
    ):
        dropped[r[0]] = dropped.get(r[0], 0) + r[1]
    summary.dropped = dict(sorted(dropped.items()))


def run_collect(
    recipe: Recipe,
    store: CorpusStore,
    *,
    progress: Progress | None = None,
    refresh: bool = False,
    retry_failed: bool = False,
    skip_crawl: bool = False,
    engine: Engine | None = None,
) -> CollectSummary:
    """The whole stage; safe to re-run at any time (one run per store at a time).

    ``engine`` runs the heavy batch work elsewhere (image fetch, dedup's text links: see
    :class:`Engine`); the crawl, decisions and quotas stay here.
    """
    with collect_lock(store):
        return _run_collect(
            recipe, store, progress, refresh, retry_failed, skip_crawl, engine or Engine()
        )


@dataclass(frozen=True)
class Engine:
    """Where collect's batch cores run: ``fetch(requests, limits, on_result, progress)`` in place
    of ``collect.images.fetch_images`` and ``text_pairs(keys, settings)`` for
    ``collect.dedup.find_duplicates`` (None: this process). ``name`` goes into the run's row."""

    name: str = "local"
    fetch: Callable[..., Any] | None = None
    text_pairs: Callable[..., Any] | None = None


LOCK_NAME = "collect.lock"


@contextlib.contextmanager
def collect_lock(store: CorpusStore) -> Iterator[None]:
    """Hold the store's collect lock; clean up what a killed run left behind.

    An advisory ``flock`` on ``<store>/collect.lock``: the OS releases it when the holder dies, even
    by SIGKILL. Holding it, nothing else can be writing images, so half-written temporary image
    files (a run killed inside an atomic write) are removed, and runs still marked ``running`` are
    marked ``killed``. Raises :class:`StoreError` if another collect holds it.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, no sweeping
        yield
        return
    store.require_writable("collect/dedup")
    try:
        fd = os.open(store.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(
            f"cannot take the collect lock in {store.root}: {exc.strerror or exc}"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(
                f"another collect or dedup is running on the store {store.root}; "
                "wait for it to finish (or stop it) and run again"
            ) from None
        for tmp in store.images_dir.glob("*/.tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        with store.transaction() as conn:
            conn.execute(
                "UPDATE runs SET status='killed' WHERE stage IN ('collect', 'dedup') "
                "AND status='running'"
            )
        yield
    finally:
        os.close(fd)  # releases the lock


def _run_collect(
    recipe: Recipe,
    store: CorpusStore,
    progress: Progress | None,
    refresh: bool,
    retry_failed: bool,
    skip_crawl: bool,
    engine: Engine,
) -> CollectSummary:
    summary = CollectSummary()
    params = {
        "recipe": recipe.name,
        "refresh": refresh,
        "retry_failed": retry_failed,
        "skip_crawl": skip_crawl,
        "engine": engine.name,
    }
    with recorded_run(store, "dedup" if skip_crawl else "collect", params) as rec:
        try:
            if not skip_crawl:
                crawl(recipe, store, summary, progress, refresh=refresh)
                fetch_pending(
                    recipe, store, summary, progress, retry_failed=retry_failed, engine=engine
                )
            finalize(recipe, store, engine.text_pairs)
            store_summary(store, summary)
        finally:  # a failed run keeps what it counted in its row
            rec.summary = summary.to_dict()
        rec.status = "ok" if not summary.source_errors else "partial"
    return summary
