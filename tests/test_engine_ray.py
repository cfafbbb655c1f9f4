"""``--engine ray`` gives the local engine's results, on a real local Ray cluster.

One cluster per module (fractional CPUs per worker, so 2 cores never deadlock); every test has
its own timeout so a deadlock fails instead of hanging CI. Compared with the local engine on the
bundled sample: dedup decisions, fetched images, CLIP scores (tiny random model) and predictions
(tiny random 2M-NER); and a driver killed mid-run resumes without redoing a finished shard.
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
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.data")

from tiny_clip import write_tiny_clip
from tiny_models import TYPES, write_tiny_2m_ner

from mmner_data.collect.dedup import DedupItem, DedupSettings, find_duplicates
from mmner_data.engines import EngineSettings
from mmner_data.store import CorpusStore

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RECIPE = REPO / "recipes" / "sample.yaml"
pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster shared by the module's tests (started once: ~5 s)."""
    from mmner_data.engines import ray as rx

    with rx.session(EngineSettings(name="ray")):
        yield


def engine(tmp_path: Path, **kw) -> EngineSettings:
    return EngineSettings(name="ray", lake=str(tmp_path / "lake"), workers=2, **kw)


def rows(store: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(store / "corpus.sqlite") as db:
        return db.execute(sql).fetchall()


# --------------------------------------------------------------------------- dedup


def _corpus(n: int, seed: int) -> list[DedupItem]:
    """Posts with exact copies, near copies (one word changed) and unrelated posts."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(400)]
    base = [" ".join(rng.choice(words, size=rng.integers(8, 20))) for _ in range(n // 3)]
    texts = []
    for i in range(n):
        t = base[rng.integers(len(base))]
        if i % 3 == 1:  # a near copy
            parts = t.split()
            parts[rng.integers(len(parts))] = "changed"
            t = " ".join(parts)
        texts.append(t)
    return [DedupItem(f"p{i}", (f"{i:06d}",), t) for i, t in enumerate(texts)]


def test_dedup_decisions_identical(ray_cluster, tmp_path):
    from mmner_data.engines.stages import text_pairs_on_ray

    items = _corpus(1500, seed=3)
    settings = DedupSettings(text_threshold=0.6)
    local = find_duplicates(items, settings)
    on_ray = find_duplicates(items, settings, text_pairs=text_pairs_on_ray(engine(tmp_path)))
    assert on_ray == local
    dropped = [d for d in local if d.reason]
    assert {d.reason for d in dropped} == {"exact_dup_text", "near_dup_text"}
    assert 300 < len(dropped) < 1400  # the corpus has duplicates of both kinds to find


# --------------------------------------------------------------------------- collect


def _collect(store: Path, overrides: dict) -> None:
    from mmner_data.collect import stage
    from mmner_data.recipes import open_recipe

    with open_recipe(SAMPLE_RECIPE) as recipe, CorpusStore(store) as st:
        stage.run(st, stage.settings(recipe, overrides))


def test_collect_fetch_and_dedup_identical(ray_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("MMNER_PSEUDONYM_SALT", "test-salt")
    _collect(tmp_path / "local", {})
    _collect(tmp_path / "ray", {"engine": "ray", "lake": str(tmp_path / "lake"), "workers": 2})
    for sql in (
        "SELECT post_id, status, drop_reason, dup_of, cluster_id FROM posts ORDER BY post_id",
        "SELECT post_id, position, status, sha256, error FROM post_images ORDER BY 1, 2",
        "SELECT sha256, width, height, format, n_bytes, phash FROM images ORDER BY sha256",
        "SELECT stage, item_id, reason FROM drops ORDER BY 1, 2, 3",
    ):
        assert rows(tmp_path / "ray", sql) == rows(tmp_path / "local", sql), sql
    fetched = rows(tmp_path / "ray", "SELECT COUNT(*) FROM post_images WHERE status='ok'")[0][0]
    assert fetched > 50
    for (sha,) in rows(tmp_path / "ray", "SELECT sha256 FROM images"):
        a = next((tmp_path / "ray" / "images").glob(f"*/{sha}.*")).read_bytes()
        b = next((tmp_path / "local" / "images").glob(f"*/{sha}.*")).read_bytes()
        assert a == b
    # the fetch batches were recorded and removed from the lake
    lake = tmp_path / "lake" / "engine" / "fetch"
    assert not lake.exists() or not list(lake.rglob("*.parquet"))


# --------------------------------------------------------------------------- filter


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("clip"), seed=0)


def _filter(store: Path, model: Path, eng: EngineSettings | None) -> dict:
    from mmner_data.filter.pipeline import run_filter
    from mmner_data.filter.settings import FilterSettings

    s = FilterSettings(model=str(model), device="cpu", num_workers=0, keep_top=1.0, batch_size=8)
    from mmner_data.engines.stages import clip_scorer_on_ray

    score = clip_scorer_on_ray(eng) if eng else None
    with CorpusStore(store) as st:
        return run_filter(st, s, score=score, write_report=False).to_dict()


def test_filter_scores_identical(ray_cluster, sample_store, tiny_clip, tmp_path):
    # one kept post's image file is broken (a truncated JPEG) in the store: unreadable either way
    (path,) = rows(
        sample_store,
        "SELECT i.path FROM images i JOIN post_images pi ON "
        "pi.sha256 = i.sha256 JOIN posts p USING(post_id) WHERE p.status = 'kept' "
        "ORDER BY p.post_id LIMIT 1",
    )[0]
    broken = sample_store / path  # store paths are relative to the store
    broken.write_bytes(broken.read_bytes()[:200])
    other = tmp_path / "other"
    shutil.copytree(sample_store, other)
    local = _filter(sample_store, tiny_clip, None)
    on_ray = _filter(other, tiny_clip, engine(tmp_path, shard_rows=40))
    assert on_ray["scoring"]["scored"] == local["scoring"]["scored"] > 50
    assert on_ray["scoring"]["unreadable"] == local["scoring"]["unreadable"] == 1
    unreadable = "SELECT item_id, reason FROM drops WHERE stage = 'filter'"
    assert rows(other, unreadable) == rows(sample_store, unreadable) != []
    sql = "SELECT post_id, model_id, image_sha256, score FROM relevance ORDER BY post_id"
    a, b = rows(sample_store, sql), rows(other, sql)
    assert [r[:3] for r in a] == [r[:3] for r in b]
    # equal to float32 rounding: a batch's composition (here one image short on one side) can
    # move the last bit of a matrix product; bit for bit when the batches are the same
    assert np.allclose([r[3] for r in a], [r[3] for r in b], rtol=0, atol=1e-6)
    sel = "SELECT post_id, status, kept, threshold FROM relevance_selection ORDER BY post_id"
    assert rows(sample_store, sel) == rows(other, sel)
    # a rerun finds nothing pending and leaves the lake's score shards as they were
    markers = sorted((tmp_path / "lake" / "engine" / "scores").rglob("*.done"))
    assert len(markers) >= 3
    stamps = [m.stat().st_mtime_ns for m in markers]
    again = _filter(other, tiny_clip, engine(tmp_path, shard_rows=40))
    # only the unreadable pair is pending again (as with the local engine): only its shard redone
    assert (again["scoring"]["scored"], again["scoring"]["unreadable"]) == (0, 1)
    changed = [m for m, t in zip(markers, stamps, strict=True) if m.stat().st_mtime_ns != t]
    assert len(changed) == 1


# --------------------------------------------------------------------------- preannotate


@pytest.fixture(scope="module")
def tiny_ner(tmp_path_factory) -> Path:
    return write_tiny_2m_ner(tmp_path_factory.mktemp("ner"))["ner"]


def test_predictions_identical(ray_cluster, sample_store, tiny_ner, tmp_path):
    from mmner_data.engines.stages import preannotate_on_ray
    from mmner_data.preannotate.predict import run_preannotate

    other = tmp_path / "other"
    shutil.copytree(sample_store, other)
    with CorpusStore(sample_store) as st:
        local = run_preannotate(st, str(tiny_ner), batch_size=8, device="cpu", entity_types=TYPES)
    with CorpusStore(other) as st:
        on_ray = preannotate_on_ray(engine(tmp_path, shard_rows=50))(
            st, str(tiny_ner), batch_size=8, device="cpu", entity_types=TYPES
        )
    for key in ("model_version", "predicted", "with_image", "spans", "spans_by_label", "tokens"):
        assert on_ray[key] == local[key], key
    assert local["predicted"] > 50 and local["spans"] > 0
    sql = "SELECT post_id, model_version, spans_json, score FROM predictions ORDER BY post_id"
    a, b = rows(sample_store, sql), rows(other, sql)
    assert [r[:2] for r in a] == [r[:2] for r in b]
    for ra, rb in zip(a, b, strict=True):
        sa, sb = json.loads(ra[2]), json.loads(rb[2])
        assert [(s["start"], s["end"], s["label"]) for s in sa] == [
            (s["start"], s["end"], s["label"]) for s in sb
        ]
        assert np.allclose(
            [s.get("score", 0) for s in sa], [s.get("score", 0) for s in sb], atol=1e-5
        )
        assert ra[3] == pytest.approx(rb[3], abs=1e-5)


# --------------------------------------------------------------------------- kill and rerun

_DRIVER = """
import sys
from mmner_data.engines import EngineSettings
from mmner_data.engines.stages import clip_scorer_on_ray
from mmner_data.filter.pipeline import run_filter
from mmner_data.filter.settings import FilterSettings
from mmner_data.store import CorpusStore
store, model, lake = sys.argv[1:4]
s = FilterSettings(model=model, device="cpu", num_workers=0, keep_top=1.0, batch_size=8)
eng = EngineSettings(name="ray", lake=lake, workers=1, shard_rows=20)
with CorpusStore(store) as st:
    run_filter(st, s, score=clip_scorer_on_ray(eng), write_report=False)
"""


def test_killed_driver_resumes_without_redoing_shards(sample_store, tiny_clip, tmp_path):
    """A driver SIGKILLed after some score shards are done; the rerun redoes none of them and
    ends with the scores of an uninterrupted run, each post scored once in the lake."""
    lake = tmp_path / "lake"
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER, encoding="utf-8")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    args = [sys.executable, str(script), str(sample_store), str(tiny_clip), str(lake)]
    proc = subprocess.Popen(args, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(lake.glob("engine/scores/*/*.done"))) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the driver finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local cluster it started
    finally:
        proc.wait(timeout=60)
    before = {m.name: m.stat().st_mtime_ns for m in lake.glob("engine/scores/*/*.done")}
    assert len(before) >= 2
    assert subprocess.run(args, env=env, timeout=400).returncode == 0
    after = {m.name: m.stat().st_mtime_ns for m in lake.glob("engine/scores/*/*.done")}
    assert {k: after[k] for k in before} == before  # no finished shard done twice
    assert len(after) > len(before)

    import pyarrow.parquet as pq

    ids = [
        i
        for p in sorted(lake.glob("engine/scores/*/*.parquet"))
        for i in pq.read_table(p, columns=["post_id"]).column(0).to_pylist()
    ]
    assert len(ids) == len(set(ids))  # no row twice across shards
    reference = tmp_path / "reference"
    shutil.copytree(sample_store, reference)
    with sqlite3.connect(reference / "corpus.sqlite") as db:
        db.execute("DELETE FROM relevance")
        db.execute("DELETE FROM relevance_selection")
    _filter(reference, tiny_clip, None)
    sql = "SELECT post_id, image_sha256, score FROM relevance ORDER BY post_id"
    a, b = rows(reference, sql), rows(sample_store, sql)
    assert [r[:2] for r in a] == [r[:2] for r in b] and len(a) == len(ids)
    assert np.allclose([r[2] for r in a], [r[2] for r in b], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- command line


def test_cli_dedup_on_ray_and_a_bad_engine(sample_store, tmp_path):
    """``mmner-data dedup --engine ray`` decides as before; a wrong engine is one line, exit 1."""
    from typer.testing import CliRunner

    from mmner_data.cli import app

    sql = "SELECT post_id, status, drop_reason, dup_of FROM posts ORDER BY post_id"
    before = rows(sample_store, sql)
    args = ["dedup", "--recipe", str(SAMPLE_RECIPE), "--store", str(sample_store)]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [
        sys.executable,
        "-c",
        "from mmner_data.cli import run; run()",
        *args,
        "--engine",
        "ray",
        "--workers",
        "1",
        "--lake",
        str(tmp_path / "lake"),
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert rows(sample_store, sql) == before
    engine_row = rows(sample_store, "SELECT params_json FROM runs ORDER BY run_id DESC LIMIT 1")
    assert json.loads(engine_row[0][0])["engine"] == "ray"

    bad = CliRunner().invoke(app, [*args, "--engine", "spark"])
    assert bad.exit_code == 1
    assert "engine: 'spark' is not one of local, ray" in bad.output
    assert "Traceback" not in bad.output
    # a cluster address that does not answer (loopback, a closed port): one line, at once
    gone = CliRunner().invoke(app, [*args, "--engine", "ray", "--ray-address", "127.0.0.1:1"])
    assert gone.exit_code == 1
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in gone.output
    assert "Traceback" not in gone.output
    assert rows(sample_store, sql) == before
    # `run` hands the engine options to collect, filter and preannotate
    whole = CliRunner().invoke(
        app,
        [
            "run",
            "--recipe",
            str(SAMPLE_RECIPE),
            "--store",
            str(sample_store),
            "--engine",
            "spark",
            "--no-progress",
        ],
    )
    assert whole.exit_code == 1
    assert "stage collect failed: engine: 'spark' is not one of local, ray" in whole.output


# --------------------------------------------------------------------------- fetch resume


def test_fetch_resume_records_a_killed_runs_shards_without_fetching_again(ray_cluster, tmp_path):
    """Fetch shards a killed driver left in the lake are recorded, not fetched again; each
    request gets exactly one result; the leftovers are removed afterwards."""
    from test_images import LOOPBACK_AND_FILES, LoopbackServer, _encode, _photo, serve

    from mmner_data.collect.images import ImageLimits, ImageRequest
    from mmner_data.engines.stages import ENGINE_TABLES, fetch_on_ray
    from mmner_data.engines.work import FetchShard
    from mmner_data.lake import Lake

    srv = LoopbackServer()
    try:
        body = _encode(_photo("astronaut", (320, 240)))
        urls = [srv.add(f"/img/{i}.jpg", serve(body)) for i in range(8)]
        srv.add("/missing.jpg", lambda h: h.send_error(404))
        urls.append(srv.url("/missing.jpg"))
        reqs = [ImageRequest((f"p{i}", 0), u, LOOPBACK_AND_FILES) for i, u in enumerate(urls)]
        limits = ImageLimits(timeout_s=10, retries=0)
        eng = engine(tmp_path)
        lake = Lake(eng.lake_root(tmp_path))
        # what a killed run left: the first five requests fetched and written, never recorded
        old = f"{ENGINE_TABLES}/fetch/killedrun"
        task = {
            "lake": lake.root,
            "table": old,
            "shard": 0,
            "requests": [(f"p{i}", 0, urls[i], LOOPBACK_AND_FILES) for i in range(5)],
        }
        FetchShard(limits)(task)
        assert sum(len(v) for v in srv.hits.values()) == 5
        got: dict = {}

        def on_result(req, res):
            assert req.key not in got
            got[req.key] = res

        counts = fetch_on_ray(reqs, limits, on_result, eng, tmp_path)
    finally:
        srv.close()
    assert counts["resumed"] == 5 and counts["fetched"] == 4
    assert sorted(got) == sorted(r.key for r in reqs)
    assert {k: len(v) for k, v in srv.hits.items()} == {
        **{f"/img/{i}.jpg": 1 for i in range(8)},
        "/missing.jpg": 1,
    }
    assert got[("p8", 0)].reason == "http_status"
    shas = {got[(f"p{i}", 0)].image.sha256 for i in range(8)}
    assert len(shas) == 1  # the same photo, the same normalised bytes from either run
    leftovers = lake.tables(f"{ENGINE_TABLES}/fetch")
    assert all(not lake.done(f"{t}/results") for t in leftovers)  # recorded, then dropped
