"""A digest of what the sample run exports, independent of any model: used to show that a
refactoring changed no behaviour (tests/test_export_digest.py).

The sample's hand labels are written as gold (``adjudication``) straight into a collected sample
store, the store is exported with the CLI (no silver labels), and the digest covers every row's
id, language, tokens, tags and split. Runnable on its own against any checkout:

    python tests/export_digest.py STORE_WITH_COLLECTED_SAMPLE
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POSTS = REPO / "mmner_data" / "sample" / "data" / "posts.jsonl"
RECIPE = REPO / "recipes" / "sample.yaml"


def write_sample_gold(store: Path) -> int:
    gold: dict[str, list[dict]] = {}
    for line in POSTS.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        gold.setdefault(d["text"], d.get("entities") or [])
    n = 0
    with sqlite3.connect(store / "corpus.sqlite") as db:
        for post_id, text in db.execute("SELECT post_id, text FROM posts WHERE status='kept'"):
            if text not in gold:
                continue
            spans = [
                {"start": e["start"], "end": e["end"], "label": e["label"]} for e in gold[text]
            ]
            db.execute(
                "INSERT OR REPLACE INTO adjudication VALUES(?, 'gold', ?, 'unanimous', NULL, '{}', "
                "'2026-01-01T00:00:00+00:00')",
                (post_id, json.dumps(spans)),
            )
            n += 1
    return n


def export_digest(store: Path, out: Path) -> str:
    from datasets import load_from_disk

    write_sample_gold(store)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from mmner_data.cli import app; app()",
            "export",
            "-r",
            str(RECIPE),
            "--store",
            str(store),
            str(out),
            "--no-progress",
            "--json",
        ],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    dd = load_from_disk(str(out))
    rows = []
    for split in sorted(dd):
        ds = dd[split].remove_columns([c for c in ("image",) if c in dd[split].column_names])
        names = ds.features["ner_tags"].feature.names
        for r in ds:
            rows.append((split, r["id"], r["lang"], r["tokens"], [names[t] for t in r["ner_tags"]]))
    rows.sort()
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


if __name__ == "__main__":
    store = Path(sys.argv[1])
    print(export_digest(store, store.parent / (store.name + "-export")))
