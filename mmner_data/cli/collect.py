"""``mmner-data collect`` and ``mmner-data dedup``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mmner_data.cli._util import (
    JsonOpt,
    ProgressOpt,
    StoreOpt,
    app,
    console,
    fail,
    load_stage_recipe,
    open_recipe,
    open_store,
    out,
    progress_bars,
    user_errors,
)

RecipeOpt = Annotated[
    Path,
    typer.Option("--recipe", "-r", help="Recipe YAML (sources, languages, quotas, thresholds)."),
]


def _print_collect(summary: dict[str, Any], report: dict[str, Any], paths: list[Path]) -> None:
    table = Table(title="collect", show_lines=False)
    table.add_column("language")
    table.add_column("kept", justify="right")
    for lang, n in report["kept"].items():
        table.add_row(lang, str(n))
    out.print(table)
    drops = Table(title="dropped (whole store)")
    drops.add_column("reason")
    drops.add_column("count", justify="right")
    for reason, counts in report["dropped"].items():
        drops.add_row(reason, str(sum(counts.values())))
    out.print(drops)
    for name, err in summary.get("source_errors", {}).items():
        console.print(
            f"[yellow]source {name} stopped:[/] {escape(str(err))}", highlight=False, soft_wrap=True
        )
    out.print("report: " + ", ".join(str(p) for p in paths))


@app.command()
def collect(
    recipe: RecipeOpt,
    store: StoreOpt = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Crawl sources that an earlier run exhausted again.")
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Retry images that failed with a transient error."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate the recipe and show the plan; fetch nothing."),
    ] = False,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Crawl sources, identify languages, fetch images safely, deduplicate; resumable."""
    from mmner_data.collect.pipeline import run_collect
    from mmner_data.collect.report import build_drop_report, write_drop_report

    with user_errors(), open_recipe(recipe) as rcp:
        if dry_run:
            plan = {
                "recipe": rcp.name,
                "store": str(store or rcp.store),
                "languages": list(rcp.languages),
                "quotas": rcp.quotas,
                "sources": [{"name": s.name, "type": s.type} for s in rcp.sources],
            }
            out.print_json(json.dumps(plan)) if json_out else out.print(plan)
            return
        with open_store(rcp, store) as st, progress_bars(progress and not json_out) as bar:
            summary = run_collect(rcp, st, progress=bar, refresh=refresh, retry_failed=retry_failed)
            paths = list(write_drop_report(st))
            report = build_drop_report(st)
        if json_out:
            out.print_json(json.dumps({"summary": summary.to_dict(), "report": report}))
        else:
            _print_collect(summary.to_dict(), report, paths)
        if (
            summary.source_errors
            and not any(summary.ingested.values())
            and not report["kept_total"]
        ):
            raise fail("no source could be read: " + "; ".join(summary.source_errors.values()))


@app.command()
def dedup(recipe: RecipeOpt, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Re-run dedup and quotas over the store with the recipe's thresholds (no crawling)."""
    from mmner_data.collect.pipeline import run_collect
    from mmner_data.collect.report import build_drop_report, write_drop_report

    with user_errors():
        rcp = load_stage_recipe(recipe)
        with open_store(rcp, store) as st:
            summary = run_collect(rcp, st, skip_crawl=True)
            paths = list(write_drop_report(st))
            report = build_drop_report(st)
        if json_out:
            out.print_json(json.dumps({"summary": summary.to_dict(), "report": report}))
        else:
            _print_collect(summary.to_dict(), report, paths)
