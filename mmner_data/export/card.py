"""The dataset card (``README.md`` with the hub's YAML header) and the figures it shows."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mmner_data.export.records import ExportRecord

LANG_NAMES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish"}
_SECRET_KEY = re.compile(r"(?i)(token|secret|password|api_?key)(?!_env)")


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "100K<n<1M" if n < 1_000_000 else "n>1M"


def quantiles(values: Sequence[float], qs: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> list:
    """Linear-interpolation quantiles (numpy's default); empty input → Nones."""
    if not values:
        return [None for _ in qs]
    v = sorted(values)
    out = []
    for q in qs:
        pos = q * (len(v) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(v) - 1)
        out.append(v[lo] + (v[hi] - v[lo]) * (pos - lo))
    return out


def card_stats(
    by_split: Mapping[str, Sequence[ExportRecord]], entity_types: Sequence[str]
) -> dict[str, Any]:
    """Counts per language/split/type, label sources, sources × licences, CLIP scores."""
    langs = sorted({r.lang for recs in by_split.values() for r in recs})
    posts = {s: dict(Counter(r.lang for r in recs)) for s, recs in by_split.items()}
    entities: dict[str, dict[str, int]] = {}
    tokens: dict[str, int] = {}
    for s, recs in by_split.items():
        c: Counter[str] = Counter()
        for r in recs:
            c.update(t[2:] for t in r.tags if t.startswith("B-"))
        entities[s] = {t: c.get(t, 0) for t in entity_types}
        tokens[s] = sum(len(r.tokens) for r in recs)
    all_recs = [r for recs in by_split.values() for r in recs]
    sources: Counter[tuple[str, str]] = Counter(
        (r.source, r.licence or "unknown") for r in all_recs
    )
    scores: dict[str, list[float]] = {}
    for r in all_recs:
        if r.clip_score is not None:
            scores.setdefault(r.lang, []).append(float(r.clip_score))
    clip = {
        lang: {
            "n": len(v),
            **dict(zip(("min", "q25", "median", "q75", "max"), quantiles(v), strict=True)),
        }
        for lang, v in sorted(scores.items())
    }
    return {
        "n_posts": len(all_recs),
        "languages": langs,
        "posts": posts,
        "entities": entities,
        "tokens": tokens,
        "label_sources": dict(Counter(r.label_source for r in all_recs)),
        "with_image": sum(r.image_path is not None for r in all_recs),
        "sources": [
            {"source": s, "licence": lic, "posts": n} for (s, lic), n in sorted(sources.items())
        ],
        "clip_scores": clip,
        "clip_unscored": sum(r.clip_score is None for r in all_recs),
        "pseudonymised_tokens": sum(r.n_replaced for r in all_recs),
    }


def redact_recipe(text: str) -> str:
    """The recipe as written, with values of keys that look like secrets replaced."""
    lines = []
    for line in text.splitlines():
        m = re.match(r"^(\s*-?\s*)([A-Za-z0-9_]+)(\s*:\s*)(\S.*)$", line)
        if m and _SECRET_KEY.search(m.group(2)):
            line = f"{m.group(1)}{m.group(2)}{m.group(3)}<redacted>"
        lines.append(line)
    return "\n".join(lines)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(x: Any) -> str:
        if x is None:
            return "—"
        if isinstance(x, float):
            return f"{x:.4f}"
        return str(x).replace("|", "\\|")

    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(out)


def _flatten(obj: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    if isinstance(obj, Mapping) and depth < 4:
        out: list[tuple[str, Any]] = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)
        return out
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        return [(prefix, obj)]
    return []


def agreement_section(agreement: Mapping[str, Any] | None, limit: int = 60) -> str:
    """Numeric figures of ``reports/agreement.json`` (whatever its nesting), or a note."""
    if not agreement:
        return "No agreement report (`mmner-data agreement` has not run on this store)."
    figures = _flatten(agreement)
    if not figures:
        return "The agreement report holds no figures."
    shown = figures[:limit]
    text = _table(["figure", "value"], shown)
    if len(figures) > limit:
        text += f"\n\n({len(figures) - limit} more in the store's `reports/agreement.json`.)"
    return text


def render_card(
    *,
    name: str,
    stats: Mapping[str, Any],
    splits: Sequence[str],
    entity_types: Sequence[str],
    tag_names: Sequence[str],
    settings: Mapping[str, Any],
    agreement: Mapping[str, Any] | None,
    recipe_text: str | None,
    clip_model: str | None,
    filter_applied: bool,
    parquet: bool,
    seed: int,
) -> str:
    """README.md: the hub's YAML header, then the statistics and the provenance."""
    licences = sorted({s["licence"] for s in stats["sources"]})
    header: dict[str, Any] = {
        "pretty_name": name,
        "language": list(stats["languages"]),
        "license": "other",
        "multilinguality": "multilingual" if len(stats["languages"]) > 1 else "monolingual",
        "size_categories": [_size_category(stats["n_posts"])],
        "task_categories": ["token-classification"],
        "task_ids": ["named-entity-recognition"],
        "tags": ["multimodal", "social-media", "mmner"],
    }
    if parquet:
        header["configs"] = [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in splits],
            }
        ]
    label_sources = stats["label_sources"]
    silver = label_sources.get("silver", 0)
    parts = [
        "---",
        yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip(),
        "---",
        "",
        f"# {name}",
        "",
        "A multilingual, multimodal named-entity dataset of social-media posts (text + image), "
        "built with mmner-data (collect → filter → pre-annotate → "
        "annotate → adjudicate → export).",
        "",
    ]
    if silver:
        parts += [
            f"> **{silver} of {stats['n_posts']} posts carry silver labels** (model "
            'pre-annotations, not reviewed by people): `label_source == "silver"`. Filter '
            'them out (`ds.filter(lambda r: r["label_source"] != "silver")`) for evaluation.',
            "",
        ]
    parts += [
        "## Loading",
        "",
        "```python",
        "from datasets import load_from_disk  # or load_dataset(<repo>) for a pushed copy",
        "ds = load_from_disk('<this folder>')",
        "names = ds['train'].features['ner_tags'].feature.names",
        "```",
        "",
        "Fields: `id`, `lang`, `text` (pseudonymised), `tokens` with `token_starts`/"
        "`token_ends` (character offsets into `text`), `ner_tags` (ClassLabel, BIO: "
        + ", ".join(f"`{t}`" for t in tag_names)
        + "), `image` (None when the post has none), `clip_score` (None when not scored), "
        "`source`, `licence`, `author` (pseudonym), `created_at`, `label_source` "
        "(gold | annotator | silver) and `label_origin` (adjudication method, annotator id or "
        "model version).",
        "",
        "## Posts per language and split",
        "",
    ]
    langs = list(stats["languages"])
    rows = []
    for s in splits:
        counts = stats["posts"].get(s, {})
        rows.append([s, *[counts.get(lang, 0) for lang in langs], sum(counts.values())])
    rows.append(
        [
            "all",
            *[sum(stats["posts"].get(s, {}).get(lang, 0) for s in splits) for lang in langs],
            stats["n_posts"],
        ]
    )
    parts += [_table(["split", *[f"{LANG_NAMES.get(x, x)} ({x})" for x in langs], "total"], rows)]
    parts += ["", "## Entities per type and split", ""]
    rows = [[t, *[stats["entities"].get(s, {}).get(t, 0) for s in splits]] for t in entity_types]
    rows.append(["tokens", *[stats["tokens"].get(s, 0) for s in splits]])
    parts += [_table(["type", *splits], rows), ""]
    parts += [
        "## Labels",
        "",
        _table(["label source", "posts"], sorted(label_sources.items())),
        "",
        "Gold labels come from adjudication (majority vote of several annotators, reviewed "
        "where they disagreed); `annotator` labels from one chosen annotator; `silver` labels "
        "from the pre-annotation model.",
        "",
        "## Inter-annotator agreement",
        "",
        agreement_section(agreement),
        "",
        "## Text–image relevance (CLIP)",
        "",
    ]
    if stats["clip_scores"]:
        rows = [
            [lang, c["n"], c["min"], c["q25"], c["median"], c["q75"], c["max"]]
            for lang, c in stats["clip_scores"].items()
        ]
        parts += [
            f"Cosine similarity of image and text embeddings, model `{clip_model}`"
            + (" (pairs below the selection threshold were removed)." if filter_applied else "."),
            "",
            _table(["language", "scored", "min", "q25", "median", "q75", "max"], rows),
            "",
            f"{stats['clip_unscored']} post(s) have no score (no image, or not scored).",
        ]
    else:
        parts.append("Not scored: the `filter` stage did not run (`clip_score` is None).")
    parts += [
        "",
        f"{stats['with_image']} of {stats['n_posts']} posts have an image.",
        "",
        "## Sources and licences",
        "",
        _table(
            ["source", "licence", "posts"],
            [[s["source"], s["licence"], s["posts"]] for s in stats["sources"]],
        ),
        "",
        "Each row's `licence` field holds the licence recorded for that post. Licences: "
        + "; ".join(licences)
        + ".",
        "",
        "## Personal data",
        "",
        "Pseudonymised before export: `@mentions` and e-mail addresses in the text became "
        "salted-hash pseudonyms (`@user_<hex>`; the same person gets the same pseudonym within a "
        "source, matching the `author` field); URLs were cut to scheme and host; post ids were "
        "replaced by keyed hashes (`id`); image metadata (EXIF, GPS) was removed at collection. "
        f"{stats['pseudonymised_tokens']} token(s) were rewritten. The salt is not part of this "
        "export. Names of people in the text are kept: they are the entities of the task.",
        "",
        "## Splits",
        "",
        ", ".join(f"{s} {settings['splits'][s]:.0%}" for s in splits) + ", stratified by "
        "language and by the entity types present, seed "
        f"{seed}. Near-duplicate clusters (from deduplication, and re-checked at export) are "
        "never split across train/validation/test.",
        "",
        "## How it was made",
        "",
        "Export settings:",
        "",
        "```json",
        json.dumps({k: v for k, v in settings.items() if k != "out"}, indent=2, sort_keys=True),
        "```",
    ]
    if recipe_text:
        parts += ["", "The recipe:", "", "```yaml", redact_recipe(recipe_text).rstrip(), "```"]
    return "\n".join(parts) + "\n"


def read_agreement(store_root: Path) -> dict[str, Any] | None:
    path = store_root / "reports" / "agreement.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
