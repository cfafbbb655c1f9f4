"""The ``mmner-data train|evaluate|preannotate`` commands (registered by ``mmner_data.cli``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mmner_data.cli_options import JsonOpt, ProgressOpt, StoreOpt

DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="auto (cuda if available), cpu, cuda, cuda:N, mps.")
]


def _quiet_transformers() -> None:
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _model_errors() -> tuple[type[Exception], ...]:
    from mmner_data.models.data import DataError
    from mmner_data.models.encoders import EncoderLoadError
    from mmner_data.models.train import TrainError

    return (DataError, EncoderLoadError, TrainError)


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
    from mmner_data.cli import (
        UserError,
        console,
        load_stage_recipe,
        out,
        progress_bars,
        user_errors,
    )
    from mmner_data.models.settings import TrainSettings, build_settings

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
        _quiet_transformers()
        from mmner_data.models.data import load_splits
        from mmner_data.models.train import run_train

        try:
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
        except _model_errors() as exc:
            raise UserError(str(exc)) from None
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


def evaluate_command(
    model: Annotated[
        Path, typer.Option("--model", help="A model folder written by `mmner-data train`.")
    ],
    data: Annotated[
        Path, typer.Option("--data", help="An HF export folder or a corpus store folder.")
    ],
    split: Annotated[
        str, typer.Option("--split", help="train, validation (dev) or test.")
    ] = "test",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Report folder (default: <store>/reports for a store, <model>/reports else).",
        ),
    ] = None,
    no_images: Annotated[
        bool, typer.Option("--no-images", help="Evaluate 2M-NER with every image left out.")
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Posts per batch.")] = 32,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Entity-level P/R/F1 (seqeval) overall, per entity type and per language.

    Writes evaluate_<model>_<split>.json/.md/.png; splits of a store are remade exactly as
    `train` made them (its training_args.json).
    """
    from mmner_data.cli import UserError, out, progress_bars, user_errors

    with user_errors():
        _quiet_transformers()
        from mmner_data.models.data import detect_source, load_splits
        from mmner_data.models.encoders import pick_device
        from mmner_data.models.evaluate import evaluate_model, write_report
        from mmner_data.models.model import NerModel

        key = {"dev": "validation", "valid": "validation"}.get(split, split)
        if key not in ("train", "validation", "test"):
            raise UserError(f"--split {split!r}: use train, validation (dev) or test")
        try:
            nm = NerModel.from_pretrained(model, device=pick_device(device))
            fractions = _train_fractions(model)
            splits, _ = load_splits(data, fractions=fractions)
            examples = splits.get(key) or []
            if not examples:
                raise UserError(f"{data}: the {key} split is empty")
            with progress_bars(progress and not json_out) as bar:
                metrics = evaluate_model(
                    nm, examples, batch_size=batch_size, use_images=not no_images, progress=bar
                )
            kind = detect_source(Path(data))
        except _model_errors() as exc:
            raise UserError(str(exc)) from None
        folder = output or (Path(data) / "reports" if kind == "store" else Path(model) / "reports")
        stem = f"evaluate_{Path(model).resolve().name}_{key}" + ("_noimg" if no_images else "")
        title = f"{Path(model).name} ({nm.config.architecture}) on {key}" + (
            " without images" if no_images else ""
        )
        metrics = {
            "model": str(model),
            "model_version": nm.version,
            "architecture": nm.config.architecture,
            "data": str(data),
            "split": key,
            "images": not no_images,
            **metrics,
        }
        paths = write_report(metrics, folder, stem, title)
    if json_out:
        out.print_json(json.dumps({**metrics, "report_files": [str(p) for p in paths]}))
        return
    from mmner_data.models.evaluate import markdown_table

    out.print(markdown_table(metrics, title))
    out.print("report: " + ", ".join(str(p) for p in paths))


def _train_fractions(model: Path) -> tuple[float, float, float]:
    from mmner_data.models.data import DEFAULT_SPLITS

    args = Path(model) / "training_args.json"
    if args.is_file():
        return tuple(json.loads(args.read_text())["settings"]["splits"])  # type: ignore[return-value]
    return DEFAULT_SPLITS


def preannotate_command(
    recipe: Annotated[
        Path,
        typer.Option("--recipe", "-r", help="Recipe YAML; its `preannotate:` section and types."),
    ],
    store: StoreOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="mmner-data model folder (default: the bundled baseline_models/"
            "mmner-tiny-2m-ner) or any HF token-classification name/folder.",
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Posts per batch (default 32).")
    ] = None,
    device: DeviceOpt = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Predict again posts that this model version has done."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count the posts to do; load no model.")
    ] = False,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Write model predictions (spans, per-span confidence, item score) to the store.

    Kept posts (and kept by `filter`, when it ran) without a prediction from this model version;
    posts without an image are labelled from their text. Ready for `annotate push`.
    """
    from mmner_data.cli import (
        UserError,
        _open_store,
        load_stage_recipe,
        out,
        progress_bars,
        user_errors,
    )
    from mmner_data.models.settings import PreannotateSettings, build_settings

    overrides = {
        "model": model,
        "batch_size": batch_size,
        "device": device,
        "overwrite": overwrite or None,
    }
    with user_errors():
        rcp = load_stage_recipe(recipe)
        settings = build_settings(PreannotateSettings, "preannotate", rcp.preannotate, overrides)
        with _open_store(rcp, store) as st:
            if dry_run:
                from mmner_data.models.config import is_checkpoint
                from mmner_data.models.inference import select_items
                from mmner_data.models.model import checkpoint_version

                folder = Path(settings.model).expanduser()
                version = checkpoint_version(folder) if is_checkpoint(folder) else settings.model
                todo = select_items(st, version, overwrite=settings.overwrite)
                plan = {
                    "model": settings.model,
                    "model_version": version,
                    "posts_to_label": len(todo),
                    "with_image": sum(it.image is not None for it in todo),
                    "store": str(st.root),
                }
                out.print_json(json.dumps(plan)) if json_out else out.print(plan)
                return
            _quiet_transformers()
            from mmner_data.models.inference import run_preannotate

            try:
                with progress_bars(progress and not json_out) as bar:
                    summary = run_preannotate(
                        st,
                        settings.model,
                        batch_size=settings.batch_size,
                        device=settings.device,
                        progress=bar,
                        overwrite=settings.overwrite,
                        entity_types=list(rcp.entity_types),
                        label_map=settings.label_map,
                    )
            except _model_errors() as exc:
                raise UserError(str(exc)) from None
    if json_out:
        out.print_json(json.dumps(summary))
        return
    out.print(
        f"preannotate {summary['model_version']}: {summary['predicted']} post(s) labelled "
        f"({summary['with_image']} with image), {summary['spans']} span(s) "
        f"{summary['spans_by_label']}, {summary['tokens_per_s']:.0f} tokens/s; "
        f"{summary['total_for_version']} post(s) in the store have this version's predictions"
    )
    if summary["unmapped_spans"]:
        out.print(
            f"[yellow]{summary['unmapped_spans']} span(s) dropped: label not in the recipe's "
            "entity_types (see preannotate.label_map)[/]"
        )
