"""Write an :class:`AgreementReport` to a directory: JSON, a markdown summary and two PNG plots.

Plots use matplotlib's object API on the Agg canvas (no pyplot state, no display needed).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmner_data.agreement.sequences import ALL_TOKENS, EXCLUDING_ALL_O, MODES, VARIANTS, Score
from mmner_data.agreement.summary import AgreementReport, SectionResult
from mmner_data.store import ensure_dir

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

    def all(self) -> tuple[Path, Path, Path, Path]:
        return (self.json, self.markdown, self.heatmap, self.confusion)


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


def render_markdown(result: AgreementReport) -> str:
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
    ]
    for section in (o, *result.by_lang.values()):
        if not section.error:
            lines += _token_table(section) + _type_table(section)
    lines += _pairs_table(o)
    return "\n".join(lines) + "\n"


def _token_table(s: SectionResult) -> list[str]:
    """Every token metric of one scope, each with the items, annotators and tokens behind it."""
    lines = [
        f"## Token-level metrics ({s.scope})",
        "",
        "| metric | labels | tokens | value | items | annotators | tokens behind it | note |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for mode in MODES:
        for variant in VARIANTS:
            rows = [
                ("Cohen κ (mean over pairs)", s.cohen[mode][variant].mean),
                ("Fleiss κ", s.fleiss.get(mode, {}).get(variant)),
                ("Krippendorff α", s.krippendorff[mode][variant]),
            ]
            for name, sc in rows:
                if sc is None:
                    continue
                lines.append(
                    f"| {name} | {mode} | {_VARIANT_NAMES[variant]} | {_fmt(sc)} | "
                    f"{sc.n_items} | {sc.n_annotators} | {sc.n_tokens} | {sc.note or ''} |"
                )
    return [*lines, ""]


def _type_table(s: SectionResult) -> list[str]:
    """Span F1 per entity type of one scope."""
    lines = [
        f"## Span F1 per entity type ({s.scope})",
        "",
        "| type | exact (mean over pairs) | partial (mean over pairs) | exact (pooled) | "
        "partial (pooled) | spans | items | annotators |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ex, pa = s.span_f1["exact"], s.span_f1["partial"]
    for t, sc in ex.per_type_mean.items():
        pooled = ex.per_type_pooled[t]
        lines.append(
            f"| {t} | {_fmt(sc)} | {_fmt(pa.per_type_mean.get(t))} | {_fmt(pooled)} | "
            f"{_fmt(pa.per_type_pooled.get(t))} | {pooled.detail.get('n_spans', 0)} | "
            f"{pooled.n_items} | {pooled.n_annotators} |"
        )
    return [*lines, ""]


def _pairs_table(o: SectionResult) -> list[str]:
    """Cohen κ and span F1 of every annotator pair (overall)."""
    lines = [
        f"## Annotator pairs ({o.scope})",
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
    return lines


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


def plot_pairwise_heatmap(result: AgreementReport, path: Path) -> Path:
    """Two annotator × annotator heatmaps: Cohen κ (types, excl. all-O) and exact span F1,
    each cell with its value and the number of items the pair shares."""
    o = result.overall
    anns = o.annotators
    kappa = o.cohen[HEADLINE_MODE][HEADLINE_VARIANT]
    exact = o.span_f1["exact"]

    def f1_lookup(a: str, b: str) -> Score | None:
        p = exact.pair(a, b)
        return p.micro if p else None

    panels = [
        ("Cohen κ (entity types, excl. all-O)", kappa.pair, -1.0),
        ("Span F1 (exact)", f1_lookup, 0.0),
    ]
    size = max(4.0, 0.6 * len(anns) + 2.5)
    fig = Figure(figsize=(2 * size + 1, size), layout="constrained")
    FigureCanvasAgg(fig)
    for k, (title, lookup, vmin) in enumerate(panels):
        m = _pair_matrix(anns, lookup)
        ax = fig.add_subplot(1, 2, k + 1)
        im = ax.imshow(np.ma.masked_invalid(m), cmap="RdYlGn", vmin=vmin, vmax=1.0)
        ax.set_xticks(range(len(anns)), anns, rotation=45, ha="right")
        ax.set_yticks(range(len(anns)), anns)
        ax.set_title(title)
        fontsize = 9 if len(anns) <= 8 else 6
        for i in range(len(anns)):
            for j in range(len(anns)):
                if i == j:
                    text = "—"
                else:
                    sc = lookup(anns[i], anns[j])
                    n = f"\n{sc.n_items} items" if sc is not None else ""
                    text = ("n/a" if np.isnan(m[i, j]) else f"{m[i, j]:.2f}") + n
                colour = "black" if np.isnan(m[i, j]) else _text_colour(im.cmap(im.norm(m[i, j])))
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=colour)
        fig.colorbar(im, ax=ax, shrink=0.8)
    _atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    return path


def plot_confusion(result: AgreementReport, path: Path) -> Path:
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


def report_paths(out_dir: str | Path, stem: str = "agreement") -> ReportPaths:
    """Where :func:`write_report` writes, without writing."""
    out = Path(out_dir)
    return ReportPaths(
        json=out / f"{stem}.json",
        markdown=out / f"{stem}.md",
        heatmap=out / f"{stem}_heatmap.png",
        confusion=out / f"{stem}_confusion.png",
    )


def write_report(
    result: AgreementReport,
    out_dir: str | Path,
    *,
    stem: str = "agreement",
    extra_json: Mapping[str, Any] | None = None,
    extra_markdown: str = "",
) -> ReportPaths:
    """Write ``{stem}.json``, ``{stem}.md``, ``{stem}_heatmap.png`` and ``{stem}_confusion.png``.

    ``extra_json`` goes into the JSON under the key ``"run"``; ``extra_markdown`` is appended
    to the markdown.
    """
    paths = report_paths(out_dir, stem)
    ensure_dir(paths.json.parent)
    data = result.to_dict()
    if extra_json is not None:
        data["run"] = dict(extra_json)
    payload = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False)
    _atomic_write(paths.json, lambda p: p.write_text(payload + "\n", encoding="utf-8"))
    text = render_markdown(result) + extra_markdown
    _atomic_write(paths.markdown, lambda p: p.write_text(text, encoding="utf-8"))
    plot_pairwise_heatmap(result, paths.heatmap)
    plot_confusion(result, paths.confusion)
    return paths
