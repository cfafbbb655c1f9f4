"""The ``mmner-data annotate push|pull`` commands (registered by ``mmner_data.cli``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from mmner_data.cli._util import (
    JsonOpt,
    ProgressOpt,
    StoreOpt,
    console,
    load_stage_recipe,
    open_store,
    out,
    progress_bars,
    recipe_option,
    user_errors,
)

annotate_app = typer.Typer(
    help="Label Studio: push tasks (with pre-annotations), pull annotations.",
    no_args_is_help=True,
)

RecipeOpt = recipe_option("annotate")
ProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--project",
        help="Label Studio project title (default: annotate.project, else the recipe name); "
        "the review queue adds ' — review'.",
    ),
]
QueueOpt = Annotated[
    str,
    typer.Option(
        "--queue",
        help="annotate: kept posts → the annotation project; review: posts that agreement "
        "sent to review → the review project.",
    ),
]
DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="Connect and count what would change; write nothing anywhere."),
]


@annotate_app.command("push")
def push_command(
    recipe: RecipeOpt,
    store: StoreOpt = None,
    project: ProjectOpt = None,
    queue: QueueOpt = "annotate",
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="Tasks per import request (default 500)."),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(
            "--overlap",
            min=1,
            help="Annotators per task (Label Studio maximum_annotations); 2+ for agreement.",
        ),
    ] = None,
    overlap_fraction: Annotated[
        float | None,
        typer.Option(
            "--overlap-fraction",
            min=0.01,
            max=1.0,
            help="Share of tasks that get --overlap annotators; the rest get one (default 1).",
        ),
    ] = None,
    model_version: Annotated[
        str | None,
        typer.Option(
            "--model-version",
            help="Which pre-annotations to attach (default: the latest model_version).",
        ),
    ] = None,
    no_predictions: Annotated[
        bool, typer.Option("--no-predictions", help="Do not attach pre-annotations.")
    ] = False,
    images: Annotated[
        str | None,
        typer.Option(
            "--images",
            help="How Label Studio gets images: local-files (default), url (with "
            "--image-url-base) or none.",
        ),
    ] = None,
    image_url_base: Annotated[
        str | None,
        typer.Option(
            "--image-url-base",
            help="Base URL serving the store's images/ folder (e.g. http://host:8000); "
            "task image = <base>/<ab>/<sha256>.<ext>.",
        ),
    ] = None,
    document_root: Annotated[
        str | None,
        typer.Option(
            "--document-root",
            help="The server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: that variable).",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Push at most this many new tasks.")
    ] = None,
    order: Annotated[
        str,
        typer.Option(
            "--order",
            help="crawl: ingest order; uncertainty: lowest prediction score first (posts "
            "without a prediction last). Label Studio lists tasks in import order.",
        ),
    ] = "crawl",
    sample_uncertain: Annotated[
        int | None,
        typer.Option(
            "--sample-uncertain",
            min=1,
            help="Push only the N least certain new posts (implies --order uncertainty).",
        ),
    ] = None,
    refresh_predictions: Annotated[
        bool,
        typer.Option(
            "--refresh-predictions",
            help="Also send the latest model version's predictions to tasks already pushed "
            "and not yet annotated (once per task and version).",
        ),
    ] = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Create/reuse the project, then import new posts as tasks with their pre-annotations.

    Idempotent and crash-safe: tasks already in the project (found by post_id) are never
    imported again. URL and API key come from LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY (or the
    variables the recipe's annotate section names).
    """
    from mmner_data.annotate.stage import push

    overrides: dict[str, Any] = {
        "project": project,
        "batch_size": batch_size,
        "overlap": overlap,
        "overlap_fraction": overlap_fraction,
        "model_version": model_version,
        "predictions": False if no_predictions else None,
        "images": images,
        "image_url_base": image_url_base,
        "document_root": document_root,
    }
    with user_errors():
        rcp = load_stage_recipe(recipe)
        settings = push.settings(
            rcp,
            {
                **overrides,
                "queue": queue,
                "limit": limit,
                "dry_run": dry_run,
                "order": order,
                "sample_uncertain": sample_uncertain,
                "refresh_predictions": refresh_predictions,
            },
        )
        with open_store(rcp, store) as st, progress_bars(progress and not json_out) as bar:
            result = push.run(st, settings, bar)
        data = result.to_dict()
        if json_out:
            out.print_json(json.dumps(data))
            return
        verb = "would push" if dry_run else "pushed"
        out.print(
            f"{result.title!r} (project {data['project_id']}) at {result.url}: {verb} "
            f"{result.to_push if dry_run else result.imported} new task(s) of {result.selected} "
            f"selected ({result.already_pushed} already there, {result.recovered} recovered); "
            f"{result.with_predictions} with predictions"
            + (f" ({result.model_version})" if result.model_version else "")
            + ("; least certain first" if result.order == "uncertainty" else "")
        )
        if dry_run and refresh_predictions:
            out.print(
                f"  refresh: would send {result.model_version} predictions to "
                f"{result.refreshed} unannotated task(s) ({result.refresh_up_to_date} up to "
                f"date, {result.refresh_skipped_annotated} annotated left alone)"
            )
        for note in result.notes:
            out.print(f"  {note}")
        if result.duplicate_tasks_in_project:
            out.print(
                f"[yellow]the project has {result.duplicate_tasks_in_project} duplicate task(s) "
                "for the same post (not made by this tool)[/]"
            )


