"""Training/evaluation examples from a corpus store or an HF export, and batching.

Sources:

* **a corpus store** (folder with ``corpus.sqlite``): its eligible posts with labels, selected by
  :func:`mmner_data.labels.select_labels` (default policy: the store's gold, i.e. the
  ``adjudication`` table; a :class:`~mmner_data.labels.LabelPolicy` can add one annotator's
  labels). Nothing else is read: to train on the bundled sample's hand labels, write them into
  the store first (``python -m mmner_data.labels sample-gold --store STORE``). Splits are made
  here, per language, from a hash of the post id (stable as the store grows).
* **an HF export** (folder written by ``DatasetDict.save_to_disk``) with columns ``id``,
  ``lang``, ``tokens``, ``ner_tags`` (``Sequence(ClassLabel)`` of BIO tags), ``image``
  (optional ``Image``) and ``text``; splits ``train`` / ``validation`` (or ``dev``) / ``test``.

Subword alignment: each word is represented by its first subword; words cut by ``max_length``
are masked out (predicted ``O`` at inference).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage

from mmner_data.errors import MmnerError
from mmner_data.labels import LabelPolicy
from mmner_data.schema import EntitySpan

DEFAULT_SPLITS = (0.7, 0.15, 0.15)
SPLIT_NAMES = ("train", "validation", "test")
DEFAULT_TYPE_ORDER = ("PER", "ORG", "LOC", "MISC")


class DataError(MmnerError):
    """The data cannot be used for training/evaluation; the message says why."""


@dataclass
class NerExample:
    """One labelled (or unlabelled) post, word-tokenised."""

    id: str
    tokens: list[str]
    tags: list[str] | None = None
    lang: str | None = None
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None
    image: Any = None  # a path, bytes, a PIL image, or None
    meta: dict[str, Any] = field(default_factory=dict)


# -- sources ------------------------------------------------------------------------------------


def detect_source(path: Path) -> str:
    """``store`` or ``hf`` for a data folder; :class:`DataError` otherwise."""
    if (path / "corpus.sqlite").is_file():
        return "store"
    if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
        return "hf"
    raise DataError(
        f"{path}: not a corpus store (corpus.sqlite) or an HF export (dataset_dict.json)"
    )


def load_splits(
    path: Path,
    *,
    entity_types: Sequence[str] | None = None,
    fractions: Sequence[float] = DEFAULT_SPLITS,
    policy: LabelPolicy | None = None,
) -> tuple[dict[str, list[NerExample]], list[str]]:
    """``({split: examples}, entity types)`` from a store or an HF export folder.

    ``policy`` says which labels of a store to use (default: its gold only).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data folder not found: {path}")
    if detect_source(path) == "hf":
        splits, types = examples_from_hf(path)
    else:
        from mmner_data.store import CorpusStore

        with CorpusStore(path) as store:
            examples = examples_from_store(store, policy)
        if not examples:
            raise DataError(
                f"{path}: no labelled posts in the store (looked at "
                f"{(policy or LabelPolicy()).describe()}); run `mmner-data agreement` to "
                "adjudicate annotations into gold, or export with --annotator and train on the "
                "export; for a store of the bundled sample, `python -m mmner_data.labels "
                "sample-gold --store STORE` writes the sample's hand labels as its gold"
            )
        splits = split_by_hash(examples, fractions)
        types = entity_types_of(ex for s in splits.values() for ex in s)
    if entity_types:
        unknown = set(types) - set(entity_types)
        if unknown:
            raise DataError(
                f"the data has entity types {sorted(unknown)} not in {list(entity_types)}"
            )
        types = list(entity_types)
    return splits, types


def entity_types_of(examples: Iterable[NerExample]) -> list[str]:
    seen = {t[2:] for ex in examples for t in (ex.tags or []) if t != "O"}
    ordered = [t for t in DEFAULT_TYPE_ORDER if t in seen]
    return ordered + sorted(seen - set(ordered))


