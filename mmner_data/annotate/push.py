"""``annotate push``: kept posts (or the review queue) → Label Studio tasks, in bulk batches.

Crash safety: a push first lists the tasks already in the project (by ``data.post_id``) and
records any the store does not know yet (a push killed between an import and its store write),
then imports only posts that are in neither. Each batch is one import request followed by one
store transaction, so a rerun after a kill, a network failure or a server crash at any point
leaves exactly one task per post.

Order: ``crawl`` (ingest order) or ``uncertainty`` (lowest item score of the chosen model
version first; posts without a prediction of that version last, in ingest order). Label Studio
numbers tasks in import order and lists them by id, so the import order is the order annotators
get. Tasks pushed earlier keep their (lower) ids: a later uncertainty push orders only the new
tasks, after the old ones.

``refresh_predictions``: tasks already pushed and not yet annotated get the chosen (latest)
model version's prediction through the predictions API, once per task and version (a task that
already carries a prediction of that version is left alone); ``ls_tasks.model_version`` records
it, and the project is set to show that version.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmner_data.annotate.client import LabelStudioError, LSClient, LSProject
from mmner_data.annotate.label_config import (
    FROM_NAME,
    TO_NAME,
    check_config,
    config_sha256,
    load_template,
    render_label_config,
)
from mmner_data.annotate.settings import AnnotateSettings
from mmner_data.errors import MmnerError
from mmner_data.labels import eligible_posts
from mmner_data.schema import EntitySpan, spans_from_json
from mmner_data.store import CorpusStore, utcnow

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]
REVIEW_SUFFIX = " — review"
QUEUES = ("annotate", "review")
ORDERS = ("crawl", "uncertainty")


class PushError(MmnerError):
    """A push that cannot go on; one line, the store stays consistent."""


@dataclass(frozen=True)
class PostItem:
    """What a task is made of."""

    post_id: str
    text: str
    lang: str | None
    image_path: str | None  # relative to the store root
    review_reason: str | None = None


@dataclass
class PushResult:
    url: str
    project_id: int | None
    project_key: str | None
    title: str
    queue: str
    created_project: bool = False
    selected: int = 0
    already_pushed: int = 0
    recovered: int = 0
    to_push: int = 0
    imported: int = 0
    with_predictions: int = 0
    dropped_prediction_spans: int = 0
    duplicate_tasks_in_project: int = 0
    missing_in_project: int = 0
    batches: int = 0
    model_version: str | None = None
    order: str = "crawl"
    refreshed: int = 0  # tasks that got the model version's prediction (refresh_predictions)
    refresh_skipped_annotated: int = 0
    refresh_up_to_date: int = 0  # already carried a prediction of this version
    image_mode: str = "none"
    seconds: float = 0.0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks_per_s"] = round(self.imported / self.seconds, 1) if self.seconds else None
        return d


# -- pure builders ----------------------------------------------------------------------------


def project_key(url: str, project_id: int) -> str:
    return f"{url.rstrip('/')}#{project_id}"


def prediction_result(
    text: str, spans: Sequence[EntitySpan], labels: Sequence[str]
) -> tuple[list[dict], int]:
    """LS result items for ``spans`` (with per-span ``score``); spans LS cannot show are dropped.

    Returns the items and how many spans were dropped (out of range, empty, or a label that is
    not one of ``labels``).
    """
    items: list[dict] = []
    dropped = 0
    for sp in spans:
        if not (0 <= sp.start < sp.end <= len(text)) or sp.label not in labels:
            dropped += 1
            continue
        item: dict[str, Any] = {
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "labels",
            "value": {
                "start": sp.start,
                "end": sp.end,
                "text": text[sp.start : sp.end],
                "labels": [sp.label],
            },
        }
        if sp.score is not None:
            item["score"] = float(sp.score)
        items.append(item)
    return items, dropped


def item_score(spans: Sequence[EntitySpan], score: float | None) -> float | None:
    """The prediction's overall score: the stored one, else the mean span score."""
    if score is not None:
        return float(score)
    scores = [s.score for s in spans if s.score is not None]
    return sum(scores) / len(scores) if scores else None


def build_task(item: PostItem, image_url: str, predictions: Sequence[dict]) -> dict:
    """One LS task: ``data = {text, image, post_id, lang}`` plus its predictions."""
    data: dict[str, Any] = {
        "text": item.text,
        "image": image_url,
        "post_id": item.post_id,
        "lang": item.lang or "",
    }
    if item.review_reason is not None:
        data["review_reason"] = item.review_reason
    task: dict[str, Any] = {"data": data}
    if predictions:
        task["predictions"] = list(predictions)
    return task


