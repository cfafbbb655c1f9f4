"""Batched, resumable CLIP scoring of the store's kept (post, image) pairs.

Images are decoded and preprocessed, and texts tokenised, in DataLoader worker processes; a
``collate_fn`` drops items whose image cannot be read, so the rest of the batch still scores.
Every batch — its scores and its unreadable-image drops — is committed in one transaction, and
only pairs without a score for the model id are selected, so a killed run resumes where it
stopped.

One pair per post: the post's text with its first image whose download succeeded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmner_data.filter.model import ClipScorer, ModelSpec
from mmner_data.schema import Drop, DropReason
from mmner_data.store import CorpusStore, utcnow

STAGE = "filter"
REASON_IMAGE_UNREADABLE = DropReason.IMAGE_UNREADABLE.value

# The kept posts' first ok image (lowest position), with its file.
PAIRS_SQL = """
SELECT p.post_id, p.lang, p.text, i.sha256, i.path
FROM posts p
JOIN post_images pi ON pi.post_id = p.post_id AND pi.status = 'ok'
JOIN images i ON i.sha256 = pi.sha256
WHERE p.status = 'kept'
  AND pi.position = (SELECT MIN(position) FROM post_images q
                     WHERE q.post_id = p.post_id AND q.status = 'ok')
"""


@dataclass(frozen=True, slots=True)
class Pair:
    """One (post text, image) pair to score."""

    post_id: str
    lang: str | None
    text: str
    image_sha256: str
    image_path: str  # absolute


@dataclass(slots=True)
class ScoreSummary:
    """What a scoring pass did."""

    model_id: str
    pending: int = 0
    scored: int = 0
    unreadable: int = 0
    batches: int = 0
    seconds: float = 0.0
    unreadable_items: list[str] = field(default_factory=list)

    @property
    def pairs_per_s(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "pending": self.pending,
            "scored": self.scored,
            "unreadable": self.unreadable,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "pairs_per_s": round(self.pairs_per_s, 2),
        }


def pending_pairs(store: CorpusStore, model_id: str) -> list[Pair]:
    """Pairs of kept posts that have no score for ``model_id`` yet, in ``post_id`` order."""
    rows = store.query(
        PAIRS_SQL + " AND NOT EXISTS (SELECT 1 FROM relevance r "
        "WHERE r.post_id = p.post_id AND r.model_id = ?) ORDER BY p.post_id",
        (model_id,),
    )
    return [
        Pair(r["post_id"], r["lang"], r["text"], r["sha256"], str(store.resolve_image(r["path"])))
        for r in rows
    ]


def register_model(store: CorpusStore, spec: ModelSpec) -> None:
    """Insert the ``relevance_models`` row for ``spec`` (once)."""
    row = spec.as_row()
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO relevance_models(model_id, backend, name, pretrained, "
            "checkpoint_sha256, library_version, created_at) VALUES(?, ?, ?, ?, ?, ?, ?)",
            (
                row["model_id"],
                row["backend"],
                row["name"],
                row["pretrained"],
                row["checkpoint_sha256"],
                row["library_version"],
                utcnow(),
            ),
        )


class PairDataset:
    """Map-style dataset: index → ``(index, image tensor | None, tokens, error | None)``.

    Runs in the DataLoader workers: opens the image file, converts to RGB, preprocesses, and
    tokenises the text. A file that cannot be decoded yields ``None`` and the error.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        preprocess: Callable[[Any], Any],
        tokenizer: Callable[[list[str]], Any],
    ):
        self.pairs = pairs
        self.preprocess = preprocess
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[int, Any, Any, str | None]:
        pair = self.pairs[index]
        tokens = self.tokenizer([pair.text])[0]
        try:
            image = load_rgb(pair.image_path)
            return index, self.preprocess(image), tokens, None
        except Exception as exc:  # any decoder failure is data, not a crash
            return index, None, tokens, f"{type(exc).__name__}: {exc}"[:300]


