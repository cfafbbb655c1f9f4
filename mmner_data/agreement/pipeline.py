"""The ``agreement`` stage: loaded annotations → items → metrics, report files, adjudication.

One path for both sources (store rows or a Label Studio export): :func:`select_items` turns
:class:`~mmner_data.agreement.load.LoadedAnnotations` into metric items (tokens of
:func:`mmner_data.text.tokenize.tokenize`, BIO tags of
:func:`mmner_data.text.spans.spans_to_tags`), :func:`run_on_loaded` computes, writes and
adjudicates. Gold is written through :mod:`mmner_data.labels` in one transaction; rows a human
review set (method ``reviewed``) are never overwritten by a vote.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mmner_data.agreement.adjudicate import GoldItem, ReviewReason, SpanVote, adjudicate
from mmner_data.agreement.load import (
    LoadedAnnotations,
    PostText,
    load_from_export,
    load_from_store,
)
from mmner_data.agreement.report import report_paths, write_report
from mmner_data.agreement.sequences import (
    EXCLUDING_ALL_O,
    AgreementError,
    AnnotatedItem,
    Score,
    TokenSpan,
    bio_to_spans,
)
from mmner_data.agreement.settings import AgreementSettings, parse_time
from mmner_data.agreement.summary import AgreementReport, SectionResult, agreement_report
from mmner_data.labels import AdjudicationRow, write_gold
from mmner_data.schema import Annotation, EntitySpan
from mmner_data.stage import recorded_run
from mmner_data.store import CorpusStore, atomic_write_text, ensure_dir
from mmner_data.text.spans import SpanError, spans_to_tags
from mmner_data.text.tokenize import Token, tokenize

Progress = Callable[[str, int, int | None], None]

STAGE = "agreement"
BAD_SPANS = ReviewReason.BAD_SPANS.value


# --- items ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ItemSource:
    """Where an item came from: the post, its tokens, and the annotation behind each annotator."""

    post: PostText
    tokens: list[Token]
    keys: dict[str, str]
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Selection:
    """Metric items (sorted by post id), their sources, counts and warnings."""

    items: list[AnnotatedItem]
    sources: dict[str, ItemSource]
    counts: dict[str, int]
    warnings: list[str]


def _when(a: Annotation) -> datetime | None:
    for value in (a.updated_at, a.created_at):
        if value:
            try:
                return parse_time(value)
            except ValueError:
                continue
    return None


def _latest(anns: Sequence[Annotation]) -> Annotation:
    """The most recently updated annotation (then the greatest key, for determinism)."""

    def key(a: Annotation) -> tuple[int, str, str]:
        w = _when(a)
        return (w is not None, w.isoformat() if w else "", a.annotation_key)

    return max(anns, key=key)


def _convert(
    post: PostText,
    tokens: list[Token],
    ann: Annotation,
    problems: Sequence[str],
    settings: AgreementSettings,
) -> tuple[list[str] | None, list[str]]:
    """BIO tags of one annotation and the problems found; tags None when it is unusable."""
    found = list(problems)
    schema = set(settings.entity_types)
    spans: list[EntitySpan] = []
    for s in ann.spans:
        if s.label not in schema:
            found.append(
                f"label {s.label!r} in item {post.post_id!r} (annotator {ann.annotator!r}) is not "
                f"in the schema ({', '.join(settings.entity_types)})"
            )
        else:
            spans.append(s)
    try:
        return spans_to_tags(post.text, tokens, spans, snap=settings.snap), found
    except SpanError as exc:
        found.append(f"item {post.post_id!r} (annotator {ann.annotator!r}): {exc}")
        return None, found


def select_items(
    loaded: LoadedAnnotations, settings: AgreementSettings, progress: Progress | None = None
) -> Selection:
    """Filter and convert annotations into metric items.

    Only ``submitted`` annotations count; of several by one annotator on one post the latest
    (``updated_at``) is used. Filters work on items: ``langs`` on the post's language,
    ``since`` keeps posts with a submitted annotation updated at or after it (and then uses all
    of their annotations, so votes always see every annotator). A skipped or cancelled
    annotation of a kept item is passed on as "did not label" (an empty tag list).
    """
    counts: Counter[str] = Counter()
    counts.update(f"annotations_{a.status}" for a in loaded.annotations)
    by_post: dict[str, dict[str, list[Annotation]]] = {}
    not_submitted: dict[str, set[str]] = {}
    for a in loaded.annotations:
        if a.status == "submitted":
            by_post.setdefault(a.post_id, {}).setdefault(a.annotator, []).append(a)
        else:
            not_submitted.setdefault(a.post_id, set()).add(a.annotator)
    counts["items_with_submissions"] = len(by_post)
    counts.update(loaded.offsets)  # how offsets without value.text were read (exports)
    warnings: list[str] = list(loaded.warnings)
    superseded = sum(len(v) - 1 for anns in by_post.values() for v in anns.values())
    if superseded:
        warnings.append(
            f"{superseded} older annotation(s) by an annotator of a post they annotated again "
            "were ignored (the latest counts)"
        )
    counts["annotations_superseded"] = superseded
    wanted = []
    for post_id in sorted(by_post):
        post = loaded.posts[post_id]
        if settings.langs is not None and post.lang not in settings.langs:
            counts["items_filtered_lang"] += 1
            continue
        latest = {ann: _latest(v) for ann, v in by_post[post_id].items()}
        if settings.since is not None:
            times = [_when(a) for a in latest.values()]
            if not any(t is not None and t >= settings.since for t in times):
                counts["items_filtered_since"] += 1
                continue
        wanted.append((post, latest))
    items: list[AnnotatedItem] = []
    sources: dict[str, ItemSource] = {}
    problems_all: list[str] = []
    for post, latest in wanted:
        tokens = tokenize(post.text)
        src = ItemSource(post, tokens, {})
        tags_by: dict[str, list[str]] = {}
        for annotator in sorted(latest):
            a = latest[annotator]
            tags, problems = _convert(
                post, tokens, a, loaded.problems.get(a.annotation_key, ()), settings
            )
            src.problems += problems
            if tags is None:
                counts["annotations_excluded"] += 1
                continue
            tags_by[annotator] = tags
            src.keys[annotator] = a.annotation_key
        for annotator in sorted(not_submitted.get(post.post_id, set()) - set(latest)):
            tags_by[annotator] = []
        problems_all += src.problems
        items.append(AnnotatedItem(post.post_id, post.lang, [t.text for t in tokens], tags_by))
        sources[post.post_id] = src
        if progress:
            progress("agreement: items", 1, len(wanted))
    counts["items_selected"] = len(items)
    counts["span_problems"] = len(problems_all)
    counts["items_with_excluded_spans"] = sum(1 for s in sources.values() if s.problems)
    if problems_all and settings.bad_spans == "error":
        more = f" (and {len(problems_all) - 1} more)" if len(problems_all) > 1 else ""
        raise AgreementError(
            f"{problems_all[0]}{more}; fix the annotation, add a missing label to the recipe's "
            "entity_types (or --entity-types), or pass --bad-spans exclude"
        )
    if problems_all:
        warnings.append(
            f"{len(problems_all)} span problem(s) in {counts['items_with_excluded_spans']} "
            f"item(s) excluded (bad_spans=exclude); those items go to review. First: "
            f"{problems_all[0]}"
        )
    return Selection(items, sources, dict(counts), warnings)


# --- adjudication rows ---------------------------------------------------------------------


def _char_span(tokens: Sequence[Token], s: TokenSpan) -> EntitySpan:
    return EntitySpan(tokens[s.start].start, tokens[s.end - 1].end, s.type)


def _vote(tokens: Sequence[Token], v: SpanVote, decision: str) -> dict[str, Any]:
    c = _char_span(tokens, v.span)
    return {
        "start": c.start,
        "end": c.end,
        "label": c.label,
        "voters": list(v.voters),
        "share": round(v.share, 6),
        "decision": decision,
    }


def adjudication_row(
    gold: GoldItem, item: AnnotatedItem, src: ItemSource, settings: AgreementSettings
) -> AdjudicationRow | None:
    """The table row for one adjudicated item; None for a single annotation not accepted."""
    anns = gold.annotators
    toks = src.tokens
    prov: dict[str, Any] = {
        "annotators": list(anns),
        "annotation_keys": {a: src.keys[a] for a in anns},
        "agreement": None if gold.agreement is None else round(gold.agreement, 6),
        "rule": {
            "threshold": settings.threshold,
            "min_annotators": settings.min_annotators,
            "review_below": settings.review_below,
        },
    }
    reasons: list[str] = []
    if src.problems:
        prov["excluded"] = list(src.problems)
        reasons.append(f"{BAD_SPANS}: {len(src.problems)} span problem(s) excluded")
    if not anns:
        return None
    if len(anns) == 1:
        if not settings.accept_single:
            return None
        spans = tuple(_char_span(toks, s) for s in bio_to_spans(item.by_annotator[anns[0]]))
        prov["votes"] = [
            {**s.to_json(), "voters": list(anns), "share": 1.0, "decision": "gold"} for s in spans
        ]
        status = "review" if reasons else "gold"
        return AdjudicationRow(
            gold.item_id, status, spans, "single", "; ".join(reasons) or None, prov
        )
    votes = [_vote(toks, v, "gold") for v in gold.provenance]
    votes += [_vote(toks, v, "rejected") for v in gold.rejected]
    votes += [_vote(toks, v, "review") for e in gold.review for v in e.candidates]
    prov["votes"] = sorted(votes, key=lambda d: (d["start"], d["end"], d["label"], d["decision"]))
    prov["review"] = [{"reason": str(e.reason), "detail": e.detail} for e in gold.review]
    reasons = [f"{e.reason}: {e.detail}" for e in gold.review] + reasons
    unanimous = not gold.rejected and all(v.share == 1.0 for v in gold.provenance)
    method = "unanimous" if unanimous and not reasons else "majority"
    status = "review" if reasons else "gold"
    spans = tuple(_char_span(toks, s) for s in gold.spans)
    return AdjudicationRow(gold.item_id, status, spans, method, "; ".join(reasons) or None, prov)


def adjudication_rows(sel: Selection, settings: AgreementSettings) -> list[AdjudicationRow]:
    """Majority vote over every selected item (see :mod:`mmner_data.agreement.adjudicate`)."""
    result = adjudicate(
        sel.items,
        threshold=settings.threshold,
        min_annotators=settings.min_annotators,
        min_item_agreement=settings.review_below,
        labels=settings.entity_types,
    )
    rows = []
    for gold, item in zip(result.items, sel.items, strict=True):
        row = adjudication_row(gold, item, sel.sources[item.item_id], settings)
        if row is not None:
            rows.append(row)
    return rows


def review_queue(store: CorpusStore, langs: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Items waiting for a human (``status='review'``), for a Label Studio review project.

    Each: ``post_id``, ``text``, ``lang``, ``reason``, the spans already decided (``gold``)
    and every candidate span with its voters and decision (``votes``, character offsets).
    """
    rows = store.query(
        "SELECT a.post_id, a.spans_json, a.reason, a.provenance_json, p.text, p.lang "
        "FROM adjudication a JOIN posts p ON p.post_id = a.post_id "
        "WHERE a.status = 'review' ORDER BY a.post_id"
    )
    out = []
    for r in rows:
        if langs and r["lang"] not in langs:
            continue
        prov = json.loads(r["provenance_json"])
        out.append(
            {
                "post_id": r["post_id"],
                "text": r["text"],
                "lang": r["lang"],
                "reason": r["reason"],
                "gold": json.loads(r["spans_json"]),
                "votes": prov.get("votes", []),
                "annotators": prov.get("annotators", []),
            }
        )
    return out


