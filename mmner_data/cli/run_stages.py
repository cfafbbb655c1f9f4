"""``mmner-data run``: every configured stage in order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mmner_data.cli._util import (
    EngineOpt,
    JsonOpt,
    LakeOpt,
    ProgressOpt,
    RayAddressOpt,
    StoreOpt,
    UserError,
    WorkersOpt,
    console,
    engine_overrides,
    progress_bars,
    recipe_option,
    user_errors,
)
from mmner_data.cli._util import out as stdout

RecipeOpt = recipe_option("export")


def run_command(
    recipe: RecipeOpt,
    store: StoreOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Export folder (default: export.out or <store>/exports/…)."),
    ] = None,
    skip: Annotated[
        list[str] | None,
        typer.Option(
            "--skip",
            help="Skip a stage (repeatable): collect, filter, preannotate, annotate, "
            "agreement, export, stats.",
        ),
    ] = None,
    include_silver: Annotated[
        bool | None,
        typer.Option(
            "--include-silver/--no-silver",
            help="Export pre-annotations where there is no gold (default: yes when annotation "
            "is skipped).",
        ),
    ] = None,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    lake: LakeOpt = None,
    workers: WorkersOpt = None,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Run every stage in order on the recipe (collect → … → export); rerun to resume."""
    from mmner_data.pipeline import run_pipeline

    with user_errors():
        if not recipe.exists():
            raise UserError(f"recipe not found: {recipe}")
        with progress_bars(progress and not json_out) as bar:
            result = run_pipeline(
                recipe,
                store,
                progress=bar,
                skip=skip or (),
                export_out=out,
                include_silver=include_silver,
                engine=engine_overrides(engine, ray_address, lake, workers),
            )
        data = result.to_dict()
        if json_out:
            stdout.print_json(json.dumps(data, default=str))
        else:
            _print_run(stdout, data)
        failed = result.failed
        if failed is not None:
            raise UserError(f"stage {failed.stage} failed: {failed.detail}")
        if result.export_path is None:
            console.print("[yellow]no export was written[/]")
        elif not json_out:
            stdout.print(f"export: {result.export_path}")


def _print_run(out: Any, data: dict[str, Any]) -> None:
    from rich.table import Table

    style = {"done": "green", "skipped": "yellow", "failed": "bold red"}
    table = Table(title=f"mmner-data run — store {data['store']}")
    for col in ("stage", "status", "seconds", "detail"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for s in data["stages"]:
        detail = s["detail"] or _brief(s["summary"])
        table.add_row(
            s["stage"], f"[{style[s['status']]}]{s['status']}[/]", f"{s['seconds']:.1f}", detail
        )
    out.print(table)


def _brief(summary: dict[str, Any]) -> str:
    parts = []
    for k, v in summary.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a} {b}" for a, b in v.items() if not isinstance(b, dict | list))
        elif isinstance(v, list):
            v = f"{len(v)} file(s)"
        if v not in ("", None):
            parts.append(f"{k}: {v}")
    return "; ".join(parts)[:120]