def local_files_url(document_root: Path, image: Path) -> str:
    """The ``/data/local-files/?d=…`` URL of ``image`` for a server with ``document_root``."""
    rel = image.resolve().relative_to(document_root.resolve()).as_posix()
    return "/data/local-files/?d=" + urllib.parse.quote(rel, safe="/")


# -- store reads ------------------------------------------------------------------------------


def select_posts(store: CorpusStore, queue: str) -> list[PostItem]:
    """The posts to push, in ingest order: the eligible ones (kept by ``collect``, and by
    ``filter`` when it ran: :func:`mmner_data.labels.eligible_posts`), or the review queue."""
    if queue == "review":
        images = {
            r["post_id"]: r["path"]
            for r in store.query(
                "SELECT pi.post_id, i.path FROM post_images pi "
                "JOIN images i ON i.sha256 = pi.sha256 "
                "WHERE pi.status = 'ok' ORDER BY pi.post_id, pi.position DESC"
            )
        }  # DESC: the first position wins, being written last
        rows = store.query(
            "SELECT p.post_id, p.text, p.lang, a.reason FROM adjudication a "
            "JOIN posts p ON p.post_id = a.post_id WHERE a.status = 'review' "
            "ORDER BY p.ingest_seq"
        )
        return [
            PostItem(
                r["post_id"], r["text"], r["lang"], images.get(r["post_id"]), r["reason"] or ""
            )
            for r in rows
        ]
    posts = sorted(eligible_posts(store).posts, key=lambda p: p.ingest_seq)
    return [PostItem(p.post_id, p.text, p.lang, p.image_path) for p in posts]


def latest_model_version(store: CorpusStore) -> str | None:
    row = store.query(
        "SELECT model_version FROM predictions GROUP BY model_version "
        "ORDER BY MAX(created_at) DESC, model_version DESC LIMIT 1"
    )
    return row[0]["model_version"] if row else None


def load_predictions(
    store: CorpusStore, model_version: str
) -> dict[str, tuple[list[EntitySpan], float | None]]:
    out: dict[str, tuple[list[EntitySpan], float | None]] = {}
    for r in store.query(
        "SELECT post_id, spans_json, score FROM predictions WHERE model_version = ?",
        (model_version,),
    ):
        out[r["post_id"]] = (list(spans_from_json(r["spans_json"])), r["score"])
    return out


def load_annotator_versions(store: CorpusStore) -> dict[str, list[tuple[str, list[EntitySpan]]]]:
    """Per post, each annotator's latest submitted spans (for the review project)."""
    out: dict[str, dict[str, list[EntitySpan]]] = {}
    for r in store.query(
        "SELECT post_id, annotator, spans_json FROM annotations WHERE status = 'submitted' "
        "ORDER BY post_id, annotator, COALESCE(updated_at, created_at, pulled_at)"
    ):
        out.setdefault(r["post_id"], {})[r["annotator"]] = list(spans_from_json(r["spans_json"]))
    return {pid: sorted(v.items()) for pid, v in out.items()}


def order_items(
    items: Sequence[PostItem],
    preds: dict[str, tuple[list[EntitySpan], float | None]],
    order: str,
) -> list[PostItem]:
    """``items`` in push order: as given (``crawl``), or least certain first (``uncertainty``:
    ascending item score, ties in the given order; posts without a score last, in the given
    order — they have nothing to pre-fill and no measure of doubt)."""
    if order == "crawl":
        return list(items)
    if order != "uncertainty":
        raise PushError(f"unknown order {order!r}; expected one of {ORDERS}")

    def key(pair: tuple[int, PostItem]) -> tuple[int, float, int]:
        i, it = pair
        if it.post_id in preds:
            score = item_score(*preds[it.post_id])
            if score is not None:
                return (0, score, i)
        return (1, 0.0, i)

    return [it for _, it in sorted(enumerate(items), key=key)]


# -- the push ---------------------------------------------------------------------------------


def _record_project(
    conn: sqlite3.Connection, key: str, url: str, project: LSProject, kind: str, sha: str
) -> None:
    conn.execute(
        "INSERT INTO ls_projects(project_key, url, project_id, title, kind, label_config_sha256, "
        "created_at) VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(project_key) DO UPDATE SET "
        "title = excluded.title, kind = excluded.kind, "
        "label_config_sha256 = excluded.label_config_sha256",
        (key, url, project.id, project.title, kind, sha, utcnow()),
    )


