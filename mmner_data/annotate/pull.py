"""``annotate pull``: Label Studio annotations → ``annotations`` rows, one per LS annotation.

Each annotation keeps its annotator (``ls:<user id>``; e-mails are not stored), status
(``submitted``, or ``skipped`` for LS's ``was_cancelled``), lead time and timestamps. Character
spans are stored as Label Studio gives them (re-aligned to the post text with
:func:`~mmner_data.text.spans.align_to_text`); BIO tags over
:func:`mmner_data.text.tokenize` tokens are stored next to them. A span that does not fall on
token boundaries is snapped by the ``snap`` rule and keeps its snapped offsets under
``"snapped": [start, end]``. Annotations whose spans cannot be tagged (overlapping or nested
spans, an unknown label) keep their spans with ``tags_json`` NULL and are listed as problems.

A re-pull compares ``updated_at`` and rewrites only annotations that changed; the whole pull is
one store transaction.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mmner_data.annotate.client import LSClient
from mmner_data.annotate.label_config import FROM_NAME
from mmner_data.annotate.push import QUEUES, project_title
from mmner_data.annotate.settings import AnnotateSettings
from mmner_data.errors import MmnerError
from mmner_data.schema import EntitySpan
from mmner_data.store import CorpusStore, atomic_write_text, utcnow
from mmner_data.text.spans import SpanError, align_to_text, snap_span, spans_to_tags
from mmner_data.text.tokenize import tokenize

Progress = Callable[[str, int, int | None], None]
ORIGINS = {"annotate": "label-studio", "review": "label-studio-review"}


class PullError(MmnerError):
    """A pull that cannot go on; one line, the store is unchanged."""


@dataclass
class Converted:
    """One annotation's spans and tags (pure result of :func:`convert_annotation`)."""

    spans: list[dict]
    tags: list[str] | None
    snapped: int = 0
    problem: str | None = None


@dataclass(frozen=True)
class ReviewDecision:
    """A reviewer's submitted spans for one post (review queue only)."""

    updated_at: str
    annotation_key: str
    reviewer: str
    spans: list[dict]


@dataclass
class PullResult:
    url: str
    project_id: int
    project_key: str
    title: str
    queue: str
    tasks: int = 0  # annotated tasks exported
    annotations: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    snapped_spans: int = 0
    unknown_posts: int = 0
    missing_in_project: int = 0
    reviewed_gold: int = 0  # review queue: adjudication rows set from a reviewer's decision
    annotators: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    report_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def annotator_id(completed_by: Any) -> str:
    """``ls:<user id>`` from an export's ``completed_by`` (an id, or a user object)."""
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id")
    if completed_by is None:
        return "ls:unknown"
    return f"ls:{int(completed_by)}"


def region_spans(text: str, result: Sequence[dict]) -> list[EntitySpan]:
    """The ``labels`` regions of the ``label`` control as spans over ``text``.

    Offsets are re-aligned to ``text`` with the region's quoted text (code points, UTF-16 units,
    or the nearest occurrence); a region with several labels gives one span per label.
    """
    spans: list[EntitySpan] = []
    for region in result:
        if region.get("type") != "labels" or region.get("from_name") != FROM_NAME:
            continue
        value = region.get("value") or {}
        start, end = int(value["start"]), int(value["end"])
        quote = value.get("text")
        if quote:
            start, end = align_to_text(text, start, end, quote)
        for label in value.get("labels") or []:
            spans.append(EntitySpan(start, end, str(label)))
    return sorted(set(spans))


