"""The lake (``mmner_data.lake``): store → shards → store is lossless, resumable and idempotent,
and an import trusts nothing in the lake (tampered tars, malformed Parquet, hostile rows).

Everything runs on the collected sample store (no model is run: scores, a filter selection and
predictions are written into the store directly) and on real files, local or ``memory://``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import tarfile
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from mmner_data.cli import app
from mmner_data.labels import eligible_posts
from mmner_data.lake import (
    FORMAT_VERSION,
    Lake,
    LakeError,
    digest_ids,
    export_store,
    import_store,
    model_slug,
    shard_of,
)
from mmner_data.store import CorpusStore

MODEL = "ViT-B-32:laion2b_s34b_b79k"
VERSIONS = ("bundled-e5@2024-06", "hf:Davlan/xlm-roberta-base-ner-hrl@1a2b3c")
SHARD_ROWS = 40  # the sample's 163 posts → 5 shards
DATA_TABLES = (
    "posts",
    "post_images",
    "images",
    "drops",
    "relevance_models",
    "relevance",
    "relevance_selection",
    "predictions",
)


# -- fixtures ---------------------------------------------------------------------------------


def _add_derived(root: Path, *, select: bool) -> None:
    """Scores of one CLIP model, predictions of two model versions and (optionally) a filter
    selection that drops every third kept post, written as the filter/preannotate stages would."""
    with CorpusStore(root) as st, st.transaction() as conn:
        conn.execute(
            "INSERT INTO relevance_models(model_id, backend, name, pretrained, "
            "checkpoint_sha256, library_version, created_at) VALUES(?, ?, ?, ?, ?, ?, ?)",
            (MODEL, "open_clip", "ViT-B-32", "laion2b_s34b_b79k", None, "3.0.0", "2026-01-01"),
        )
        kept = conn.execute(
            "SELECT p.post_id, p.lang, p.text, "
            "(SELECT pi.sha256 FROM post_images pi WHERE pi.post_id=p.post_id AND pi.status='ok' "
            "ORDER BY pi.position LIMIT 1) AS sha FROM posts p WHERE p.status='kept' "
            "ORDER BY p.ingest_seq"
        ).fetchall()
        for i, (pid, lang, text, sha) in enumerate(kept):
            score = round(0.1 + (i % 17) / 40, 6)
            if sha:
                conn.execute(
                    "INSERT INTO relevance VALUES(?, ?, ?, ?, ?)",
                    (pid, MODEL, sha, score, "2026-01-02T00:00:00+00:00"),
                )
            if select:
                keep = i % 3 != 0
                conn.execute(
                    "INSERT INTO relevance_selection VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        pid,
                        MODEL,
                        lang,
                        "kept" if keep else "dropped_low_relevance",
                        int(keep),
                        score,
                        0.2,
                        "threshold",
                        "2026-01-03T00:00:00+00:00",
                    ),
                )
            for j, version in enumerate(VERSIONS):
                if (i + j) % 4 == 3:
                    continue  # not every post has a prediction of every version
                end = min(len(text), 3 + j)
                spans = [{"start": 0, "end": end, "label": "ORG", "score": 0.5 + j / 10}]
                conn.execute(
                    "INSERT INTO predictions VALUES(?, ?, ?, ?, ?)",
                    (pid, version, json.dumps(spans), 0.25 * (j + 1), "2026-01-04T00:00:00"),
                )


@pytest.fixture
def full_store(sample_store: Path) -> Path:
    _add_derived(sample_store, select=False)
    return sample_store


@pytest.fixture
def selected_store(sample_store: Path) -> Path:
    _add_derived(sample_store, select=True)
    return sample_store


def dump(root: Path, post_ids: set[str] | None = None) -> dict[str, list[tuple]]:
    """Every row of the data tables (sorted), plus the bytes of every image file."""
    out: dict[str, list[tuple]] = {}
    conn = sqlite3.connect(root / "corpus.sqlite")
    try:
        for table in DATA_TABLES:
            cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            rows = [dict(zip(cols, r, strict=True)) for r in conn.execute(f"SELECT * FROM {table}")]
            if post_ids is not None and table == "drops":
                rows = [r for r in rows if r["item_id"].rsplit("#", 1)[0] in post_ids]
            out[table] = sorted((tuple(sorted(r.items())) for r in rows), key=repr)
        out["image_bytes"] = sorted(
            (sha, (root / path).read_bytes())
            for sha, path in conn.execute("SELECT sha256, path FROM images")
        )
    finally:
        conn.close()
    return out


def post_ids(root: Path) -> set[str]:
    conn = sqlite3.connect(root / "corpus.sqlite")
    try:
        return {r[0] for r in conn.execute("SELECT post_id FROM posts")}
    finally:
        conn.close()


def export(root: Path, lake: Lake, **kw) -> dict:
    kw.setdefault("shard_rows", SHARD_ROWS)
    with CorpusStore(root, create=False) as st:
        return export_store(st, lake, **kw)


def import_(lake: Lake, root: Path, **kw) -> dict:
    with CorpusStore(root) as st:
        return import_store(lake, st, **kw)


def marker_path(lake_root: Path, table: str, shard: int) -> Path:
    return lake_root / table / f"part-{shard:05d}.done"


# -- the API pieces ---------------------------------------------------------------------------


def test_names_digests_and_partitions_are_stable():
    lake = Lake("memory://names")
    assert lake.path("scores/x-1", 3, "parquet") == "memory://names/scores/x-1/part-00003.parquet"
    slugs = {model_slug(v) for v in (*VERSIONS, MODEL, "a/b", "a_b", "a b", "../..", "")}
    assert len(slugs) == 8  # collision-free even where the readable parts agree
    for slug in slugs:
        assert "/" not in slug and not slug.startswith(".") and slug.isascii()
    assert model_slug("a/b").startswith("a-b-")
    assert digest_ids(["b", "a"]) == digest_ids(["a", "b"]) != digest_ids(["a", "b", "c"])
    assert digest_ids(["ab", "c"]) != digest_ids(["a", "bc"])
    shards = [shard_of(f"post-{i}", 7) for i in range(500)]
    assert set(shards) == set(range(7))
    assert shard_of("post-1", 7) == shards[1]  # same in every call (and process: xxh64)
    assert shard_of("mastodon:1", 1_000_003) == 360_580  # pinned: xxh64, not Python's salted hash()


def test_rows_and_images_round_trip_with_markers_written_last(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    rows = pa.table({"post_id": ["p2", "p1"], "model_version": ["v", "v"], "x": [1.5, None]})
    marker = lake.write_rows(
        "predictions/v-1",
        1,
        rows,
        id_columns=["post_id", "model_version"],
        meta={"model_version": "v"},
    )
    assert marker["rows"] == 2 and marker["model_version"] == "v"
    assert marker["format_version"] == FORMAT_VERSION and marker["written_at"]
    assert lake.is_done("predictions/v-1", 1, marker["digest"])
    assert not lake.is_done("predictions/v-1", 1, digest_ids(["p1"]))
    assert not lake.is_done("predictions/v-1", 0)
    lake.write_rows("predictions/v-1", 0, rows.slice(0, 1), id_columns=["post_id"])
    # a shard whose data is there but whose marker is not is never read
    (tmp_path / "lake" / "predictions" / "v-1" / "part-00002.parquet").write_bytes(b"partial")
    assert sorted(lake.done("predictions/v-1")) == [0, 1]
    assert lake.read_rows("predictions/v-1", columns=["post_id"]).column(0).to_pylist() == [
        "p2",
        "p2",
        "p1",
    ]
    with pytest.raises(LakeError, match="shard 2 has no valid done marker"):
        lake.read_rows("predictions/v-1", 2)

    images = [({"format": "png", "width": 1}, b"\x89PNG one"), ({"format": "jpeg"}, b"two")]
    marker = lake.write_images("images", 0, [*images, images[0]])
    assert marker["rows"] == 2  # one image once per shard
    got = list(lake.read_images("images", 0))
    assert [data for _, data in got] == [b"\x89PNG one", b"two"]
    row = got[1][0]
    assert row["member"] == f"{hashlib.sha256(b'two').hexdigest()}.jpg"
    assert lake.read_image("images", 0, row["offset"], row["size"]) == b"two"
    with tarfile.open(tmp_path / "lake" / "images" / "part-00000.tar") as tar:  # a standard tar
        assert tar.extractfile(row["member"]).read() == b"two"
    with pytest.raises(LakeError, match="do not match their sha256"):
        lake.write_images("images", 1, [({"sha256": "0" * 64}, b"x")])


def test_a_root_of_another_format_or_version_is_refused(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "_lake.json").write_text(json.dumps({"format": "delta", "format_version": 1}))
    with pytest.raises(LakeError, match="not an mmner-lake lake"):
        Lake(str(other))
    (other / "_lake.json").write_text(json.dumps({"format": "mmner-lake", "format_version": 99}))
    with pytest.raises(LakeError, match="version 99"):
        Lake(str(other))
    (other / "_lake.json").write_text("{not json")
    with pytest.raises(LakeError, match="not JSON"):
        Lake(str(other))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(LakeError, match="not a lake"):
        Lake(str(busy)).write_rows("posts", 0, pa.table({"post_id": ["a"]}), id_columns=["post_id"])
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(LakeError, match="is a file"):
        Lake(str(tmp_path / "file"))
    assert not Lake(str(tmp_path / "new")).exists  # reading creates nothing
    assert not (tmp_path / "new").exists()


# -- export / import --------------------------------------------------------------------------


def test_round_trip_is_lossless(full_store, tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    summary = export(full_store, lake, subset="all")
    assert summary["shards"] == 5 and summary["posts"] == 163
    slug = model_slug(MODEL)
    assert summary["relevance_models"] == {slug: MODEL}
    assert sorted(summary["model_versions"].values()) == sorted(VERSIONS)
    marker = lake.done(f"scores/{slug}")[0]
    assert (
        marker["model_version"] == MODEL and marker["meta"]["relevance_model"]["name"] == "ViT-B-32"
    )
    posts = lake.read_rows("posts")
    assert posts.num_rows == 163
    assert posts.column("ingest_seq").to_pylist() == sorted(posts.column("ingest_seq").to_pylist())
    assert (
        lake.read_rows("posts", 1).column("ingest_seq").to_pylist()[0]
        == posts.column("ingest_seq").to_pylist()[SHARD_ROWS]
    )
    assert "path" not in lake.read_rows("images").column_names
    meta = json.loads((tmp_path / "lake" / "_lake.json").read_text())
    assert meta["format"] == "mmner-lake" and meta["format_version"] == FORMAT_VERSION

    new = tmp_path / "new"
    result = import_(lake, new, subset="all")
    assert result["shards_skipped"] == 0, result["skipped"]
    assert result["new"]["posts"] == 163 and result["new"]["predictions"] > 0
    assert dump(new) == dump(full_store, post_ids(full_store))
    # the lake never carries the store's pseudonym salt or any other meta
    with CorpusStore(full_store) as st:
        st.set_meta("pseudonym_salt", "s3cr3t-salt-value")
    export(full_store, Lake(str(tmp_path / "lake2")), subset="all")
    for path in (tmp_path / "lake2").rglob("*"):
        if path.is_file():
            assert b"s3cr3t-salt-value" not in path.read_bytes()


def test_kept_subset_follows_the_filter_selection(selected_store, tmp_path):
    with CorpusStore(selected_store) as st:
        eligible = {p.post_id for p in eligible_posts(st).posts}
        kept = {r[0] for r in st.query("SELECT post_id FROM posts WHERE status='kept'")}
    assert 0 < len(eligible) < len(kept)
    lake = Lake(str(tmp_path / "lake"))
    export(selected_store, lake, subset="kept")
    assert set(lake.read_rows("posts").column("post_id").to_pylist()) == eligible
    # the lake of all candidates, imported as "kept", gives the same eligible posts
    lake_all = Lake(str(tmp_path / "all"))
    export(selected_store, lake_all, subset="candidates")
    assert set(lake_all.read_rows("posts").column("post_id").to_pylist()) == kept
    new = tmp_path / "new"
    result = import_(lake_all, new, subset="kept")
    assert result["filter_applied"] and result["posts_selected"] == len(eligible)
    with CorpusStore(new) as st:
        assert {p.post_id for p in eligible_posts(st).posts} == eligible
        n_scores = st.query("SELECT COUNT(*) FROM relevance")[0][0]
        assert st.query("SELECT COUNT(*) FROM images")[0][0] > 0
    assert result["derived_rows_without_post"] > 0  # scores of posts not imported stay out
    assert n_scores == result["new"]["relevance"] > 0


def test_rerun_skips_done_shards_and_rewrites_unfinished_ones(full_store, tmp_path):
    root = tmp_path / "lake"
    lake = Lake(str(root))
    first = export(full_store, lake, subset="all")
    assert first["shards_skipped"] == 0
    files = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}

    again = export(full_store, Lake(str(root)), subset="all")
    assert again["shards_written"] == 0 and again["shards_skipped"] == first["shards_written"]
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == files

    # a kill mid-export: posts shard 1 without its marker, images shard 2 half written, and a
    # posts file that changed under its marker (the marker no longer vouches for it)
    marker_path(root, "posts", 1).unlink()
    marker_path(root, "images", 2).unlink()
    tar = root / "images" / "part-00002.tar"
    tar.write_bytes(tar.read_bytes()[:1000])
    part0 = root / "posts" / "part-00000.parquet"
    part0.write_bytes(part0.read_bytes()[:-10])
    assert sorted(Lake(str(root)).done("posts")) == [2, 3, 4]
    third = export(full_store, Lake(str(root)), subset="all")
    assert third["tables"]["posts"]["shards_written"] == 2
    assert third["tables"]["images"]["shards_written"] == 1
    assert third["shards_written"] == 3
    rewritten = {
        root / table / f"part-{k:05d}.{ext}"
        for table, k, exts in (
            ("posts", 0, ("parquet", "done")),
            ("posts", 1, ("parquet", "done")),
            ("images", 2, ("tar", "parquet", "done")),
        )
        for ext in exts
    }
    assert rewritten <= set(files)
    for path, mtime in files.items():
        assert (path.stat().st_mtime_ns != mtime) == (path in rewritten), path
    new = tmp_path / "new"
    assert import_(Lake(str(root)), new, subset="all")["shards_skipped"] == 0
    assert dump(new) == dump(full_store, post_ids(full_store))

    # a smaller export to the same root removes the shards it no longer has
    fourth = export(full_store, Lake(str(root)), subset="all", shard_rows=100)
    assert fourth["shards"] == 2 and fourth["stale_shards_removed"] > 0
    assert sorted(Lake(str(root)).done("posts")) == [0, 1]
    assert not (root / "posts" / "part-00004.parquet").exists()


def test_import_twice_adds_nothing(full_store, tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    export(full_store, lake, subset="all")
    new = tmp_path / "new"
    first = import_(lake, new, subset="all")
    before = dump(new)
    second = import_(lake, new, subset="all")
    assert set(second["new"].values()) == {0}, second["new"]
    assert first["new"]["images"] == len(before["images"])
    assert dump(new) == before


def _rewrite_index(root: Path, shard: int, change) -> None:
    """Rewrite an image shard's index (and its marker's sizes) as a hostile writer could."""
    lake = Lake(str(root))
    old = lake.done("images")[shard]
    rows = lake.read_rows("images", shard).to_pylist()
    change(rows)
    marker = lake.write_rows("images", shard, pa.Table.from_pylist(rows), id_columns=["sha256"])
    marker["files"].update({k: v for k, v in old["files"].items() if k.endswith(".tar")})
    marker_path(root, "images", shard).write_text(json.dumps(marker))


def test_tampered_and_malformed_shards_are_skipped_with_a_reason(full_store, tmp_path):
    root = tmp_path / "lake"
    lake = Lake(str(root))
    export(full_store, lake, subset="all")
    by_shard = {k: lake.read_rows("posts", k).column("post_id").to_pylist() for k in range(5)}

    # shard 0: one changed byte inside a tar member (same size: the marker still matches)
    index = lake.read_rows("images", 0).to_pylist()
    tar = root / "images" / "part-00000.tar"
    data = bytearray(tar.read_bytes())
    data[index[0]["offset"] + 100] ^= 0xFF
    tar.write_bytes(bytes(data))
    with pytest.raises(LakeError, match="images shard 0"):
        list(lake.read_images("images", 0))
    # shard 1: the posts Parquet is garbage of the same size
    part = root / "posts" / "part-00001.parquet"
    part.write_bytes(os.urandom(part.stat().st_size))
    # shard 2: a well-formed Parquet with a status no store knows (marker rewritten to match)
    rows = lake.read_rows("posts", 2).to_pylist()
    rows[3]["status"] = "published"
    lake.write_rows(
        "posts",
        2,
        pa.Table.from_pylist(rows, lake.read_rows("posts", 3).schema),
        id_columns=["post_id"],
    )
    # shard 3: an index member named to escape the store, and a forged offset
    _rewrite_index(root, 3, lambda rows: rows[0].update(member="../../../evil.jpg"))
    # shard 4: an index row that points outside the tar
    _rewrite_index(root, 4, lambda rows: rows[0].update(offset=10**12))

    new = tmp_path / "new"
    result = import_(Lake(str(root)), new, subset="all")
    reasons = {(s["table"], s["shard"]): s["reason"] for s in result["skipped"]}
    assert set(reasons) == {("posts", k) for k in range(5)}, reasons
    assert "do not match its sha256" in reasons[("posts", 0)]
    assert "unreadable Parquet" in reasons[("posts", 1)]
    assert "status 'published'" in reasons[("posts", 2)]
    assert "not named by its sha256" in reasons[("posts", 3)]
    assert "outside the tar" in reasons[("posts", 4)]
    assert result["shards_imported"] == 0 and result["new"]["posts"] == 0
    with CorpusStore(new) as st:
        assert st.counts() == {"posts": 0, "images": 0, "post_images": 0, "drops": 0}
    assert not list(tmp_path.rglob("evil.jpg"))
    stored = list((new / "images").rglob("*")) if (new / "images").exists() else []
    assert not [p for p in stored if p.is_file()]  # nothing was checked in, nothing placed

    # repair: a re-export rewrites the shards whose content differs (2, 3, 4); damage under an
    # intact marker (0, 1) is repaired by deleting the marker first
    marker_path(root, "images", 0).unlink()
    marker_path(root, "posts", 1).unlink()
    repaired = export(full_store, Lake(str(root)), subset="all")
    assert repaired["tables"]["posts"]["shards_written"] == 2
    assert repaired["tables"]["images"]["shards_written"] == 3
    fixed = import_(Lake(str(root)), new, subset="all")
    assert fixed["shards_skipped"] == 0
    assert post_ids(new) == {p for k in range(5) for p in by_shard[k]}


def test_bad_rows_in_derived_shards_are_skipped(full_store, tmp_path):
    root = tmp_path / "lake"
    lake = Lake(str(root))
    export(full_store, lake, subset="all")
    table = f"predictions/{model_slug(VERSIONS[0])}"
    rows = lake.read_rows(table, 0).to_pylist()
    rows[0]["spans_json"] = json.dumps([{"start": 0, "end": 10**6, "label": "ORG"}])
    lake.write_rows(
        table,
        0,
        pa.Table.from_pylist(rows),
        id_columns=["post_id", "model_version"],
        meta={"model_version": VERSIONS[0]},
    )
    scores = f"scores/{model_slug(MODEL)}"
    rows = lake.read_rows(scores, 1).to_pylist()
    rows[-1]["model_id"] = "another-model"
    lake.write_rows(
        scores,
        1,
        pa.Table.from_pylist(rows),
        id_columns=["post_id", "model_id"],
        meta={"model_version": MODEL},
    )  # a row of another model in this model's table
    result = import_(lake, tmp_path / "new", subset="all")
    reasons = {(s["table"], s["shard"]): s["reason"] for s in result["skipped"]}
    assert set(reasons) == {(table, 0), (scores, 1)}
    assert "outside the post's text" in reasons[(table, 0)]
    assert "model_id 'another-model' is not the shard's" in reasons[(scores, 1)]
    assert result["shards_imported"] == 5 and result["new"]["posts"] == 163


def test_derived_shards_of_another_writer_are_left_alone_and_imported(full_store, tmp_path):
    """An engine's worker writes scores/<slug> shards its own way (id post_id, no scored_at, an
    unscored row, no relevance_models row in the marker): export keeps them, import reads them."""
    root = tmp_path / "lake"
    lake = Lake(str(root))
    export(full_store, lake, subset="all")
    table = f"scores/{model_slug(MODEL)}"
    rows = lake.read_rows(table, 0).to_pylist()
    unscored = next(
        p
        for p in lake.read_rows("posts", 0).column("post_id").to_pylist()
        if p not in {r["post_id"] for r in rows}
    )
    engine_rows = [
        {
            "post_id": r["post_id"],
            "model_id": MODEL,
            "image_sha256": r["image_sha256"],
            "score": r["score"] + 1.0,
            "error": None,
        }
        for r in rows
    ] + [
        {
            "post_id": unscored,
            "model_id": MODEL,
            "image_sha256": None,
            "score": None,
            "error": "undecodable",
        }
    ]
    marker = lake.write_rows(
        table,
        0,
        pa.Table.from_pylist(engine_rows),
        id_columns=["post_id"],
        meta={"model_id": MODEL},
    )
    again = export(full_store, Lake(str(root)), subset="all")
    assert again["tables"][table]["shards_foreign"] == 1
    assert again["shards_written"] == 0
    assert Lake(str(root)).done(table)[0] == marker

    new = tmp_path / "new"
    result = import_(Lake(str(root)), new, subset="all")
    assert result["shards_skipped"] == 0, result["skipped"]
    assert result["derived_rows_without_score"] == 1
    with CorpusStore(new) as st:
        got = {
            r["post_id"]: (r["score"], r["scored_at"])
            for r in st.query(
                f"SELECT * FROM relevance WHERE post_id IN ({','.join('?' * len(rows))})",
                [r["post_id"] for r in rows],
            )
        }
        assert st.query("SELECT COUNT(*) FROM relevance WHERE post_id=?", [unscored])[0][0] == 0
    assert got == {r["post_id"]: (r["score"] + 1.0, marker["written_at"]) for r in rows}


def test_a_memory_root_works_like_a_folder(full_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"memory://lake-{uuid.uuid4().hex}"
    try:
        lake = Lake(url)
        summary = export(full_store, lake, subset="all")
        assert summary["shards"] == 5
        fs = fsspec.filesystem("memory")
        assert fs.exists(f"{url}/posts/part-00000.done")
        assert fs.exists(f"{url}/images/part-00004.tar")
        assert export(full_store, Lake(url), subset="all")["shards_written"] == 0
        new = tmp_path / "new"
        assert import_(Lake(url), new, subset="all")["shards_skipped"] == 0
        assert dump(new) == dump(full_store, post_ids(full_store))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "store"]  # nothing else
    finally:
        fsspec.filesystem("memory").rm(url.removeprefix("memory://"), recursive=True)


def test_parquet_is_what_other_tools_read(full_store, tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    export(full_store, lake, subset="all")
    table = pq.read_table(tmp_path / "lake" / "posts" / "part-00000.parquet")
    assert table.num_rows == SHARD_ROWS and "text" in table.column_names
    index = pq.read_table(tmp_path / "lake" / "images" / "part-00000.parquet")
    assert {"sha256", "member", "offset", "size", "width", "height", "phash"} <= set(
        index.column_names
    )
    raw = (tmp_path / "lake" / "images" / "part-00000.tar").read_bytes()
    first = index.to_pylist()[0]
    data = raw[first["offset"] : first["offset"] + first["size"]]
    assert hashlib.sha256(data).hexdigest() == first["sha256"]
    assert io.BytesIO(data).read(2) == b"\xff\xd8"  # a JPEG


# -- the command line -------------------------------------------------------------------------


def test_cli_export_and_import(full_store, tmp_path):
    runner = CliRunner()
    root = str(tmp_path / "lake")
    res = runner.invoke(
        app,
        [
            "lake",
            "export",
            "--store",
            str(full_store),
            "--to",
            root,
            "--subset",
            "all",
            "--shard-rows",
            "50",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "exported 163 post(s) (all)" in res.output and "4 shard(s)" in res.output
    res = runner.invoke(
        app,
        [
            "lake",
            "export",
            "--store",
            str(full_store),
            "--to",
            root,
            "--subset",
            "all",
            "--shard-rows",
            "50",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["shards_written"] == 0
    new = tmp_path / "new"
    res = runner.invoke(
        app, ["lake", "import", "--from", root, "--store", str(new), "--subset", "all", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["new"]["posts"] == 163
    res = runner.invoke(app, ["lake", "import", "--from", root, "--store", str(new)])
    assert res.exit_code == 0 and "new rows: posts 0" in res.output

    for args, message in (
        (
            ["export", "--store", str(full_store), "--to", root, "--subset", "some"],
            "unknown subset",
        ),
        (["import", "--from", str(tmp_path / "nowhere"), "--store", str(new)], "no lake at"),
        (["export", "--store", str(tmp_path / "missing"), "--to", root], "no corpus store"),
    ):
        res = runner.invoke(app, ["lake", *args])
        assert res.exit_code == 1, res.output
        assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "missing").exists()


def test_a_damaged_image_file_in_the_store_is_left_out_and_named(full_store, tmp_path):
    """Skip and record: one store image whose bytes no longer match its sha256 (a truncated
    file) is left out of its tar shard and named in the marker; the rest of the export stands,
    and a rerun neither rewrites that shard nor fails."""
    with sqlite3.connect(full_store / "corpus.sqlite") as db:
        sha, path = db.execute("SELECT sha256, path FROM images ORDER BY sha256 LIMIT 1").fetchone()
    broken = full_store / path
    broken.write_bytes(broken.read_bytes()[:200])
    root = tmp_path / "lake"
    first = export(full_store, Lake(str(root)), subset="all")
    assert first["tables"]["images"]["images_skipped"] == 1
    markers = {k: m for k, m in Lake(str(root)).done("images").items() if m["meta"].get("skipped")}
    ((k, marker),) = markers.items()
    assert marker["meta"]["skipped"] == {sha: "bytes do not match the sha256"}
    with tarfile.open(root / "images" / f"part-{k:05d}.tar") as tar:
        names = tar.getnames()
    assert not any(n.startswith(sha) for n in names) and names
    stamp = marker_path(root, "images", k).stat().st_mtime_ns
    again = export(full_store, Lake(str(root)), subset="all")
    assert again["shards_written"] == 0
    assert marker_path(root, "images", k).stat().st_mtime_ns == stamp