def _record_tasks(
    conn: sqlite3.Connection, key: str, rows: Sequence[tuple[str, int, str | None]]
) -> None:
    now = utcnow()
    conn.executemany(
        "INSERT INTO ls_tasks(project_key, post_id, task_id, model_version, pushed_at) "
        "VALUES(?, ?, ?, ?, ?) ON CONFLICT(project_key, post_id) DO NOTHING",
        [(key, post_id, task_id, mv, now) for post_id, task_id, mv in rows],
    )


def project_title(settings: AnnotateSettings, recipe_name: str, queue: str) -> str:
    base = settings.project or recipe_name
    return base + REVIEW_SUFFIX if queue == "review" else base


def run_push(
    store: CorpusStore,
    client: LSClient,
    settings: AnnotateSettings,
    entity_types: Sequence[str],
    *,
    recipe_name: str,
    queue: str = "annotate",
    limit: int | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    order: str = "crawl",
    sample_uncertain: int | None = None,
    refresh_predictions: bool = False,
) -> PushResult:
    """Push posts to the project (created or reused by title); see the module docstring.

    ``sample_uncertain`` N pushes only the N least certain new posts (implies ``uncertainty``).
    """
    if queue not in QUEUES:
        raise PushError(f"unknown queue {queue!r}; expected one of {QUEUES}")
    if sample_uncertain is not None:
        order = "uncertainty"
    if order not in ORDERS:
        raise PushError(f"unknown order {order!r}; expected one of {ORDERS}")
    if queue == "review" and (order == "uncertainty" or refresh_predictions):
        raise PushError(
            "--order uncertainty, --sample-uncertain and --refresh-predictions use model "
            "predictions: they apply to the annotate queue, not the review queue"
        )
    if not settings.predictions and (order == "uncertainty" or refresh_predictions):
        raise PushError(
            "--no-predictions leaves nothing to order by or refresh: drop --no-predictions, "
            "or use --order crawl without --refresh-predictions"
        )
    t0 = time.perf_counter()
    title = project_title(settings, recipe_name, queue)
    template = load_template(settings.label_config) if settings.label_config else None
    config = render_label_config(entity_types, queue, template)
    res = PushResult(url=client.url, project_id=None, project_key=None, title=title, queue=queue)
    res.dry_run = dry_run
    res.order = order
    client.whoami()

    items = select_posts(store, queue)
    res.selected = len(items)

    # Predictions to attach (and to order by): read before anything else, so that a dry run
    # counts them as the push would.
    preds: dict[str, tuple[list[EntitySpan], float | None]] = {}
    versions: dict[str, list[tuple[str, list[EntitySpan]]]] = {}
    if queue == "annotate" and settings.predictions:
        res.model_version = settings.model_version or latest_model_version(store)
        if res.model_version:
            preds = load_predictions(store, res.model_version)
            if settings.model_version and not preds:
                raise PushError(f"no predictions with model_version {settings.model_version!r}")
    elif queue == "review":
        versions = load_annotator_versions(store)
    if (order == "uncertainty" or refresh_predictions) and not preds:
        raise PushError(
            "no predictions in the store to order by or refresh: run 'mmner-data preannotate' first"
        )
    items = order_items(items, preds, order)
    res.image_mode = settings.image_mode()
    image_root = _check_image_serving(store, settings, items)
    project = client.find_project(title)
    if project is not None:
        why = check_config(project.label_config, entity_types)
        if why:
            raise PushError(
                f"project {title!r} (id {project.id}) at {client.url} does not match the "
                f"recipe: {why}; fix entity_types or push to another project (--project)"
            )
        overlap_given = {"overlap", "overlap_fraction"} & settings.model_fields_set
        if queue == "annotate" and overlap_given and not dry_run:
            want = (settings.maximum_annotations(), settings.overlap_cohort_percentage())
            if (project.maximum_annotations, project.overlap_cohort_percentage) != want:
                client.set_overlap(project.id, *want)
                res.notes.append(f"overlap set to {want[0]} for {want[1]}% of tasks")
    elif dry_run:
        todo = _cap(items, limit, sample_uncertain)
        res.to_push = len(todo)
        res.with_predictions = _count_with_predictions(todo, preds, versions)
        res.notes.append(f"project {title!r} does not exist yet; it would be created")
        res.seconds = time.perf_counter() - t0
        return res
    else:
        overlap = settings.maximum_annotations() if queue == "annotate" else 1
        project = client.create_project(
            title, config, overlap, settings.overlap_cohort_percentage() if overlap > 1 else 100
        )
        res.created_project = True
    key = project_key(client.url, project.id)
    res.project_id, res.project_key = project.id, key

    # What is already there: the project's tasks (by post_id) and the store's records.
    in_project = client.task_post_ids(project.id)
    res.duplicate_tasks_in_project = sum(len(v) - 1 for v in in_project.values())
    recorded = {
        r["post_id"]: r["task_id"]
        for r in store.query("SELECT post_id, task_id FROM ls_tasks WHERE project_key = ?", (key,))
    }
    res.missing_in_project = sum(1 for p in recorded if p not in in_project)
    known_posts = {r["post_id"] for r in store.query("SELECT post_id FROM posts")}
    recover = [
        (pid, min(ids), None)
        for pid, ids in in_project.items()
        if pid not in recorded and pid in known_posts
    ]
    res.recovered = len(recover)
    res.already_pushed = sum(
        1 for it in items if it.post_id in recorded or it.post_id in in_project
    )
    todo = [it for it in items if it.post_id not in recorded and it.post_id not in in_project]
    todo = _cap(todo, limit, sample_uncertain)
    res.to_push = len(todo)
    if order == "uncertainty" and res.already_pushed and todo:
        res.notes.append(
            f"{res.already_pushed} task(s) were pushed before and keep their place: the "
            f"{len(todo)} new task(s) are ordered least certain first after them"
        )

    if dry_run:
        res.with_predictions = _count_with_predictions(todo, preds, versions)
        if refresh_predictions:
            _refresh_predictions(store, client, res, key, project.id, preds, entity_types, True)
        res.seconds = time.perf_counter() - t0
        return res

    with store.transaction() as conn:
        _record_project(conn, key, client.url, project, queue, config_sha256(config))
        _record_tasks(conn, key, recover)

    image_url = _image_urls(store, client, settings, project.id, todo, image_root)
    for start in range(0, len(todo), settings.batch_size):
        batch = todo[start : start + settings.batch_size]
        tasks, rows = [], []
        for it in batch:
            predictions = _predictions_for(it, preds, versions, res, entity_types)
            tasks.append(build_task(it, image_url(it), predictions))
            rows.append((it.post_id, res.model_version if it.post_id in preds else None))
        try:
            ids = client.import_tasks(project.id, tasks)
        except LabelStudioError as exc:
            raise PushError(
                f"{exc} — {res.imported} of {len(todo)} new task(s) were pushed and recorded; "
                "run the same command again to push the rest (no duplicates)"
            ) from None
        with store.transaction() as conn:
            _record_tasks(conn, key, [(p, i, mv) for (p, mv), i in zip(rows, ids, strict=True)])
        res.imported += len(batch)
        res.batches += 1
        if progress:
            progress("push", len(batch), len(todo))
    if refresh_predictions:
        _refresh_predictions(store, client, res, key, project.id, preds, entity_types, False)
    res.seconds = time.perf_counter() - t0
    return res


