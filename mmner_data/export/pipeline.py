"""The ``export`` stage: select labels → tag and pseudonymise → split → write → card.

The export folder is built beside its destination and moved into place at the end, so a killed
export leaves the previous one intact; re-running replaces it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmner_data.config import Recipe
from mmner_data.errors import MmnerError
from mmner_data.export.card import card_stats, read_agreement, render_card
from mmner_data.export.records import ExportRecord, RecordError, bio_names, build_record
from mmner_data.export.settings import SPLIT_NAMES, ExportSettings
from mmner_data.export.splits import SplitItem, assign_splits, link_groups
from mmner_data.labels import LabelledPost, LabelPolicy, LabelSelection, select_labels
from mmner_data.stage import recorded_run
from mmner_data.store import CorpusStore

Progress = Callable[[str, int, int | None], None]
MANIFEST = "export.json"
TWITTER_DIR = "twitter2015"


class ExportError(MmnerError):
    """Nothing to export, or a destination that is not ours to replace."""


@dataclass(slots=True)
class ExportResult:
    out: Path
    selection: dict[str, Any]
    counts: dict[str, dict[str, int]]  # split → lang → posts
    skipped_invalid: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    hub_url: str | None = None
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "selection": self.selection,
            "counts": self.counts,
            "total": sum(sum(c.values()) for c in self.counts.values()),
            "skipped_invalid": self.skipped_invalid,
            "files": self.files,
            "hub_url": self.hub_url,
            "dry_run": self.dry_run,
        }


def clip_scores(store: CorpusStore) -> tuple[dict[str, float], str | None]:
    """CLIP scores per post (the filter selection's model, else the most recently used model)
    and that model's id (None when nothing was scored)."""
    sel = store.query("SELECT post_id, model_id, score FROM relevance_selection")
    if sel:
        models = Counter(r["model_id"] for r in sel)
        model = models.most_common(1)[0][0]
        scores = {r["post_id"]: r["score"] for r in sel if r["score"] is not None}
        for r in store.query("SELECT post_id, score FROM relevance WHERE model_id=?", (model,)):
            scores.setdefault(r["post_id"], r["score"])
        return scores, model
    row = store.query(
        "SELECT model_id FROM relevance GROUP BY model_id ORDER BY MAX(scored_at) DESC LIMIT 1"
    )
    if not row:
        return {}, None
    model = row[0]["model_id"]
    rows = store.query("SELECT post_id, score FROM relevance WHERE model_id=?", (model,))
    return {r["post_id"]: r["score"] for r in rows}, model


def default_out(store: CorpusStore, recipe: Recipe) -> Path:
    return store.root / "exports" / recipe.name


def group_posts(
    posts: Sequence[LabelledPost], recipe: Recipe, *, leakage_check: bool = True
) -> dict[str, str]:
    """post id → group id: dedup clusters (``cluster_id``, ``dup_of``) joined, plus — with
    ``leakage_check`` — near-duplicate links among the exported posts themselves, found by
    ``find_duplicates`` with the recipe's thresholds and every link type switched on."""
    links: list[tuple[str, str]] = []
    for p in posts:
        links.append((p.post_id, p.cluster_id or p.post_id))
        if p.dup_of:
            links.append((p.post_id, p.dup_of))
    if leakage_check and len(posts) > 1:
        from mmner_data.collect.dedup import DedupItem, DedupSettings, find_duplicates

        # the recipe's thresholds, but every kind of link, whichever ones collect acted on
        settings = DedupSettings.from_recipe(
            recipe.dedup, exact_text=True, near_text=True, exact_image=True, near_image=True
        )
        items = [
            DedupItem(
                post_id=p.post_id,
                order_key=(p.created_at or "", p.source, p.post_id),
                text_key=p.text_key,
                image_sha256=(p.image_sha256,) if p.image_sha256 else (),
                image_phash=(p.image_phash,) if p.image_phash else (),
            )
            for p in posts
        ]
        links += [(dec.post_id, dec.cluster_id) for dec in find_duplicates(items, settings)]
    return link_groups([p.post_id for p in posts], links)


def build_records(
    selection: LabelSelection,
    recipe: Recipe,
    settings: ExportSettings,
    salt: str,
    progress: Progress | None = None,
    scores: Mapping[str, float] | None = None,
) -> tuple[list[ExportRecord], list[str]]:
    records: list[ExportRecord] = []
    invalid: list[str] = []
    n = len(selection.posts)
    for post in selection.posts:
        try:
            records.append(
                build_record(
                    post,
                    salt=salt,
                    entity_types=recipe.entity_types,
                    snap=settings.snap,
                    clip_score=(scores or {}).get(post.post_id),
                )
            )
        except RecordError as exc:
            invalid.append(str(exc))
        if progress:
            progress("export: tag", 1, n)
    return records, invalid


def split_records(
    records: list[ExportRecord], groups: dict[str, str], settings: ExportSettings
) -> dict[str, list[ExportRecord]]:
    items = [SplitItem(r.post_id, groups[r.post_id], r.lang, r.types) for r in records]
    assignment = assign_splits(items, settings.splits, settings.seed)
    by_split: dict[str, list[ExportRecord]] = {s: [] for s in SPLIT_NAMES if settings.splits[s]}
    for r in sorted(records, key=lambda r: r.id):
        r.split = assignment[r.post_id]
        by_split[r.split].append(r)
    return by_split


def _check_destination(out: Path) -> None:
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).exists())
    ):
        raise ExportError(
            f"{out} exists and is not an mmner-data export; choose another folder or remove it"
        )


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run_export(
    store: CorpusStore,
    recipe: Recipe,
    settings: ExportSettings,
    *,
    out: Path | None = None,
    recipe_text: str | None = None,
    progress: Progress | None = None,
    dry_run: bool = False,
) -> ExportResult:
    """Export the store's labelled posts (see the module and docs/export.md)."""
    out = Path(out or settings.out or default_out(store, recipe)).resolve()
    policy = LabelPolicy(
        annotator=settings.annotator,
        include_silver=settings.include_silver,
        model_version=settings.model_version,
    )
    selection = select_labels(store, policy)
    if not selection.posts:
        hint = [] if settings.include_silver else ["--include-silver for pre-annotations"]
        if not settings.annotator:
            hint.append("--annotator for one annotator's labels")
        raise ExportError(
            f"nothing to export: {selection.eligible} eligible post(s), none labelled by "
            + policy.describe()
            + (f" (try {' or '.join(hint)})" if hint else "")
        )
    salt = store.pseudonym_salt()
    scores, clip_model = clip_scores(store)
    summary = {**selection.to_dict(), "clip_model": clip_model}
    records, invalid = build_records(selection, recipe, settings, salt, progress, scores)
    if not records:
        raise ExportError(f"nothing to export: all {len(invalid)} labelled post(s) are invalid")
    groups = group_posts(selection.posts, recipe, leakage_check=settings.leakage_check)
    by_split = split_records(records, groups, settings)
    counts = {
        s: {lang: sum(r.lang == lang for r in recs) for lang in sorted({r.lang for r in recs})}
        for s, recs in by_split.items()
    }
    result = ExportResult(out, summary, counts, invalid, dry_run=dry_run)
    if dry_run:
        return result

    _check_destination(out)
    with recorded_run(store, "export", {**settings.model_dump(), "out": str(out)}) as rec:
        _write_export(
            store, recipe, settings, out, recipe_text, progress, by_split, summary, result
        )
        rec.finish(result)
    return result


