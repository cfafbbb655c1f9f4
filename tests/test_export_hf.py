"""``export``: the DatasetDict, the Twitter-2015 files, the card, pseudonymisation and leakage.

Gold labels are the sample's hand-made entities (``posts.jsonl``) written as ``adjudication``
rows; silver ones are ``predictions`` rows. Everything goes through the real store and writers.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from export_helpers import (
    SAMPLE_RECIPE,
    by_text,
    insert_gold,
    insert_predictions,
    sample_recipe,
    sample_records,
)
from typer.testing import CliRunner

from mmner_data.cli import app
from mmner_data.export.pipeline import ExportError, group_posts, run_export
from mmner_data.export.records import bio_names, export_id
from mmner_data.export.settings import build_export_settings
from mmner_data.export.splits import SplitItem, assign_splits
from mmner_data.export.twitter2015 import read_twitter2015
from mmner_data.store import CorpusStore, utcnow
from mmner_data.text.spans import tags_to_spans
from mmner_data.text.tokenize import Token

SALT = "test-salt"  # set by tests/conftest.py's collected_sample fixture


def _export(store: CorpusStore, out: Path, **settings) -> dict:
    recipe = sample_recipe()
    s = build_export_settings({}, settings)
    text = SAMPLE_RECIPE.read_text()
    return run_export(store, recipe, s, out=out, recipe_text=text).to_dict()


def _ids(store: CorpusStore) -> dict[str, str]:
    """export id → post id for every post of the store."""
    return {
        export_id(SALT, r["post_id"], r["lang"] or "und"): r["post_id"]
        for r in store.query("SELECT post_id, lang FROM posts")
    }


def _rows(out: Path) -> dict[str, list[dict]]:
    from datasets import load_from_disk

    dd = load_from_disk(str(out))
    return {name: list(ds) for name, ds in dd.items()}


def test_gold_export_loads_decodes_and_round_trips_to_stored_spans(sample_store, tmp_path):
    from datasets import ClassLabel, load_dataset, load_from_disk

    out = tmp_path / "export"
    with CorpusStore(sample_store) as st:
        gold = insert_gold(st)
        summary = _export(st, out, formats="both", parquet=True)
        ids = _ids(st)
        texts = {r["post_id"]: r["text"] for r in st.query("SELECT post_id, text FROM posts")}
    assert summary["total"] == len(gold) == 124
    dd = load_from_disk(str(out))
    assert list(dd) == ["train", "validation", "test"]
    names = bio_names(["PER", "ORG", "LOC", "MISC"])
    feature = dd["train"].features["ner_tags"].feature
    assert isinstance(feature, ClassLabel) and feature.names == names
    seen = set()
    for ds in dd.values():
        assert len(ds) > 0
        for row in ds:
            pid = ids[row["id"]]
            seen.add(pid)
            assert row["label_source"] == "gold" and row["label_origin"] == "unanimous"
            tokens = [
                Token(t, s, e)
                for t, s, e in zip(
                    row["tokens"], row["token_starts"], row["token_ends"], strict=True
                )
            ]
            assert all(row["text"][t.start : t.end] == t.text for t in tokens)
            tags = [names[i] for i in row["ner_tags"]]
            got = [(row["text"][s.start : s.end], s.label) for s in tags_to_spans(tokens, tags)]
            want = [(texts[pid][g["start"] : g["end"]], g["label"]) for g in gold[pid]]
            assert got == want, pid
            image = row["image"]
            assert image is not None and image.size[0] >= 32
            image.load()  # decodes
            assert row["clip_score"] is None  # the filter did not run
    assert seen == set(gold)

    # Twitter-2015 files re-read to the same tokens and tags, and their images exist
    tw = read_twitter2015(out / "twitter2015")
    for split, ds in dd.items():
        sents = {s.image_id: s for s in tw[split]}
        assert set(sents) == set(ds["id"])
        for row in ds:
            s = sents[row["id"]]
            assert list(s.tokens) == row["tokens"]
            assert list(s.tags) == [names[i] for i in row["ner_tags"]]
            assert (out / "twitter2015" / "images" / f"{row['id']}.jpg").stat().st_size > 0

    # Parquet in the hub's layout has the same rows
    pq = load_dataset(
        "parquet",
        data_files={s: str(out / "data" / f"{s}-00000-of-00001.parquet") for s in dd},
    )
    for split in dd:
        assert pq[split]["id"] == dd[split]["id"]
        assert pq[split]["tokens"] == dd[split]["tokens"]

    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "named-entity-recognition" in card
    assert "| all | 31 | 31 | 31 | 31 | 124 |" in card
    assert "name: sample" in card  # the recipe that produced it
    manifest = json.loads((out / "export.json").read_text())
    assert sum(manifest["splits"].values()) == 124


def test_silver_rows_are_marked_and_follow_the_predictions(sample_store, tmp_path):
    with CorpusStore(sample_store) as st:
        kept = [r["post_id"] for r in st.query("SELECT post_id FROM posts WHERE status='kept'")]
        with pytest.raises(ExportError, match="none labelled"):
            _export(st, tmp_path / "none")
        gold_ids, ann_ids = set(kept[:40]), set(kept[40:70])
        insert_gold(st, only=gold_ids)
        silver = insert_predictions(st, "tiny-v1")
        with st.transaction() as conn:
            for pid in ann_ids:
                conn.execute(
                    "INSERT INTO annotations(annotation_key, post_id, annotator, origin, status, "
                    "spans_json, pulled_at) VALUES(?, ?, 'ls:7', 'label-studio', 'submitted', "
                    "'[]', ?)",
                    (f"k#{pid}", pid, utcnow()),
                )
            conn.execute(
                "INSERT OR REPLACE INTO adjudication VALUES(?, 'review', '[]', 'majority', "
                "'tie', '{}', ?)",
                (kept[100], utcnow()),
            )
        a = _export(st, tmp_path / "a")
        b = _export(st, tmp_path / "b", annotator="ls:7")
        c = _export(st, tmp_path / "c", annotator="ls:7", include_silver=True)
        ids = _ids(st)
        texts = {r["post_id"]: r["text"] for r in st.query("SELECT post_id, text FROM posts")}
    assert a["selection"]["by_label_source"] == {"gold": 40}
    assert b["selection"]["by_label_source"] == {"gold": 40, "annotator": 30}
    assert c["selection"]["by_label_source"] == {"gold": 40, "annotator": 30, "silver": 54}
    rows = [r for recs in _rows(tmp_path / "c").values() for r in recs]
    names = bio_names(["PER", "ORG", "LOC", "MISC"])
    for row in rows:
        pid = ids[row["id"]]
        want = {pid in gold_ids: "gold", pid in ann_ids: "annotator"}.get(True, "silver")
        assert row["label_source"] == want
        if want == "silver":
            assert row["label_origin"] == "tiny-v1"
            tokens = [
                Token(t, s, e)
                for t, s, e in zip(
                    row["tokens"], row["token_starts"], row["token_ends"], strict=True
                )
            ]
            got = [
                (row["text"][s.start : s.end], s.label)
                for s in tags_to_spans(tokens, [names[i] for i in row["ner_tags"]])
            ]
            assert got == [(texts[pid][p["start"] : p["end"]], p["label"]) for p in silver[pid]]
        if want == "annotator":
            assert row["label_origin"] == "ls:7" and set(row["ner_tags"]) == {0}
    assert "54 of 124 posts carry silver labels" in (tmp_path / "c" / "README.md").read_text()


def test_no_raw_handle_full_url_or_salt_anywhere_in_the_export(sample_store, tmp_path):
    prefix = (
        "@nora_skies @Kat_Roasts@mastodon.example.social merci! "
        "https://www.example.com/u/nora_skies?ref=1 ou nora.skies@example.org : "
    )
    with CorpusStore(sample_store) as st:
        row = st.query(
            "SELECT post_id, text FROM posts WHERE status='kept' AND lang='fr' ORDER BY post_id"
        )[0]
        with st.transaction() as conn:
            conn.execute(
                "UPDATE posts SET text=? WHERE post_id=?", (prefix + row["text"], row["post_id"])
            )
        insert_gold(st, exclude={row["post_id"]})
        spans = [
            dict(g, start=g["start"] + len(prefix), end=g["end"] + len(prefix))
            for g in gold_for_text(row["text"])
        ]
        with st.transaction() as conn:
            conn.execute(
                "INSERT INTO adjudication VALUES(?, 'gold', ?, 'unanimous', NULL, '{}', ?)",
                (row["post_id"], json.dumps(spans), utcnow()),
            )
        out = tmp_path / "export"
        _export(st, out, formats="both", parquet=True)
        target = export_id(SALT, row["post_id"], "fr")
        # everything the store knows that could identify someone
        urls = {r[0] for r in st.query("SELECT url FROM posts WHERE url IS NOT NULL")}
        urls |= {r[0] for r in st.query("SELECT url FROM post_images WHERE url IS NOT NULL")}
        texts = [r[0] for r in st.query("SELECT text FROM posts")]
        post_ids = [r[0] for r in st.query("SELECT post_id FROM posts")]
    import re

    urls |= {m for t in texts for m in re.findall(r"https?://\S+/\S+", t)}
    handles = {r["author"] for r in sample_records() if r.get("author")}
    handles |= {m[1:] for t in texts for m in re.findall(r"@[\w.]+", t)}
    handles |= {"nora_skies", "Kat_Roasts", "kat_roasts", "nora.skies@example.org"}
    all_text = _everything_in(out)
    lowered = all_text.lower()
    for h in handles:
        assert h.lower() not in lowered, h
    for u in urls:
        assert u not in all_text, u
    assert SALT not in all_text
    assert not any(pid in all_text for pid in post_ids if pid.startswith("bluesky:"))

    rows = {r["id"]: r for recs in _rows(out).values() for r in recs}
    rewritten = rows[target]
    assert rewritten["text"].startswith("@user_")
    assert "https://www.example.com ou user_" in rewritten["text"]
    names = bio_names(["PER", "ORG", "LOC", "MISC"])
    tokens = [
        Token(t, s, e)
        for t, s, e in zip(
            rewritten["tokens"], rewritten["token_starts"], rewritten["token_ends"], strict=True
        )
    ]
    got = [
        (rewritten["text"][s.start : s.end], s.label)
        for s in tags_to_spans(tokens, [names[i] for i in rewritten["ner_tags"]])
    ]
    assert got == [
        (row["text"][g["start"] : g["end"]], g["label"]) for g in gold_for_text(row["text"])
    ]


def gold_for_text(text: str) -> list[dict]:
    return [
        {"start": e["start"], "end": e["end"], "label": e["label"]}
        for e in by_text()[text]["entities"]
    ]


def _everything_in(folder: Path) -> str:
    """Every file's bytes as text, plus every string value of the Arrow and Parquet tables."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    parts = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        parts.append(p.read_bytes().decode("utf-8", errors="ignore"))
        if p.suffix == ".parquet":
            parts.append(json.dumps(pq.read_table(p).drop_columns(["image"]).to_pylist()))
        if p.suffix == ".arrow":
            ds = Dataset.from_file(str(p))
            parts.append(json.dumps(ds.remove_columns(["image"]).to_list()))
            parts += [
                str(img["path"]) for img in ds.with_format("arrow")["image"].to_pylist() if img
            ]
    return "\n".join(parts)


