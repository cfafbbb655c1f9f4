"""``mmner-data export``: HF DatasetDict, Twitter-2015 layout, dataset card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mmner_data.cli._util import (
    JsonOpt,
    ProgressOpt,
    StoreOpt,
    UserError,
    console,
    load_stage_recipe,
    open_store,
    progress_bars,
    recipe_option,
    user_errors,
)
from mmner_data.cli._util import out as stdout

RecipeOpt = recipe_option("export")


def export_command(
    recipe: RecipeOpt,
    out: Annotated[
        Path | None,
        typer.Argument(
            metavar="OUT",
            help="Export folder, same as --out (default: export.out, else "
            "<store>/exports/<recipe>).",
        ),
    ] = None,
    store: StoreOpt = None,
    out_opt: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Export folder (default: export.out, else <store>/exports/<recipe>).",
        ),
    ] = None,
    hf: Annotated[
        bool,
        typer.Option(
            "--hf",
            help="A flag, takes no value: write the Hugging Face DatasetDict (the default "
            "format). The folder is --out (e.g. `export --hf --out DIR`).",
        ),
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
    from mmner_data.export import stage
    from mmner_data.export.settings import parse_splits

    with user_errors():
        if out is not None and out_opt is not None and out != out_opt:
            raise UserError(f"two export folders given: {out} and --out {out_opt}; give one")
        out = out_opt or out
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
        extra = {"out": out, "recipe_text": text, "dry_run": dry_run}
        settings = stage.settings(rcp, {**overrides, **extra})
        with (
            open_store(rcp, store, create=False) as st,
            progress_bars(progress and not json_out) as bar,
        ):
            try:
                result = stage.run(st, settings, bar)
            except Exception as exc:  # hub upload: no token, no network, no rights
                hub = settings.export.push_to_hub
                if hub and "hub" in type(exc).__module__.lower():
                    raise UserError(f"push to {hub} failed: {exc}") from None
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
