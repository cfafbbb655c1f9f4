"""Benchmark: end-to-end ``filter`` scoring throughput vs the bare model forward, in one run.

Builds a temporary store of N kept posts whose images are distinct JPEGs cut from the real
photographs shipped with scikit-image (resized to 400–900 px, like collected images), and a CLIP
model with random weights from an open_clip config (no download; speed does not depend on the
weights). Then, at the same batch size, device, precision and torch thread count:

* end to end: ``mmner_data.filter.scoring.score_pairs`` — the DataLoader that
  decodes and preprocesses in worker processes, the forward, and one transaction per batch;
* bare forward: ``ClipScorer.score`` over tensors decoded and preprocessed beforehand.

It prints pairs/s for both and their ratio (goal ≥ 0.85: the model seldom waits for data).

    python benchmarks/clip_filter.py                          # CPU, small model, < 90 s
    python benchmarks/clip_filter.py --size base --device cuda --n 4096 --batch-size 256
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

SIZES = {
    # vision ViT at 224 px and a text transformer; random weights
    "tiny": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 224, "layers": 2, "width": 128, "patch_size": 32},
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 128,
            "heads": 2,
            "layers": 2,
        },
    },
    "small": {  # ViT-B/32 widths at half depth: ~1/3 of the default model's compute
        "embed_dim": 512,
        "vision_cfg": {"image_size": 224, "layers": 6, "width": 768, "patch_size": 32},
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 512,
            "heads": 8,
            "layers": 6,
        },
    },
    "base": "ViT-B-32",  # open_clip's own config (151 M parameters)
}
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "hubble_deep_field"]
TEXTS = [
    "Just landed in Paris for the summit with @ursula — what a view! #EU",
    "Le café du matin avant la réunion à Lyon avec l'équipe de Renault",
    "Die Katze von Angela schläft wieder auf dem Sofa in Berlin",
    "El cohete de SpaceX despega desde Cabo Cañaveral esta mañana",
]


def build_store(root: Path, n: int, seed: int = 0):
    """A store with ``n`` kept posts, each with its own JPEG (distinct crops of real photos)."""
    import hashlib

    from PIL import Image as PILImage
    from skimage import data as skdata

    from mmner_data.schema import Image
    from mmner_data.store import CorpusStore

    rng = random.Random(seed)
    photos = [PILImage.fromarray(getattr(skdata, p)()).convert("RGB") for p in PHOTOS]
    st = CorpusStore(root)
    with st.transaction() as conn:
        for i in range(n):
            src = photos[i % len(photos)]
            w, h = src.size
            box = (rng.randrange(0, w // 4), rng.randrange(0, h // 4), w, h)
            side = rng.randrange(400, 900)
            im = src.crop(box)
            im = im.resize((side, max(32, int(side * im.height / im.width))))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=88)
            data = buf.getvalue()
            sha = hashlib.sha256(data).hexdigest()
            st.put_image(
                conn,
                Image(sha, im.width, im.height, "JPEG", len(data), "0" * 16),
                data,
            )
            pid = f"b:{i:06d}"
            text = TEXTS[i % len(TEXTS)] + f" #{i}"
            conn.execute(
                "INSERT INTO posts(post_id, source, source_id, text, text_key, lang, status, "
                "ingest_seq) VALUES(?, 'b', ?, ?, ?, ?, 'kept', ?)",
                (pid, str(i), text, text.lower(), ["en", "fr", "de", "es"][i % 4], i),
            )
            conn.execute(
                "INSERT INTO post_images(post_id, position, sha256, status) VALUES(?, 0, ?, 'ok')",
                (pid, sha),
            )
    return st


def make_scorer(size: str, device: str, precision: str):
    import open_clip

    from mmner_data.filter.model import ClipScorer, ModelSpec, pick_autocast, pick_device

    dev = pick_device(device)
    cfg = SIZES[size]
    if isinstance(cfg, str):
        model, _, preprocess = open_clip.create_model_and_transforms(cfg)
        tokenizer = open_clip.get_tokenizer(cfg)
    else:
        from open_clip.model import CLIP
        from open_clip.transform import PreprocessCfg, image_transform_v2

        model = CLIP(**cfg)
        preprocess = image_transform_v2(PreprocessCfg(size=224), is_train=False)
        tokenizer = open_clip.get_tokenizer("ViT-B-32")
    model = model.to(dev).eval()
    spec = ModelSpec(f"bench-{size}", "open_clip", f"bench-{size}", None)
    return ClipScorer(spec, model, preprocess, tokenizer, dev, pick_autocast(dev, precision))


def predecode(scorer, pairs):
    """Images decoded and preprocessed, texts tokenised: the bare forward's input."""
    from mmner_data.filter.scoring import load_rgb

    images = torch.stack([scorer.preprocess(load_rgb(p.image_path)) for p in pairs])
    tokens = scorer.tokenizer([p.text for p in pairs])
    if scorer.device.type == "cuda":
        images, tokens = images.pin_memory(), tokens.pin_memory()
    return images, tokens


