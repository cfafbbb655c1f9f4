"""The recipe's ``preannotate:`` section → typed settings, with CLI overrides."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmner_data.bundled import BUNDLED_MODEL


def _device(v: str) -> str:
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
        raise ValueError("use auto, cpu, cuda, cuda:N or mps")
    return v


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class PreannotateSettings(_Settings):
    """Settings of ``mmner-data preannotate`` (the recipe's ``preannotate:`` section)."""

    model: str = Field(
        default=str(BUNDLED_MODEL),
        description="an mmner-data model folder, or any HF token-classification name/folder",
    )
    batch_size: int = Field(default=32, ge=1)
    device: str = "auto"
    label_map: dict[str, str] = Field(
        default_factory=dict, description="model label → recipe entity type (e.g. PERSON: PER)"
    )
    overwrite: bool = False

    @field_validator("device")
    @classmethod
    def _dev(cls, v: str) -> str:
        return _device(v)
