"""Write an :class:`AgreementResult` to a directory: JSON, a markdown summary and two PNG plots.

Plots use matplotlib's object API on the Agg canvas (no pyplot state, no display needed).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmner_data.agreement.metrics import (
    ALL_TOKENS,
    EXCLUDING_ALL_O,
    MODES,
    VARIANTS,
    AgreementResult,
    Score,
    SectionResult,
)

HEADLINE_MODE = "type"
HEADLINE_VARIANT = EXCLUDING_ALL_O
_VARIANT_NAMES = {ALL_TOKENS: "all", EXCLUDING_ALL_O: "excl. all-O"}


@dataclass(frozen=True, slots=True)
class ReportPaths:
    """Where :func:`write_report` put each file."""

    json: Path
    markdown: Path
    heatmap: Path
    confusion: Path


def _fmt(score: Score | None) -> str:
    if score is None or score.value is None:
        return "n/a"
    return f"{score.value:.3f}"


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write via a temporary file in the same folder, then rename into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _summary_row(s: SectionResult) -> str:
    if s.error:
        return f"| {s.scope} | {s.n_items} | {s.n_annotators} | – | {s.error} |" + " |" * 5
    m, v = HEADLINE_MODE, HEADLINE_VARIANT
    fleiss = s.fleiss.get(m, {}).get(v)
    cells = [
        s.scope,
        str(s.n_items),
        str(s.n_annotators),
        str(s.n_tokens),
        _fmt(s.span_f1["exact"].mean),
        _fmt(s.span_f1["partial"].mean),
        _fmt(s.cohen[m][v].mean),
        _fmt(fleiss),
        _fmt(s.krippendorff[m][v]),
        _fmt(s.cohen[m][ALL_TOKENS].mean),
    ]
    return "| " + " | ".join(cells) + " |"


def render_markdown(result: AgreementResult) -> str:
    """A markdown summary: headline table per scope, every token metric, pairs, entity types."""
    o = result.overall
    lines = [
        "# Inter-annotator agreement",
        "",
        f"Items: {result.n_items_used} used of {result.n_items_input} "
        f"(labelled by at least {result.min_annotators} annotators); "
        f"annotators: {', '.join(o.annotators)}; entity types: {', '.join(result.labels) or '–'}.",
        "",
        "Trust first for NER: **span F1** and **kappa excluding all-O tokens** "
        "(type labels); kappa over all tokens is inflated by the O class.",
        "",
    ]
    if result.warnings:
        lines += ["## Warnings", "", *[f"- {w}" for w in result.warnings], ""]
    lines += [
        "## Summary",
        "",
        "| scope | items | annotators | tokens | span F1 exact | span F1 partial | Cohen κ "
        "(excl. all-O) | Fleiss κ (excl. all-O) | Krippendorff α (excl. all-O) | Cohen κ "
        "(all tokens) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        _summary_row(o),
        *[_summary_row(s) for s in result.by_lang.values()],
        "",
        "κ and α use entity-type labels (O, PER, …); Cohen κ and span F1 are unweighted means "
        "over annotator pairs.",
        "",
        "## Token-level metrics (overall)",
        "",
        "| metric | labels | tokens | value | items | annotators | tokens behind it | note |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for mode in MODES:
        for variant in VARIANTS:
            rows = [
                ("Cohen κ (mean over pairs)", o.cohen[mode][variant].mean),
                ("Fleiss κ", o.fleiss.get(mode, {}).get(variant)),
                ("Krippendorff α", o.krippendorff[mode][variant]),
            ]
            for name, sc in rows:
                if sc is None:
                    continue
                lines.append(
                    f"| {name} | {mode} | {_VARIANT_NAMES[variant]} | {_fmt(sc)} | "
                    f"{sc.n_items} | {sc.n_annotators} | {sc.n_tokens} | {sc.note or ''} |"
                )
    lines += [
        "",
        "## Annotator pairs (overall)",
        "",
        "| pair | items | tokens | Cohen κ (excl. all-O) | Cohen κ (all) | span F1 exact | "
        "span F1 partial | spans |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    m = HEADLINE_MODE
    for sc in o.cohen[m][ALL_TOKENS].pairs:
        a, b = sc.annotators
        excl = o.cohen[m][EXCLUDING_ALL_O].pair(a, b)
        exact = o.span_f1["exact"].pair(a, b)
        partial = o.span_f1["partial"].pair(a, b)
        n_spans = exact.micro.detail.get("n_spans", 0) if exact else 0
        lines.append(
            f"| {a} – {b} | {sc.n_items} | {sc.n_tokens} | {_fmt(excl)} | {_fmt(sc)} | "
            f"{_fmt(exact.micro if exact else None)} | "
            f"{_fmt(partial.micro if partial else None)} | {n_spans} |"
        )
    lines += [
        "",
        "## Span F1 per entity type (overall)",
        "",
        "| type | exact (mean over pairs) | partial (mean over pairs) | exact (pooled) | "
        "partial (pooled) | spans |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    ex, pa = o.span_f1["exact"], o.span_f1["partial"]
    for t, sc in ex.per_type_mean.items():
        pooled = ex.per_type_pooled[t]
        lines.append(
            f"| {t} | {_fmt(sc)} | {_fmt(pa.per_type_mean.get(t))} | {_fmt(pooled)} | "
            f"{_fmt(pa.per_type_pooled.get(t))} | {pooled.detail.get('n_spans', 0)} |"
        )
    return "\n".join(lines) + "\n"


def _text_colour(rgba: Sequence[float] | np.ndarray) -> str:
    """Black on light cells, white on dark ones."""
    r, g, b = (float(c) for c in rgba[:3])
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _pair_matrix(
    annotators: tuple[str, ...], lookup: Callable[[str, str], Score | None]
) -> np.ndarray:
    n = len(annotators)
    m = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            if i != j:
                sc = lookup(annotators[i], annotators[j])
                if sc is not None and sc.value is not None:
                    m[i, j] = sc.value
    return m


def plot_pairwise_heatmap(result: AgreementResult, path: Path) -> Path:
    """Two annotator × annotator heatmaps: Cohen κ (types, excl. all-O) and exact span F1."""
    o = result.overall
    anns = o.annotators
    kappa = o.cohen[HEADLINE_MODE][HEADLINE_VARIANT]
    exact = o.span_f1["exact"]

    def f1_lookup(a: str, b: str) -> Score | None:
        p = exact.pair(a, b)
        return p.micro if p else None

    panels = [
        ("Cohen κ (entity types, excl. all-O)", _pair_matrix(anns, kappa.pair), -1.0),
        ("Span F1 (exact)", _pair_matrix(anns, f1_lookup), 0.0),
    ]
    size = max(4.0, 0.6 * len(anns) + 2.5)
    fig = Figure(figsize=(2 * size + 1, size), layout="constrained")
    FigureCanvasAgg(fig)
    for k, (title, m, vmin) in enumerate(panels):
        ax = fig.add_subplot(1, 2, k + 1)
        im = ax.imshow(np.ma.masked_invalid(m), cmap="RdYlGn", vmin=vmin, vmax=1.0)
        ax.set_xticks(range(len(anns)), anns, rotation=45, ha="right")
        ax.set_yticks(range(len(anns)), anns)
        ax.set_title(title)
        fontsize = 9 if len(anns) <= 8 else 6
        for i in range(len(anns)):
            for j in range(len(anns)):
                text = "—" if i == j else ("n/a" if np.isnan(m[i, j]) else f"{m[i, j]:.2f}")
                colour = "black" if np.isnan(m[i, j]) else _text_colour(im.cmap(im.norm(m[i, j])))
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=colour)
        fig.colorbar(im, ax=ax, shrink=0.8)
    _atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    return path


def plot_confusion(result: AgreementResult, path: Path) -> Path:
    """Token-level entity-type confusion between annotators, pooled over pairs (row-normalised
    colours, raw counts in the cells)."""
    conf = result.overall.confusion
    labels = conf.labels if conf else ["O"]
    counts = np.array(conf.matrix if conf else [[0]], dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = max(4.0, 0.7 * len(labels) + 2.5)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("other annotator")
    ax.set_ylabel("one annotator")
    ax.set_title("Token entity types between annotator pairs")
    for i in range(len(labels)):
        for j in range(len(labels)):
            colour = _text_colour(im.cmap(im.norm(share[i, j])))
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", color=colour)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of row")
    _atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    return path


def write_report(
    result: AgreementResult, out_dir: str | Path, *, stem: str = "agreement"
) -> ReportPaths:
    """Write ``{stem}.json``, ``{stem}.md``, ``{stem}_pairs.png`` and ``{stem}_confusion.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(
        json=out / f"{stem}.json",
        markdown=out / f"{stem}.md",
        heatmap=out / f"{stem}_pairs.png",
        confusion=out / f"{stem}_confusion.png",
    )
    payload = json.dumps(result.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)
    _atomic_write(paths.json, lambda p: p.write_text(payload + "\n", encoding="utf-8"))
    text = render_markdown(result)
    _atomic_write(paths.markdown, lambda p: p.write_text(text, encoding="utf-8"))
    plot_pairwise_heatmap(result, paths.heatmap)
    plot_confusion(result, paths.confusion)
    return paths
