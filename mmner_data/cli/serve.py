"""``mmner-data serve``: a Label Studio ML backend over any model ``preannotate`` accepts."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mmner_data.cli._util import (
    DeviceOpt,
    StoreOpt,
    console,
    load_stage_recipe,
    out,
    quiet_transformers,
    user_errors,
)


def serve_command(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="mmner-data model folder or HF token classifier (default: the bundled model).",
        ),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option("--recipe", "-r", help="Recipe YAML: its `store` (where posts are read)."),
    ] = None,
    store: StoreOpt = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: a free one).")
    ] = 9090,
    models_dir: Annotated[
        Path | None,
        typer.Option(
            "--models-dir",
            help="Where fine-tuned models and webhook events go; the newest model there is "
            "served (default: <store>/ml-backend).",
        ),
    ] = None,
    retrain_after: Annotated[
        int,
        typer.Option(
            "--retrain-after",
            min=0,
            help="Fine-tune after this many annotation events (0: only on Start training / "
            "POST /train).",
        ),
    ] = 0,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs per fine-tune.")] = 1,
    device: DeviceOpt = None,
) -> None:
    """Serve predictions to Label Studio (Settings → Model), and fine-tune on its corrections.

    Speaks Label Studio's ML backend protocol (/health, /setup, /predict, /webhook; plus
    POST /train and POST /reload). Tasks are read from the store by data.post_id.
    """
    from mmner_data.annotate.ml_backend import BackendServer, MLBackend
    from mmner_data.bundled import BUNDLED_MODEL

    with user_errors():
        store_path = store
        if store_path is None and recipe is not None:
            store_path = Path(load_stage_recipe(recipe).store)
        if store_path is not None and not (store_path / "corpus.sqlite").is_file():
            from mmner_data.store import StoreError

            raise StoreError(f"no corpus store at {store_path} (no corpus.sqlite)")
        folder = models_dir or (store_path / "ml-backend" if store_path else None)
        quiet_transformers()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        backend = MLBackend(
            model or str(BUNDLED_MODEL),
            store=store_path,
            models_dir=folder,
            device=device,
            retrain_after=retrain_after,
            epochs=epochs,
        )
        server = BackendServer(backend, host, port)
    if backend.load_error:
        console.print(
            f"[bold yellow]model not loaded:[/] {escape(backend.load_error)}",
            highlight=False,
            soft_wrap=True,
        )
        console.print("the server stays up; /health reports the error")
    else:
        out.print(
            f"model {backend.model_path} (model_version {backend.model_version})",
            highlight=False,
            soft_wrap=True,
        )
    if store_path is None:
        console.print("[yellow]no store (--store/-r):[/] tasks are labelled from data.text only")
    out.print(
        f"Label Studio ML backend listening on [bold]{server.url}[/]\n"
        f"  paste {server.url} into Label Studio: project → Settings → Model → Connect Model,\n"
        f"  or run: mmner-data annotate connect -r RECIPE --url {server.url}\n"
        "  (a Label Studio on the same machine needs ML_BLOCK_LOCAL_IP=false to reach it)\n"
        "Ctrl-C stops it.",
        highlight=False,
        soft_wrap=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
