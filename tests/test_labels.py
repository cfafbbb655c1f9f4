"""The label layer: eligible posts, label selection by policy, writing gold (mmner_data.labels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmner_data.annotate.push import select_posts
from mmner_data.labels import (
    LabelPolicy,
    eligible_posts,
    select_labels,
    write_review_gold,
    write_sample_gold,
)
from mmner_data.models.data import DataError, load_splits
from mmner_data.schema import EntitySpan
from mmner_data.store import CorpusStore, utcnow


def _kept(st: CorpusStore) -> list[str]:
    return [r["post_id"] for r in st.query("SELECT post_id FROM posts WHERE status='kept'")]


def test_entity_span_is_start_end_label() -> None:
    a = EntitySpan(0, 5, "PER", 0.9, "Alice")
    assert a == EntitySpan(0, 5, "PER") and hash(a) == hash(EntitySpan(0, 5, "PER"))
    assert sorted([EntitySpan(3, 4, "LOC"), EntitySpan(0, 5, "PER", 0.2)])[0].start == 0
    assert EntitySpan.from_json(a.to_json()).to_json() == {
        "start": 0,
        "end": 5,
        "label": "PER",
        "score": 0.9,
        "text": "Alice",
    }
    assert EntitySpan(0, 5, "PER").to_json() == {"start": 0, "end": 5, "label": "PER"}
    assert a.text_in("Alice and Bob") == "Alice"


def test_eligible_posts_follow_the_filter_selection(sample_store: Path) -> None:
    with CorpusStore(sample_store) as st:
        kept = _kept(st)
        elig = eligible_posts(st)
        assert [p.post_id for p in elig.posts] == sorted(kept)
        assert (elig.filtered_out, elig.filter_applied) == (0, False)
        assert {p.post_id for p in select_posts(st, "annotate")} == set(kept)
        now = utcnow()
        dropped = sorted(kept[:-1])[:3]
        with st.transaction() as conn:
            conn.executemany(
                "INSERT INTO relevance_selection(post_id, model_id, status, kept, rule, "
                "selected_at) VALUES(?, 'm', ?, ?, 'threshold', ?)",
                [
                    (
                        pid,
                        "dropped_low_relevance" if pid in dropped else "kept",
                        pid not in dropped,
                        now,
                    )
                    for pid in kept[:-1]  # the last one not judged yet: not eligible either
                ],
            )
        elig = eligible_posts(st)
        assert elig.filter_applied and elig.filtered_out == 4
        wanted = set(kept[:-1]) - set(dropped)
        assert {p.post_id for p in elig.posts} == wanted
        pushed = select_posts(st, "annotate")
        assert {p.post_id for p in pushed} == wanted  # push and export agree
        seqs = {p.post_id: p.ingest_seq for p in elig.posts}
        assert [seqs[p.post_id] for p in pushed] == sorted(seqs.values())  # ingest order


def test_select_labels_by_policy(sample_store: Path) -> None:
    with CorpusStore(sample_store) as st:
        a, b, c, d = sorted(_kept(st))[:4]
        spans = json.dumps([{"start": 0, "end": 1, "label": "PER"}])
        now = utcnow()
        with st.transaction() as conn:
            conn.execute(
                "INSERT INTO adjudication(post_id, status, spans_json, method, reason, "
                "provenance_json, updated_at) VALUES(?, 'gold', ?, 'majority', NULL, '{}', ?), "
                "(?, 'review', ?, 'majority', 'tie', '{}', ?)",
                (a, spans, now, b, spans, now),
            )
            for pid in (a, b, c):
                conn.execute(
                    "INSERT INTO annotations(annotation_key, post_id, annotator, origin, status, "
                    "spans_json, pulled_at) VALUES(?, ?, 'ls:1', 'label-studio', 'submitted', ?, "
                    "?)",
                    (f"k-{pid}", pid, spans, now),
                )
            for pid in (a, b, c, d):
                conn.execute(
                    "INSERT INTO predictions(post_id, model_version, spans_json, score, "
                    "created_at) VALUES(?, 'v1', '[]', NULL, ?)",
                    (pid, now),
                )
        gold_only = select_labels(st)
        assert [(p.post_id, p.label_source, p.label_origin) for p in gold_only.posts] == [
            (a, "gold", "majority")
        ]
        assert gold_only.posts[0].spans == (EntitySpan(0, 1, "PER"),)
        policy = LabelPolicy(annotator="ls:1", include_silver=True)
        got = {p.post_id: (p.label_source, p.label_origin) for p in select_labels(st, policy).posts}
        assert got[a] == ("gold", "majority")
        assert got[b] == got[c] == ("annotator", "ls:1")  # a review row is not gold
        assert got[d] == ("silver", "v1")
        sel = select_labels(st, LabelPolicy(include_silver=True, model_version="v2"))
        assert [p.post_id for p in sel.posts] == [a] and sel.unlabelled == sel.eligible - 1
        assert policy.describe() == "gold (adjudication), annotator ls:1, pre-annotations"


def test_training_reads_the_stores_gold_only(sample_store: Path) -> None:
    with pytest.raises(DataError, match=r"no labelled posts.*sample-gold"):
        load_splits(sample_store)  # no silent fallback to the bundled sample's labels
    with CorpusStore(sample_store) as st:
        target = sorted(_kept(st))[0]
        write_review_gold(st, target, [], "ls:7")
        first = write_sample_gold(st)
        assert first["matched"] == len(_kept(st)) and first["kept_reviewed"] == 1
        again = write_sample_gold(st)
        assert again["unchanged"] == first["inserted"] and again["inserted"] == 0
        methods = {
            r["post_id"]: r["method"] for r in st.query("SELECT post_id, method FROM adjudication")
        }
    assert methods.pop(target) == "reviewed" and set(methods.values()) == {"sample"}
    splits, types = load_splits(sample_store)
    examples = {ex.id: ex for exs in splits.values() for ex in exs}
    assert len(examples) == len(methods) + 1 and types == ["PER", "ORG", "LOC", "MISC"]
    assert set(examples[target].tags or []) == {"O"}  # the reviewer's (empty) gold wins
    assert examples[target].meta["label_origin"] == "reviewed"