def _write_export(
    store: CorpusStore,
    recipe: Recipe,
    settings: ExportSettings,
    out: Path,
    recipe_text: str | None,
    progress: Progress | None,
    by_split: Any,
    selection: dict[str, Any],
    result: ExportResult,
) -> None:
    """Build the export beside ``out`` and rename it into place (never half-written)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    cache = Path(tempfile.mkdtemp(prefix=f".{out.name}.cache-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the export is a normal folder
    try:
        result.files = _write(
            tmp, cache, by_split, selection, recipe, settings, recipe_text, store, progress
        )
        _swap_into_place(tmp, out)
        if settings.push_to_hub:
            from datasets import load_from_disk

            from mmner_data.export.hf import push_to_hub

            result.hub_url = push_to_hub(
                load_from_disk(str(out)),
                settings.push_to_hub,
                out / "README.md",
                private=settings.private,
            )
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)


def _write(
    tmp: Path,
    cache: Path,
    by_split: dict[str, list[ExportRecord]],
    selection: dict[str, Any],
    recipe: Recipe,
    settings: ExportSettings,
    recipe_text: str | None,
    store: CorpusStore,
    progress: Progress | None,
) -> list[str]:
    files: list[str] = []
    if "hf" in settings.formats:
        from mmner_data.export.hf import build_dataset_dict, write_parquet

        dd = build_dataset_dict(by_split, recipe.entity_types, cache_dir=cache, progress=progress)
        dd.save_to_disk(str(tmp))
        files.append("dataset_dict.json")
        if settings.parquet:
            files += [str(p.relative_to(tmp)) for p in write_parquet(dd, tmp / "data")]
        del dd
    if "twitter2015" in settings.formats:
        from mmner_data.export.twitter2015 import write_twitter2015

        folder = tmp / TWITTER_DIR if "hf" in settings.formats else tmp
        files += [str(p.relative_to(tmp)) for p in write_twitter2015(folder, by_split)]
    stats = card_stats(by_split, recipe.entity_types)
    card = render_card(
        name=recipe.name,
        stats=stats,
        splits=list(by_split),
        entity_types=recipe.entity_types,
        tag_names=bio_names(recipe.entity_types),
        settings=settings.model_dump(mode="json"),
        agreement=read_agreement(store.root),
        recipe_text=recipe_text,
        clip_model=selection["clip_model"],
        filter_applied=selection["filter_applied"],
        parquet=settings.parquet,
        seed=settings.seed,
    )
    (tmp / "README.md").write_text(card, encoding="utf-8")
    files.append("README.md")
    manifest = {
        "tool": "mmner-data",
        "recipe": recipe.name,
        "formats": list(settings.formats),
        "entity_types": list(recipe.entity_types),
        "ner_tags": bio_names(recipe.entity_types),
        "splits": {s: len(r) for s, r in by_split.items()},
        "selection": selection,
        "stats": stats,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    files.append(MANIFEST)
    return files
