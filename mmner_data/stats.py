"""``mmner-data stats``: how many posts each stage has kept, dropped (and why), per language.

:func:`compute_stats` reads the store only; :func:`write_stats` writes ``reports/stats.json``,
``stats.md`` and ``stats.png`` (one horizontal bar per stage/item, stacked by language).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmner_data.store import CorpusStore, atomic_write_text

Table = dict[str, dict[str, dict[str, int]]]  # stage → item → lang → count
STAGES: tuple[str, ...] = (
    "collect",
    "fetch",
    "filter",
    "preannotate",
    "annotate",
    "agreement",
    "export",
)


def _add(table: Table, stage: str, item: str, lang: str | None, n: int) -> None:
    cell = table.setdefault(stage, {}).setdefault(item, {})
    key = lang or "und"
    cell[key] = cell.get(key, 0) + int(n)


def compute_stats(store: CorpusStore) -> dict[str, Any]:
    """Counts per stage, item (status or drop reason) and language, for the whole store."""
    t: Table = {}
    q = store.query
    for r in q(
        "SELECT status, drop_reason, lang, COUNT(*) n FROM posts GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    ):
        item = r["status"] if r["status"] != "dropped" else f"dropped: {r['drop_reason']}"
        _add(t, "collect", item, r["lang"], r["n"])
    for r in q("SELECT stage, reason, lang, COUNT(*) n FROM drops GROUP BY 1, 2, 3"):
        if r["stage"] == "collect":
            _add(t, "collect", f"dropped: {r['reason']}", r["lang"], r["n"])
        elif r["stage"] == "fetch":
            _add(t, "fetch", f"image failed: {r['reason']}", r["lang"], r["n"])
    for r in q("SELECT status, lang, COUNT(*) n FROM relevance_selection GROUP BY 1, 2"):
        _add(t, "filter", r["status"], r["lang"], r["n"])
    for r in q(
        "SELECT p.lang, COUNT(DISTINCT pr.post_id) n FROM predictions pr "
        "JOIN posts p ON p.post_id = pr.post_id GROUP BY 1"
    ):
        _add(t, "preannotate", "posts with predictions", r["lang"], r["n"])
    for r in q(
        "SELECT p.lang, COUNT(DISTINCT lt.post_id) n FROM ls_tasks lt "
        "JOIN posts p ON p.post_id = lt.post_id GROUP BY 1"
    ):
        _add(t, "annotate", "posts pushed", r["lang"], r["n"])
    for r in q(
        "SELECT a.status, p.lang, COUNT(*) n FROM annotations a "
        "JOIN posts p ON p.post_id = a.post_id GROUP BY 1, 2"
    ):
        _add(t, "annotate", f"annotations {r['status']}", r["lang"], r["n"])
    for r in q(
        "SELECT a.status, p.lang, COUNT(*) n FROM adjudication a "
        "JOIN posts p ON p.post_id = a.post_id GROUP BY 1, 2"
    ):
        _add(t, "agreement", f"adjudicated {r['status']}", r["lang"], r["n"])
    last_export = q(
        "SELECT summary_json, finished_at FROM runs WHERE stage='export' AND status='ok' "
        "ORDER BY run_id DESC LIMIT 1"
    )
    export_info = None
    if last_export:
        summary = json.loads(last_export[0]["summary_json"] or "{}")
        for split, langs in (summary.get("counts") or {}).items():
            for lang, n in langs.items():
                _add(t, "export", f"exported: {split}", lang, n)
        export_info = {"out": summary.get("out"), "finished_at": last_export[0]["finished_at"]}
    langs = sorted({lang for items in t.values() for c in items.values() for lang in c})
    ordered = {
        s: dict(sorted(t[s].items(), key=lambda kv: (kv[0].startswith("dropped"), kv[0])))
        for s in STAGES
        if s in t
    }
    return {"languages": langs, "stages": ordered, "last_export": export_info}


def rows(stats: Mapping[str, Any]) -> list[list[Any]]:
    """``[stage, item, n per language…, total]`` rows in pipeline order."""
    out = []
    for stage, items in stats["stages"].items():
        for item, cell in items.items():
            counts = [cell.get(lang, 0) for lang in stats["languages"]]
            out.append([stage, item, *counts, sum(counts)])
    return out


def render_markdown(stats: Mapping[str, Any]) -> str:
    header = ["stage", "item", *stats["languages"], "total"]
    lines = ["# Corpus statistics", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for row in rows(stats):
        lines.append("| " + " | ".join(str(x) for x in row) + " |")
    if stats.get("last_export"):
        lines += ["", f"Last export: `{stats['last_export']['out']}`."]
    return "\n".join(lines) + "\n"


def render_png(stats: Mapping[str, Any], path: Path) -> Path:
    """Horizontal bars (one per stage/item), stacked by language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = rows(stats)
    langs = stats["languages"]
    labels = [f"{r[0]} · {r[1]}" for r in data]
    height = max(2.5, 0.32 * len(data) + 1.2)
    fig, ax = plt.subplots(figsize=(9, height))
    left = [0] * len(data)
    for j, lang in enumerate(langs):
        values = [r[2 + j] for r in data]
        ax.barh(range(len(data)), values, left=left, label=lang)
        left = [a + b for a, b in zip(left, values, strict=True)]
    for i, total in enumerate(left):
        ax.text(total, i, f" {total}", va="center", fontsize=8)
    ax.set_yticks(range(len(data)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("posts (annotations for 'annotations …', images for 'fetch')")
    ax.set_title("mmner-data: counts per stage, item and language")
    if langs:
        ax.legend(title="language", fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_stats(store: CorpusStore, stats: Mapping[str, Any] | None = None) -> list[Path]:
    """``reports/stats.json``, ``stats.md`` and ``stats.png``; returns their paths."""
    stats = stats if stats is not None else compute_stats(store)
    folder = store.root / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    j = folder / "stats.json"
    atomic_write_text(j, json.dumps(stats, indent=2, sort_keys=False) + "\n")
    md = folder / "stats.md"
    atomic_write_text(md, render_markdown(stats))
    png = render_png(stats, folder / "stats.png")
    return [j, md, png]
