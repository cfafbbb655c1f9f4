"""The recipe's ``export:`` section → typed settings, with command-line overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmner_data.config import RecipeError
from mmner_data.stage import build_settings

SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")
FORMATS: tuple[str, ...] = ("hf", "twitter2015")


class ExportSettings(BaseModel):
    """Settings of ``mmner-data export`` (the recipe's ``export:`` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    out: str | None = Field(
        default=None, description="export folder; default <store>/exports/<recipe name>"
    )
    formats: tuple[Literal["hf", "twitter2015"], ...] = ("hf",)
    parquet: bool = Field(default=False, description="also write data/<split>-*.parquet")
    push_to_hub: str | None = Field(default=None, description="hub repo id (org/name)")
    private: bool = Field(default=True, description="create the hub repo as private")
    annotator: str | None = Field(
        default=None, description="annotator whose labels are used where no gold exists"
    )
    include_silver: bool = Field(
        default=False, description="use pre-annotations where there is neither gold nor annotator"
    )
    model_version: str | None = Field(
        default=None, description="pre-annotation model version (default: latest per post)"
    )
    splits: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1}
    )
    seed: int = 13
    snap: Literal["expand", "contract", "strict"] = Field(
        default="expand", description="how off-token spans become token tags"
    )
    leakage_check: bool = Field(
        default=True,
        description="also link exported posts that are near-duplicates by the recipe's dedup "
        "thresholds (catches clusters a looser collect run kept apart)",
    )

    @field_validator("formats", mode="before")
    @classmethod
    def _formats(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        out: list[str] = []
        for f in v:
            for part in str(f).split(","):
                part = part.strip().lower()
                if part == "both":
                    out.extend(FORMATS)
                elif part:
                    out.append(part)
        if not out:
            raise ValueError("give at least one format (hf, twitter2015)")
        return tuple(dict.fromkeys(out))

    @field_validator("splits")
    @classmethod
    def _splits(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - set(SPLIT_NAMES)
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}; use {list(SPLIT_NAMES)}")
        if any(x < 0 for x in v.values()):
            raise ValueError("split fractions must be >= 0")
        if v.get("train", 0) <= 0:
            raise ValueError("the train fraction must be > 0")
        if abs(sum(v.values()) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must add up to 1, got {sum(v.values()):.4f}")
        return {name: float(v.get(name, 0.0)) for name in SPLIT_NAMES}

    @field_validator("push_to_hub")
    @classmethod
    def _repo(cls, v: str | None) -> str | None:
        if v is not None and (v.count("/") != 1 or not all(v.split("/"))):
            raise ValueError(f"{v!r} is not a hub repo id (org/name)")
        return v


def parse_splits(text: str) -> dict[str, float]:
    """``"train=0.8,validation=0.1,test=0.1"`` → a mapping (validated later)."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        if not sep:
            raise RecipeError(f"--splits: {part!r} is not name=fraction")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise RecipeError(f"--splits: {value!r} is not a number") from None
    return out


def build_export_settings(
    section: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> ExportSettings:
    """Validate the ``export:`` section with ``overrides`` (None values ignored) on top."""
    return build_settings(ExportSettings, "export", section, overrides or {})
