"""Load annotations for agreement: from the store, or from a Label Studio JSON export file.

Both loaders return the same :class:`LoadedAnnotations` (posts with their text and language,
and one :class:`~mmner_data.schema.Annotation` per annotator × post with character spans), so
everything downstream is one code path and the numbers are the same whichever the source.

Annotators are named ``ls:<user id>`` in both: the Label Studio user id, never an e-mail.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmner_data.agreement.sequences import AgreementError
from mmner_data.schema import Annotation, EntitySpan
from mmner_data.store import CorpusStore
from mmner_data.text.spans import SpanError, align_to_text

STATUSES = ("submitted", "skipped", "cancelled")
UNKNOWN_LANG = "und"


class LoadError(AgreementError):
    """Annotations that cannot be read; the message names the file, task or row and why."""


@dataclass(frozen=True, slots=True)
class PostText:
    """What agreement needs of a post: its original text and its language."""

    post_id: str
    text: str
    lang: str


@dataclass(slots=True)
class LoadedAnnotations:
    """Posts and every annotation of them (all statuses), plus problems met while reading.

    ``problems[annotation_key]`` lists spans that were left out because they could not be read
    (e.g. a quote not found in the text); the pipeline applies the ``bad_spans`` policy to them.
    """

    source: str
    posts: dict[str, PostText]
    annotations: list[Annotation]
    problems: dict[str, list[str]] = field(default_factory=dict)


def annotator_id(completed_by: Any) -> str:
    """``ls:<user id>`` from Label Studio's ``completed_by`` (an int, or ``{id, email, …}``)."""
    if isinstance(completed_by, Mapping):
        completed_by = completed_by.get("id")
    if isinstance(completed_by, bool) or not isinstance(completed_by, int | str):
        raise ValueError("no user id in completed_by")
    text = str(completed_by).strip()
    if not text:
        raise ValueError("empty user id in completed_by")
    return f"ls:{text}"


# --- the store -----------------------------------------------------------------------------


def _spans_from_json(raw: str, key: str) -> tuple[EntitySpan, ...]:
    try:
        data = json.loads(raw)
        if not isinstance(data, list):
            raise TypeError("not a list")
        return tuple(EntitySpan.from_json(d) for d in data)
    except (ValueError, TypeError, KeyError) as exc:
        raise LoadError(f"annotation {key!r}: spans_json is not a list of spans ({exc})") from None


def load_from_store(store: CorpusStore) -> LoadedAnnotations:
    """Every row of ``annotations`` with its post's text and language."""
    rows = store.query(
        "SELECT a.annotation_key, a.post_id, a.annotator, a.origin, a.status, a.spans_json, "
        "a.lead_time, a.created_at, a.updated_at, p.text, p.lang "
        "FROM annotations a JOIN posts p ON p.post_id = a.post_id "
        # reviewers' decisions (pulled from a review project) are gold, not another annotator
        "WHERE a.origin != 'label-studio-review' "
        "ORDER BY a.post_id, a.annotator, a.annotation_key"
    )
    posts: dict[str, PostText] = {}
    anns: list[Annotation] = []
    for r in rows:
        posts.setdefault(r["post_id"], PostText(r["post_id"], r["text"], r["lang"] or UNKNOWN_LANG))
        if r["status"] not in STATUSES:
            raise LoadError(
                f"annotation {r['annotation_key']!r}: unknown status {r['status']!r} "
                f"(expected {', '.join(STATUSES)})"
            )
        anns.append(
            Annotation(
                annotation_key=r["annotation_key"],
                post_id=r["post_id"],
                annotator=r["annotator"],
                status=r["status"],
                spans=_spans_from_json(r["spans_json"], r["annotation_key"]),
                origin=r["origin"],
                lead_time=r["lead_time"],
                created_at=r["created_at"],
                updated_at=r["updated_at"],
            )
        )
    return LoadedAnnotations(f"store {store.root}", posts, anns)


# --- a Label Studio JSON export ------------------------------------------------------------


