"""``mmner-data train``: 2M-NER or a text-only baseline on an export or a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mmner_data.cli._util import (
    DeviceOpt,
    JsonOpt,
    ProgressOpt,
    console,
    load_stage_recipe,
    out,
    progress_bars,
    quiet_transformers,
    user_errors,
)


def train_command(
    data: Annotated[
        Path,
        typer.Option("--data", help="An HF export folder (export --hf) or a corpus store folder."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for the trained model and checkpoints.")
    ],
    model: Annotated[
        str | None,
        typer.Option("--model", help="2m-ner (default), text-crf or text-linear."),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option("--recipe", "-r", help="Recipe YAML: its `train:` section and entity types."),
    ] = None,
    text_encoder: Annotated[
        str | None,
        typer.Option("--text-encoder", help="HF encoder name or folder (XLM-R, mBERT…)."),
    ] = None,
    image_encoder: Annotated[
        str | None,
        typer.Option("--image-encoder", help="HF CLIP/ViT or open_clip name or folder (2m-ner)."),
    ] = None,
    freeze_image: Annotated[
        bool | None,
        typer.Option("--freeze-image/--tune-image", help="Keep the image encoder frozen."),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Most epochs.")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Posts per training batch.")
    ] = None,
    lr_encoder: Annotated[
        float | None, typer.Option("--lr-encoder", help="Learning rate of the encoders.")
    ] = None,
    lr_head: Annotated[
        float | None, typer.Option("--lr-head", help="Learning rate of fusion/classifier/CRF.")
    ] = None,
    patience: Annotated[
        int | None, typer.Option("--patience", min=0, help="Stop after N epochs without dev gain.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
    device: DeviceOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the last checkpoint in --output.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the settings and the data; train nothing.")
    ] = False,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Train 2M-NER or a text-only baseline (text-crf, text-linear) on an export or a store.

    AdamW with separate encoder/head learning rates, warm-up, early stopping on dev entity F1,
    a checkpoint per epoch (--resume continues), the best model saved as a folder in --output.
    """
    from mmner_data.models.settings import TrainSettings
    from mmner_data.stage import build_settings

    overrides: dict[str, Any] = {
        "model": model,
        "text_encoder": text_encoder,
        "image_encoder": image_encoder,
        "freeze_image": freeze_image,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr_encoder": lr_encoder,
        "lr_head": lr_head,
        "patience": patience,
        "seed": seed,
        "device": device,
    }
    with user_errors():
        rcp = load_stage_recipe(recipe) if recipe else None
        settings = build_settings(TrainSettings, "train", rcp.train if rcp else {}, overrides)
        types = list(rcp.entity_types) if rcp else None
        quiet_transformers()
        from mmner_data.models.data import load_splits
        from mmner_data.models.train import run_train

        if dry_run:
            splits, found = load_splits(data, entity_types=types, fractions=settings.splits)
            plan = {
                "settings": settings.model_dump(mode="json"),
                "entity_types": found,
                "examples": {k: len(v) for k, v in splits.items()},
                "output": str(output),
            }
            out.print_json(json.dumps(plan)) if json_out else out.print(plan)
            return
        with progress_bars(progress and not json_out) as bar:
            summary = run_train(
                settings, data, output, resume=resume, entity_types=types, progress=bar
            )
    if json_out:
        out.print_json(json.dumps(summary))
        return
    from rich.table import Table

    table = Table(title=f"train {summary['model']} → {summary['output']}")
    for col in ("epoch", "loss", "dev P", "dev R", "dev F1", "s"):
        table.add_column(col, justify="right")
    for h in summary["history"]:
        table.add_row(
            str(h["epoch"]),
            f"{h['loss']:.4f}",
            f"{h['dev_precision']:.3f}",
            f"{h['dev_recall']:.3f}",
            f"{h['dev_f1']:.3f}",
            f"{h['seconds']:.1f}",
        )
    out.print(table)
    console.print(
        f"best dev F1 {summary['best_dev_f1']:.4f} at epoch {summary['best_epoch']} "
        f"({summary['device']}); model saved in {summary['output']}"
    )
