"""The recipe's ``agreement:`` section → typed settings, with command-line overrides.

Keys (all optional)::

    agreement:
      min_annotators: 2        # items labelled by fewer are left out of the metrics
      langs: [en, fr]          # only these languages (default: all)
      since: 2026-04-01        # only items with an annotation updated at/after this time
      adjudicate: true         # majority vote into the store's `adjudication` table
      threshold: 0.5           # a span is gold when its vote share is > threshold
      review_below: 0.6        # items whose mean pairwise span F1 is below go to review
      accept_single: false     # an item with one annotation becomes gold (method `single`)
      snap: expand             # character spans → tokens: expand | contract | strict
      bad_spans: error         # a span outside the schema or unconvertible: error | exclude
      out_dir: null            # reports folder (default <store>/reports)

The entity types come from the recipe's top-level ``entity_types`` (or ``--entity-types``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmner_data.config import RecipeError
from mmner_data.stage import build_settings

DEFAULT_ENTITY_TYPES: tuple[str, ...] = ("PER", "ORG", "LOC", "MISC")


def parse_time(value: str | datetime) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime (naive values are read as UTC)."""
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{text!r} is not an ISO 8601 date or time (e.g. 2026-04-01 or "
                "2026-04-01T12:00:00Z)"
            ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def split_list(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"en,fr"`` or ``["en", "fr,de"]`` → ``("en", "fr", "de")``; None stays None."""
    if value is None:
        return None
    parts = [value] if isinstance(value, str) else list(value)
    out = [p.strip() for part in parts for p in str(part).split(",") if p.strip()]
    return tuple(dict.fromkeys(out))


class AgreementSettings(BaseModel):
    """Settings of ``mmner-data agreement`` (the recipe's ``agreement:`` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_annotators: int = Field(default=2, ge=2, description="items with fewer are left out")
    langs: tuple[str, ...] | None = Field(default=None, description="None: every language")
    since: datetime | None = Field(
        default=None, description="items with an annotation updated at or after this time"
    )
    entity_types: tuple[str, ...] = DEFAULT_ENTITY_TYPES
    adjudicate: bool = True
    threshold: float = Field(default=0.5, ge=0.0, lt=1.0)
    review_below: float | None = Field(default=None, ge=0.0, le=1.0)
    accept_single: bool = False
    snap: Literal["expand", "contract", "strict"] = "expand"
    bad_spans: Literal["error", "exclude"] = "error"
    out_dir: str | None = None

    @field_validator("langs", mode="before")
    @classmethod
    def _langs(cls, v: Any) -> Any:
        langs = split_list(v)
        if langs is None:
            return None
        langs = tuple(x.lower() for x in langs)
        for lang in langs:
            if not re.fullmatch(r"[a-z]{2,3}", lang):
                raise ValueError(f"{lang!r} is not a language code (en, fr, de, es, …)")
        return langs or None

    @field_validator("entity_types", mode="before")
    @classmethod
    def _types(cls, v: Any) -> Any:
        types = split_list(v)
        if not types:
            raise ValueError("at least one entity type is needed")
        for t in types:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", t):
                raise ValueError(f"{t!r} is not a valid entity type (letters, digits, _)")
        return types

    @field_validator("since", mode="before")
    @classmethod
    def _since(cls, v: Any) -> Any:
        if v is None or v == "":
            return None
        return parse_time(v if isinstance(v, datetime) else str(v))


def build_agreement_settings(
    section: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    *,
    entity_types: Sequence[str] | None = None,
) -> AgreementSettings:
    """Validate the recipe's ``agreement:`` section with command-line ``overrides`` on top.

    ``entity_types`` is the recipe's schema (an ``entity_types`` override wins over it).
    Overrides whose value is None are ignored. Errors name the key (``agreement.<key>: …``).
    """
    merged: dict[str, Any] = dict(section)
    if "entity_types" in merged:
        raise RecipeError(
            "invalid recipe: agreement.entity_types: set the recipe's top-level entity_types"
        )
    if entity_types is not None:
        merged["entity_types"] = tuple(entity_types)
    return build_settings(AgreementSettings, "agreement", merged, overrides or {})