def convert_annotation(
    text: str, result: Sequence[dict], labels: Sequence[str], snap: str = "expand"
) -> Converted:
    """Spans (as given, plus ``snapped`` offsets where snapping moved them) and BIO tags."""
    try:
        spans = region_spans(text, result)
    except (SpanError, KeyError, TypeError, ValueError) as exc:
        return Converted(spans=[], tags=None, problem=f"unreadable region: {exc}")
    tokens = tokenize(text)
    out: list[dict] = []
    snapped = 0
    problem = None
    for sp in spans:
        d: dict[str, Any] = {"start": sp.start, "end": sp.end, "label": sp.label}
        try:
            s = snap_span(text, tokens, sp, snap)
        except SpanError as exc:
            problem = problem or str(exc)
        else:
            if (s.start, s.end) != (sp.start, sp.end):
                d["snapped"] = [s.start, s.end]
                snapped += 1
        out.append(d)
    tags: list[str] | None = None
    if problem is None:
        try:
            tags = spans_to_tags(text, tokens, spans, scheme="BIO", snap=snap, labels=labels)
        except SpanError as exc:
            problem = str(exc)
    return Converted(spans=out, tags=tags, snapped=snapped, problem=problem)


def _find_project(store: CorpusStore, url: str, title: str, queue: str) -> tuple[str, int]:
    rows = store.query(
        "SELECT project_key, project_id FROM ls_projects WHERE url = ? AND title = ? AND kind = ? "
        "ORDER BY created_at DESC",
        (url, title, queue),
    )
    if not rows:
        raise PullError(
            f"nothing was pushed to project {title!r} at {url} from this store: run "
            f"'mmner-data annotate push{' --queue review' if queue == 'review' else ''}' first"
        )
    return rows[0]["project_key"], int(rows[0]["project_id"])


def run_pull(
    store: CorpusStore,
    client: LSClient,
    settings: AnnotateSettings,
    entity_types: Sequence[str],
    *,
    recipe_name: str,
    queue: str = "annotate",
    dry_run: bool = False,
    progress: Progress | None = None,
) -> PullResult:
    """Export the project and store its annotations (see the module docstring)."""
    if queue not in QUEUES:
        raise PullError(f"unknown queue {queue!r}; expected one of {QUEUES}")
    t0 = time.perf_counter()
    title = project_title(settings, recipe_name, queue)
    # the server check first: a wrong URL, an HTML page or a refused key fails here, not as
    # "nothing was pushed" from the store lookup below
    client.whoami()
    key, project_id = _find_project(store, client.url, title, queue)
    res = PullResult(client.url, project_id, key, title, queue, dry_run=dry_run)
    exported = client.export_tasks(project_id, timeout=settings.export_timeout_s)
    res.tasks = len(exported)

    texts = {r["post_id"]: r["text"] for r in store.query("SELECT post_id, text FROM posts")}
    before = {
        r["annotation_key"]: r["updated_at"]
        for r in store.query(
            "SELECT annotation_key, updated_at FROM annotations WHERE project_key = ?", (key,)
        )
    }
    rows: list[tuple] = []
    decisions: dict[str, ReviewDecision] = {}
    seen: set[str] = set()
    per_annotator: Counter[str] = Counter()
    now = utcnow()
    for task in exported:
        post_id = str((task.get("data") or {}).get("post_id", ""))
        anns = task.get("annotations") or []
        if post_id not in texts:
            res.unknown_posts += bool(anns)
            continue
        text = texts[post_id]
        for ann in anns:
            akey = f"{key}#{ann['id']}"
            seen.add(akey)
            res.annotations += 1
            who = annotator_id(ann.get("completed_by"))
            per_annotator[who] += 1
            status = "skipped" if ann.get("was_cancelled") else "submitted"
            res.skipped += status == "skipped"
            updated_at = ann.get("updated_at") or ann.get("created_at")
            if akey in before and before[akey] == updated_at:
                res.unchanged += 1
                continue
            conv = convert_annotation(text, ann.get("result") or [], entity_types, settings.snap)
            res.snapped_spans += conv.snapped
            if conv.problem:
                res.problems.append(f"{akey} (post {post_id}, {who}): {conv.problem}")
            if akey in before:
                res.updated += 1
            else:
                res.new += 1
            if queue == "review" and status == "submitted" and conv.tags is not None:
                decision = ReviewDecision(updated_at or "", akey, who, conv.spans)
                if post_id not in decisions or decision.updated_at >= decisions[post_id].updated_at:
                    decisions[post_id] = decision  # the latest review of a post wins
            rows.append(
                (
                    akey,
                    post_id,
                    who,
                    ORIGINS[queue],
                    key,
                    int(task["id"]),
                    status,
                    json.dumps(conv.spans),
                    None if conv.tags is None else json.dumps(conv.tags),
                    ann.get("lead_time"),
                    ann.get("created_at"),
                    updated_at,
                    now,
                )
            )
        if progress:
            progress("pull", 1, len(exported))
    res.missing_in_project = sum(1 for k in before if k not in seen)
    res.annotators = dict(sorted(per_annotator.items()))
    if not dry_run and rows:
        with store.transaction() as conn:
            conn.executemany(
                "INSERT INTO annotations(annotation_key, post_id, annotator, origin, project_key, "
                "task_id, status, spans_json, tags_json, lead_time, created_at, updated_at, "
                "pulled_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(annotation_key) DO UPDATE SET post_id = excluded.post_id, "
                "annotator = excluded.annotator, origin = excluded.origin, "
                "task_id = excluded.task_id, status = excluded.status, "
                "spans_json = excluded.spans_json, tags_json = excluded.tags_json, "
                "lead_time = excluded.lead_time, created_at = excluded.created_at, "
                "updated_at = excluded.updated_at, pulled_at = excluded.pulled_at",
                rows,
            )
    if queue == "review" and not dry_run:
        res.reviewed_gold = _store_review_gold(store, decisions, entity_types, res)
    res.seconds = time.perf_counter() - t0
    if not dry_run:
        res.report_files = write_pull_report(store, res)
    return res


