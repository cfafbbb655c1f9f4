"""Resume: ``mmner-data collect`` killed with SIGKILL mid-run, then re-run, ends in exactly the
store an uninterrupted run makes — every table but ``runs``, and the same image files.

The crawl runs in a real subprocess against a loopback :class:`SampleServer` whose pages are slowed
down (``page_delay_s``), and is killed at a few points: on the first page, between sources, and
while images are being fetched (one image is slow on purpose so that phase lasts).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mmner_data.cli import app
from mmner_data.sample import SampleServer

SALT = os.environ.setdefault("MMNER_PSEUDONYM_SALT", "test-salt")
RECIPE = """\
name: resume
languages: [en, fr, de, es]
sources:
  - {{name: mastodon, type: mastodon, base_url: "{url}", page_size: 8, timeout_s: 10}}
  - {{name: bluesky, type: bluesky, base_url: "{url}", query: "*", page_size: 8, timeout_s: 10}}
  - {{name: news, type: rss, url: "{url}/feeds/news.xml", timeout_s: 10}}
  - {{name: local, type: jsonl, path: "${{SAMPLE_DATA}}/local.jsonl", page_size: 4}}
  - {{name: extra, type: jsonl, path: "${{RECIPE_DIR}}/extra.jsonl"}}
langid: {{low_accuracy: true}}   # the fast lingua mode: these tests are about resuming
images: {{timeout_s: 10, retries: 1, backoff_max_s: 1, concurrency: 4}}
"""
EXTRA = {
    "id": "slow-1",
    "lang": "en",
    "text": "Waited ages for this photo of the harbour at dawn to upload, the wifi here is awful",
    "image": "{url}/media/broken/slow.jpg",
}
SLOW_S = 1.0


def _exe() -> list[str]:
    script = Path(sys.executable).parent / "mmner-data"
    if script.exists():
        return [str(script)]
    found = shutil.which("mmner-data")
    if found:
        return [found]
    return [sys.executable, "-c", "from mmner_data.cli import run; run()"]


@pytest.fixture(scope="module")
def server() -> Iterator[SampleServer]:
    with SampleServer(slow_s=SLOW_S) as srv:
        yield srv


@pytest.fixture(scope="module")
def recipe(server: SampleServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recipe")
    extra = {k: v.format(url=server.url) for k, v in EXTRA.items()}
    (folder / "extra.jsonl").write_text(json.dumps(extra) + "\n", encoding="utf-8")
    path = folder / "resume.yaml"
    path.write_text(RECIPE.format(url=server.url), encoding="utf-8")
    return path


def _collect_in_process(recipe: Path, store: Path) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["collect", "-r", str(recipe), "--store", str(store), "--json", "--no-progress"]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def reference(server: SampleServer, recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store an uninterrupted run makes."""
    server.page_delay_s = 0.0
    store = tmp_path_factory.mktemp("reference") / "store"
    out = _collect_in_process(recipe, store)
    assert out["summary"]["source_errors"] == {}
    assert out["report"]["kept_total"] > 100  # a real crawl, not an empty one
    return store


def snapshot(root: Path) -> dict[str, Any]:
    """Every table but ``runs`` (sorted rows) and the set of files under ``images/``."""
    conn = sqlite3.connect(root / "corpus.sqlite")
    names = [
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        if r[0] not in ("runs", "sqlite_sequence")
    ]
    tables = {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}
    conn.close()
    images = root / "images"
    files = sorted(str(p.relative_to(images)) for p in images.rglob("*") if p.is_file())
    return {"tables": tables, "image_files": files}


def _query(db: Path, sql: str) -> Any:
    """One value from the store a live run is writing, or None while it does not exist yet."""
    if not db.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:  # tables not created yet
        return None


# (name, page delay, "kill now" query on the live store)
KILL_POINTS: list[tuple[str, float, str]] = [
    ("first page", 0.4, "SELECT SUM(n_pages) >= 1 FROM cursors"),
    ("between sources", 0.15,
     "SELECT COUNT(*) = 1 FROM cursors WHERE source = 'bluesky' AND n_pages >= 2"),
    ("fetching images", 0.0,
     "SELECT SUM(status = 'ok') > 0 AND SUM(status = 'pending') > 0 FROM post_images"),
]  # fmt: skip


def _kill_when(
    cmd: list[str], env: dict[str, str], ready: Callable[[], bool], limit_s: float = 60.0
) -> None:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + limit_s
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"collect ended before the kill point: {proc.stderr.read()!r}")
            if time.monotonic() > deadline:
                pytest.fail("the kill point was never reached")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize(("point", "delay", "sql"), KILL_POINTS, ids=[k[0] for k in KILL_POINTS])
def test_sigkill_then_rerun_equals_uninterrupted_run(
    point: str,
    delay: float,
    sql: str,
    server: SampleServer,
    recipe: Path,
    reference: Path,
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    db = store / "corpus.sqlite"
    env = {**os.environ, "MMNER_PSEUDONYM_SALT": SALT, "COLUMNS": "200"}
    cmd = [*_exe(), "collect", "-r", str(recipe), "--store", str(store), "--json", "--no-progress"]
    server.page_delay_s = delay
    try:
        _kill_when(cmd, env, lambda: bool(_query(db, sql)))
    finally:
        server.page_delay_s = 0.0

    # The kill landed mid-run: something is stored, and not everything.
    n_posts = _query(db, "SELECT COUNT(*) FROM posts")
    ref_posts = _query(reference / "corpus.sqlite", "SELECT COUNT(*) FROM posts")
    assert _query(db, "SELECT COUNT(*) FROM runs WHERE status = 'running'") == 1
    if point == "fetching images":
        assert n_posts == ref_posts
        assert _query(db, "SELECT COUNT(*) FROM post_images WHERE status = 'pending'") > 0
    else:
        assert 0 < n_posts < ref_posts

    out = _collect_in_process(recipe, store)  # the re-run
    assert out["summary"]["source_errors"] == {}
    statuses = [
        r[0] for r in sqlite3.connect(db).execute("SELECT status FROM runs ORDER BY run_id")
    ]
    assert statuses == ["killed", "ok"]

    got, want = snapshot(store), snapshot(reference)
    for table in want["tables"]:
        assert got["tables"][table] == want["tables"][table], f"table {table} differs"
    assert got["image_files"] == want["image_files"]
    report = json.loads((store / "reports" / "collect_report.json").read_text(encoding="utf-8"))
    ref_report = json.loads((reference / "reports" / "collect_report.json").read_text())
    assert report == ref_report


def test_one_collect_per_store_and_leftovers_are_swept(tmp_path: Path) -> None:
    from mmner_data.collect.pipeline import collect_lock
    from mmner_data.store import CorpusStore, StoreError

    with CorpusStore(tmp_path / "store") as store:
        leftover = store.images_dir / "ab" / ".tmp-half-written"
        leftover.parent.mkdir(parents=True)
        leftover.write_bytes(b"\xff\xd8\xff")
        kept = store.images_dir / "ab" / ("ab" * 32 + ".jpg")
        kept.write_bytes(b"\xff\xd8\xff")
        run_id = store.start_run("collect", {})
        with collect_lock(store):
            assert not leftover.exists() and kept.exists()
            (status,) = store.query("SELECT status FROM runs WHERE run_id=?", (run_id,))[0]
            assert status == "killed"
            with pytest.raises(StoreError, match="another collect or dedup is running"):  # noqa: SIM117
                with collect_lock(store):
                    pass
        with collect_lock(store):  # released
            pass
