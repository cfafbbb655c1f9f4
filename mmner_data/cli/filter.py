"""The ``mmner-data filter`` command (registered by ``mmner_data.cli``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from mmner_data.cli._util import (
    EngineOpt,
    JsonOpt,
    LakeOpt,
    ProgressOpt,
    RayAddressOpt,
    StoreOpt,
    WorkersOpt,
    console,
    engine_overrides,
    load_stage_recipe,
    open_store,
    out,
    progress_bars,
    recipe_option,
    user_errors,
)

RecipeOpt = recipe_option("filter")


def filter_command(
    recipe: RecipeOpt,
    store: StoreOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="open_clip model name, hf-hub:org/repo, or a local checkpoint folder "
            "(default xlm-roberta-base-ViT-B-32).",
        ),
    ] = None,
    pretrained: Annotated[
        str | None,
        typer.Option(
            "--pretrained",
            help="open_clip pretrained tag or weights file (default laion5b_s13b_b90k "
            "for the default model).",
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto (cuda if available), cpu, cuda, cuda:N.")
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option("--precision", help="auto (bf16/fp16 autocast on GPU), fp32, fp16, bf16."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Pairs per batch (default 64).")
    ] = None,
    num_workers: Annotated[
        int | None,
        typer.Option(
            "--num-workers",
            min=0,
            help="Image-decoding worker processes (default on GPU: CPUs - 1, max 8; "
            "on CPU: CPUs / 4, min 1).",
        ),
    ] = None,
    threshold: Annotated[
        str | None,
        typer.Option(
            "--threshold",
            help="Keep pairs scoring at least this: one value, or per language (en=0.28,fr=0.25).",
        ),
    ] = None,
    keep_top: Annotated[
        str | None,
        typer.Option(
            "--keep-top",
            help="Keep this top fraction per language: one value (0.7) or en=0.7,fr=0.6.",
        ),
    ] = None,
    select_only: Annotated[
        bool,
        typer.Option(
            "--select-only",
            help="Redo the selection and report from stored scores; load no model.",
        ),
    ] = False,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    lake: LakeOpt = None,
    workers: WorkersOpt = None,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Score every kept post's text against its image with multilingual CLIP; keep the relevant.

    Scores are stored per pair and model, so a new threshold (--select-only) needs no rescoring;
    posts without an image are kept and flagged no_image. Writes reports/filter_report.*.
    """
    from mmner_data.filter import stage

    overrides: dict[str, Any] = {
        "model": model,
        "pretrained": pretrained,
        "device": device,
        "precision": precision,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "threshold": threshold,
        "keep_top": keep_top,
        **engine_overrides(engine, ray_address, lake, workers),
    }
    with user_errors():
        rcp = load_stage_recipe(recipe)
        settings = stage.settings(rcp, {**overrides, "select_only": select_only})
        with open_store(rcp, store) as st, progress_bars(progress and not json_out) as bar:
            result = stage.run(st, settings, bar)
        if json_out:
            out.print_json(json.dumps(result.to_dict()))
            return
        _print_summary(out, result.to_dict())
        if result.scoring.unreadable:
            console.print(f"[yellow]{result.scoring.unreadable} unreadable image(s) skipped[/]")


def _print_summary(out: Any, data: dict[str, Any]) -> None:
    from rich.table import Table

    sel = data["selection"]
    sc = data["scoring"]
    table = Table(title=f"filter — {sel['model_id']} ({sel['rule']})")
    for col in ("language", "posts", "scored", "kept", "dropped", "no image", "threshold"):
        table.add_column(col, justify="left" if col == "language" else "right")
    for lang, c in sel["languages"].items():
        thr = "—" if c["threshold"] is None else f"{c['threshold']:.4f}"
        table.add_row(
            lang,
            str(c["posts"]),
            str(c["scored"]),
            str(c["kept"]),
            str(c["dropped_low_relevance"]),
            str(c["no_image"]),
            thr,
        )
    out.print(table)
    out.print(
        f"scored {sc['scored']} new pair(s) in {sc['seconds']:.1f}s ({sc['pairs_per_s']:.1f}/s); "
        "report: " + ", ".join(data["report_files"][:2])
    )