def _split_of(out: Path, ids: dict[str, str]) -> dict[str, str]:
    return {ids[r["id"]]: split for split, recs in _rows(out).items() for r in recs}


def test_near_duplicates_kept_by_a_loose_collect_never_cross_splits(sample_store, tmp_path):
    """Dedup switched off in collect: the sample's near-duplicate and copied posts are kept as
    separate clusters; the export's own check still keeps each pair in one split."""
    from mmner_data.collect.pipeline import run_collect

    loose = sample_recipe(
        dedup={"exact_text": False, "near_text": False, "exact_image": False, "near_image": False}
    )
    with CorpusStore(sample_store) as st:
        run_collect(loose, st, skip_crawl=True)
        insert_gold(st)
        post_of = {
            r["text"]: r["post_id"]
            for r in st.query("SELECT post_id, text FROM posts WHERE status='kept'")
        }
        _export(st, tmp_path / "x", seed=5)
        ids = _ids(st)
        from mmner_data.labels import select_labels

        posts = select_labels(st).posts
    recs = {r["id"]: r for r in sample_records()}
    pairs = [
        (post_of[r["text"]], post_of[recs[r["dup_of"]]["text"]])
        for r in sample_records()
        if r.get("dup_of") and r["text"] in post_of and recs[r["dup_of"]]["text"] in post_of
    ]
    assert len(pairs) >= 15, pairs  # copies, near-copies and reused images are all there
    split = _split_of(tmp_path / "x", ids)
    assert all(split[a] == split[b] for a, b in pairs)
    # the property is not vacuous: without the groups, the same seed splits some pairs apart
    naive = assign_splits(
        [SplitItem(p.post_id, p.post_id, p.lang) for p in posts],
        {"train": 0.8, "validation": 0.1, "test": 0.1},
        5,
    )
    assert any(naive[a] != naive[b] for a, b in pairs)
    groups = group_posts(posts, sample_recipe())
    assert all(groups[a] == groups[b] for a, b in pairs)


