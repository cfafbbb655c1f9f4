"""The ``mmner-data export|run|stats`` commands (registered by ``mmner_data.cli``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mmner_data.cli_options import JsonOpt, ProgressOpt, StoreOpt, recipe_option

RecipeOpt = recipe_option("export")


def export_command(
    recipe: RecipeOpt,
    out: Annotated[
        Path | None,
        typer.Argument(help="Export folder (default: export.out, else <store>/exports/<recipe>)."),
    ] = None,
    store: StoreOpt = None,
    hf: Annotated[
        bool,
        typer.Option("--hf", help="Write the Hugging Face DatasetDict (the default format)."),
    ] = False,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="hf, twitter2015 or both (Twitter-2015 MNER text files + image folder).",
        ),
    ] = None,
    parquet: Annotated[
        bool | None,
        typer.Option("--parquet", help="Also write data/<split>-*.parquet (the hub's layout)."),
    ] = None,
    push_to_hub: Annotated[
        str | None,
        typer.Option(
            "--push-to-hub",
            help="Upload to this hub dataset repo (org/name) with your HF token (HF_TOKEN or "
            "`hf auth login`).",
        ),
    ] = None,
    public: Annotated[
        bool, typer.Option("--public", help="Create the hub repo public (default private).")
    ] = False,
    annotator: Annotated[
        str | None,
        typer.Option(
            "--annotator", help="Use this annotator's labels where there is no gold (e.g. ls:3)."
        ),
    ] = None,
    include_silver: Annotated[
        bool | None,
        typer.Option(
            "--include-silver",
            help="Use pre-annotations where there is neither gold nor annotator (marked "
            "label_source=silver).",
        ),
    ] = None,
    model_version: Annotated[
        str | None,
        typer.Option("--model-version", help="Pre-annotation model version (default: latest)."),
    ] = None,
    splits: Annotated[
        str | None,
        typer.Option("--splits", help="Fractions, e.g. train=0.8,validation=0.1,test=0.1."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Split seed (default 13).")] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Count what would be exported per split; write nothing."),
    ] = False,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Export labelled posts as a HF DatasetDict (and/or the Twitter-2015 layout) with a card.

    Gold from adjudication, else --annotator, else (--include-silver) pre-annotations; text
    pseudonymised; splits stratified by language and entity types, duplicates never split.
    """
    from mmner_data.cli import (
        UserError,
        _open_store,
        console,
        load_stage_recipe,
        progress_bars,
        user_errors,
    )
    from mmner_data.cli import (
        out as stdout,
    )
    from mmner_data.export.pipeline import ExportError, run_export
    from mmner_data.export.settings import build_export_settings, parse_splits

    with user_errors():
        formats: list[str] | None = None
        if fmt is not None:
            formats = [fmt] + (["hf"] if hf else [])
        elif hf:
            formats = ["hf"]
        overrides: dict[str, Any] = {
            "formats": formats,
            "parquet": parquet,
            "push_to_hub": push_to_hub,
            "private": False if public else None,
            "annotator": annotator,
            "include_silver": include_silver,
            "model_version": model_version,
            "splits": parse_splits(splits) if splits else None,
            "seed": seed,
        }
        text = recipe.read_text(encoding="utf-8") if recipe.exists() else None
        rcp = load_stage_recipe(recipe)
        settings = build_export_settings(rcp.export, overrides)
        with _open_store(rcp, store) as st, progress_bars(progress and not json_out) as bar:
            try:
                result = run_export(
                    st,
                    rcp,
                    settings,
                    out=out,
                    recipe_text=text,
                    progress=bar,
                    dry_run=dry_run,
                )
            except ExportError as exc:
                raise UserError(str(exc)) from None
            except Exception as exc:  # hub upload: no token, no network, no rights
                if settings.push_to_hub and "hub" in type(exc).__module__.lower():
                    raise UserError(f"push to {settings.push_to_hub} failed: {exc}") from None
                raise
        data = result.to_dict()
        if json_out:
            stdout.print_json(json.dumps(data))
            return
        _print_export(stdout, data)
        for msg in result.skipped_invalid:
            console.print(f"[yellow]skipped:[/] {msg}", highlight=False)


def _print_export(out: Any, data: dict[str, Any]) -> None:
    from rich.table import Table

    langs = sorted({lang for c in data["counts"].values() for lang in c})
    table = Table(title="export" + (" (dry run)" if data["dry_run"] else ""))
    table.add_column("split")
    for lang in langs:
        table.add_column(lang, justify="right")
    table.add_column("total", justify="right")
    for split, c in data["counts"].items():
        table.add_row(split, *[str(c.get(x, 0)) for x in langs], str(sum(c.values())))
    out.print(table)
    sel = data["selection"]
    sources = ", ".join(f"{k} {v}" for k, v in sorted(sel["by_label_source"].items()))
    out.print(
        f"labels: {sources}; eligible {sel['eligible']}, unlabelled {sel['unlabelled']}"
        + (f", removed by the filter {sel['filtered_out']}" if sel["filtered_out"] else "")
    )
    if data.get("hub_url"):
        out.print(f"pushed: {data['hub_url']}")
    if not data["dry_run"]:
        out.print(f"export: {data['out']}")


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
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Run every stage in order on the recipe (collect → … → export); rerun to resume."""
    from mmner_data.cli import UserError, console, progress_bars, user_errors
    from mmner_data.cli import out as stdout
    from mmner_data.export.run import run_pipeline

    with user_errors():
        if not recipe.exists():
            raise UserError(f"recipe not found: {recipe}")
        with progress_bars(progress and not json_out) as bar:
            try:
                result = run_pipeline(
                    recipe,
                    store,
                    progress=bar,
                    skip=skip or (),
                    export_out=out,
                    include_silver=include_silver,
                )
            except ValueError as exc:
                raise UserError(str(exc)) from None
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


def stats_command(
    recipe: RecipeOpt,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Counts per stage, language and reason (kept, dropped and why, labelled, exported).

    Writes reports/stats.json, stats.md and stats.png in the store.
    """
    from rich.table import Table

    from mmner_data.cli import UserError, load_stage_recipe, user_errors
    from mmner_data.cli import out as stdout
    from mmner_data.export.stats import compute_stats, rows, write_stats
    from mmner_data.store import DB_NAME, CorpusStore

    with user_errors():
        rcp = load_stage_recipe(recipe)
        root = store or Path(rcp.store)
        if not (root / DB_NAME).exists():
            raise UserError(f"no store at {root} (run `mmner-data collect` first)")
        with CorpusStore(root) as st:
            stats = compute_stats(st)
            paths = write_stats(st, stats)
        if json_out:
            stdout.print_json(json.dumps({**stats, "files": [str(p) for p in paths]}))
            return
        table = Table(title="mmner-data stats")
        for col in ("stage", "item", *stats["languages"], "total"):
            table.add_column(col, justify="left" if col in ("stage", "item") else "right")
        last = None
        for row in rows(stats):
            stage = row[0] if row[0] != last else ""
            last = row[0]
            table.add_row(stage, *[str(x) for x in row[1:]])
        stdout.print(table)
        stdout.print("report: " + ", ".join(str(p) for p in paths))
