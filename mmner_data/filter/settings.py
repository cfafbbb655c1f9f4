"""The recipe's ``filter:`` section → typed settings, with command-line overrides.

Thresholds and keep-top fractions are given per language (``{en: 0.28, fr: 0.25}``, or on the
command line ``en=0.28,fr=0.25``) or as one value for all languages (``0.28``); both forms may be
mixed (``0.2,en=0.28``: 0.28 for English, 0.2 for every other language).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from mmner_data.config import RecipeError
from mmner_data.stage import build_settings

DEFAULT_MODEL = "xlm-roberta-base-ViT-B-32"
DEFAULT_PRETRAINED = "laion5b_s13b_b90k"
ALL_LANGS = "*"

LangValues = dict[str, float]
"""Values per language; the key ``"*"`` holds the value for languages not listed."""


def parse_lang_values(text: str, *, name: str) -> LangValues:
    """Parse ``"0.3"``, ``"en=0.28,fr=0.25"`` or ``"0.2,en=0.28"`` into a :data:`LangValues`."""
    out: LangValues = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lang, sep, value = part.rpartition("=")
        key = lang.strip().lower() if sep else ALL_LANGS
        if sep and not re.fullmatch(r"[a-z]{2}|\*", key):
            raise RecipeError(f"{name}: {lang.strip()!r} is not an ISO 639-1 language code")
        try:
            out[key] = float(value)
        except ValueError:
            raise RecipeError(f"{name}: {value.strip()!r} is not a number") from None
    if not out:
        raise RecipeError(f"{name}: give one value or lang=value pairs, e.g. en=0.28,fr=0.25")
    return out


def value_for(values: LangValues | None, lang: str | None) -> float | None:
    """The value that applies to ``lang`` (its own, else the ``"*"`` one, else None)."""
    if not values:
        return None
    return values.get((lang or "").lower(), values.get(ALL_LANGS))


class FilterSettings(BaseModel):
    """Settings of ``mmner-data filter`` (the recipe's ``filter:`` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model: str = Field(
        default=DEFAULT_MODEL,
        description="open_clip model name, 'hf-hub:org/repo', or a local checkpoint folder",
    )
    pretrained: str | None = Field(
        default=None,
        description="open_clip pretrained tag or weights file; default tag for the default model",
    )
    device: str = "auto"
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    batch_size: int = Field(default=64, ge=1)
    num_workers: int | None = Field(default=None, ge=0, description="None: by device")
    threshold: LangValues | None = None
    keep_top: LangValues | None = None
    contact_sheet_n: int = Field(default=8, ge=0, le=64)
    cache_dir: str | None = None

    @field_validator("threshold", "keep_top", mode="before")
    @classmethod
    def _lang_values(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None or isinstance(v, Mapping):
            return None if v is None else {str(k).lower(): val for k, val in v.items()}
        if isinstance(v, str):
            try:
                return parse_lang_values(v, name=str(info.field_name))
            except RecipeError as exc:  # re-raised as a plain ValueError for pydantic
                raise ValueError(str(exc).split(": ", 1)[-1]) from None
        if isinstance(v, int | float) and not isinstance(v, bool):
            return {ALL_LANGS: float(v)}
        raise ValueError("a number, or a mapping of language → number")

    @field_validator("threshold")
    @classmethod
    def _threshold_range(cls, v: LangValues | None) -> LangValues | None:
        for lang, x in (v or {}).items():
            if not -1.0 <= x <= 1.0:
                raise ValueError(f"{lang}: a cosine threshold lies in [-1, 1], got {x}")
        return v

    @field_validator("keep_top")
    @classmethod
    def _fraction_range(cls, v: LangValues | None) -> LangValues | None:
        for lang, x in (v or {}).items():
            if not 0.0 < x <= 1.0:
                raise ValueError(f"{lang}: a keep-top fraction lies in (0, 1], got {x}")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
            raise ValueError("use auto, cpu, cuda, cuda:N or mps")
        return v

    def resolved_workers(self, device_type: str = "cuda") -> int:
        """The DataLoader worker count: as set, else by device.

        On GPU: one less than the CPUs (at most 8), so decoding runs beside the forward. On CPU
        decoding and the forward share the cores: a quarter of them for decoding (at least one,
        so that small tensor ops never queue behind the model's thread pool), the rest for torch.
        """
        if self.num_workers is not None:
            return self.num_workers
        cpus = os.cpu_count() or 2
        if device_type == "cpu":
            return max(1, min(4, cpus // 4))
        return max(1, min(8, cpus - 1))

    def rule(self) -> str:
        """``threshold``, ``keep_top``, ``threshold+keep_top`` or ``none``."""
        parts = [n for n, v in (("threshold", self.threshold), ("keep_top", self.keep_top)) if v]
        return "+".join(parts) or "none"


def build_filter_settings(
    section: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> FilterSettings:
    """Validate the recipe's ``filter:`` section with command-line ``overrides`` on top.

    Overrides whose value is None are ignored. Errors name the key (``filter.<key>: …``).
    """
    return build_settings(FilterSettings, "filter", section, overrides or {})
