"""The one label layer: which posts can be labelled, the gold table, and labels by policy.

Every stage that asks "which posts?" or "which labels?" asks here:

* **Eligible posts** (:func:`eligible_posts`): kept by ``collect``, and kept by ``filter`` when the
  filter made a selection (``relevance_selection`` has rows); with each post's first stored image.
  ``annotate push`` sends these to Label Studio; ``export`` and ``train`` label them.
* **Gold** is the ``adjudication`` table, rows with ``status='gold'``. It is written here only:
  :func:`write_gold` (the ``agreement`` stage's votes, never over a human review),
  :func:`write_review_gold` (a reviewer's decision pulled from a review project, method
  ``reviewed``) and :func:`write_sample_gold` (the bundled sample's hand labels, method
  ``sample``, only when asked: ``python -m mmner_data.labels sample-gold --store STORE``).
  Rows with ``status='review'`` wait for a human and are not gold.
* **Labels by policy** (:func:`select_labels`): per eligible post the first of

  1. its gold → ``label_source="gold"`` (origin: the adjudication method);
  2. the policy's annotator's latest submitted annotation → ``"annotator"`` (origin: the
     annotator id);
  3. with ``include_silver`` only, its pre-annotations (the policy's model version, else the
     latest per post) → ``"silver"`` (origin: the model version).

  ``export`` and ``train``/``evaluate`` on a store read their labels this way, so a store's
  labels are the same wherever they are used; nothing falls back to the bundled sample's labels.

Spans are :class:`~mmner_data.schema.EntitySpan` (character offsets into the original text).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmner_data.errors import MmnerError
from mmner_data.schema import EntitySpan, spans_from_json, spans_to_json
from mmner_data.store import CorpusStore, utcnow
from mmner_data.text.spans import snap_span, spans_to_tags
from mmner_data.text.tokenize import tokenize

LABEL_SOURCES: tuple[str, ...] = ("gold", "annotator", "silver")
GOLD, REVIEW = "gold", "review"
REVIEWED = "reviewed"  # method of a human reviewer's decision: a vote never overwrites it
SAMPLE = "sample"  # method of the bundled sample's hand labels (write_sample_gold)


class LabelError(MmnerError):
    """Labels that cannot be stored: an unknown post, a reviewer named by e-mail..."""


# --- eligible posts ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EligiblePost:
    """A post that may be labelled, as stored (original text; image path relative to the store)."""

    post_id: str
    source: str
    source_id: str
    lang: str | None
    text: str
    text_key: str
    licence: str | None
    author: str | None
    created_at: str | None
    cluster_id: str | None
    dup_of: str | None
    ingest_seq: int
    image_path: str | None = None
    image_sha256: str | None = None
    image_phash: str | None = None


@dataclass(slots=True)
class Eligibility:
    """The eligible posts (ordered by post id) and how many ``filter`` left out."""

    posts: list[EligiblePost]
    filtered_out: int  # kept by collect, dropped or not yet judged by the filter
    filter_applied: bool  # the filter made a selection


def eligible_posts(store: CorpusStore) -> Eligibility:
    """Posts kept by ``collect`` and, when the filter made a selection, kept by it."""
    kept_by_filter = {
        r["post_id"]: bool(r["kept"])
        for r in store.query("SELECT post_id, kept FROM relevance_selection")
    }
    filter_applied = bool(kept_by_filter)
    images: dict[str, Any] = {}
    for r in store.query(
        "SELECT pi.post_id, i.sha256, i.path, i.phash FROM post_images pi "
        "JOIN images i ON i.sha256 = pi.sha256 WHERE pi.status='ok' "
        "ORDER BY pi.post_id, pi.position"
    ):
        images.setdefault(r["post_id"], r)  # the first position
    posts: list[EligiblePost] = []
    filtered_out = 0
    for p in store.query(
        "SELECT post_id, source, source_id, lang, text, text_key, licence, author, created_at, "
        "cluster_id, dup_of, ingest_seq FROM posts WHERE status='kept' ORDER BY post_id"
    ):
        pid = p["post_id"]
        if filter_applied and not kept_by_filter.get(pid, False):
            filtered_out += 1
            continue
        img = images.get(pid)
        posts.append(
            EligiblePost(
                post_id=pid,
                source=p["source"],
                source_id=p["source_id"],
                lang=p["lang"],
                text=p["text"],
                text_key=p["text_key"] or "",
                licence=p["licence"],
                author=p["author"],
                created_at=p["created_at"],
                cluster_id=p["cluster_id"],
                dup_of=p["dup_of"],
                ingest_seq=p["ingest_seq"],
                image_path=img["path"] if img else None,
                image_sha256=img["sha256"] if img else None,
                image_phash=img["phash"] if img else None,
            )
        )
    return Eligibility(posts, filtered_out, filter_applied)


# --- labels by policy ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelPolicy:
    """Where labels come from, after gold: one annotator's, then (if allowed) pre-annotations."""

    annotator: str | None = None
    include_silver: bool = False
    model_version: str | None = None  # silver from this model version (default: latest per post)

    def describe(self) -> str:
        """``gold (adjudication), annotator X, pre-annotations``: what is looked at, in order."""
        parts = ["gold (adjudication)"]
        if self.annotator:
            parts.append(f"annotator {self.annotator}")
        if self.include_silver:
            parts.append("pre-annotations")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class LabelledPost:
    """One eligible post with its labels (original text and character spans)."""

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
    image_path: Path | None = None  # resolved
    image_sha256: str | None = None
    image_phash: str | None = None
    text_key: str = ""