def _cap(
    items: Sequence[PostItem], limit: int | None, sample_uncertain: int | None
) -> list[PostItem]:
    out = list(items)
    for n in (sample_uncertain, limit):
        if n is not None:
            out = out[:n]
    return out


def _count_with_predictions(
    todo: Sequence[PostItem],
    preds: dict[str, tuple[list[EntitySpan], float | None]],
    versions: dict[str, list[tuple[str, list[EntitySpan]]]],
) -> int:
    """How many of ``todo`` the push gives a prediction (as :func:`_predictions_for` counts)."""
    return sum(it.post_id in preds for it in todo) + sum(
        bool(versions.get(it.post_id)) for it in todo
    )


def _refresh_predictions(
    store: CorpusStore,
    client: LSClient,
    res: PushResult,
    key: str,
    project_id: int,
    preds: dict[str, tuple[list[EntitySpan], float | None]],
    labels: Sequence[str],
    dry_run: bool,
) -> None:
    """Send ``res.model_version``'s predictions to the project's tasks with no annotation yet.

    Idempotent: a task that already carries a prediction of that version (made by an earlier
    refresh, or at import) is left alone, whatever the store says.
    """
    version = res.model_version
    assert version is not None  # checked by run_push
    recorded = {
        r["post_id"]: int(r["task_id"])
        for r in store.query("SELECT post_id, task_id FROM ls_tasks WHERE project_key = ?", (key,))
    }
    texts = {r["post_id"]: r["text"] for r in store.query("SELECT post_id, text FROM posts")}
    with client._call(f"list the tasks of project {project_id}"):
        annotated = {
            int(t.id)
            for t in client.sdk.tasks.list(
                project=project_id,
                include="id,total_annotations,cancelled_annotations",
                page_size=1000,
            )
            if (t.total_annotations or 0) + (t.cancelled_annotations or 0) > 0
        }
    with client._call(f"list the predictions of project {project_id}"):
        has_version = {
            int(p.task)
            for p in client.sdk.predictions.list(project=project_id)
            if p.model_version == version and p.task is not None
        }
    done: list[tuple[str, int]] = []
    for post_id, task_id in sorted(recorded.items(), key=lambda kv: kv[1]):
        if post_id not in preds or post_id not in texts:
            continue
        if task_id in annotated:
            res.refresh_skipped_annotated += 1
            continue
        if task_id in has_version:
            res.refresh_up_to_date += 1
            done.append((post_id, task_id))
            continue
        if dry_run:
            res.refreshed += 1
            continue
        spans, score = preds[post_id]
        result, dropped = prediction_result(texts[post_id], spans, labels)
        res.dropped_prediction_spans += dropped
        overall = item_score(spans, score)
        with client._call(f"add a {version} prediction to task {task_id}"):
            client.sdk.predictions.create(
                task=task_id,
                result=result,
                model_version=version,
                **({"score": overall} if overall is not None else {}),
            )
        res.refreshed += 1
        done.append((post_id, task_id))
    if dry_run:
        return
    with store.transaction() as conn:
        conn.executemany(
            "UPDATE ls_tasks SET model_version = ? WHERE project_key = ? AND post_id = ?",
            [(version, key, post_id) for post_id, _ in done],
        )
    with client._call(f"show model version {version} in project {project_id}"):
        client.sdk.projects.update(id=project_id, model_version=version)
    res.notes.append(
        f"refresh: {res.refreshed} task(s) got {version} predictions, "
        f"{res.refresh_up_to_date} already had them, {res.refresh_skipped_annotated} "
        "annotated task(s) left alone"
    )