def load_rgb(path: str) -> Any:
    """Open and fully decode an image as RGB (raises on missing, truncated or unknown files)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


@dataclass(slots=True)
class Batch:
    """A collated batch: the readable items stacked, the unreadable ones listed."""

    indices: list[int]
    images: Any  # FloatTensor [n, 3, H, W] or None when every item failed
    tokens: Any  # LongTensor [n, context] or None
    failures: list[tuple[int, str]]

    def pin_memory(self) -> Batch:
        if self.images is not None:
            self.images = self.images.pin_memory()
            self.tokens = self.tokens.pin_memory()
        return self


def collate_pairs(items: list[tuple[int, Any, Any, str | None]]) -> Batch:
    """Stack the items that decoded; list the others with their error."""
    import torch

    ok = [it for it in items if it[3] is None]
    failures = [(it[0], str(it[3])) for it in items if it[3] is not None]
    if not ok:
        return Batch([], None, None, failures)
    return Batch(
        indices=[it[0] for it in ok],
        images=torch.stack([it[1] for it in ok]),
        tokens=torch.stack([it[2] for it in ok]),
        failures=failures,
    )


def make_loader(
    pairs: Sequence[Pair], scorer: ClipScorer, batch_size: int, num_workers: int
) -> Iterator[Batch]:
    """A DataLoader over ``pairs`` that decodes and preprocesses in ``num_workers`` processes."""
    from torch.utils.data import DataLoader

    dataset = PairDataset(pairs, scorer.preprocess, scorer.tokenizer)
    pin = scorer.device is not None and scorer.device.type == "cuda"
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["prefetch_factor"] = 4
        if scorer.device.type == "cpu":
            kwargs["worker_init_fn"] = _lower_priority
    return iter(
        DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            collate_fn=collate_pairs,
            pin_memory=pin,
            **kwargs,
        )
    )


def _lower_priority(worker_id: int) -> None:
    """On CPU, decoders yield to the model's threads: they need ~10 % of a core to keep up."""
    import contextlib
    import os

    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)


def score_pairs(
    store: CorpusStore,
    scorer: ClipScorer,
    pairs: Sequence[Pair],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> ScoreSummary:
    """Score ``pairs`` and commit each batch (scores + unreadable drops) in one transaction."""
    import torch

    model_id = scorer.spec.model_id
    summary = ScoreSummary(model_id=model_id, pending=len(pairs))
    if not pairs:
        return summary
    register_model(store, scorer.spec)
    threads = torch.get_num_threads()
    torch.set_num_threads(model_threads(scorer.device.type, num_workers, threads))
    start = time.perf_counter()
    try:
        for batch in make_loader(pairs, scorer, batch_size, num_workers):
            scores = scorer.score(batch.images, batch.tokens).tolist() if batch.indices else []
            commit_scores(
                store,
                model_id,
                [(pairs[i], score) for i, score in zip(batch.indices, scores, strict=True)],
                [(pairs[i], error) for i, error in batch.failures],
            )
            summary.scored += len(batch.indices)
            summary.unreadable += len(batch.failures)
            summary.unreadable_items += [pairs[i].post_id for i, _ in batch.failures]
            summary.batches += 1
            if progress:
                progress("score", len(batch.indices) + len(batch.failures), len(pairs))
    finally:
        torch.set_num_threads(threads)
        summary.seconds = time.perf_counter() - start
    return summary


def commit_scores(
    store: CorpusStore,
    model_id: str,
    scored: Sequence[tuple[Pair, float]],
    failed: Sequence[tuple[Pair, str]],
) -> None:
    """One batch in one transaction: its scores, and its unreadable images as drops (any
    engine's scores arrive here: the local loop's and the Ray engine's shards)."""
    now = utcnow()
    with store.transaction() as conn:
        for pair, score in scored:
            conn.execute(
                "INSERT OR REPLACE INTO relevance(post_id, model_id, image_sha256, score, "
                "scored_at) VALUES(?, ?, ?, ?, ?)",
                (pair.post_id, model_id, pair.image_sha256, float(score), now),
            )
            conn.execute(
                "DELETE FROM drops WHERE stage=? AND item_id=? AND reason=?",
                (STAGE, pair.post_id, REASON_IMAGE_UNREADABLE),
            )
        for pair, error in failed:
            store.record_drop(
                conn,
                Drop(
                    stage=STAGE,
                    item_id=pair.post_id,
                    reason=REASON_IMAGE_UNREADABLE,
                    lang=pair.lang,
                    detail=f"{pair.image_sha256}: {error}",
                ),
            )


def model_threads(device_type: str, num_workers: int, threads: int) -> int:
    """torch's thread count while workers decode: on CPU, the cores they leave, but never below 2.

    Measured on 2 cores: giving the model one thread and the decoder the other halves the
    throughput of a ViT-B/32-sized model, while decoding beside two model threads costs ~10 %.
    """
    if device_type != "cpu" or num_workers == 0:
        return threads
    return max(min(threads, available_cpus() - num_workers), min(threads, 2))


def available_cpus() -> int:
    """CPUs this process may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
