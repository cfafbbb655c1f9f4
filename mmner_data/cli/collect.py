"""``mmner-data collect`` and ``mmner-data dedup``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mmner_data.cli._util import (
    EngineOpt,
    JsonOpt,
    LakeOpt,
    ProgressOpt,
    RayAddressOpt,
    StoreOpt,
    WorkersOpt,
    app,
    console,
    engine_overrides,
    fail,
    load_stage_recipe,
    open_recipe,
    open_store,
    out,
    print_json,
    progress_bars,
    user_errors,
)

RecipeOpt = Annotated[
    Path,
    typer.Option("--recipe", "-r", help="Recipe YAML (sources, languages, quotas, thresholds)."),
]


def _print_collect(result: Any, json_out: bool) -> None:
    if json_out:
        print_json({"summary": result.summary.to_dict(), "report": result.report})
        return
    summary, report, paths = result.summary.to_dict(), result.report, result.report_files
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
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    lake: LakeOpt = None,
    workers: WorkersOpt = None,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Crawl sources, identify languages, fetch images safely, deduplicate; resumable."""
    from mmner_data.collect import stage

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
        settings = stage.settings(
            rcp,
            {
                "refresh": refresh,
                "retry_failed": retry_failed,
                **engine_overrides(engine, ray_address, lake, workers),
            },
        )
        with open_store(rcp, store) as st, progress_bars(progress and not json_out) as bar:
            result = stage.run(st, settings, bar)
        _print_collect(result, json_out)
        if result.nothing_read:
            errors = result.summary.source_errors.values()
            raise fail("no source could be read: " + "; ".join(errors))


@app.command()
def dedup(
    recipe: RecipeOpt,
    store: StoreOpt = None,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    lake: LakeOpt = None,
    workers: WorkersOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-run dedup and quotas over the store with the recipe's thresholds (no crawling)."""
    from mmner_data.collect import stage

    with user_errors():
        rcp = load_stage_recipe(recipe)
        overrides = {"skip_crawl": True, **engine_overrides(engine, ray_address, lake, workers)}
        with open_store(rcp, store) as st:
            result = stage.run(st, stage.settings(rcp, overrides))
        _print_collect(result, json_out)
