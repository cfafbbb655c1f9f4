"""Load annotations for agreement: from the store, or from a Label Studio JSON export file.

Both loaders return the same :class:`LoadedAnnotations` (posts with their text and language,
and one :class:`~mmner_data.schema.Annotation` per annotator × post with character spans), so
everything downstream is one code path and the numbers are the same whichever the source.

Annotators are named ``ls:<user id>`` in both: the Label Studio user id, never an e-mail.

Offsets in a Label Studio export follow Label Studio's convention: code points (what Python
indexes), since the front end stopped counting UTF-16 code units (label-studio#1559,
label-studio-frontend#308); the two differ only after a character outside the BMP (most emoji).
A region's ``value.text`` verifies its offsets (:func:`~mmner_data.text.spans.align_to_text`).
A region without it, in a text with such characters, is read by the evidence of the same file
(regions with ``value.text`` whose offsets only match as UTF-16 mean an old client), else as code
points; such spans are counted and named in a warning, never silently guessed.
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
from mmner_data.text.spans import SpanError, _utf16_to_index, align_to_text

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
    warnings: list[str] = field(default_factory=list)
    # how offsets without value.text were read (export files only): counts per interpretation
    offsets: dict[str, int] = field(default_factory=dict)


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


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _has_astral(text: str) -> bool:
    """True when code points and UTF-16 code units differ somewhere in ``text``."""
    return any(ord(ch) > 0xFFFF for ch in text)


def _utf16_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    s16, e16 = _utf16_to_index(text, start), _utf16_to_index(text, end)
    if s16 is None or e16 is None or not 0 <= s16 <= e16:
        return None
    return s16, e16


@dataclass
class _Offsets:
    """Evidence and decisions about offset units for one export file."""

    codepoint_evidence: int = 0  # regions with value.text that match only as code points
    utf16_evidence: int = 0  # … only as UTF-16 code units
    counts: dict[str, int] = field(default_factory=dict)

    def note(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def observe(self, text: str, start: int, end: int, quote: str) -> None:
        cp = 0 <= start <= end <= len(text) and text[start:end] == quote
        u16 = _utf16_span(text, start, end)
        as16 = u16 is not None and text[u16[0] : u16[1]] == quote
        if cp and not as16:
            self.codepoint_evidence += 1
        elif as16 and not cp:
            self.utf16_evidence += 1

    def read(self, text: str, start: int, end: int) -> tuple[int, int]:
        """Offsets without a quote, as code points unless the range or the file says UTF-16."""
        if not _has_astral(text) or end <= _utf16_units_before_first_astral(text):
            return start, end  # both readings agree
        u16 = _utf16_span(text, start, end)
        if u16 is not None and end > len(text):
            self.note("spans_read_as_utf16_out_of_range")
            return u16
        if u16 is not None and self.utf16_evidence > self.codepoint_evidence:
            self.note("spans_read_as_utf16_by_evidence")
            return u16
        if self.codepoint_evidence:
            self.note("spans_read_as_codepoints_by_evidence")
        else:
            self.note("spans_read_as_codepoints_unverified")
        return start, end

    def warnings(self) -> list[str]:
        out = []
        n = self.counts.get("spans_read_as_codepoints_unverified", 0)
        if n:
            out.append(
                f"{n} span(s) without value.text, after an emoji or other non-BMP character, were "
                "read as code points (Label Studio's convention); nothing in the export confirms "
                "it (an old client counting UTF-16 units would put them 1 character per emoji "
                "further right): export with value.text to verify"
            )
        m = sum(v for k, v in self.counts.items() if k.startswith("spans_read_as_utf16"))
        if m:
            out.append(
                f"{m} span(s) without value.text were read as UTF-16 code units (an old Label "
                "Studio client): their code-point reading ran past the text or the file's other "
                "regions match only that way"
            )
        return out


def _utf16_units_before_first_astral(text: str) -> int:
    for i, ch in enumerate(text):
        if ord(ch) > 0xFFFF:
            return i  # offsets up to the first astral character agree in both units
    return len(text)


def _region_spans(
    region: Mapping[str, Any], text: str, where: str, problems: list[str], offsets: _Offsets
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
    if not _is_int(start) or not _is_int(end):
        problems.append(f"{where}: region without integer start/end offsets")
        return []
    if not 0 <= start < end or end > 4 * len(text) + 4:
        problems.append(f"{where}: offsets {start}-{end} are outside the text")
        return []
    quote = value.get("text")
    if isinstance(quote, str) and quote:
        try:
            start, end = align_to_text(text, start, end, quote)
        except SpanError as exc:
            problems.append(f"{where}: {exc}")
            return []
    else:
        start, end = offsets.read(text, start, end)
        if end > len(text):
            problems.append(f"{where}: offsets {start}-{end} run past the text")
            return []
    return [EntitySpan(start, end, lab) for lab in labels]


def _regions(a: Mapping[str, Any]) -> list[Any]:
    result = a.get("result")
    return result if isinstance(result, list) else []


def _observe_file(tasks: list[Any], offsets: _Offsets) -> None:
    """Collect offset-unit evidence from every region that carries its text."""
    for task in tasks:
        data = task.get("data") if isinstance(task, Mapping) else None
        text = data.get("text") if isinstance(data, Mapping) else None
        anns = task.get("annotations") if isinstance(task, Mapping) else None
        if not isinstance(text, str) or not _has_astral(text) or not isinstance(anns, list):
            continue
        for a in anns:
            for region in _regions(a) if isinstance(a, Mapping) else []:
                value = region.get("value") if isinstance(region, Mapping) else None
                if not isinstance(value, Mapping):
                    continue
                start, end, quote = value.get("start"), value.get("end"), value.get("text")
                if _is_int(start) and _is_int(end) and isinstance(quote, str) and quote:
                    offsets.observe(text, start, end, quote)


def _task_annotations(
    task: Mapping[str, Any],
    i: int,
    file_key: str,
    post: PostText,
    loaded: LoadedAnnotations,
    offsets: _Offsets,
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
        result = a.get("result")
        if result is not None and not isinstance(result, list):
            raise LoadError(
                f"annotation {key!r} (task #{i}): 'result' is a {type(result).__name__}, "
                "not a list of regions"
            )
        problems: list[str] = []
        spans: list[EntitySpan] = []
        for k, region in enumerate(result or []):
            if isinstance(region, Mapping) and region.get("type") == "labels":
                where = f"item {post.post_id!r} (annotator {annotator!r}), region {k}"
                spans += _region_spans(region, post.text, where, problems, offsets)
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
                created_at=_str_or_none(a.get("created_at")),
                updated_at=_str_or_none(a.get("updated_at")),
            )
        )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


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
    except IsADirectoryError:
        raise LoadError(f"{p} is a folder, not a Label Studio JSON export file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LoadError(f"{p}: not a readable JSON file ({exc})") from None
    except RecursionError:
        raise LoadError(f"{p}: JSON nested too deeply to be a Label Studio export") from None
    if not isinstance(tasks, list):
        raise LoadError(f"{p}: a Label Studio JSON export is a list of tasks")
    loaded = LoadedAnnotations(f"export {p}", {}, [])
    offsets = _Offsets()
    _observe_file(tasks, offsets)
    for i, task in enumerate(tasks):
        if not isinstance(task, Mapping) or not isinstance(task.get("data"), Mapping):
            raise LoadError(f"{p}: task #{i} has no 'data' object")
        data = task["data"]
        text = data.get("text")
        if not isinstance(text, str):
            raise LoadError(f"{p}: task #{i} has no data.text")
        raw_id = data.get("post_id")
        if raw_id is not None and not isinstance(raw_id, str | int):
            raise LoadError(f"{p}: task #{i}: data.post_id is not a string")
        task_id = task.get("id", i)
        task_id = task_id if isinstance(task_id, str | int) else i
        post_id = str(raw_id or f"ls-task:{task_id}")
        lang = data.get("lang")
        lang = lang.lower() if isinstance(lang, str) and lang else UNKNOWN_LANG
        post = PostText(post_id, text, lang)
        known = loaded.posts.setdefault(post_id, post)
        if known.text != text:
            raise LoadError(f"{p}: post {post_id!r} appears in two tasks with different texts")
        _task_annotations(task, i, p.name, known, loaded, offsets)
    loaded.offsets = dict(sorted(offsets.counts.items()))
    loaded.warnings += offsets.warnings()
    return loaded


def iter_submitted(annotations: Iterable[Annotation]) -> Iterable[Annotation]:
    """The annotations that count: status ``submitted``."""
    return (a for a in annotations if a.status == "submitted")
