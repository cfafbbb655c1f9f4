"""Recipes (YAML) → typed settings.

Every model forbids unknown keys, so a misspelt key is an error that names it. Strings may use
``${VAR}`` / ``${VAR:-default}``; besides the environment, ``RECIPE_DIR`` (the recipe's folder),
``SAMPLE_DATA`` (the bundled sample's data folder) and, when ``sample_server: true``,
``SAMPLE_SERVER`` (the bundled loopback server's base URL) are defined. Secrets are never written in
recipes: sources name the environment variable that holds them (``token_env``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from mmner_data.errors import MmnerError
from mmner_data.schema import TARGET_LANGS

SAMPLE_DATA_DIR = (Path(__file__).parent / "sample" / "data").resolve()


class RecipeError(MmnerError):
    """A recipe that cannot be used; the message says which key and why."""


def _http_url(value: str) -> str:
    """An absolute http(s) URL with a host (``base_url``, feed ``url``)."""
    from urllib.parse import urlsplit

    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"{text[:100]!r} is not a URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text[:100]!r} must be an http:// or https:// URL with a host")
    return text


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _SourceBase(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")]
    max_posts: int | None = Field(default=None, ge=1)
    licence: str | None = None
    timeout_s: float = Field(default=20.0, gt=0)
    retries: int = Field(default=4, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    max_body_bytes: int = Field(
        default=20 * 2**20, ge=1024, description="cap on one API page / feed / HTML page"
    )


class MastodonSource(_SourceBase):
    type: Literal["mastodon"]
    base_url: HttpUrl
    timeline: str = Field(default="public", description="'public' or 'tag:<hashtag>'")
    local: bool = False
    only_media: bool = False
    page_size: int = Field(default=40, ge=1, le=40)
    token_env: str | None = None


class BlueskySource(_SourceBase):
    type: Literal["bluesky"]
    base_url: HttpUrl = "https://public.api.bsky.app"
    query: str
    lang: str | None = None
    page_size: int = Field(default=100, ge=1, le=100)
    token_env: str | None = None


class RssSource(_SourceBase):
    type: Literal["rss"]
    url: HttpUrl
    text: Literal["summary", "title", "title+summary"] = "summary"
    og_image: bool = False


class LocalFields(_Model):
    id: str = "id"
    text: str = "text"
    image: str | None = "image"
    lang: str | None = "lang"
    created_at: str | None = "created_at"
    author: str | None = "author"
    url: str | None = "url"


class LocalSource(_SourceBase):
    type: Literal["jsonl", "csv"]
    path: str
    fields: LocalFields = LocalFields()
    page_size: int = Field(default=500, ge=1)
    image_separator: str = "|"


class HFSource(_SourceBase):
    type: Literal["hf"]
    dataset: str = Field(description="hub name, or a folder written by save_to_disk")
    config: str | None = None
    split: str = "train"
    text_column: str = "text"
    image_column: str | None = "image"
    id_column: str | None = None
    lang_column: str | None = None
    page_size: int = Field(default=500, ge=1)


SourceSettings = Annotated[
    MastodonSource | BlueskySource | RssSource | LocalSource | HFSource,
    Field(discriminator="type"),
]


class LangIdSettings(_Model):
    min_confidence: float = Field(default=0.3, ge=0, le=1)
    ambiguity_margin: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="a non-target top language this close to a target one is 'ambiguous'",
    )
    candidates: tuple[str, ...] | None = None
    low_accuracy: bool = False


class TextSettings(_Model):
    min_words: int = Field(default=3, ge=0)
    drop_reblogs: bool = True
    drop_retweets: bool = True


class ImageSettings(_Model):
    require: bool = Field(default=True, description="drop posts that come without an image")
    on_failure: Literal["drop_post", "keep_text"] = "drop_post"
    max_bytes: int = Field(default=20 * 2**20, ge=1024)
    max_pixels: int = Field(default=40_000_000, ge=1)
    min_side: int = Field(default=32, ge=1)
    max_side: int = Field(default=1024, ge=32)
    timeout_s: float = Field(default=15.0, gt=0)
    retries: int = Field(default=4, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    concurrency: int = Field(default=32, ge=1)
    per_host: int = Field(default=16, ge=1, description="requests in flight per host (politeness)")
    jpeg_quality: int = Field(default=90, ge=50, le=100)


class UrlPolicySettings(_Model):
    """What URLs from crawled content may reach besides public hosts (docs/security.md)."""

    allow_hosts: tuple[str, ...] = Field(
        default=(),
        description="non-public hosts media may come from: host names, addresses, CIDR networks "
        "or origins (http://host:port); each source's own configured origin is always allowed",
    )
    local_roots: tuple[str, ...] = Field(
        default=(),
        description="extra folders that local (jsonl/csv/hf-folder) sources may read images "
        "from; the source's own folder is always allowed",
    )

    @field_validator("allow_hosts")
    @classmethod
    def _hosts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from mmner_data.collect.urlpolicy import parse_allow_entry

        for entry in v:
            parse_allow_entry(entry)
        return v


class DedupSettingsModel(_Model):
    exact_text: bool = True
    near_text: bool = True
    text_threshold: float = Field(default=0.7, gt=0, le=1)
    num_perm: int = Field(default=128, ge=16)
    shingle_size: int = Field(default=5, ge=1)
    exact_image: bool = True
    near_image: bool = True
    image_hamming: int = Field(default=6, ge=0, le=64)


class Recipe(_Model):
    name: str = "recipe"
    store: str = "runs/store"
    languages: tuple[str, ...] = TARGET_LANGS
    # The entity types annotated (Label Studio labels, BIO tag names, model heads).
    entity_types: tuple[str, ...] = ("PER", "ORG", "LOC", "MISC")
    quotas: dict[str, int] = Field(default_factory=dict)
    stop_when_quotas_met: bool = True
    sample_server: bool = False
    sources: list[SourceSettings] = Field(min_length=1)
    langid: LangIdSettings = LangIdSettings()
    text: TextSettings = TextSettings()
    images: ImageSettings = ImageSettings()
    dedup: DedupSettingsModel = DedupSettingsModel()
    url_policy: UrlPolicySettings = UrlPolicySettings()
    # Where heavy stages run: "local" (default) or "ray", or a mapping (name, address, lake,
    # workers, num_cpus, gpus_per_actor, shard_rows); checked by mmner_data.engines.
    engine: str | dict[str, Any] | None = None
    # Sections of later stages are kept as-is here and validated by their own stage.
    filter: dict[str, Any] = Field(default_factory=dict)
    preannotate: dict[str, Any] = Field(default_factory=dict)
    annotate: dict[str, Any] = Field(default_factory=dict)
    agreement: dict[str, Any] = Field(default_factory=dict)
    export: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)

    @field_validator("entity_types")
    @classmethod
    def _types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one entity type is needed")
        for t in v:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", t):
                raise ValueError(f"{t!r} is not a valid entity type (letters, digits, _)")
        if len(set(v)) != len(v):
            raise ValueError("entity types must be unique")
        return v

    @field_validator("languages")
    @classmethod
    def _langs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(x.lower() for x in v)
        for lang in out:
            if not re.fullmatch(r"[a-z]{2}", lang):
                raise ValueError(f"{lang!r} is not an ISO 639-1 code")
        return out

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, v: list[Any]) -> list[Any]:
        names = [s.name for s in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"source names must be unique; repeated: {sorted(dup)}")
        return v

    def quota(self, lang: str) -> int | None:
        return self.quotas.get(lang)


_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_vars(value: Any, variables: Mapping[str, str]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in variables:
                return variables[name]
            if default is not None:
                return default
            raise RecipeError(f"variable ${{{name}}} is not set (environment or recipe)")

        return _VAR_RE.sub(sub, value)
    if isinstance(value, list):
        return [expand_vars(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: expand_vars(v, variables) for k, v in value.items()}
    return value


def read_recipe_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RecipeError(f"recipe not found: {p}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise RecipeError(f"{p}: not valid YAML{where}: {problem}") from exc
    if not isinstance(raw, dict):
        raise RecipeError(f"{p}: a recipe is a mapping of keys, got {type(raw).__name__}")
    return raw


def build_recipe(
    raw: Mapping[str, Any], *, recipe_dir: Path, extra_vars: Mapping[str, str] | None = None
) -> Recipe:
    """Validate a parsed recipe, expanding variables; errors name the offending key."""
    variables = {
        **os.environ,
        "RECIPE_DIR": str(recipe_dir.resolve()),
        "SAMPLE_DATA": str(SAMPLE_DATA_DIR),
        **(extra_vars or {}),
    }
    expanded = expand_vars(dict(raw), variables)
    try:
        return Recipe.model_validate(expanded)
    except ValidationError as exc:
        raise RecipeError(_format_validation(exc)) from None


def load_recipe(
    path: str | os.PathLike[str], extra_vars: Mapping[str, str] | None = None
) -> Recipe:
    p = Path(path)
    return build_recipe(read_recipe_yaml(p), recipe_dir=p.parent, extra_vars=extra_vars)


def _format_validation(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        lines.append(f"{loc}: {msg}")
    return "invalid recipe: " + "; ".join(lines)
