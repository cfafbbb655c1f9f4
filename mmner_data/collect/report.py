"""The drop report: what left the pipeline, why, per language, with examples (JSON + markdown)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from mmner_data.store import CorpusStore, atomic_write_text

EXAMPLES_PER_REASON = 3


def build_drop_report(store: CorpusStore) -> dict[str, Any]:
    """Counts per reason × language and a few examples of each, from the whole store."""
    by_reason: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    examples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in store.query(
        "SELECT post_id, lang, drop_reason, dup_of, text FROM posts WHERE status='dropped' "
        "ORDER BY ingest_seq"
    ):
        reason = r["drop_reason"]
        by_reason[reason][r["lang"] or "und"] += 1
        if len(examples[reason]) < EXAMPLES_PER_REASON:
            ex = {"item": r["post_id"], "lang": r["lang"], "text": _snippet(r["text"])}
            if r["dup_of"]:
                ex["dup_of"] = r["dup_of"]
            if reason == "image_failed":
                ex["detail"] = _image_errors(store, r["post_id"])
            examples[reason].append(ex)
    for r in store.query(
        "SELECT item_id, lang, reason, detail FROM drops WHERE stage='collect' ORDER BY item_id"
    ):
        by_reason[r["reason"]][r["lang"] or "und"] += 1
        if len(examples[r["reason"]]) < EXAMPLES_PER_REASON:
            examples[r["reason"]].append({"item": r["item_id"], "detail": r["detail"]})
    image_errors: dict[str, int] = defaultdict(int)
    for r in store.query("SELECT reason, COUNT(*) FROM drops WHERE stage='fetch' GROUP BY reason"):
        image_errors[r[0]] = r[1]
    kept = {
        (r[0] or "und"): r[1]
        for r in store.query("SELECT lang, COUNT(*) FROM posts WHERE status='kept' GROUP BY lang")
    }
    return {
        "source_errors": last_source_errors(store),
        "kept": dict(sorted(kept.items())),
        "kept_total": sum(kept.values()),
        "dropped": {k: dict(sorted(v.items())) for k, v in sorted(by_reason.items())},
        "dropped_total": sum(sum(v.values()) for v in by_reason.values()),
        "image_errors": dict(sorted(image_errors.items())),
        "examples": {k: v for k, v in sorted(examples.items())},
    }


def last_source_errors(store: CorpusStore) -> dict[str, str]:
    """Sources that stopped with an error in the last finished crawl (``{name: one line}``)."""
    row = store.conn.execute(
        "SELECT summary_json FROM runs WHERE stage='collect' AND status != 'running' "
        "AND COALESCE(json_extract(params_json, '$.skip_crawl'), 0) = 0 "
        "ORDER BY run_id DESC LIMIT 1"
    ).fetchone()
    if row is None or not row[0]:
        return {}
    errors = json.loads(row[0]).get("source_errors") or {}
    return {str(k): str(v) for k, v in sorted(errors.items())}


def _image_errors(store: CorpusStore, post_id: str) -> str:
    rows = store.query(
        "SELECT error, detail FROM post_images WHERE post_id=? AND status='failed'", (post_id,)
    )
    return "; ".join(f"{r['error']}: {r['detail']}" for r in rows)


def _cell(text: str) -> str:
    """One markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _snippet(text: str, n: int = 80) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[: n - 1] + "…"


def render_markdown(report: dict[str, Any]) -> str:
    langs = sorted(
        {lang for counts in report["dropped"].values() for lang in counts} | set(report["kept"])
    )
    lines = [
        "# Collect report",
        "",
        f"Kept: **{report['kept_total']}** posts; dropped: **{report['dropped_total']}**.",
        "",
    ]
    header = "| | " + " | ".join(langs) + " | total |"
    lines += [header, "|" + "---|" * (len(langs) + 2)]
    lines.append(
        "| **kept** | "
        + " | ".join(str(report["kept"].get(lang, 0)) for lang in langs)
        + f" | {report['kept_total']} |"
    )
    for reason, counts in report["dropped"].items():
        lines.append(
            f"| {reason} | "
            + " | ".join(str(counts.get(lang, 0)) for lang in langs)
            + f" | {sum(counts.values())} |"
        )
    if report.get("source_errors"):
        lines += ["", "## Sources that stopped (last crawl)", "", "| source | error |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in report["source_errors"].items()]
    if report["image_errors"]:
        lines += ["", "## Image errors", "", "| reason | images |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in report["image_errors"].items()]
    if report["examples"]:
        lines += ["", "## Examples", ""]
        for reason, exs in report["examples"].items():
            lines.append(f"### {reason}")
            for ex in exs:
                extra = "".join(f"; {k}: {ex[k]}" for k in ("dup_of", "detail") if ex.get(k))
                text = f" — {ex['text']}" if ex.get("text") else ""
                lines.append(f"- `{ex['item']}`{text}{extra}".replace("|", "\\|"))
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_drop_report(store: CorpusStore, out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write ``collect_report.json`` and ``collect_report.md`` (atomically) and return them."""
    out = out_dir or (store.root / "reports")
    report = build_drop_report(store)
    json_path, md_path = out / "collect_report.json", out / "collect_report.md"
    atomic_write_text(json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(md_path, render_markdown(report))
    return json_path, md_path
