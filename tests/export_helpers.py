"""Helpers for the export/run/stats tests: gold and silver labels from the bundled sample.

The sample's ``posts.jsonl`` carries hand-made gold entities per post; the collected store keeps
each post's text unchanged, so a stored post is matched to its sample record by text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from mmner_data.config import SAMPLE_DATA_DIR, Recipe, build_recipe, read_recipe_yaml
from mmner_data.store import CorpusStore, utcnow

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RECIPE = REPO / "recipes" / "sample.yaml"


def sample_records() -> list[dict]:
    with open(SAMPLE_DATA_DIR / "posts.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def by_text() -> dict[str, dict]:
    return {r["text"]: r for r in sample_records()}


def sample_recipe(**changes: object) -> Recipe:
    raw = read_recipe_yaml(SAMPLE_RECIPE)
    raw.update(changes)
    return build_recipe(
        raw, recipe_dir=SAMPLE_RECIPE.parent, extra_vars={"SAMPLE_SERVER": "http://127.0.0.1:0"}
    )


def gold_spans(record: dict) -> list[dict]:
    return [{"start": e["start"], "end": e["end"], "label": e["label"]} for e in record["entities"]]


def insert_gold(
    store: CorpusStore, *, only: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> dict[str, list[dict]]:
    """An ``adjudication`` gold row per kept post (or ``only`` these), from the sample."""
    records = by_text()
    out: dict[str, list[dict]] = {}
    keep = None if only is None else set(only)
    with store.transaction() as conn:
        for r in store.query("SELECT post_id, text FROM posts WHERE status='kept'"):
            if (keep is not None and r["post_id"] not in keep) or r["post_id"] in set(exclude):
                continue
            spans = gold_spans(records[r["text"]])
            out[r["post_id"]] = spans
            conn.execute(
                "INSERT OR REPLACE INTO adjudication(post_id, status, spans_json, method, reason, "
                "provenance_json, updated_at) VALUES(?, 'gold', ?, 'unanimous', NULL, '{}', ?)",
                (r["post_id"], json.dumps(spans), utcnow()),
            )
    return out


def insert_predictions(store: CorpusStore, model_version: str = "tiny-v1") -> dict[str, list[dict]]:
    """Silver ``predictions``: the gold entities minus the last one, with scores."""
    records = by_text()
    out: dict[str, list[dict]] = {}
    with store.transaction() as conn:
        for r in store.query("SELECT post_id, text FROM posts WHERE status='kept'"):
            spans = [dict(s, score=0.9) for s in gold_spans(records[r["text"]])[:-1]]
            out[r["post_id"]] = spans
            conn.execute(
                "INSERT OR REPLACE INTO predictions(post_id, model_version, spans_json, score, "
                "created_at) VALUES(?, ?, ?, 0.8, ?)",
                (r["post_id"], model_version, json.dumps(spans), utcnow()),
            )
    return out
