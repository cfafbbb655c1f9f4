"""The recipe's ``train:`` and ``preannotate:`` sections → typed settings, with CLI overrides.

Unknown keys are errors naming the key (``train.<key>: unknown key``), as for every stage.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _device(v: str) -> str:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
        raise ValueError("use auto, cpu, cuda, cuda:N or mps")
    return v


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class TrainSettings(_Settings):
    """Settings of ``mmner-data train`` (the recipe's ``train:`` section)."""

    model: Literal["2m-ner", "text-crf", "text-linear"] = "2m-ner"
    text_encoder: str = Field(default="xlm-roberta-base", description="HF name or folder")
    image_encoder: str | None = Field(
        default="openai/clip-vit-base-patch32",
        description="HF CLIP/ViT name or folder, or an open_clip name/folder",
    )
    image_backend: Literal["transformers", "open_clip"] | None = None
    image_pretrained: str | None = None
    freeze_image: bool = True
    max_length: int = Field(default=128, ge=8, le=4096)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    fusion_heads: int = Field(default=4, ge=1)
    proj_dim: int = Field(default=128, ge=2)
    contrastive_weight: float = Field(default=0.1, ge=0)
    temperature: float = Field(default=0.07, gt=0)
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=16, ge=1)
    lr_encoder: float = Field(default=3e-5, ge=0)
    lr_head: float = Field(default=1e-3, ge=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, le=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    patience: int = Field(default=5, ge=0, description="epochs without dev gain; 0 = never stop")
    seed: int = 13
    device: str = "auto"
    splits: tuple[float, float, float] = (0.7, 0.15, 0.15)
    keep_checkpoints: int = Field(default=2, ge=1)
    eval_batch_size: int = Field(default=32, ge=1)

    @field_validator("device")
    @classmethod
    def _dev(cls, v: str) -> str:
        return _device(v)

    @field_validator("splits")
    @classmethod
    def _splits(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(x < 0 for x in v) or abs(sum(v) - 1) > 1e-6:
            raise ValueError("three fractions (train, validation, test) summing to 1")
        return v