def test_readmitted_cluster_members_stay_with_their_cluster(sample_store, tmp_path):
    """Posts dropped as duplicates but marked kept again keep their ``cluster_id``: the export
    groups them by it even with its own near-duplicate check off."""
    with CorpusStore(sample_store) as st:
        dups = st.query(
            "SELECT post_id, cluster_id FROM posts WHERE status='dropped' AND cluster_id IS NOT NULL"
        )
        assert len(dups) >= 20
        with st.transaction() as conn:
            conn.execute(
                "UPDATE posts SET status='kept' WHERE status='dropped' AND cluster_id IS NOT NULL"
            )
        insert_gold(st)
        for seed in (1, 2, 3):
            _export(st, tmp_path / f"s{seed}", seed=seed, leakage_check=False)
            split = _split_of(tmp_path / f"s{seed}", _ids(st))
            assert all(split[d["post_id"]] == split[d["cluster_id"]] for d in dups)


def test_same_seed_same_splits_and_rerun_replaces(sample_store, tmp_path):
    with CorpusStore(sample_store) as st:
        insert_gold(st)
        _export(st, tmp_path / "a", seed=3)
        _export(st, tmp_path / "b", seed=3)
        _export(st, tmp_path / "c", seed=4)
        ids = _ids(st)
        first = _split_of(tmp_path / "a", ids)
        assert first == _split_of(tmp_path / "b", ids)
        assert first != _split_of(tmp_path / "c", ids)
        # a rerun into the same folder replaces it (nothing left from the earlier export)
        (tmp_path / "a" / "stale.txt").write_text("x")
        _export(st, tmp_path / "a", seed=3, formats="twitter2015")
        assert not (tmp_path / "a" / "stale.txt").exists()
        assert (tmp_path / "a" / "train.txt").exists()
        runs = st.query("SELECT status FROM runs WHERE stage='export'")
        assert [r["status"] for r in runs] == ["ok"] * 4


