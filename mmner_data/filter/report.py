"""The filter report in ``<store>/reports/``: counts (JSON + markdown), a score histogram per
language with its threshold drawn, and a contact sheet of the lowest- and highest-scoring pairs.

Files: ``filter_report.json``, ``filter_report.md``, ``filter_hist_<lang>.png``,
``filter_contact_sheet.png``. All are written atomically and describe the current selection.
"""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from typing import Any

from mmner_data.filter.select import SelectionSummary
from mmner_data.store import CorpusStore, atomic_write_bytes, atomic_write_text

THUMB = 160
CELL_W = 200
CAPTION_H = 64


def _snippet(text: str, n: int = 90) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[: n - 1] + "…"


def _scores_by_lang(store: CorpusStore, model_id: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in store.query(
        "SELECT s.lang, s.score FROM relevance_selection s "
        "WHERE s.model_id=? AND s.score IS NOT NULL ORDER BY s.lang, s.score",
        (model_id,),
    ):
        out.setdefault(r["lang"] or "und", []).append(float(r["score"]))
    return out


def _stats(values: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(values, dtype=float)
    q = np.quantile(a, [0.1, 0.5, 0.9])
    return {
        "n": len(values),
        "min": round(float(a.min()), 4),
        "p10": round(float(q[0]), 4),
        "median": round(float(q[1]), 4),
        "mean": round(float(a.mean()), 4),
        "p90": round(float(q[2]), 4),
        "max": round(float(a.max()), 4),
    }


def extremes(store: CorpusStore, model_id: str, n: int) -> dict[str, list[dict[str, Any]]]:
    """The ``n`` lowest- and highest-scoring pairs of the current selection, with their image."""
    sql = (
        "SELECT s.post_id, s.lang, s.score, s.status, p.text, i.path FROM relevance_selection s "
        "JOIN posts p ON p.post_id=s.post_id "
        "JOIN relevance r ON r.post_id=s.post_id AND r.model_id=s.model_id "
        "JOIN images i ON i.sha256=r.image_sha256 "
        "WHERE s.model_id=? AND s.score IS NOT NULL ORDER BY s.score {order}, s.post_id LIMIT ?"
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for key, order in (("lowest", "ASC"), ("highest", "DESC")):
        out[key] = [
            {
                "post_id": r["post_id"],
                "lang": r["lang"],
                "score": round(float(r["score"]), 4),
                "status": r["status"],
                "text": _snippet(r["text"]),
                "image": r["path"],
            }
            for r in store.query(sql.format(order=order), (model_id, n))
        ]
    return out


def build_filter_report(
    store: CorpusStore,
    summary: SelectionSummary,
    *,
    scoring: dict[str, Any] | None = None,
    examples: int = 8,
) -> dict[str, Any]:
    """Counts per language, score statistics, the model, and the extreme pairs."""
    model = store.query("SELECT * FROM relevance_models WHERE model_id=?", (summary.model_id,))
    scores = _scores_by_lang(store, summary.model_id)
    report = summary.to_dict()
    report["model"] = dict(model[0]) if model else {"model_id": summary.model_id}
    report["score_stats"] = {lang: _stats(v) for lang, v in sorted(scores.items())}
    report["examples"] = extremes(store, summary.model_id, examples)
    if scoring is not None:
        report["scoring"] = scoring
    return report


def render_markdown(report: dict[str, Any], files: dict[str, str]) -> str:
    """The report as markdown (tables and links to the PNGs)."""
    t = report["total"]
    lines = [
        "# Filter report (CLIP text–image relevance)",
        "",
        f"Model: `{report['model_id']}`; rule: `{report['rule']}`.",
        "",
        f"Kept **{t['kept_total']}** of {t['posts']} posts ({t['kept']} scored and above the "
        f"threshold, {t['kept_with_no_image']} without an image); dropped "
        f"**{t['dropped_low_relevance']}** for low relevance and **{t['image_unreadable']}** "
        "with an unreadable image.",
        "",
        "| language | posts | scored | kept | dropped (low relevance) | no image (kept) | "
        "unreadable | threshold used | median score |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lang, c in report["languages"].items():
        thr = "—" if c["threshold"] is None else f"{c['threshold']:.4f}"
        med = report["score_stats"].get(lang, {}).get("median")
        lines.append(
            f"| {lang} | {c['posts']} | {c['scored']} | {c['kept']} | "
            f"{c['dropped_low_relevance']} | {c['no_image']} | {c['image_unreadable']} | {thr} | "
            f"{'—' if med is None else f'{med:.4f}'} |"
        )
    lines += ["", "## Score histograms", ""]
    for lang, name in files.items():
        if lang.startswith("hist_"):
            lines.append(f"![{lang[5:]}]({name})")
    if "contact_sheet" in files:
        lines += [
            "",
            "## Lowest- and highest-scoring pairs",
            "",
            f"![contact sheet]({files['contact_sheet']})",
        ]
    for key in ("lowest", "highest"):
        if report["examples"][key]:
            lines += ["", f"### {key}", "", "| score | lang | post | text |", "|---:|---|---|---|"]
            for ex in report["examples"][key]:
                text = ex["text"].replace("|", "\\|")
                lines.append(f"| {ex['score']:.4f} | {ex['lang']} | `{ex['post_id']}` | {text} |")
    return "\n".join(lines) + "\n"


def render_histogram(lang: str, scores: list[float], threshold: float | None) -> bytes:
    """A PNG histogram of one language's scores with the threshold as a vertical line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.hist(scores, bins=min(40, max(5, len(scores) // 2)), color="#4c78a8", edgecolor="white")
    kept = sum(1 for s in scores if threshold is None or s >= threshold)
    if threshold is not None:
        ax.axvline(threshold, color="#d62728", linestyle="--", linewidth=2)
        ax.text(
            threshold,
            ax.get_ylim()[1] * 0.95,
            f" threshold {threshold:.3f}",
            color="#d62728",
            va="top",
        )
    ax.set_title(f"{lang}: {len(scores)} pairs, {kept} kept")
    ax.set_xlabel("cosine(text, image)")
    ax.set_ylabel("pairs")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def render_contact_sheet(store: CorpusStore, examples: dict[str, list[dict[str, Any]]]) -> bytes:
    """Thumbnails of the lowest and highest pairs, each with its score and a text snippet."""
    from PIL import Image, ImageDraw

    rows = [(k, v) for k, v in (("lowest", examples["lowest"]), ("highest", examples["highest"]))]
    ncols = max(1, *(len(v) for _, v in rows))
    label_h = 24
    row_h = label_h + THUMB + CAPTION_H
    sheet = Image.new("RGB", (ncols * CELL_W, row_h * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(12)
    for r, (label, items) in enumerate(rows):
        y0 = r * row_h
        draw.text((6, y0 + 4), f"{label}-scoring pairs", fill="black", font=font)
        for c, ex in enumerate(items):
            x0 = c * CELL_W
            try:
                with Image.open(store.resolve_image(ex["image"])) as im:
                    im.thumbnail((THUMB, THUMB))
                    thumb = im.convert("RGB")
                sheet.paste(thumb, (x0 + (CELL_W - thumb.width) // 2, y0 + label_h))
            except Exception:  # the sheet is a preview; a bad file is drawn as a grey box
                draw.rectangle(
                    (x0 + 20, y0 + label_h, x0 + 20 + THUMB, y0 + label_h + THUMB), fill="#ccc"
                )
            cap = f"{ex['score']:+.3f}  {ex['lang']}  {'kept' if ex['status'] == 'kept' else 'dropped'}"
            ty = y0 + label_h + THUMB + 2
            draw.text((x0 + 6, ty), cap, fill="#d62728", font=font)
            for i, line in enumerate(textwrap.wrap(ex["text"], 30)[:3]):
                draw.text((x0 + 6, ty + 14 * (i + 1)), line, fill="black", font=font)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def _font(size: int) -> Any:
    """DejaVu Sans (shipped with matplotlib: accents, umlauts, ñ), else PIL's default font."""
    from PIL import ImageFont

    try:
        from matplotlib import font_manager

        path = font_manager.findfont("DejaVu Sans", fallback_to_default=True)
        return ImageFont.truetype(path, size)
    except Exception:  # pragma: no cover - a matplotlib without its fonts
        return ImageFont.load_default(size=size)


def write_filter_report(
    store: CorpusStore,
    summary: SelectionSummary,
    *,
    scoring: dict[str, Any] | None = None,
    examples: int = 8,
    out_dir: Path | None = None,
) -> tuple[dict[str, Any], list[Path]]:
    """Write every report file; return the report and the paths written."""
    out = out_dir or (store.root / "reports")
    report = build_filter_report(store, summary, scoring=scoring, examples=examples)
    files: dict[str, str] = {}
    paths: list[Path] = []
    for lang, scores in _scores_by_lang(store, summary.model_id).items():
        name = f"filter_hist_{lang}.png"
        thr = report["languages"].get(lang, {}).get("threshold")
        atomic_write_bytes(out / name, render_histogram(lang, scores, thr))
        files[f"hist_{lang}"] = name
        paths.append(out / name)
    if examples and (report["examples"]["lowest"] or report["examples"]["highest"]):
        name = "filter_contact_sheet.png"
        atomic_write_bytes(out / name, render_contact_sheet(store, report["examples"]))
        files["contact_sheet"] = name
        paths.append(out / name)
    report["files"] = files
    json_path, md_path = out / "filter_report.json", out / "filter_report.md"
    atomic_write_text(json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(md_path, render_markdown(report, files))
    return report, [json_path, md_path, *paths]
