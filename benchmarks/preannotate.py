"""Pre-annotation throughput: store → predictions end to end vs. the bare model forward.

    python benchmarks/preannotate.py [--model mmner_data/bundled_models/mmner-2m-ner-e5-small] [--store DIR]
                                     [--batch-size 32] [--repeat 3] [--scale 10] [--device cpu]

End to end = ``run_preannotate`` with the model already loaded: reading posts from the store,
word tokenisation, subword encoding, image decoding/resizing, the forward pass, CRF decoding and
marginals, span conversion and the transactional writes. Bare = the forward pass + CRF decoding
and marginals alone, over the very same batches prepared beforehand. Both count words per second;
the ratio end-to-end / bare is the share of the model's speed the pipeline keeps (goal ≥ 0.85).
Without ``--store`` the bundled sample is collected into a temporary store first; ``--scale``
copies every post (new ids, same text and image) so that a pass is long enough to measure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MMNER_PSEUDONYM_SALT", "bench-salt")

REPO = Path(__file__).resolve().parents[1]


def collect_sample(dest: Path) -> Path:
    from mmner_data.collect.pipeline import run_collect
    from mmner_data.recipes import open_recipe
    from mmner_data.store import CorpusStore

    with open_recipe(REPO / "recipes" / "sample.yaml") as recipe, CorpusStore(dest) as store:
        run_collect(recipe, store)
    return dest


def scale_store(store_dir: Path, factor: int) -> None:
    """Copy every kept post ``factor - 1`` times (new ids, same text and image)."""
    from mmner_data.store import CorpusStore

    with CorpusStore(store_dir) as st, st.transaction() as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(posts)")]
        img_cols = [r[1] for r in conn.execute("PRAGMA table_info(post_images)")]
        posts = conn.execute("SELECT * FROM posts WHERE status = 'kept'").fetchall()
        for k in range(1, factor):
            for row in posts:
                d = dict(row)
                pid = d["post_id"]
                d.update(post_id=f"{pid}#{k}", source_id=f"{d['source_id']}#{k}")
                conn.execute(
                    f"INSERT INTO posts({','.join(cols)}) VALUES({','.join('?' * len(cols))})",
                    [d[c] for c in cols],
                )
                for img in conn.execute("SELECT * FROM post_images WHERE post_id = ?", (pid,)):
                    e = dict(img)
                    e["post_id"] = f"{pid}#{k}"
                    conn.execute(
                        f"INSERT INTO post_images({','.join(img_cols)}) "
                        f"VALUES({','.join('?' * len(img_cols))})",
                        [e[c] for c in img_cols],
                    )


def synthetic_model(folder: Path, size: str) -> Path:
    """A random-weight 2M-NER with the compute of a real one (``base``: XLM-R-base-sized text
    encoder, 12 layers × 768; ViT-B/32-sized vision tower at 224 px). Speed only, no skill."""
    from mmner_data.models.config import ModelConfig, bio_labels
    from mmner_data.models.model import NerModel
    from mmner_data.models.scratch import write_text_encoder, write_vision_encoder
    from mmner_data.sample import load_sample_posts

    layers, hidden, heads = {"base": (12, 768, 12), "small": (6, 384, 6)}[size]
    texts = [p["text"] for p in load_sample_posts()]
    text = write_text_encoder(
        folder / "text", texts, vocab_size=3000, hidden=hidden, layers=layers, heads=heads
    )
    vision = write_vision_encoder(
        folder / "vision", image_size=224, patch_size=32, hidden=hidden, layers=layers, heads=heads
    )
    cfg = ModelConfig(
        labels=bio_labels(("PER", "ORG", "LOC", "MISC")),
        text_encoder=str(text),
        image_encoder=str(vision),
    )
    return NerModel.build(cfg).save_pretrained(folder / f"synthetic-{size}")


def main() -> None:
    from mmner_data.bundled import BUNDLED_MODEL

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=str(BUNDLED_MODEL), help="model folder or HF name")
    ap.add_argument("--store", type=Path, help="a store to copy (default: collect the sample)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="passes over the store for each side")
    ap.add_argument("--scale", type=int, default=10, help="copies of each post (more work)")
    ap.add_argument("--workers", type=int, help="preparation processes (default: by device)")
    ap.add_argument(
        "--synthetic",
        choices=("small", "base"),
        help="instead of --model: a random-weight 2M-NER of that size (XLM-R-base/ViT-B-32 compute)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from mmner_data.preannotate.predict import load_predictor, run_preannotate, select_items
    from mmner_data.store import CorpusStore

    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-preannotate-"))
    try:
        store_dir = tmp / "store"
        if args.store:
            shutil.copytree(args.store, store_dir)
        else:
            collect_sample(store_dir)
        scale_store(store_dir, args.scale)
        if args.synthetic:
            args.model = str(synthetic_model(tmp, args.synthetic))
        t0 = time.perf_counter()
        pred = load_predictor(args.model, args.device)
        load_s = time.perf_counter() - t0
        with CorpusStore(store_dir) as st:
            items = select_items(st, pred.model_version, overwrite=True)
            items.sort(key=lambda it: len(it.text))
            chunks = [items[i : i + args.batch_size] for i in range(0, len(items), args.batch_size)]
            prepared = [pred.prepare(c) for c in chunks]
            words = sum(len(ex.tokens) for exs, _ in prepared for ex in exs)
            for _, batch in prepared[:2]:  # warm-up
                pred.forward(batch)

            def e2e() -> float:
                t = time.perf_counter()
                run_preannotate(
                    st,
                    args.model,
                    batch_size=args.batch_size,
                    overwrite=True,
                    predictor=pred,
                    num_workers=args.workers,
                )
                return time.perf_counter() - t

            def bare() -> float:
                t = time.perf_counter()
                for _, batch in prepared:
                    pred.forward(batch)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                return time.perf_counter() - t

            e2e()  # warm-up (first writes)
            # Interleave the two sides so that load from other processes hits both alike.
            e2e_times, bare_times = [], []
            for _ in range(args.repeat):
                bare_times.append(bare())
                e2e_times.append(e2e())
        e2e_s, bare_s = min(e2e_times), min(bare_times)
        e2e_tps, bare_tps = words / e2e_s, words / bare_s
        print(f"model      {pred.model_version}  (loaded in {load_s:.2f}s, device {args.device})")
        print(f"posts      {len(items)}  words {words}  batch size {args.batch_size}")
        print(
            f"end to end {e2e_tps:10.0f} words/s  ({e2e_s * 1000:.0f} ms per pass, best of {args.repeat})"
        )
        print(
            f"bare model {bare_tps:10.0f} words/s  ({bare_s * 1000:.0f} ms per pass, best of {args.repeat})"
        )
        print(f"ratio      {e2e_tps / bare_tps:.3f}  (goal >= 0.85)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