def split_by_hash(
    examples: Sequence[NerExample], fractions: Sequence[float] = DEFAULT_SPLITS
) -> dict[str, list[NerExample]]:
    """Per language, order by sha256(id) and cut train/validation/test by ``fractions``."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"split fractions must be three numbers summing to 1, got {fractions}")
    by_lang: dict[str, list[NerExample]] = {}
    for ex in examples:
        by_lang.setdefault(ex.lang or "", []).append(ex)
    out: dict[str, list[NerExample]] = {name: [] for name in SPLIT_NAMES}
    for lang in sorted(by_lang):
        items = sorted(by_lang[lang], key=lambda e: hashlib.sha256(e.id.encode()).hexdigest())
        n = len(items)
        n_dev = round(n * fractions[1])
        n_test = round(n * fractions[2])
        n_train = n - n_dev - n_test
        out["train"] += items[:n_train]
        out["validation"] += items[n_train : n_train + n_dev]
        out["test"] += items[n_train + n_dev :]
    return out


def example_from_spans(
    post_id: str,
    text: str,
    lang: str | None,
    spans: Sequence[EntitySpan],
    image: Path | None = None,
    meta: dict[str, Any] | None = None,
) -> NerExample:
    """One post with character spans as a word-tokenised BIO example (SpanError if they do not
    convert)."""
    from mmner_data.text.spans import spans_to_tags
    from mmner_data.text.tokenize import tokenize

    tokens = tokenize(text)
    return NerExample(
        id=post_id,
        tokens=[t.text for t in tokens],
        tags=spans_to_tags(text, tokens, spans),
        lang=lang,
        text=text,
        offsets=[(t.start, t.end) for t in tokens],
        image=image,
        meta=meta or {},
    )


def examples_from_store(store: Any, policy: LabelPolicy | None = None) -> list[NerExample]:
    """The store's labelled posts (see :func:`mmner_data.labels.select_labels`), word-tokenised."""
    from mmner_data.labels import select_labels
    from mmner_data.text.spans import SpanError

    out = []
    for post in select_labels(store, policy).posts:
        meta = {"label_source": post.label_source, "label_origin": post.label_origin}
        try:
            out.append(
                example_from_spans(
                    post.post_id, post.text, post.lang, post.spans, post.image_path, meta
                )
            )
        except SpanError as exc:
            raise DataError(
                f"post {post.post_id}: {post.label_source} spans do not convert: {exc}"
            ) from None
    return out


def examples_from_hf(path: Path) -> tuple[dict[str, list[NerExample]], list[str]]:
    """Examples and entity types of an HF export folder (``load_from_disk``)."""
    import datasets

    try:
        dd = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"{path}: cannot load the HF export: {exc}") from exc
    if isinstance(dd, datasets.Dataset):
        dd = datasets.DatasetDict({"train": dd})
    names = _tag_names(dd)
    out: dict[str, list[NerExample]] = {name: [] for name in SPLIT_NAMES}
    for split, ds in dd.items():
        key = "validation" if split in ("dev", "valid", "validation") else split
        cols = set(ds.column_names)
        if not {"tokens", "ner_tags"} <= cols:
            raise DataError(f"{path}: split {split!r} needs columns tokens and ner_tags")
        for i, row in enumerate(ds):
            out.setdefault(key, []).append(
                NerExample(
                    id=str(row.get("id", f"{split}-{i}")),
                    tokens=list(row["tokens"]),
                    tags=[names[t] for t in row["ner_tags"]],
                    lang=row.get("lang"),
                    text=row.get("text"),
                    image=row.get("image") if "image" in cols else None,
                )
            )
    types: list[str] = []
    for tag in names:
        if tag != "O" and tag[2:] not in types:
            types.append(tag[2:])
    return out, types