@annotate_app.command("pull")
def pull_command(
    recipe: RecipeOpt,
    store: StoreOpt = None,
    project: ProjectOpt = None,
    queue: QueueOpt = "annotate",
    snap: Annotated[
        str | None,
        typer.Option(
            "--snap",
            help="Spans off token boundaries: expand (default; grow to whole tokens), "
            "contract (shrink) or strict (leave untagged).",
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Export the project's annotations and store them per annotator, with BIO tags.

    Re-pulls rewrite only annotations whose updated_at changed. Writes
    reports/annotate_pull.* (annotate queue) or reports/annotate_pull_review.* (review queue,
    whose submitted reviews become the gold directly).
    """
    from mmner_data.annotate.stage import pull

    with user_errors():
        rcp = load_stage_recipe(recipe)
        overrides = {"project": project, "snap": snap, "queue": queue, "dry_run": dry_run}
        settings = pull.settings(rcp, overrides)
        with open_store(rcp, store) as st, progress_bars(progress and not json_out) as bar:
            result = pull.run(st, settings, bar)
        if json_out:
            out.print_json(json.dumps(result.to_dict()))
            return
        out.print(
            f"{result.title!r} (project {result.project_id}): {result.annotations} annotation(s) "
            f"by {len(result.annotators)} annotator(s) — {result.new} new, {result.updated} "
            f"updated, {result.unchanged} unchanged; {result.skipped} skipped, "
            f"{result.snapped_spans} span(s) snapped"
        )
        if result.queue == "review":
            out.print(f"{result.reviewed_gold} reviewed post(s) stored as gold")
        for p in result.problems[:10]:
            console.print(f"[yellow]not tagged:[/] {p}")
        if result.report_files:
            out.print("report: " + ", ".join(result.report_files))


# -- annotate connect (the ML backend of mmner-data serve) ------------------------------------


@annotate_app.command("connect")
def connect_command(
    recipe: RecipeOpt,
    url: Annotated[
        str,
        typer.Option("--url", help="The ML backend's URL as `mmner-data serve` printed it."),
    ],
    project: ProjectOpt = None,
    name: Annotated[
        str, typer.Option("--name", help="The backend's title in Label Studio.")
    ] = "mmner-data",
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive/--no-interactive",
            help="Ask the backend when an annotator opens a task (interactive pre-annotation).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Register an ML backend (`mmner-data serve`) with the project: Settings → Model.

    Label Studio then asks it for predictions and sends it annotation events (webhook).
    Registering the same URL again updates that backend instead of adding another.
    """
    from mmner_data.annotate.ml_backend import register_backend
    from mmner_data.annotate.push import project_title
    from mmner_data.annotate.stage import connect, push

    with user_errors():
        rcp = load_stage_recipe(recipe)
        settings = push.settings(rcp, {"project": project})
        client = connect(settings.annotate)
        title = project_title(settings.annotate, settings.recipe_name, "annotate")
        result = register_backend(client, title, url, name=name, interactive=interactive)
    if json_out:
        out.print_json(json.dumps(result))
        return
    verb = "connected" if result["created"] else "updated"
    out.print(
        f"{verb} ML backend {result['url']} (id {result['ml_backend_id']}, model_version "
        f"{result['model_version']}) on {result['title']!r} (project {result['project_id']})",
        highlight=False,
    )