def test_filter_selection_scores_and_agreement_go_to_the_card(sample_store, tmp_path):
    with CorpusStore(sample_store) as st:
        insert_gold(st)
        kept = st.query(
            "SELECT p.post_id, p.lang, pi.sha256 FROM posts p JOIN post_images pi "
            "ON pi.post_id = p.post_id AND pi.status='ok' WHERE p.status='kept' ORDER BY p.post_id"
        )
        with st.transaction() as conn:
            conn.execute(
                "INSERT INTO relevance_models VALUES('m:1', 'open_clip', 'm', '1', NULL, NULL, ?)",
                (utcnow(),),
            )
            for i, r in enumerate(kept):
                score = (i % 10) / 10
                conn.execute(
                    "INSERT INTO relevance VALUES(?, 'm:1', ?, ?, ?)",
                    (r["post_id"], r["sha256"], score, utcnow()),
                )
                conn.execute(
                    "INSERT INTO relevance_selection VALUES(?, 'm:1', ?, ?, ?, ?, 0.15, "
                    "'threshold', ?)",
                    (
                        r["post_id"],
                        r["lang"],
                        "kept" if score >= 0.15 else "dropped_low_relevance",
                        int(score >= 0.15),
                        score,
                        utcnow(),
                    ),
                )
        (st.root / "reports").mkdir(exist_ok=True)
        (st.root / "reports" / "agreement.json").write_text(
            json.dumps({"overall": {"fleiss_kappa": 0.8125, "span_f1_exact": 0.75}})
        )
        res = _export(st, tmp_path / "x")
        ids = _ids(st)
        scores = {
            r["post_id"]: r["score"] for r in st.query("SELECT post_id, score FROM relevance")
        }
    dropped = sum(1 for i in range(len(kept)) if (i % 10) / 10 < 0.15)
    assert res["selection"]["filtered_out"] == dropped
    assert res["total"] == 124 - dropped
    for recs in _rows(tmp_path / "x").values():
        for r in recs:
            assert r["clip_score"] == pytest.approx(scores[ids[r["id"]]])
    card = (tmp_path / "x" / "README.md").read_text()
    assert "model `m:1`" in card and "| overall.fleiss_kappa | 0.8125 |" in card