def _region_spans(
    region: Mapping[str, Any], text: str, where: str, problems: list[str]
) -> list[EntitySpan]:
    """The character spans of one ``labels`` region (one per label; several labels overlap)."""
    value = region.get("value")
    if not isinstance(value, Mapping):
        problems.append(f"{where}: region without a value")
        return []
    labels = value.get("labels")
    start, end = value.get("start"), value.get("end")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        problems.append(f"{where}: region without labels")
        return []
    if isinstance(start, bool) or not isinstance(start, int) or not isinstance(end, int):
        problems.append(f"{where}: region without integer start/end offsets")
        return []
    quote = value.get("text")
    if isinstance(quote, str) and quote:
        try:
            start, end = align_to_text(text, start, end, quote)
        except SpanError as exc:
            problems.append(f"{where}: {exc}")
            return []
    return [EntitySpan(start, end, lab) for lab in labels]


def _task_annotations(
    task: Mapping[str, Any], i: int, file_key: str, post: PostText, loaded: LoadedAnnotations
) -> None:
    anns = task.get("annotations")
    if not isinstance(anns, list):
        raise LoadError(
            f"task #{i} has no 'annotations' list: is this Label Studio's JSON export "
            "(not JSON-MIN or CSV)?"
        )
    for a in anns:
        if not isinstance(a, Mapping) or "id" not in a:
            raise LoadError(f"task #{i}: an annotation without an id")
        key = f"{file_key}#{a['id']}"
        try:
            annotator = annotator_id(a.get("completed_by"))
        except ValueError as exc:
            raise LoadError(f"annotation {key!r} (task #{i}): {exc}") from None
        problems: list[str] = []
        spans: list[EntitySpan] = []
        for k, region in enumerate(a.get("result") or []):
            if isinstance(region, Mapping) and region.get("type") == "labels":
                where = f"item {post.post_id!r} (annotator {annotator!r}), region {k}"
                spans += _region_spans(region, post.text, where, problems)
        if problems:
            loaded.problems[key] = problems
        lead = a.get("lead_time")
        loaded.annotations.append(
            Annotation(
                annotation_key=key,
                post_id=post.post_id,
                annotator=annotator,
                status="cancelled" if a.get("was_cancelled") else "submitted",
                spans=tuple(spans),
                origin="ls-export",
                lead_time=float(lead) if isinstance(lead, int | float) else None,
                created_at=a.get("created_at"),
                updated_at=a.get("updated_at"),
            )
        )


def load_from_export(path: str | Path) -> LoadedAnnotations:
    """A Label Studio "JSON" export: a list of tasks with ``data`` and ``annotations``.

    ``data.text`` is the text the offsets point into, ``data.post_id`` the post (else
    ``ls-task:<task id>``), ``data.lang`` its language. Regions other than ``labels`` are
    ignored; ``was_cancelled`` annotations (skipped in the UI) get status ``cancelled``.
    """
    p = Path(path)
    try:
        tasks = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LoadError(f"export file not found: {p}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LoadError(f"{p}: not a readable JSON file ({exc})") from None
    if not isinstance(tasks, list):
        raise LoadError(f"{p}: a Label Studio JSON export is a list of tasks")
    loaded = LoadedAnnotations(f"export {p}", {}, [])
    for i, task in enumerate(tasks):
        if not isinstance(task, Mapping) or not isinstance(task.get("data"), Mapping):
            raise LoadError(f"{p}: task #{i} has no 'data' object")
        data = task["data"]
        text = data.get("text")
        if not isinstance(text, str):
            raise LoadError(f"{p}: task #{i} has no data.text")
        post_id = str(data.get("post_id") or f"ls-task:{task.get('id', i)}")
        post = PostText(post_id, text, str(data.get("lang") or UNKNOWN_LANG).lower())
        known = loaded.posts.setdefault(post_id, post)
        if known.text != text:
            raise LoadError(f"{p}: post {post_id!r} appears in two tasks with different texts")
        _task_annotations(task, i, p.name, known, loaded)
    return loaded


def iter_submitted(annotations: Iterable[Annotation]) -> Iterable[Annotation]:
    """The annotations that count: status ``submitted``."""
    return (a for a in annotations if a.status == "submitted")