@dataclass(slots=True)
class LabelSelection:
    """The labelled posts (ordered by post id) and the counts behind them."""

    posts: list[LabelledPost] = field(default_factory=list)
    eligible: int = 0  # kept by collect (and the filter selection, if any)
    filtered_out: int = 0  # kept by collect, dropped or not yet judged by the filter
    unlabelled: int = 0
    by_source: Counter[str] = field(default_factory=Counter)
    filter_applied: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "eligible": self.eligible,
            "filtered_out": self.filtered_out,
            "unlabelled": self.unlabelled,
            "labelled": len(self.posts),
            "by_label_source": dict(self.by_source),
            "filter_applied": self.filter_applied,
        }


def _latest_by_post(rows: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in rows:  # rows come newest first per post
        out.setdefault(r["post_id"], r)
    return out


def gold_rows(store: CorpusStore) -> dict[str, Any]:
    """The ``adjudication`` rows with status ``gold``, by post id."""
    return {
        r["post_id"]: r
        for r in store.query(
            "SELECT post_id, spans_json, method FROM adjudication WHERE status='gold'"
        )
    }


def annotator_rows(store: CorpusStore, annotator: str) -> dict[str, Any]:
    """``annotator``'s latest submitted annotation per post."""
    return _latest_by_post(
        store.query(
            "SELECT post_id, spans_json, annotator FROM annotations "
            "WHERE annotator=? AND status='submitted' "
            "ORDER BY post_id, COALESCE(updated_at, created_at, pulled_at) DESC, "
            "annotation_key DESC",
            (annotator,),
        )
    )


def silver_rows(store: CorpusStore, model_version: str | None = None) -> dict[str, Any]:
    """Pre-annotations per post: of ``model_version``, else each post's latest."""
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
    return _latest_by_post(rows)


def select_labels(store: CorpusStore, policy: LabelPolicy | None = None) -> LabelSelection:
    """The eligible posts that have labels under ``policy`` (default: gold only)."""
    policy = policy or LabelPolicy()
    elig = eligible_posts(store)
    result = LabelSelection(filtered_out=elig.filtered_out, filter_applied=elig.filter_applied)
    gold = gold_rows(store)
    chosen = annotator_rows(store, policy.annotator) if policy.annotator else {}
    silver = silver_rows(store, policy.model_version) if policy.include_silver else {}
    for p in elig.posts:
        pid = p.post_id
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
        result.posts.append(
            LabelledPost(
                post_id=pid,
                lang=p.lang or "und",
                text=p.text,
                text_key=p.text_key,
                source=p.source,
                licence=p.licence,
                author=p.author,
                created_at=p.created_at,
                cluster_id=p.cluster_id,
                dup_of=p.dup_of,
                spans=spans_from_json(row["spans_json"]),
                label_source=source,
                label_origin=str(origin),
                image_path=store.resolve_image(p.image_path) if p.image_path else None,
                image_sha256=p.image_sha256,
                image_phash=p.image_phash,
            )
        )
        result.by_source[source] += 1
    return result


# --- writing gold --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdjudicationRow:
    """One row of the ``adjudication`` table (spans as character offsets)."""

    post_id: str
    status: str  # gold | review
    spans: tuple[EntitySpan, ...]
    method: str  # unanimous | majority | single | reviewed | sample
    reason: str | None
    provenance: dict[str, Any]

    def values(self) -> tuple[str, str, str, str | None, str]:
        """``status, spans_json, method, reason, provenance_json`` as stored."""
        spans = spans_to_json(self.spans)
        prov = json.dumps(self.provenance, sort_keys=True, ensure_ascii=False)
        return self.status, spans, self.method, self.reason, prov

    def to_dict(self) -> dict[str, Any]:
        return {
            "post_id": self.post_id,
            "status": self.status,
            "spans": [s.to_json() for s in self.spans],
            "method": self.method,
            "reason": self.reason,
            "provenance": self.provenance,
        }


def write_gold(store: CorpusStore, rows: Iterable[AdjudicationRow]) -> dict[str, int]:
    """Write rows in one transaction: insert, update if changed; never touch ``reviewed`` rows.

    Returns counts ``inserted``, ``updated``, ``unchanged`` and ``kept_reviewed``.
    """
    counts = Counter({"inserted": 0, "updated": 0, "unchanged": 0, "kept_reviewed": 0})
    rows = list(rows)
    with store.transaction() as conn:
        existing = {
            r["post_id"]: r
            for r in conn.execute(
                "SELECT post_id, status, spans_json, method, reason, provenance_json "
                "FROM adjudication"
            )
        }
        now = utcnow()
        for row in rows:
            old = existing.get(row.post_id)
            values = row.values()
            if old is not None and old["method"] == REVIEWED:
                counts["kept_reviewed"] += 1
                continue
            if old is not None and tuple(old)[1:] == values:
                counts["unchanged"] += 1
                continue
            conn.execute(
                "INSERT INTO adjudication(post_id, status, spans_json, method, reason, "
                "provenance_json, updated_at) VALUES(?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(post_id) DO UPDATE SET status=excluded.status, "
                "spans_json=excluded.spans_json, method=excluded.method, "
                "reason=excluded.reason, provenance_json=excluded.provenance_json, "
                "updated_at=excluded.updated_at WHERE adjudication.method != ?",
                (row.post_id, *values, now, REVIEWED),
            )
            counts["inserted" if old is None else "updated"] += 1
    return dict(counts)


def write_review_gold(
    store: CorpusStore,
    post_id: str,
    spans: Iterable[EntitySpan | Mapping[str, Any]],
    reviewer: str,
    *,
    labels: Sequence[str] | None = None,
    source: str | None = None,
) -> tuple[EntitySpan, ...]:
    """Store a human reviewer's spans as gold (method ``reviewed``) for ``post_id``.

    Called by ``annotate pull`` for a review project. Spans are character offsets into the
    post's text; they are trimmed and snapped onto token boundaries (``expand``) and must not
    overlap. A later vote never overwrites this row; a later review does. ``reviewer`` is a
    stable id such as ``ls:<user id>`` (never an e-mail). Raises :class:`LabelError` on an
    unknown post or reviewer, :class:`~mmner_data.text.spans.SpanError` on bad spans.
    """
    if "@" in reviewer:
        raise LabelError("reviewer must be a stable id such as ls:<user id>, not an e-mail")
    row = store.query("SELECT text FROM posts WHERE post_id=?", (post_id,))
    if not row:
        raise LabelError(f"review gold for unknown post {post_id!r}")
    text = row[0]["text"]
    given = [s if isinstance(s, EntitySpan) else EntitySpan.from_json(dict(s)) for s in spans]
    tokens = tokenize(text)
    spans_to_tags(text, tokens, given, labels=labels)  # validates labels and overlaps
    snapped = sorted({snap_span(text, tokens, s) for s in given})
    gold = tuple(EntitySpan(s.start, s.end, s.label) for s in snapped)
    with store.transaction() as conn:
        old = conn.execute(
            "SELECT status, method, spans_json FROM adjudication WHERE post_id=?", (post_id,)
        ).fetchone()
        prov: dict[str, Any] = {"reviewer": reviewer, "source": source}
        if old is not None:
            prov["previous"] = {
                "status": old["status"],
                "method": old["method"],
                "spans": json.loads(old["spans_json"]),
            }
        conn.execute(
            "INSERT INTO adjudication(post_id, status, spans_json, method, reason, "
            "provenance_json, updated_at) VALUES(?, 'gold', ?, ?, NULL, ?, ?) "
            "ON CONFLICT(post_id) DO UPDATE SET status='gold', spans_json=excluded.spans_json, "
            "method=excluded.method, reason=NULL, provenance_json=excluded.provenance_json, "
            "updated_at=excluded.updated_at",
            (
                post_id,
                spans_to_json(gold),
                REVIEWED,
                json.dumps(prov, sort_keys=True, ensure_ascii=False),
                utcnow(),
            ),
        )
    return gold


def sample_gold_rows(store: CorpusStore) -> list[AdjudicationRow]:
    """Gold rows (method ``sample``) for the bundled sample's posts found in the store.

    A kept post matches a sample post by its source id and exact text; its spans are the
    sample's hand-made entities, as written (they are snapped to tokens when tagged).
    """
    from mmner_data.sample import load_sample_posts, source_id

    by_sid = {source_id(p): p for p in load_sample_posts()}
    rows: list[AdjudicationRow] = []
    for r in store.query(
        "SELECT post_id, source_id, text FROM posts WHERE status = 'kept' ORDER BY post_id"
    ):
        post = by_sid.get(r["source_id"])
        if post is None or post["text"] != r["text"]:
            continue
        spans = tuple(EntitySpan(e["start"], e["end"], e["label"]) for e in post["entities"])
        prov = {"source": "bundled sample", "sample_id": post["id"]}
        rows.append(AdjudicationRow(r["post_id"], GOLD, spans, SAMPLE, None, prov))
    return rows


def write_sample_gold(store: CorpusStore) -> dict[str, int]:
    """Write the bundled sample's hand labels as the store's gold (see :func:`sample_gold_rows`).

    For a store collected from the bundled sample (``recipes/sample.yaml``): tests and the
    baseline build train on it this way. Human reviews are kept; other gold is replaced.
    Returns :func:`write_gold`'s counts plus ``matched`` (sample posts found in the store).
    """
    rows = sample_gold_rows(store)
    return {"matched": len(rows), **write_gold(store, rows)}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mmner_data.labels sample-gold --store STORE``: see :func:`write_sample_gold`."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m mmner_data.labels", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    sg = sub.add_parser(
        "sample-gold", help="Write the bundled sample's hand labels as the store's gold."
    )
    sg.add_argument("--store", type=Path, required=True, help="A store collected from the sample.")
    args = ap.parse_args(argv)
    if not (args.store / "corpus.sqlite").is_file():
        ap.error(f"{args.store}: not a corpus store (corpus.sqlite)")
    with CorpusStore(args.store) as store:
        counts = write_sample_gold(store)
    print(json.dumps(counts, sort_keys=True))
    return 0 if counts["matched"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
