"""Export record building (tokenise + BIO tags + pseudonymise) against bare tokenisation.

    python benchmarks/export.py --n 20000

Posts are the bundled sample's texts with their gold entities, each prefixed with a mention and
a URL so that pseudonymisation has work to do. Prints posts/s for both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import time

from mmner_data.config import SAMPLE_DATA_DIR
from mmner_data.export.records import build_record
from mmner_data.labels import LabelledPost
from mmner_data.schema import EntitySpan
from mmner_data.text.tokenize import tokenize

PREFIX = "@nora_skies https://example.com/a/b?c=1 "


def posts(n: int) -> list[LabelledPost]:
    with open(SAMPLE_DATA_DIR / "posts.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(x) for x in fh]
    out = []
    for i in range(n):
        r = rows[i % len(rows)]
        k = len(PREFIX)
        spans = tuple(EntitySpan(e["start"] + k, e["end"] + k, e["label"]) for e in r["entities"])
        out.append(
            LabelledPost(
                post_id=f"b:{i}",
                lang=r["lang"],
                text=PREFIX + r["text"],
                source="mastodon",
                licence=None,
                author=None,
                created_at=None,
                cluster_id=None,
                dup_of=None,
                spans=spans,
                label_source="gold",
                label_origin="bench",
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    data = posts(args.n)
    types = ("PER", "ORG", "LOC", "MISC")
    t0 = time.perf_counter()
    for p in data:
        tokenize(p.text)
    base = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p in data:
        build_record(p, salt="bench", entity_types=types)
    full = time.perf_counter() - t0
    print(f"posts: {args.n}")
    print(f"tokenize only:            {args.n / base:9.0f} posts/s")
    print(f"tokenize+tags+pseudonym:  {args.n / full:9.0f} posts/s")
    print(f"ratio (full / tokenize-only throughput): {base / full:.2f}")


if __name__ == "__main__":
    main()
