"""Batched pre-annotation: posts in the store → ``predictions`` rows (spans + confidences).

Two kinds of model:

* an mmner-data model folder (2M-NER, text-crf, text-linear): span confidence is the CRF marginal
  of the predicted tags (the lowest over the span's words; softmax probability for text-linear);
  the image is used when the post has one and the model is multimodal;
* any Hugging Face token-classification model by name or folder
  (``AutoModelForTokenClassification``, text only): confidence is the softmax probability of the
  first subword's label (lowest over the span's words). Labels such as ``B-PER``/``I-PER``,
  ``PER`` (IO) or ``PERSON`` are read, mapped to the recipe's entity types through ``label_map``
  and a few common aliases (PERSON→PER, ORGANIZATION→ORG, LOCATION/GPE→LOC, MISCELLANEOUS→MISC);
  spans whose label maps to no entity type are dropped and counted.

The item score is the least confident word decision in the post (the minimum over words of the
confidence of the predicted tag, ``O`` included): low scores are the posts to review first.
Spans are word-aligned character offsets into ``posts.text``. Predictions are written per batch
in one transaction keyed by ``(post_id, model_version)``; a rerun skips what is there.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmner_data.models.config import is_checkpoint
from mmner_data.models.data import Collator, NerExample, to_device
from mmner_data.models.encoders import EncoderLoadError, pick_device
from mmner_data.schema import EntitySpan, spans_to_json
from mmner_data.stage import recorded_run
from mmner_data.text.spans import repair_bio
from mmner_data.text.tokenize import tokenize

Progress = Callable[[str, int, int | None], None]
ALIASES = {
    "PERSON": "PER",
    "PERS": "PER",
    "ORGANIZATION": "ORG",
    "ORGANISATION": "ORG",
    "LOCATION": "LOC",
    "GPE": "LOC",
    "MISCELLANEOUS": "MISC",
}


@dataclass
class Item:
    """A post to label: its text and (optionally) its image file."""

    post_id: str
    text: str
    image: Path | None = None
    lang: str | None = None


@dataclass
class ItemPrediction:
    spans: list[EntitySpan]
    score: float | None
    n_words: int
    unmapped: int = 0  # spans dropped: their label maps to no entity type


def words_of(item: Item) -> NerExample:
    toks = tokenize(item.text)
    return NerExample(
        id=item.post_id,
        tokens=[t.text for t in toks],
        lang=item.lang,
        text=item.text,
        offsets=[(t.start, t.end) for t in toks],
        image=item.image,
    )


def to_spans(
    ex: NerExample,
    tags: Sequence[str],
    conf: Sequence[float],
    type_map: Callable[[str], str | None] = lambda t: t,
) -> ItemPrediction:
    """Word tags + confidences → character spans with a confidence each, and the item score."""
    assert ex.offsets is not None
    n = len(ex.tokens)
    tags = list(tags[:n]) + ["O"] * (n - len(tags))
    conf = list(conf[:n]) + [1.0] * (n - len(conf))
    bio = repair_bio(tags)
    spans, unmapped, i = [], 0, 0
    while i < n:
        if bio[i] == "O":
            i += 1
            continue
        label = bio[i][2:]
        j = i + 1
        while j < n and bio[j] == f"I-{label}":
            j += 1
        mapped = type_map(label)
        if mapped is None:
            unmapped += 1
        else:
            score = round(float(min(conf[i:j])), 6)
            spans.append(EntitySpan(ex.offsets[i][0], ex.offsets[j - 1][1], mapped, score))
        i = j
    item_score = round(float(min(conf)), 6) if n else None
    return ItemPrediction(spans, item_score, n, unmapped)


class CheckpointPredictor:
    """An mmner-data model folder (see :class:`mmner_data.models.model.NerModel`)."""

    def __init__(self, folder: Path, device: torch.device):
        from mmner_data.models.model import NerModel

        self.model = NerModel.from_pretrained(folder, device=device)
        self.device = device
        self.model_version = self.model.version or folder.name
        self.entity_types = self.model.config.entity_types
        self.collate = Collator(self.model.config, self.model.tokenizer)
        self.uses_images = self.model.config.multimodal

    def prepare(self, items: Sequence[Item]) -> tuple[list[NerExample], dict[str, torch.Tensor]]:
        examples = [words_of(it) for it in items]
        return examples, self.collate(examples)

    @torch.no_grad()
    def forward(self, batch: dict[str, torch.Tensor]) -> list[tuple[list[int], list[float]]]:
        return self.model.predict(to_device(batch, self.model.device))

    def finish(
        self, examples: Sequence[NerExample], raw: Any, type_map: Callable[[str], str | None]
    ) -> list[ItemPrediction]:
        labels = self.model.config.labels
        return [
            to_spans(ex, [labels[t] for t in path], conf, type_map)
            for ex, (path, conf) in zip(examples, raw, strict=True)
        ]


class HFTokenClassifierPredictor:
    """Any ``AutoModelForTokenClassification`` by hub name or folder (text only)."""

    uses_images = False

    def __init__(self, name_or_path: str, device: torch.device, max_length: int = 512):
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            self.model = AutoModelForTokenClassification.from_pretrained(name_or_path)
        except (OSError, ValueError) as exc:
            raise EncoderLoadError(f"cannot load model {name_or_path!r}: {exc}") from exc
        if not getattr(self.tokenizer, "is_fast", False):
            raise EncoderLoadError(f"{name_or_path}: a fast tokenizer is needed")
        self.model.to(device).eval()
        self.device = device
        self.max_length = min(max_length, getattr(self.tokenizer, "model_max_length", max_length))
        id2label = self.model.config.id2label
        self.labels = [_bio(str(id2label[i])) for i in range(len(id2label))]
        self.entity_types = sorted({t[2:] for t in self.labels if t != "O"})
        self.model_version = _hf_version(name_or_path, self.model)

    def prepare(self, items: Sequence[Item]) -> tuple[list[NerExample], Any]:
        examples = [words_of(it) for it in items]
        words = [ex.tokens or [""] for ex in examples]
        enc = self.tokenizer(
            words,
            is_split_into_words=True,
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        firsts = []
        for b in range(len(words)):
            seen: dict[int, int] = {}
            for pos, wid in enumerate(enc.word_ids(b)):
                if wid is not None and wid not in seen:
                    seen[wid] = pos
            firsts.append(seen)
        return examples, (dict(enc), firsts)

    @torch.no_grad()
    def forward(self, batch: Any) -> Any:
        enc, firsts = batch
        logits = self.model(**{k: v.to(self.device) for k, v in enc.items()}).logits
        probs = logits.float().softmax(-1)
        conf, best = probs.max(-1)
        return best.cpu().tolist(), conf.cpu().tolist(), firsts

    def finish(
        self, examples: Sequence[NerExample], raw: Any, type_map: Callable[[str], str | None]
    ) -> list[ItemPrediction]:
        best, conf, firsts = raw
        out = []
        for b, ex in enumerate(examples):
            tags, cs = [], []
            for w in range(len(ex.tokens)):
                pos = firsts[b].get(w)
                tags.append("O" if pos is None else self.labels[best[b][pos]])
                cs.append(1.0 if pos is None else conf[b][pos])
            out.append(to_spans(ex, _io_to_bio(tags), cs, type_map))
        return out


def _bio(label: str) -> str:
    """``B-PER``/``I-PER``/``O`` as they are; ``PER`` (IO schemes) → ``I-PER``; E-/S- → I-/B-."""
    if label.upper() == "O":
        return "O"
    if len(label) > 2 and label[1] in "-_" and label[0] in "BIESL":
        prefix = {"B": "B", "S": "B", "U": "B"}.get(label[0], "I")
        return f"{prefix}-{label[2:]}"
    return f"I-{label}"


def _io_to_bio(tags: list[str]) -> list[str]:
    return repair_bio(tags)


def _hf_version(name_or_path: str, model: Any) -> str:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        h = hashlib.sha256()
        for w in weights:
            h.update(w.read_bytes())
        return f"{path.resolve().name}@{h.hexdigest()[:12]}"
    commit = getattr(model.config, "_commit_hash", None)
    return f"{name_or_path}@{commit[:12]}" if commit else name_or_path


def load_predictor(model: str, device: str | None = None) -> Any:
    """An mmner-data model folder, or any HF token-classification model (name or folder)."""
    dev = pick_device(device)
    path = Path(model).expanduser()
    if path.is_dir():
        return (
            CheckpointPredictor(path, dev)
            if is_checkpoint(path)
            else HFTokenClassifierPredictor(model, dev)
        )
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or path.exists():
        raise EncoderLoadError(f"model folder not found: {path}")
    return HFTokenClassifierPredictor(model, dev)


def type_mapper(
    entity_types: Sequence[str], label_map: dict[str, str] | None = None
) -> Callable[[str], str | None]:
    """Model label → schema entity type (or None): ``label_map``, then as-is, then aliases."""
    schema = set(entity_types)
    explicit = {k.upper(): v for k, v in (label_map or {}).items()}

    def f(label: str) -> str | None:
        for cand in (explicit.get(label.upper()), label, label.upper(), ALIASES.get(label.upper())):
            if cand and cand in schema:
                return cand
        return None

    return f


def default_workers(device: torch.device) -> int:
    """Preparation processes: none on one core; on CPU one (the forward keeps the rest busy),
    on GPU up to four."""
    import os

    cpus = os.cpu_count() or 1
    if cpus < 2:
        return 0
    return 1 if device.type == "cpu" else min(4, cpus - 1)


def _identity(x: Any) -> Any:
    return x


class _Prepared(torch.utils.data.Dataset):
    """Chunks of items → ``prepare(chunk)``, run in DataLoader worker processes."""

    def __init__(self, prepare: Callable[[Any], Any], chunks: Sequence[Any]):
        self.prepare = prepare
        self.chunks = chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> Any:
        return self.chunks[i], self.prepare(self.chunks[i])


def prepared_batches(
    prepare: Callable[[Any], Any], chunks: Sequence[Any], workers: int
) -> Iterator[tuple[Any, Any]]:
    """``(chunk, prepare(chunk))`` in order; with ``workers`` > 0 prepared in other processes
    (tokenisation and image decoding overlap the forward pass; threads would share the GIL)."""
    if not chunks:
        return
    if workers <= 0 or len(chunks) < 2:
        with ThreadPoolExecutor(max_workers=1) as pool:
            fut = pool.submit(prepare, chunks[0])
            for k, chunk in enumerate(chunks):
                result = fut.result()
                if k + 1 < len(chunks):
                    fut = pool.submit(prepare, chunks[k + 1])
                yield chunk, result
        return
    loader = torch.utils.data.DataLoader(
        _Prepared(prepare, chunks),
        batch_size=None,
        shuffle=False,
        num_workers=min(workers, len(chunks)),
        prefetch_factor=4,
        collate_fn=_identity,
    )
    yield from loader


def select_rows(store: Any, model_version: str, *, overwrite: bool = False) -> list[Any]:
    """Kept posts (kept by ``filter`` too when it ran) without a prediction of this version:
    ``post_id, lang, text`` and their first ok image (``sha256``, ``img`` path), by ``post_id``."""
    return store.query(
        "SELECT p.post_id, p.lang, p.text, f.sha256, f.path AS img FROM posts p "
        "LEFT JOIN (SELECT pi.post_id, i.sha256, i.path, "
        "  ROW_NUMBER() OVER (PARTITION BY pi.post_id ORDER BY pi.position) AS rn "
        "  FROM post_images pi JOIN images i ON i.sha256 = pi.sha256 WHERE pi.status = 'ok') f "
        "ON f.post_id = p.post_id AND f.rn = 1 "
        "WHERE p.status = 'kept' "
        "AND (NOT EXISTS (SELECT 1 FROM relevance_selection) "
        "     OR p.post_id IN (SELECT post_id FROM relevance_selection WHERE kept = 1)) "
        "AND (? OR NOT EXISTS (SELECT 1 FROM predictions pr "
        "      WHERE pr.post_id = p.post_id AND pr.model_version = ?)) "
        "ORDER BY p.post_id",
        (int(overwrite), model_version),
    )


def select_items(store: Any, model_version: str, *, overwrite: bool = False) -> list[Item]:
    """:func:`select_rows` as :class:`Item` objects (image: the file in the store)."""
    return [
        Item(
            r["post_id"], r["text"], store.resolve_image(r["img"]) if r["img"] else None, r["lang"]
        )
        for r in select_rows(store, model_version, overwrite=overwrite)
    ]


def predictor_version(model: str) -> str:
    """The ``model_version`` :func:`load_predictor` would report, without loading the weights."""
    from types import SimpleNamespace

    path = Path(model).expanduser()
    if path.is_dir():
        from mmner_data.models.model import checkpoint_version

        return checkpoint_version(path) if is_checkpoint(path) else _hf_version(model, None)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise EncoderLoadError(f"cannot load model {model!r}: {exc}") from exc
    return _hf_version(model, SimpleNamespace(config=config))


def write_prediction_rows(store: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert prediction rows (``post_id, model_version, spans_json, score``) in one transaction."""
    from mmner_data.store import utcnow

    now = utcnow()
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO predictions(post_id, model_version, spans_json, score, created_at) "
            "VALUES(?, ?, ?, ?, ?) ON CONFLICT(post_id, model_version) DO UPDATE SET "
            "spans_json=excluded.spans_json, score=excluded.score, created_at=excluded.created_at",
            [(r["post_id"], r["model_version"], r["spans_json"], r["score"], now) for r in rows],
        )


