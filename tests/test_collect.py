"""``mmner-data collect`` end to end on the bundled sample, and bad input through the pipeline.

The sample's ``posts.jsonl`` says what must happen to every post (``expect``); the store and the
drop report written by the real command must agree with it exactly. The fault tests feed broken
images, rate limits, 5xx, timeouts and malformed pages through the whole pipeline: each becomes a
recorded reason with a readable message, nothing crashes, and a re-run loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mmner_data.cli import app
from mmner_data.collect.pipeline import run_collect
from mmner_data.collect.report import build_drop_report, write_drop_report
from mmner_data.config import SAMPLE_DATA_DIR, build_recipe
from mmner_data.sample import SampleServer, load_sample_posts, source_id
from mmner_data.store import CorpusStore

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RECIPE = REPO / "recipes" / "sample.yaml"
SOURCE_OF_CHANNEL = {"mastodon": "mastodon", "bluesky": "bluesky", "rss": "news", "jsonl": "local"}
BROKEN_REASON = {  # the sample server's broken images → the reason the fetcher must give
    "broken/truncated.jpg": "truncated",
    "broken/html.jpg": "not_an_image",
    "broken/bomb.png": "decompression_bomb",
    "broken/missing.jpg": "http_status",
    "broken/huge.jpg": "too_large",
}
os.environ.setdefault("MMNER_PSEUDONYM_SALT", "test-salt")


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def posts() -> list[dict[str, Any]]:
    return load_sample_posts()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """``mmner-data collect -r recipes/sample.yaml --store … --json``: (store, parsed stdout)."""
    store = tmp_path_factory.mktemp("collect") / "store"
    result = _cli("collect", "-r", str(SAMPLE_RECIPE), "--store", str(store), "--json")
    return store, json.loads(result.stdout)


@pytest.fixture(scope="module")
def db(run: tuple[Path, dict[str, Any]]) -> sqlite3.Connection:
    conn = sqlite3.connect(run[0] / "corpus.sqlite")
    conn.row_factory = sqlite3.Row
    return conn


def _row(db: sqlite3.Connection, post: dict[str, Any]) -> list[sqlite3.Row]:
    return db.execute(
        "SELECT * FROM posts WHERE source=? AND source_id=?",
        (SOURCE_OF_CHANNEL[post["channel"]], source_id(post)),
    ).fetchall()


def _local_line(post_id: str) -> int:
    lines = (SAMPLE_DATA_DIR / "local.jsonl").read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if f'"id": "{post_id}"' in line)


# -- the sample: every post's outcome, exactly ---------------------------------------------------


def test_every_sample_post_reaches_its_expected_outcome(
    db: sqlite3.Connection, posts: list
) -> None:
    wrong = []
    landed = 0
    for p in posts:
        rows = _row(db, p)
        if p["expect"] == "malformed_record":
            assert rows == [], p["id"]
            continue
        assert len(rows) == 1, f"{p['id']} landed {len(rows)} times"
        landed += 1
        r = rows[0]
        outcome = "kept" if r["status"] == "kept" else r["drop_reason"]
        if outcome != p["expect"] or r["status"] not in ("kept", "dropped"):
            wrong.append(f"{p['id']} ({p['kind']}): expected {p['expect']}, got {outcome}")
        if p["expect"] == "kept" and r["lang"] != p["lang"]:
            wrong.append(f"{p['id']}: language {r['lang']} != {p['lang']}")
    assert not wrong, "\n".join(wrong)
    # nothing else landed: every row in the store is a sample post
    assert db.execute("SELECT COUNT(*) FROM posts").fetchone()[0] == landed
    assert db.execute("SELECT COUNT(*) FROM posts WHERE status='candidate'").fetchone()[0] == 0


def test_duplicates_point_at_their_original(db: sqlite3.Connection, posts: list) -> None:
    by_id = {p["id"]: p for p in posts}
    dup_kinds = {"exact_dup", "near_dup_text", "image_reuse", "near_dup_image"}
    checked = 0
    for p in posts:
        if p["kind"] not in dup_kinds:
            continue
        (row,) = _row(db, p)
        (original,) = _row(db, by_id[p["dup_of"]])
        assert row["dup_of"] == original["post_id"], p["id"]
        assert original["status"] == "kept" and row["cluster_id"] == original["cluster_id"]
        checked += 1
    assert checked == 24


def test_malformed_local_lines_are_recorded_by_line(db: sqlite3.Connection, posts: list) -> None:
    bad = [p for p in posts if p["expect"] == "malformed_record"]
    assert len(bad) == 2
    details = {}
    for p in bad:
        item = f"local:line{_local_line(p['id'])}"
        row = db.execute("SELECT * FROM drops WHERE stage='collect' AND item_id=?", (item,))
        (drop,) = row.fetchall()
        assert drop["reason"] == "malformed_record" and drop["source"] == "local"
        details[p["kind"]] = drop["detail"]
    assert (
        details["malformed_json"].startswith("invalid JSON (")
        and "at at" not in details["malformed_json"]
    )
    assert details["malformed_missing_text"] == "field 'text' is missing or not a string"


def test_broken_images_fail_with_their_reason(db: sqlite3.Connection, posts: list) -> None:
    failed = [p for p in posts if p["expect"] == "image_failed"]
    assert {p["image"] for p in failed} == set(BROKEN_REASON)
    for p in failed:
        (row,) = _row(db, p)
        (img,) = db.execute(
            "SELECT * FROM post_images WHERE post_id=?", (row["post_id"],)
        ).fetchall()
        assert img["status"] == "failed" and img["sha256"] is None
        assert img["error"] == BROKEN_REASON[p["image"]], p["image"]
        assert img["detail"] and "\n" not in img["detail"]
        (drop,) = db.execute(
            "SELECT * FROM drops WHERE stage='fetch' AND item_id=?", (f"{row['post_id']}#0",)
        ).fetchall()
        assert (drop["reason"], drop["detail"]) == (img["error"], img["detail"])
    details = {
        r["error"]: r["detail"]
        for r in db.execute("SELECT error, detail FROM post_images WHERE status='failed'")
    }
    assert "looks like HTML" in details["not_an_image"]
    assert "52428800" in details["too_large"]  # refused from Content-Length, not read
    assert "pixels" in details["decompression_bomb"]
    assert "truncated" in details["truncated"] and details["http_status"] == "404"


def test_kept_posts_are_intact(run: tuple[Path, dict], db: sqlite3.Connection, posts: list) -> None:
    store = run[0]
    for p in posts:
        if p["expect"] != "kept":
            continue
        (row,) = _row(db, p)
        assert row["text"] == p["text"]  # stored as written: NER offsets point into it
        assert row["author"].startswith("user_") and p["author"] not in row["author"]
        for ent in json.loads(row["entities_json"]):
            assert row["text"][ent["start"] : ent["end"]] == ent["text"]
        images = db.execute(
            "SELECT i.sha256, i.path FROM post_images pi JOIN images i ON i.sha256 = pi.sha256 "
            "WHERE pi.post_id=? AND pi.status='ok'",
            (row["post_id"],),
        ).fetchall()
        assert len(images) == 1
        data = (store / images[0]["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == images[0]["sha256"]


def test_drop_report_counts_every_outcome(run: tuple[Path, dict], posts: list) -> None:
    store, printed = run
    report = json.loads((store / "reports" / "collect_report.json").read_text(encoding="utf-8"))
    assert printed["report"] == report
    kept = Counter(p["lang"] for p in posts if p["expect"] == "kept")
    assert report["kept"] == dict(kept) and report["kept_total"] == sum(kept.values())
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for p in posts:
        if p["expect"] != "kept":
            lang = "und" if p["expect"] == "malformed_record" else p["lang"]
            expected[p["expect"]][lang] += 1
    assert report["dropped"] == {k: dict(v) for k, v in expected.items()}
    assert report["dropped_total"] == len(posts) - sum(kept.values())
    assert report["image_errors"] == dict.fromkeys(sorted(BROKEN_REASON.values()), 1)
    assert report["source_errors"] == {}
    assert set(report["examples"]) == set(expected)
    md = (store / "reports" / "collect_report.md").read_text(encoding="utf-8")
    for reason, counts in report["dropped"].items():
        assert f"| {reason} |" in md and f"| {sum(counts.values())} |" in md


def test_json_summary(run: tuple[Path, dict], posts: list) -> None:
    summary = run[1]["summary"]
    channels = Counter(p["channel"] for p in posts if p["expect"] != "malformed_record")
    assert summary["ingested"] == {SOURCE_OF_CHANNEL[c]: n for c, n in channels.items()}
    assert summary["source_errors"] == {}
    # ingest-time drops (other language, reblogs) never fetch their images
    n_judged = sum(1 for p in posts if p["image"] and p["expect"] not in ("lang_other", "reblog"))
    assert sum(summary["images"].values()) == n_judged
    assert summary["images"]["ok"] == n_judged - len(BROKEN_REASON)
    assert summary["kept"] == run[1]["report"]["kept"]


def _tables(root: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(root / "corpus.sqlite")
    names = [
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        if r[0] not in ("runs", "sqlite_sequence")
    ]
    out = {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}
    conn.close()
    return out


def test_rerun_on_a_collected_store_changes_nothing(run: tuple[Path, dict], tmp_path: Path) -> None:
    sample_store = tmp_path / "store"
    shutil.copytree(run[0], sample_store)
    before = _tables(sample_store)
    report_before = build_drop_report(CorpusStore(sample_store))
    result = _cli("collect", "-r", str(SAMPLE_RECIPE), "--store", str(sample_store), "--json")
    summary = json.loads(result.stdout)["summary"]
    assert summary["ingested"] == {} and summary["images"] == {}  # every source was exhausted
    assert _tables(sample_store) == before
    after = json.loads(result.stdout)["report"]
    assert {k: v for k, v in after.items() if k != "source_errors"} == {
        k: v for k, v in report_before.items() if k != "source_errors"
    }


# -- bad input through the whole pipeline -------------------------------------------------------


def _english(posts: list, n: int) -> list[str]:
    """``n`` unrelated English texts from the sample (no two are near duplicates)."""
    return [p["text"] for p in posts if p["lang"] == "en" and p["kind"] == "normal"][:n]


def _recipe(tmp: Path, sources: list[dict], **images: Any) -> Any:
    raw = {
        "name": "faults",
        "languages": ["en", "fr", "de", "es"],
        "sources": sources,
        "images": {"timeout_s": 0.6, "retries": 1, "backoff_max_s": 2.0, **images},
        # the local files below name images on the loopback sample server: allowed by name
        "url_policy": {"allow_hosts": ["127.0.0.1"]},
    }
    return build_recipe(raw, recipe_dir=tmp)


def _jsonl(path: Path, records: list[dict | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


FAULTY = {
    "ok": "en-001.jpg",
    "rate_limited": "flaky/429/en-002.jpg",
    "server_error": "flaky/500/en-003.jpg",
    "timeout": "broken/slow.jpg",
    "too_large": "broken/huge.jpg",
    "decompression_bomb": "broken/bomb.png",
    "truncated": "broken/truncated.jpg",
    "not_an_image": "broken/html.jpg",
    "http_status": "broken/missing.jpg",
}


def test_image_faults_are_recorded_and_transient_ones_retried(tmp_path: Path, posts: list) -> None:
    texts = _english(posts, len(FAULTY))
    with SampleServer(slow_s=5.0) as srv:
        records: list[dict | str] = [
            {"id": name, "text": text, "lang": "en", "image": f"{srv.url}/media/{path}"}
            for (name, path), text in zip(FAULTY.items(), texts, strict=True)
        ]
        records.insert(3, '{"id": "cut", "text": "this line never ends')
        src = {
            "name": "faults",
            "type": "jsonl",
            "path": str(_jsonl(tmp_path / "f.jsonl", records)),
        }
        recipe = _recipe(tmp_path, [src])
        with CorpusStore(tmp_path / "store") as store:
            t0 = time.monotonic()
            summary = run_collect(recipe, store)
            elapsed = time.monotonic() - t0
            write_drop_report(store)
            errors = {
                r["source_id"]: (r["error"], r["detail"], r["status"])
                for r in store.query(
                    "SELECT p.source_id, pi.error, pi.detail, p.status FROM posts p "
                    "JOIN post_images pi USING (post_id)"
                )
            }
            assert {k: v[0] for k, v in errors.items()} == {
                k: (None if k == "ok" else k) for k in FAULTY
            }
            assert {k for k, v in errors.items() if v[2] == "kept"} == {"ok"}
            for reason, (_, detail, _) in errors.items():
                assert reason == "ok" or (detail and "\n" not in detail and len(detail) < 400)
            assert errors["rate_limited"][1] == "HTTP 429 (after 2 attempts)"
            assert errors["server_error"][1] == "HTTP 500 (after 2 attempts)"
            assert "(after 2 attempts)" in errors["timeout"][1]
            # 429 came with Retry-After: 1, honoured before the second attempt
            assert srv.requests["/media/flaky/429/en-002.jpg"] == 2 and elapsed >= 1.0
            report = json.loads((store.root / "reports/collect_report.json").read_text())
            assert report["image_errors"] == dict.fromkeys(sorted(set(FAULTY) - {"ok"}), 1)
            assert report["dropped"] == {
                "image_failed": {"en": len(FAULTY) - 1},
                "malformed_record": {"und": 1},
            }
            assert summary.images == {k: 1 for k in FAULTY}

            # --retry-failed: transient failures get another chance, permanent ones do not
            srv.slow_s = 0.1
            before = dict(srv.requests)
            summary = run_collect(recipe, store, retry_failed=True)
            assert summary.images == {"ok": 3}
            for path in ("broken/huge.jpg", "broken/bomb.png", "broken/missing.jpg"):
                assert srv.requests["/media/" + path] == before["/media/" + path]
            kept = {r[0] for r in store.query("SELECT source_id FROM posts WHERE status='kept'")}
            assert kept == {"ok", "rate_limited", "server_error", "timeout"}
            report = build_drop_report(store)
            assert report["image_errors"] == dict.fromkeys(
                sorted(set(FAULTY) - {"ok", "rate_limited", "server_error", "timeout"}), 1
            )
            assert report["dropped"]["image_failed"] == {"en": len(FAULTY) - 4}


def test_rate_limited_image_waits_then_succeeds(tmp_path: Path, posts: list) -> None:
    (text,) = _english(posts, 1)
    with SampleServer() as srv:
        url = f"{srv.url}/media/flaky/429/en-004.jpg"
        path = _jsonl(tmp_path / "one.jsonl", [{"id": "a", "text": text, "image": url}])
        recipe = _recipe(tmp_path, [{"name": "one", "type": "jsonl", "path": str(path)}], retries=3)
        with CorpusStore(tmp_path / "store") as store:
            t0 = time.monotonic()
            summary = run_collect(recipe, store)
            waited = time.monotonic() - t0
            assert summary.images == {"ok": 1} and summary.kept == {"en": 1}
        assert srv.requests["/media/flaky/429/en-004.jpg"] == 3
    assert waited >= 2.0  # two 429s, each with Retry-After: 1


def test_feed_faults_stop_one_source_and_the_rerun_resumes(tmp_path: Path, posts: list) -> None:
    n_masto = sum(1 for p in posts if p["channel"] == "mastodon")
    with SampleServer(malformed_page=1) as srv:
        fast = {"timeout_s": 2.0, "backoff_max_s": 0.05}
        sources = [
            {"name": "masto", "type": "mastodon", "base_url": srv.url, "page_size": 20,
             "retries": 0, **fast},
            {"name": "gone", "type": "rss", "url": srv.url + "/feeds/gone.xml", "retries": 2,
             **fast},
            {"name": "local", "type": "jsonl", "path": str(SAMPLE_DATA_DIR / "local.jsonl")},
        ]  # fmt: skip
        recipe = _recipe(tmp_path, sources)
        with CorpusStore(tmp_path / "store") as store:
            summary = run_collect(recipe, store)
            errors = summary.source_errors
            assert set(errors) == {"masto", "gone"}
            assert (
                errors["masto"].startswith("malformed JSON from ") and "\n" not in errors["masto"]
            )
            assert errors["gone"] == f"HTTP 404 from {srv.url}/feeds/gone.xml"
            assert summary.ingested["masto"] == 20 and summary.ingested["local"] == 17
            (status,) = store.query("SELECT status FROM runs ORDER BY run_id DESC LIMIT 1")
            assert status[0] == "partial"
            paths = write_drop_report(store)
            assert build_drop_report(store)["source_errors"] == errors
            assert "## Sources that stopped" in paths[1].read_text(encoding="utf-8")

            summary = run_collect(recipe, store)  # the page now parses: resume after page 0
            assert summary.ingested["masto"] == n_masto - 20 and "local" not in summary.ingested
            (n,) = store.query("SELECT COUNT(*) FROM posts WHERE source='masto'")[0]
            assert n == n_masto
            assert set(build_drop_report(store)["source_errors"]) == {"gone"}
