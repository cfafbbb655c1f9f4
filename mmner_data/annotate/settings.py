"""The recipe's ``annotate:`` section → typed settings, with command-line overrides.

Secrets never live in a recipe: ``api_key_env`` names the environment variable that holds the
Label Studio API key (default ``LABEL_STUDIO_API_KEY``). The server URL is not secret: ``url``
may be given directly, else it is read from the variable named by ``url_env``
(default ``LABEL_STUDIO_URL``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmner_data.config import RecipeError
from mmner_data.stage import build_settings

ImageMode = Literal["local-files", "url", "none"]


class AnnotateSettings(BaseModel):
    """Settings of ``mmner-data annotate push|pull`` (the recipe's ``annotate:`` section)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    url: str | None = Field(default=None, description="Label Studio base URL (else url_env)")
    url_env: str = "LABEL_STUDIO_URL"
    api_key_env: str = "LABEL_STUDIO_API_KEY"
    project: str | None = Field(default=None, description="project title (default: recipe name)")
    label_config: str | None = Field(default=None, description="template XML file (optional)")
    batch_size: int = Field(default=500, ge=1, le=10_000)
    overlap: int = Field(default=1, ge=1, le=100, description="annotators per task")
    overlap_fraction: float = Field(
        default=1.0, gt=0, le=1, description="share of tasks that get `overlap` annotators"
    )
    model_version: str | None = Field(default=None, description="predictions; None = latest")
    predictions: bool = True
    images: ImageMode | None = Field(
        default=None, description="local-files | url | none (default: url if image_url_base)"
    )
    image_url_base: str | None = None
    document_root: str | None = Field(
        default=None,
        description="LOCAL_FILES_DOCUMENT_ROOT of the server (else that environment variable)",
    )
    snap: Literal["expand", "contract", "strict"] = "expand"
    timeout_s: float = Field(default=120.0, gt=0)
    export_timeout_s: float = Field(default=600.0, gt=0)

    @field_validator("url_env", "api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError(f"{v!r} is not an environment variable name")
        return v

    @field_validator("url", "image_url_base")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return None if v is None else v.rstrip("/")

    def resolved_url(self) -> str:
        url = self.url or os.environ.get(self.url_env, "").strip()
        if not url:
            raise RecipeError(
                f"no Label Studio URL: set {self.url_env} (e.g. http://127.0.0.1:8089) "
                "or annotate.url in the recipe"
            )
        if not re.match(r"https?://[^/\s]+", url):
            raise RecipeError(f"{self.url_env}: {url!r} is not an http(s) URL")
        return url.rstrip("/")

    def resolved_api_key(self) -> str:
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise RecipeError(
                f"no Label Studio API key: set {self.api_key_env} (Account & Settings → "
                'access token; for the local server: eval "$(scripts/label-studio.sh env)")'
            )
        return key

    def image_mode(self) -> str:
        if self.images is not None:
            return self.images
        return "url" if self.image_url_base else "local-files"

    def resolved_document_root(self) -> str | None:
        root = self.document_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
        return root or None

    def maximum_annotations(self) -> int:
        return self.overlap

    def overlap_cohort_percentage(self) -> int:
        return round(self.overlap_fraction * 100)


def build_annotate_settings(
    section: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> AnnotateSettings:
    """Validate the recipe's ``annotate:`` section with command-line ``overrides`` on top.

    Overrides whose value is None are ignored. Errors name the key (``annotate.<key>: …``).
    """
    return build_settings(AnnotateSettings, "annotate", section, overrides or {})
