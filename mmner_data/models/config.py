"""The model configuration: one JSON-serialisable dataclass saved as ``config.json``.

A checkpoint folder (see :mod:`mmner_data.models.model`) is self-describing: this config names
the architecture, the label set and where the encoders came from, and holds everything needed to
rebuild the modules without downloading anything (the encoders' own configs are saved beside it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

ARCHITECTURES: tuple[str, ...] = ("2m-ner", "text-crf", "text-linear")
CONFIG_NAME = "config.json"
FORMAT = "mmner-data/ner-model"
FORMAT_VERSION = 1


def bio_labels(entity_types: list[str] | tuple[str, ...]) -> list[str]:
    """``["O", "B-PER", "I-PER", ...]`` in the order of ``entity_types``."""
    out = ["O"]
    for t in entity_types:
        out += [f"B-{t}", f"I-{t}"]
    return out


@dataclass
class ModelConfig:
    """Everything that defines a model (not how it is trained)."""

    architecture: str = "2m-ner"
    labels: list[str] = field(default_factory=lambda: bio_labels(("PER", "ORG", "LOC", "MISC")))
    text_encoder: str = "xlm-roberta-base"  # HF name or path it was initialised from
    image_encoder: str | None = "openai/clip-vit-base-patch32"  # None for text-only models
    image_backend: str | None = None  # "transformers" | "open_clip" (auto-detected when None)
    image_pretrained: str | None = None  # open_clip pretrained tag or weights file
    freeze_image: bool = True
    image_size: int = 224
    image_mean: list[float] = field(default_factory=lambda: [0.48145466, 0.4578275, 0.40821073])
    image_std: list[float] = field(default_factory=lambda: [0.26862954, 0.26130258, 0.27577711])
    max_length: int = 128  # subword positions per text, special tokens included
    dropout: float = 0.1
    fusion_heads: int = 4
    proj_dim: int = 128  # shared text-image space of the contrastive loss
    contrastive_weight: float = 0.1
    temperature: float = 0.07  # initial InfoNCE temperature (learned)
    constrain_bio: bool = True  # CRF: forbid O → I-X and B-X → I-Y transitions
    text_hidden: int = 0  # filled in when the encoders are built
    image_hidden: int = 0
    image_embed: int = 0

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.architecture!r}; use one of {', '.join(ARCHITECTURES)}"
            )
        if not self.labels or self.labels[0] != "O":
            raise ValueError("labels must start with 'O' (BIO tags)")
        for tag in self.labels[1:]:
            if not (tag.startswith("B-") or tag.startswith("I-")) or len(tag) < 3:
                raise ValueError(f"label {tag!r} is not a BIO tag (B-X / I-X)")
        if self.architecture != "2m-ner":
            self.image_encoder = None

    @property
    def multimodal(self) -> bool:
        return self.architecture == "2m-ner" and self.image_encoder is not None

    @property
    def uses_crf(self) -> bool:
        return self.architecture in ("2m-ner", "text-crf")

    @property
    def entity_types(self) -> list[str]:
        seen: dict[str, None] = {}
        for tag in self.labels[1:]:
            seen.setdefault(tag[2:], None)
        return list(seen)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}

    def save(self, folder: Path) -> None:
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        (folder / CONFIG_NAME).write_text(text, encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"format", "format_version"}
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        if data.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise ValueError("this checkpoint was written by a newer mmner-data; upgrade it")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, folder: Path) -> ModelConfig:
        return cls.from_dict(json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")))


def is_checkpoint(folder: Path) -> bool:
    """True when ``folder`` holds a model written by :meth:`NerModel.save_pretrained`."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except ValueError:
        return False