def bare_forward(scorer, images, tokens, batch_size: int) -> float:
    """Pairs/s of ``scorer.score`` over pre-decoded tensors (a warm-up batch first)."""
    scorer.score(images[:batch_size], tokens[:batch_size])
    _sync(scorer.device)
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        scorer.score(images[i : i + batch_size], tokens[i : i + batch_size])
    _sync(scorer.device)
    return len(images) / (time.perf_counter() - start)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=128, help="pairs")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-workers", type=int, default=None, help="default: as `filter` picks")
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; best of each")
    args = ap.parse_args()

    from mmner_data.filter.model import quiet_tokenizers_in_workers
    from mmner_data.filter.scoring import model_threads as scoring_threads
    from mmner_data.filter.scoring import pending_pairs, score_pairs
    from mmner_data.filter.settings import FilterSettings

    scorer = make_scorer(args.size, args.device, args.precision)
    workers = FilterSettings(num_workers=args.num_workers).resolved_workers(scorer.device.type)
    quiet_tokenizers_in_workers()
    threads = torch.get_num_threads()
    # score_pairs gives the model the cores the decode workers leave (on CPU); the bare forward
    # runs with the same thread count, and once with all of them for reference
    model_threads = scoring_threads(scorer.device.type, workers, threads)
    bare: list[float] = []
    bare_all: list[float] = []
    e2e: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        st = build_store(Path(tmp) / "store", args.n)
        pairs = pending_pairs(st, scorer.spec.model_id)
        images, tokens = predecode(scorer, pairs)
        print(f"store: {len(pairs)} pairs built in {time.perf_counter() - t0:.1f}s")
        for r in range(args.rounds):
            # alternate, so that load from other processes hits both alike; keep the best of each
            torch.set_num_threads(model_threads)
            bare.append(bare_forward(scorer, images, tokens, args.batch_size))
            torch.set_num_threads(threads)
            if model_threads != threads and r == 0:
                bare_all.append(bare_forward(scorer, images, tokens, args.batch_size))
            round_scorer = replace(scorer, spec=replace(scorer.spec, model_id=f"bench-r{r}"))
            summary = score_pairs(
                st, round_scorer, pairs, batch_size=args.batch_size, num_workers=workers
            )
            assert summary.scored == len(pairs), summary
            e2e.append(summary.pairs_per_s)
        st.close()
    dtype = scorer.autocast_dtype or "fp32"
    print(
        f"model {args.size} on {scorer.device} ({dtype}), batch {args.batch_size}, "
        f"{workers} decode worker(s), {model_threads} torch thread(s) for the model, "
        f"best of {args.rounds} rounds"
    )
    print(f"bare forward (pre-decoded tensors): {max(bare):8.1f} pairs/s  {_fmt(bare)}")
    if bare_all:
        print(
            f"  same, all {threads} torch threads:  {max(bare_all):8.1f} pairs/s  {_fmt(bare_all)}"
        )
    print(f"end to end (filter scoring):        {max(e2e):8.1f} pairs/s  {_fmt(e2e)}")
    print(f"ratio end-to-end / bare forward:    {max(e2e) / max(bare):8.3f}  (goal >= 0.85)")


def _fmt(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in values) + ")"


if __name__ == "__main__":
    main()