# --- the run -------------------------------------------------------------------------------


def _headline(s: SectionResult) -> dict[str, Any]:
    def v(score: Score | None) -> float | None:
        return None if score is None or score.value is None else round(score.value, 6)

    out: dict[str, Any] = {
        "n_items": s.n_items,
        "n_annotators": s.n_annotators,
        "n_tokens": s.n_tokens,
    }
    if s.error:
        return {**out, "error": s.error}
    return {
        **out,
        "span_f1_exact": v(s.span_f1["exact"].mean),
        "span_f1_partial": v(s.span_f1["partial"].mean),
        "cohen_kappa_excl_all_o": v(s.cohen["type"][EXCLUDING_ALL_O].mean),
        "fleiss_kappa_excl_all_o": v(s.fleiss.get("type", {}).get(EXCLUDING_ALL_O)),
        "krippendorff_alpha_excl_all_o": v(s.krippendorff["type"][EXCLUDING_ALL_O]),
        "cohen_kappa_all_tokens": v(s.cohen["type"]["all_tokens"].mean),
    }


@dataclass(slots=True)
class AgreementResult:
    """What one ``agreement`` run did: inputs, the metric report, adjudication, files."""

    source: str
    settings: dict[str, Any]
    counts: dict[str, int]
    report: AgreementReport
    adjudication: dict[str, Any] | None
    files: list[str]
    warnings: list[str]
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the full metric report is in ``agreement.json``)."""
        return {
            "stage": STAGE,
            "source": self.source,
            "dry_run": self.dry_run,
            "settings": self.settings,
            "counts": self.counts,
            "labels": list(self.report.labels),
            "overall": _headline(self.report.overall),
            "by_lang": {k: _headline(s) for k, s in self.report.by_lang.items()},
            "adjudication": self.adjudication,
            "files": self.files,
            "warnings": self.warnings + list(self.report.warnings),
        }


def _settings_dict(settings: AgreementSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json")


def _adjudication_summary(rows: Sequence[AdjudicationRow], sel: Selection) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    for r in rows:  # items per reason (an item may have several)
        reasons.update({e["reason"] for e in r.provenance.get("review", [])})
        if "excluded" in r.provenance:
            reasons[BAD_SPANS] += 1
    n_single = sum(
        1 for it in sel.items if sum(1 for t in it.by_annotator.values() if t) == 1
    ) - sum(1 for r in rows if r.method == "single")
    return {
        "rows": len(rows),
        "gold": sum(r.status == "gold" for r in rows),
        "review": sum(r.status == "review" for r in rows),
        "by_method": dict(sorted(Counter(r.method for r in rows).items())),
        "review_reasons": dict(sorted(reasons.items())),
        "single_annotation_items_not_adjudicated": n_single,
    }


def _markdown_extra(result: AgreementResult) -> str:
    d = result.to_dict()
    lines = ["", "## Run", "", f"Source: {result.source}.", ""]
    lines += ["| count | value |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(result.counts.items())]
    if result.warnings:
        lines += ["", "Input warnings:", "", *[f"- {w}" for w in result.warnings]]
    adj = d["adjudication"]
    if adj:
        lines += ["", "## Adjudication", "", "| | count |", "|---|---:|"]
        lines += [f"| gold | {adj['gold']} |", f"| review | {adj['review']} |"]
        lines += [f"| method {k} | {v} |" for k, v in adj["by_method"].items()]
        lines += [f"| review: {k} (items) | {v} |" for k, v in adj["review_reasons"].items()]
        lines.append(
            f"| single annotation, not adjudicated | "
            f"{adj['single_annotation_items_not_adjudicated']} |"
        )
        if "written" in adj:
            lines += [f"| store: {k} | {v} |" for k, v in adj["written"].items()]
        if "store" in adj:
            lines += [f"| store holds: {k} | {v} |" for k, v in adj["store"].items()]
    return "\n".join(lines) + "\n"


def run_on_loaded(
    loaded: LoadedAnnotations,
    settings: AgreementSettings,
    *,
    out_dir: Path,
    store: CorpusStore | None = None,
    adjudication_file: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> AgreementResult:
    """Metrics and report files for ``loaded``; adjudication into ``store`` (or a JSONL file
    ``out_dir/adjudication.jsonl`` with ``adjudication_file``) when ``settings.adjudicate``.

    Raises :class:`AgreementError` (one line) when agreement cannot be computed; nothing is
    written then.
    """
    sel = select_items(loaded, settings, progress)
    if not sel.items:
        raise AgreementError(
            f"no submitted annotation to compare in {loaded.source} "
            f"({_filter_note(settings, sel.counts)})"
        )
    report = agreement_report(sel.items, settings.min_annotators, settings.entity_types)
    result = AgreementResult(
        loaded.source, _settings_dict(settings), sel.counts, report, None, [], sel.warnings, dry_run
    )
    rows: list[AdjudicationRow] = []
    if settings.adjudicate and (store is not None or adjudication_file):
        rows = adjudication_rows(sel, settings)
        result.adjudication = _adjudication_summary(rows, sel)
    if dry_run:
        return result
    ensure_dir(out_dir)  # before the store is written: an --out under a file changes nothing
    if result.adjudication is not None and store is not None:
        result.adjudication["written"] = write_gold(store, rows)
        # what the store holds now (reviewed gold from `annotate pull --queue review` is kept, so
        # this run's gold/review counts alone under-count the gold)
        held = {
            r["status"]: int(r["n"])
            for r in store.query("SELECT status, COUNT(*) AS n FROM adjudication GROUP BY status")
        }
        result.adjudication["store"] = {
            "gold": int(held.get("gold", 0)),
            "review": int(held.get("review", 0)),
        }
        if progress:
            progress("agreement: adjudicate", len(rows), len(rows))
    if result.adjudication is not None and store is None:
        path = out_dir / "adjudication.jsonl"
        atomic_write_text(
            path,
            "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in rows),
        )
        result.files.append(str(path))
    planned = report_paths(out_dir)
    result.files[:0] = [str(p) for p in planned.all()]
    write_report(
        report, out_dir, extra_json=result.to_dict(), extra_markdown=_markdown_extra(result)
    )
    return result


def _filter_note(settings: AgreementSettings, counts: Mapping[str, int]) -> str:
    parts = [f"{counts.get('items_with_submissions', 0)} item(s) with a submitted annotation"]
    if settings.langs:
        parts.append(f"{counts.get('items_filtered_lang', 0)} outside --lang")
    if settings.since:
        parts.append(f"{counts.get('items_filtered_since', 0)} not updated since --since")
    return ", ".join(parts)


def run_agreement(
    store: CorpusStore,
    settings: AgreementSettings,
    progress: Progress | None = None,
    *,
    dry_run: bool = False,
) -> AgreementResult:
    """The stage over the store: annotations table → ``<store>/reports/agreement.*`` and the
    ``adjudication`` table (when ``settings.adjudicate``). Recorded in ``runs``."""
    out_dir = Path(settings.out_dir) if settings.out_dir else store.root / "reports"
    loaded = load_from_store(store)
    if dry_run:
        return run_on_loaded(loaded, settings, out_dir=out_dir, store=store, dry_run=True)
    with recorded_run(store, STAGE, _settings_dict(settings)) as rec:
        result = run_on_loaded(loaded, settings, out_dir=out_dir, store=store, progress=progress)
        rec.finish(result)
    return result


def run_on_export(
    path: str | Path,
    settings: AgreementSettings,
    out_dir: str | Path,
    progress: Progress | None = None,
    *,
    dry_run: bool = False,
) -> AgreementResult:
    """The stage over a Label Studio JSON export: reports (and ``adjudication.jsonl`` when
    ``settings.adjudicate``) under ``out_dir``; no store involved."""
    loaded = load_from_export(path)
    return run_on_loaded(
        loaded,
        settings,
        out_dir=Path(out_dir),
        adjudication_file=True,
        dry_run=dry_run,
        progress=progress,
    )