def _cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_cli_export_json_dry_run_and_errors(sample_store, tmp_path):
    r = _cli("export", "-r", str(SAMPLE_RECIPE), "--store", str(sample_store), "--json")
    assert r.exit_code == 1 and "error: nothing to export" in r.output
    with CorpusStore(sample_store) as st:
        insert_predictions(st)
    out = tmp_path / "out"
    r = _cli(
        "export",
        "--hf",
        str(out),
        "-r",
        str(SAMPLE_RECIPE),
        "--store",
        str(sample_store),
        "--include-silver",
        "--dry-run",
        "--json",
        "--splits",
        "train=0.6,validation=0.2,test=0.2",
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["dry_run"] and data["total"] == 124 and not out.exists()
    counts = Counter({s: sum(c.values()) for s, c in data["counts"].items()})
    assert abs(counts["test"] - 0.2 * 124) <= 4
    r = _cli(
        "export",
        "--hf",
        str(out),
        "-r",
        str(SAMPLE_RECIPE),
        "--store",
        str(sample_store),
        "--include-silver",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    assert f"export: {out}" in r.output.replace("\n", "")
    assert (out / "dataset_dict.json").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = _cli(
        "export",
        str(tmp_path / "mine"),
        "-r",
        str(SAMPLE_RECIPE),
        "--store",
        str(sample_store),
        "--include-silver",
    )
    assert r.exit_code == 1 and "is not an mmner-data export" in r.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    r = _cli(
        "export", "-r", str(SAMPLE_RECIPE), "--store", str(sample_store), "--splits", "train=2"
    )
    assert r.exit_code == 1 and "export.splits" in r.output


def test_cli_export_out_option_and_positional(sample_store, tmp_path):
    """`--hf` is a flag; the folder is `--out` (or the positional OUT), never `--hf`'s value."""
    with CorpusStore(sample_store) as st:
        insert_predictions(st)
    base = ["-r", str(SAMPLE_RECIPE), "--store", str(sample_store), "--include-silver"]
    a = _cli("export", "--hf", "--out", str(tmp_path / "a"), *base, "--dry-run", "--json")
    b = _cli("export", str(tmp_path / "a"), "--hf", *base, "--dry-run", "--json")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert json.loads(a.output)["out"] == json.loads(b.output)["out"] == str(tmp_path / "a")
    both = _cli("export", str(tmp_path / "a"), "--out", str(tmp_path / "b"), *base, "--dry-run")
    assert both.exit_code == 1 and "two export folders given" in both.output
    assert "--out" in " ".join(_cli("export", "--help").output.split())
