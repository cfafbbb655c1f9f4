"""The Hugging Face ``DatasetDict``: features, building, saving (disk, Parquet, hub)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmner_data.export.records import ExportRecord, bio_names

Progress = Callable[[str, int, int | None], None]


def features(entity_types: Sequence[str]) -> Any:
    """The export's schema (``ner_tags`` names: ``O``, ``B-T``/``I-T`` per recipe type)."""
    from datasets import ClassLabel, Features, Image, Sequence, Value

    return Features(
        {
            "id": Value("string"),
            "lang": Value("string"),
            "text": Value("string"),
            "tokens": Sequence(Value("string")),
            "token_starts": Sequence(Value("int32")),
            "token_ends": Sequence(Value("int32")),
            "ner_tags": Sequence(ClassLabel(names=bio_names(entity_types))),
            "image": Image(),
            "clip_score": Value("float32"),
            "source": Value("string"),
            "licence": Value("string"),
            "author": Value("string"),
            "created_at": Value("string"),
            "label_source": Value("string"),
            "label_origin": Value("string"),
        }
    )


def to_row(rec: ExportRecord) -> dict[str, Any]:
    """One dataset row; the image as bytes with a neutral file name (no store path)."""
    image = None
    if rec.image_path is not None:
        image = {"bytes": rec.image_path.read_bytes(), "path": f"{rec.id}.jpg"}
    return {
        "id": rec.id,
        "lang": rec.lang,
        "text": rec.text,
        "tokens": [t.text for t in rec.tokens],
        "token_starts": [t.start for t in rec.tokens],
        "token_ends": [t.end for t in rec.tokens],
        "ner_tags": list(rec.tags),
        "image": image,
        "clip_score": rec.clip_score,
        "source": rec.source,
        "licence": rec.licence,
        "author": rec.author,
        "created_at": rec.created_at,
        "label_source": rec.label_source,
        "label_origin": rec.label_origin,
    }


def _rows(records: Sequence[ExportRecord], name: str, progress: Progress | None) -> Iterator[dict]:
    for rec in records:
        yield to_row(rec)
        if progress:
            progress(f"export {name}", 1, len(records))


def build_dataset_dict(
    by_split: Mapping[str, Sequence[ExportRecord]],
    entity_types: Sequence[str],
    *,
    cache_dir: Path,
    progress: Progress | None = None,
) -> Any:
    """A ``DatasetDict`` written through Arrow files under ``cache_dir`` (rows are streamed)."""
    from datasets import Dataset, DatasetDict, NamedSplit, disable_progress_bars

    disable_progress_bars()  # the caller draws its own bars
    feats = features(entity_types)
    out = {}
    for name, records in by_split.items():
        ds = (
            Dataset.from_generator(
                _rows,
                features=feats,
                cache_dir=str(cache_dir),
                gen_kwargs={"records": list(records), "name": name, "progress": progress},
                split=NamedSplit(name),
                fingerprint=f"mmner-export-{name}-{os.getpid()}-{id(records)}",
            )
            if records
            else Dataset.from_dict({k: [] for k in feats}, features=feats)
        )
        out[name] = ds
    return DatasetDict(out)


def write_parquet(dd: Any, folder: Path) -> list[Path]:
    """``data/<split>-00000-of-00001.parquet`` (the hub's layout; images embedded)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, ds in dd.items():
        p = folder / f"{name}-00000-of-00001.parquet"
        ds.to_parquet(str(p))
        paths.append(p)
    return paths


def push_to_hub(dd: Any, repo: str, card_path: Path, *, private: bool = True) -> str:
    """Upload the dataset and its card; the token comes from ``HF_TOKEN`` or ``hf auth login``."""
    from huggingface_hub import HfApi

    dd.push_to_hub(repo, private=private)
    HfApi().upload_file(
        path_or_fileobj=str(card_path), path_in_repo="README.md", repo_id=repo, repo_type="dataset"
    )
    return f"https://huggingface.co/datasets/{repo}"