def _predictions_for(
    it: PostItem,
    preds: dict[str, tuple[list[EntitySpan], float | None]],
    versions: dict[str, list[tuple[str, list[EntitySpan]]]],
    res: PushResult,
    labels: Sequence[str],
) -> list[dict]:
    out: list[dict] = []
    if it.post_id in preds:
        spans, score = preds[it.post_id]
        result, dropped = prediction_result(it.text, spans, labels)
        res.dropped_prediction_spans += dropped
        pred: dict[str, Any] = {"model_version": res.model_version, "result": result}
        overall = item_score(spans, score)
        if overall is not None:
            pred["score"] = overall
        out.append(pred)
        res.with_predictions += 1
    for annotator, spans in versions.get(it.post_id, []):
        result, dropped = prediction_result(it.text, spans, labels)
        res.dropped_prediction_spans += dropped
        out.append({"model_version": annotator, "result": result})
    if versions.get(it.post_id):
        res.with_predictions += 1
    return out


def _check_image_serving(
    store: CorpusStore, settings: AnnotateSettings, items: Sequence[PostItem]
) -> Path | None:
    """Check the image serving mode before anything is created; the local-files root, if used."""
    mode = settings.image_mode()
    if mode == "none" or not any(it.image_path for it in items):
        return None
    if mode == "url":
        if not settings.image_url_base:
            raise PushError("--images url needs an image URL base (--image-url-base)")
        return None
    root_text = settings.resolved_document_root()
    if not root_text:
        raise PushError(
            "images are served with local-files storage, which needs the server's document "
            "root: set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (as the server has it) or "
            "annotate.document_root, or use --image-url-base URL, or --images none"
        )
    root = Path(root_text).resolve()
    images_dir = store.images_dir.resolve()
    if not images_dir.is_relative_to(root):
        raise PushError(
            f"the store's images ({images_dir}) are not under the Label Studio document root "
            f"{root}: move the store under it, or start the server with "
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT above the store, or use --image-url-base"
        )
    return root


def _image_urls(
    store: CorpusStore,
    client: LSClient,
    settings: AnnotateSettings,
    project_id: int,
    todo: Sequence[PostItem],
    root: Path | None,
) -> Callable[[PostItem], str]:
    """A function giving each post's image URL for the chosen serving mode."""
    mode = settings.image_mode()
    if mode == "none" or not any(it.image_path for it in todo):
        return lambda it: ""
    if mode == "url":
        base = str(settings.image_url_base)
        images_dir = store.images_dir.resolve()

        def by_url(it: PostItem) -> str:
            if not it.image_path:
                return ""
            rel = store.resolve_image(it.image_path).resolve().relative_to(images_dir)
            return f"{base}/{urllib.parse.quote(rel.as_posix())}"

        return by_url
    assert root is not None  # checked by _check_image_serving
    client.ensure_local_storage(project_id, store.images_dir)

    def by_local(it: PostItem) -> str:
        return local_files_url(root, store.resolve_image(it.image_path)) if it.image_path else ""

    return by_local