def write_predictions(
    store: Any, model_version: str, items: Sequence[Item], preds: Sequence[ItemPrediction]
) -> None:
    rows = [
        {
            "post_id": it.post_id,
            "model_version": model_version,
            "spans_json": spans_to_json(p.spans),
            "score": p.score,
        }
        for it, p in zip(items, preds, strict=True)
    ]
    write_prediction_rows(store, rows)


def run_preannotate(
    store: Any,
    model: str,
    *,
    batch_size: int = 32,
    device: str | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
    entity_types: Sequence[str] | None = None,
    label_map: dict[str, str] | None = None,
    predictor: Any = None,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Pre-annotate the store's posts with ``model``; returns a JSON-able summary.

    ``store`` is a :class:`~mmner_data.store.CorpusStore` or its folder. ``entity_types`` is the
    schema (the recipe's); by default the model's own. ``predictor`` reuses a loaded model;
    ``num_workers`` preparation processes (default :func:`default_workers`).
    """
    from mmner_data.store import CorpusStore

    own = not isinstance(store, CorpusStore)
    st = CorpusStore(store) if own else store
    try:
        pred = predictor or load_predictor(model, device)
        types = list(entity_types or pred.entity_types)
        mapper = type_mapper(types, label_map)
        items = select_items(st, pred.model_version, overwrite=overwrite)
        items.sort(key=lambda it: len(it.text))  # similar lengths share a batch: less padding
        params = {"model": model, "model_version": pred.model_version, "batch_size": batch_size}
        with recorded_run(st, "preannotate", params) as rec:
            summary = _predict_all(
                st, pred, items, mapper, types, model, batch_size, progress, num_workers
            )
            rec.summary = summary
        return summary
    finally:
        if own:
            st.close()


def _predict_all(
    st: Any,
    pred: Any,
    items: list[Item],
    mapper: Any,
    types: list[str],
    model: str,
    batch_size: int,
    progress: Progress | None,
    num_workers: int | None,
) -> dict[str, Any]:
    """Predict ``items`` in batches and write each batch's predictions (one transaction each)."""
    t0 = time.perf_counter()
    n_words, unmapped, with_image = 0, 0, 0
    by_label: Counter[str] = Counter()
    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if progress:
        progress("preannotate", 0, len(items))
    workers = default_workers(pred.device) if num_workers is None else num_workers
    for chunk, (examples, batch) in prepared_batches(pred.prepare, chunks, workers):
        preds = pred.finish(examples, pred.forward(batch), mapper)
        write_predictions(st, pred.model_version, chunk, preds)
        for p in preds:
            n_words += p.n_words
            unmapped += p.unmapped
            by_label.update(s.label for s in p.spans)
        if pred.uses_images:
            with_image += int(batch["has_image"].sum()) if "has_image" in batch else 0
        if progress:
            progress("preannotate", len(chunk), len(items))
    return prediction_summary(
        st,
        model,
        pred.model_version,
        types,
        predicted=len(items),
        with_image=with_image,
        by_label=by_label,
        unmapped=unmapped,
        tokens=n_words,
        seconds=time.perf_counter() - t0,
    )


def prediction_summary(
    st: Any,
    model: str,
    model_version: str,
    types: Sequence[str],
    *,
    predicted: int,
    with_image: int,
    by_label: Counter[str],
    unmapped: int,
    tokens: int,
    seconds: float,
) -> dict[str, Any]:
    """The JSON summary of a pre-annotation run (any engine); ``total_for_version`` from the store."""
    total = st.query("SELECT COUNT(*) FROM predictions WHERE model_version = ?", (model_version,))
    return {
        "model": model,
        "model_version": model_version,
        "entity_types": list(types),
        "predicted": predicted,
        "with_image": with_image,
        "total_for_version": int(total[0][0]),
        "spans": sum(by_label.values()),
        "spans_by_label": dict(sorted(by_label.items())),
        "unmapped_spans": unmapped,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 and tokens else 0.0,
    }