def _tag_names(dd: Any) -> list[str]:
    feat = next(iter(dd.values())).features["ner_tags"]
    inner = getattr(feat, "feature", None)
    names = getattr(inner, "names", None)
    if not names:
        raise DataError("ner_tags must be a Sequence(ClassLabel) of BIO tag names")
    return list(names)


# -- images -------------------------------------------------------------------------------------


def load_image(ref: Any, size: int) -> PILImage.Image | None:
    """Open an image reference (path, bytes, PIL, HF dict); None when absent or unreadable."""
    if ref is None:
        return None
    try:
        if isinstance(ref, PILImage.Image):
            return ref
        if isinstance(ref, dict):  # HF Image feature not decoded
            ref = ref.get("bytes") or ref.get("path")
            if ref is None:
                return None
        img = PILImage.open(io.BytesIO(ref) if isinstance(ref, bytes) else ref)
        img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
        img.load()
        return img
    except (OSError, ValueError, PILImage.DecompressionBombError):
        return None


def preprocess_image(
    img: PILImage.Image, size: int, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """Resize the shorter side to ``size`` (bicubic), centre-crop, normalise; ``[3, S, S]``."""
    img = img.convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), PILImage.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    img = img.crop((left, top, left + size, top + size))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return arr.transpose(2, 0, 1)


# -- batching -----------------------------------------------------------------------------------


class Collator:
    """Examples → a model batch (tensors on CPU; see :class:`mmner_data.models.model.NerModel`)."""

    def __init__(self, model_config: Any, tokenizer: Any, *, use_images: bool = True):
        self.config = model_config
        self.tokenizer = tokenizer
        self.label2id = {t: i for i, t in enumerate(model_config.labels)}
        self.use_images = use_images and model_config.multimodal

    def __call__(self, examples: Sequence[NerExample]) -> dict[str, torch.Tensor]:
        words = [ex.tokens if ex.tokens else [""] for ex in examples]
        enc = self.tokenizer(
            words,
            is_split_into_words=True,
            truncation=True,
            max_length=self.config.max_length,
            padding=True,
            return_tensors="pt",
        )
        n_words = max(len(w) for w in words)
        word_index = torch.zeros(len(examples), n_words, dtype=torch.long)
        word_mask = torch.zeros(len(examples), n_words, dtype=torch.bool)
        for b, w in enumerate(words):
            first: dict[int, int] = {}
            for pos, wid in enumerate(enc.word_ids(b)):
                if wid is not None and wid not in first:
                    first[wid] = pos
            last_seen = max(first) if first else -1
            prev = 0
            for i in range(min(len(w), last_seen + 1)):
                prev = first.get(i, prev)  # a word with no subword borrows the previous one
                word_index[b, i] = prev
                word_mask[b, i] = True
            if not word_mask[b, 0]:
                word_mask[b, 0] = True  # the CRF needs one position; predicted "O" anyway
        batch: dict[str, torch.Tensor] = {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "word_index": word_index,
            "word_mask": word_mask,
        }
        if all(ex.tags is not None for ex in examples):
            labels = torch.full((len(examples), n_words), -100, dtype=torch.long)
            for b, ex in enumerate(examples):
                for i, tag in enumerate(ex.tags or []):
                    labels[b, i] = self.label2id.get(tag, 0)  # unknown types read as O
            batch["labels"] = labels
        if self.use_images:
            size = self.config.image_size
            pixels = np.zeros((len(examples), 3, size, size), dtype=np.float32)
            has = torch.zeros(len(examples), dtype=torch.bool)
            for b, ex in enumerate(examples):
                img = load_image(ex.image, size)
                if img is not None:
                    pixels[b] = preprocess_image(
                        img, size, self.config.image_mean, self.config.image_std
                    )
                    has[b] = True
            if bool(has.any()):
                batch["pixel_values"] = torch.from_numpy(pixels)
            batch["has_image"] = has
        return batch


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