def _store_review_gold(
    store: CorpusStore,
    decisions: dict[str, ReviewDecision],
    entity_types: Sequence[str],
    res: PullResult,
) -> int:
    """Each post's latest submitted review becomes its gold; returns how many were stored."""
    from mmner_data.labels import LabelError, write_review_gold

    stored = 0
    for post_id, d in sorted(decisions.items()):
        try:
            write_review_gold(store, post_id, d.spans, d.reviewer, labels=list(entity_types))
            stored += 1
        except (LabelError, SpanError) as exc:
            res.problems.append(
                f"{d.annotation_key} (post {post_id}): review not stored as gold: {exc}"
            )
    return stored


def write_pull_report(store: CorpusStore, res: PullResult) -> list[str]:
    """``reports/annotate_pull.{json,md}`` (review queue: ``annotate_pull_review.{json,md}``,
    so that the two pulls keep their own report): counts per annotator and status, problems."""
    folder = store.root / "reports"
    by = store.query(
        "SELECT annotator, status, COUNT(*) AS n, AVG(lead_time) AS lead FROM annotations "
        "WHERE project_key = ? GROUP BY annotator, status ORDER BY annotator, status",
        (res.project_key,),
    )
    table = [dict(r) for r in by]
    data = {"pull": res.to_dict() | {"report_files": []}, "by_annotator": table}
    stem = "annotate_pull" if res.queue == "annotate" else f"annotate_pull_{res.queue}"
    jpath, mpath = folder / f"{stem}.json", folder / f"{stem}.md"
    atomic_write_text(jpath, json.dumps(data, indent=2, sort_keys=True))
    lines = [
        f"# annotate pull — {res.title} ({res.queue})",
        "",
        f"{res.annotations} annotation(s) on {res.tasks} task(s): {res.new} new, "
        f"{res.updated} updated, {res.unchanged} unchanged; {res.skipped} skipped; "
        f"{res.snapped_spans} span(s) snapped to tokens."
        + (
            f" {res.reviewed_gold} reviewed post(s) stored as gold."
            if res.queue == "review"
            else ""
        ),
        "",
        "| annotator | status | annotations | mean lead time (s) |",
        "|---|---|---:|---:|",
        *[f"| {r['annotator']} | {r['status']} | {r['n']} | {_num(r['lead'])} |" for r in table],
    ]
    if res.problems:
        lines += ["", "## Not converted to tags (spans kept)", ""]
        lines += [f"- {p}" for p in res.problems]
    atomic_write_text(mpath, "\n".join(lines) + "\n")
    return [str(jpath), str(mpath)]


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"
