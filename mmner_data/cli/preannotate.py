"""``mmner-data preannotate``: model predictions into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmner_data.cli._util import (
    DeviceOpt,
    EngineOpt,
    JsonOpt,
    LakeOpt,
    ProgressOpt,
    RayAddressOpt,
    StoreOpt,
    WorkersOpt,
    engine_overrides,
    load_stage_recipe,
    open_store,
    out,
    print_json,
    progress_bars,
    quiet_transformers,
    user_errors,
)


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
            help="mmner-data model folder (default: the bundled mmner-2m-ner-e5-small, see "
            "baseline_models/README.md) or any HF token-classification name/folder.",
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
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    lake: LakeOpt = None,
    workers: WorkersOpt = None,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Write model predictions (spans, per-span confidence, item score) to the store.

    Kept posts (and kept by `filter`, when it ran) without a prediction from this model version;
    posts without an image are labelled from their text. Ready for `annotate push`.
    """
    from mmner_data.preannotate import stage

    overrides = {
        "model": model,
        "batch_size": batch_size,
        "device": device,
        "overwrite": overwrite or None,
        **engine_overrides(engine, ray_address, lake, workers),
    }
    with user_errors():
        rcp = load_stage_recipe(recipe)
        settings = stage.settings(rcp, overrides)
        pre = settings.preannotate
        with open_store(rcp, store) as st:
            if dry_run:
                from mmner_data.preannotate.predict import select_items

                version = stage.model_version_of(pre.model)
                todo = select_items(st, version, overwrite=pre.overwrite)
                plan = {
                    "model": pre.model,
                    "model_version": version,
                    "posts_to_label": len(todo),
                    "with_image": sum(it.image is not None for it in todo),
                    "store": str(st.root),
                }
                print_json(plan) if json_out else out.print(plan)
                return
            quiet_transformers()
            with progress_bars(progress and not json_out) as bar:
                summary = stage.run(st, settings, bar).to_dict()
    if json_out:
        print_json(summary)
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
