"""Which posts are exported, and with which labels (read from the store).

A post is exported when ``collect`` kept it, the ``filter`` selection (if one was made) kept it,
and it has labels. Labels come from the first of:

1. ``adjudication`` with ``status='gold'`` → ``label_source="gold"``;
2. the chosen annotator's latest submitted annotation (``--annotator``) → ``"annotator"``;
3. with ``--include-silver`` only, the pre-annotations in ``predictions`` (the given model
   version, else the latest per post) → ``"silver"``.

Adjudication rows in ``review`` are not gold: such a post falls through to 2 and 3.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mmner_data.schema import EntitySpan, spans_from_json
from mmner_data.store import CorpusStore

LABEL_SOURCES: tuple[str, ...] = ("gold", "annotator", "silver")


@dataclass(frozen=True, slots=True)
class LabelledPost:
    """One post to export, as stored (original text and character spans)."""

    post_id: str
    lang: str
    text: str
    source: str
    licence: str | None
    author: str | None
    created_at: str | None
    cluster_id: str | None
    dup_of: str | None
    spans: tuple[EntitySpan, ...]
    label_source: str  # gold | annotator | silver
    label_origin: str  # adjudication method, annotator id, or model version
    image_path: Path | None = None
    image_sha256: str | None = None
    image_phash: str | None = None
    text_key: str = ""
    clip_score: float | None = None


@dataclass(slots=True)
class LabelSelection:
    posts: list[LabelledPost] = field(default_factory=list)
    eligible: int = 0  # kept by collect (and the filter selection, if any)
    filtered_out: int = 0  # kept by collect, dropped or not yet judged by the filter
    unlabelled: int = 0
    by_source: Counter[str] = field(default_factory=Counter)
    filter_applied: bool = False
    clip_model: str | None = None

    def to_dict(self) -> dict:
        return {
            "eligible": self.eligible,
            "filtered_out": self.filtered_out,
            "unlabelled": self.unlabelled,
            "labelled": len(self.posts),
            "by_label_source": dict(self.by_source),
            "filter_applied": self.filter_applied,
            "clip_model": self.clip_model,
        }


def _latest_by_post(rows: list) -> dict[str, object]:
    out: dict[str, object] = {}
    for r in rows:  # rows come newest first per post
        out.setdefault(r["post_id"], r)
    return out


def clip_scores(store: CorpusStore) -> tuple[dict[str, float], str | None, bool]:
    """Scores per post (the selection's model, else the most recently used model).

    Returns ``(scores, model_id, selection_exists)``.
    """
    sel = store.query("SELECT post_id, model_id, score FROM relevance_selection")
    if sel:
        models = Counter(r["model_id"] for r in sel)
        model = models.most_common(1)[0][0]
        scores = {r["post_id"]: r["score"] for r in sel if r["score"] is not None}
        for r in store.query("SELECT post_id, score FROM relevance WHERE model_id=?", (model,)):
            scores.setdefault(r["post_id"], r["score"])
        return scores, model, True
    row = store.query(
        "SELECT model_id FROM relevance GROUP BY model_id ORDER BY MAX(scored_at) DESC LIMIT 1"
    )
    if not row:
        return {}, None, False
    model = row[0]["model_id"]
    rows = store.query("SELECT post_id, score FROM relevance WHERE model_id=?", (model,))
    return {r["post_id"]: r["score"] for r in rows}, model, False


def select_labels(
    store: CorpusStore,
    *,
    annotator: str | None = None,
    include_silver: bool = False,
    model_version: str | None = None,
) -> LabelSelection:
    """The posts to export with their labels, ordered by post id."""
    result = LabelSelection()
    scores, clip_model, selection = clip_scores(store)
    result.filter_applied, result.clip_model = selection, clip_model
    kept_by_filter = {
        r["post_id"]: bool(r["kept"])
        for r in store.query("SELECT post_id, kept FROM relevance_selection")
    }
    gold = {
        r["post_id"]: r
        for r in store.query(
            "SELECT post_id, spans_json, method FROM adjudication WHERE status='gold'"
        )
    }
    chosen: dict[str, object] = {}
    if annotator:
        chosen = _latest_by_post(
            store.query(
                "SELECT post_id, spans_json, annotator FROM annotations "
                "WHERE annotator=? AND status='submitted' "
                "ORDER BY post_id, COALESCE(updated_at, created_at, pulled_at) DESC, "
                "annotation_key DESC",
                (annotator,),
            )
        )
    silver: dict[str, object] = {}
    if include_silver:
        if model_version:
            rows = store.query(
                "SELECT post_id, spans_json, model_version FROM predictions "
                "WHERE model_version=? ORDER BY post_id",
                (model_version,),
            )
        else:
            rows = store.query(
                "SELECT post_id, spans_json, model_version FROM predictions "
                "ORDER BY post_id, created_at DESC, model_version DESC"
            )
        silver = _latest_by_post(rows)
    images: dict[str, object] = {}
    for r in store.query(
        "SELECT pi.post_id, i.sha256, i.path, i.phash FROM post_images pi "
        "JOIN images i ON i.sha256 = pi.sha256 WHERE pi.status='ok' "
        "ORDER BY pi.post_id, pi.position"
    ):
        images.setdefault(r["post_id"], r)

    for p in store.query(
        "SELECT post_id, lang, text, text_key, source, licence, author, created_at, cluster_id, "
        "dup_of FROM posts WHERE status='kept' ORDER BY post_id"
    ):
        pid = p["post_id"]
        if selection and not kept_by_filter.get(pid, False):
            result.filtered_out += 1
            continue
        result.eligible += 1
        if pid in gold:
            row, source, origin = gold[pid], "gold", gold[pid]["method"]
        elif pid in chosen:
            row, source, origin = chosen[pid], "annotator", chosen[pid]["annotator"]
        elif pid in silver:
            row, source, origin = silver[pid], "silver", silver[pid]["model_version"]
        else:
            result.unlabelled += 1
            continue
        img = images.get(pid)
        result.posts.append(
            LabelledPost(
                post_id=pid,
                lang=p["lang"] or "und",
                text=p["text"],
                text_key=p["text_key"] or "",
                source=p["source"],
                licence=p["licence"],
                author=p["author"],
                created_at=p["created_at"],
                cluster_id=p["cluster_id"],
                dup_of=p["dup_of"],
                spans=spans_from_json(row["spans_json"]),  # type: ignore[index]
                label_source=source,
                label_origin=str(origin),
                image_path=store.resolve_image(img["path"]) if img else None,  # type: ignore[index]
                image_sha256=img["sha256"] if img else None,  # type: ignore[index]
                image_phash=img["phash"] if img else None,  # type: ignore[index]
                clip_score=scores.get(pid),
            )
        )
        result.by_source[source] += 1
    return result
