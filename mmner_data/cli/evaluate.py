"""``mmner-data evaluate``: seqeval P/R/F1 overall, per type and per language."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mmner_data.cli._util import (
    DeviceOpt,
    JsonOpt,
    ProgressOpt,
    UserError,
    out,
    progress_bars,
    quiet_transformers,
    user_errors,
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

    with user_errors():
        quiet_transformers()
        from mmner_data.models.data import detect_source, load_splits
        from mmner_data.models.encoders import pick_device
        from mmner_data.models.evaluate import evaluate_model, write_report
        from mmner_data.models.model import NerModel

        key = {"dev": "validation", "valid": "validation"}.get(split, split)
        if key not in ("train", "validation", "test"):
            raise UserError(f"--split {split!r}: use train, validation (dev) or test")
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
