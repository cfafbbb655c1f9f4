"""The ``mmner-data lake export|import`` commands (registered by ``mmner_data.cli``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mmner_data.cli._util import (
    JsonOpt,
    ProgressOpt,
    UserError,
    console,
    open_store,
    out,
    print_json,
    progress_bars,
    user_errors,
)

lake_app = typer.Typer(
    help="The lake: a store as Parquet shards + image tars on any fsspec root (folder, s3://…).",
    no_args_is_help=True,
)

StoreArg = Annotated[Path, typer.Option("--store", help="Corpus store folder.")]
StorageOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        help="KEY=VALUE passed to the fsspec filesystem (repeatable), e.g. "
        "endpoint_url=http://minio:9000 for s3://; credentials come from the environment.",
    ),
]


def _storage_options(pairs: list[str] | None) -> dict[str, str] | None:
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--storage-option {pair!r} is not KEY=VALUE")
        options[key] = value
    return options or None


def _advance(bar: Any, name: str) -> Callable[[int], None] | None:
    if bar is None:
        return None
    return lambda n: bar(name, n, None)


@lake_app.command("export")
def export_command(
    store: StoreArg,
    to: Annotated[
        str, typer.Option("--to", help="Lake root: a folder or an fsspec URL (s3://bucket/lake).")
    ],
    subset: Annotated[
        str,
        typer.Option(
            "--subset",
            help="candidates (status candidate or kept), kept (eligible for labelling: kept by "
            "collect and by the filter when it ran) or all.",
        ),
    ] = "candidates",
    shard_rows: Annotated[int, typer.Option("--shard-rows", min=1, help="Posts per shard.")] = 5000,
    storage_option: StorageOpt = None,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Write the store's posts, images, scores and predictions as shards (resumable).

    Shards already written with the same content are skipped, so a killed export is re-run.
    """
    from mmner_data.lake import Lake, export_store

    with user_errors():
        lake = Lake(to, _storage_options(storage_option))
        with (
            open_store(None, store, create=False) as st,
            progress_bars(progress and not json_out) as bar,
        ):
            result = export_store(
                st,
                lake,
                subset=subset,
                shard_rows=shard_rows,
                progress=_advance(bar, "lake export (posts)"),
            )
    if json_out:
        print_json(result)
        return
    out.print(
        f"exported {result['posts']} post(s) ({result['subset']}) to {escape(result['root'])}: "
        f"{result['shards']} shard(s) of up to {result['shard_rows']} posts; "
        f"{result['shards_written']} shard file set(s) written, {result['shards_skipped']} "
        "already done",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(show_edge=False)
    for col in ("table", "written", "already done", "rows"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for name, stats in result["tables"].items():
        table.add_row(
            escape(name),
            str(stats["shards_written"]),
            str(stats["shards_skipped"]),
            str(stats["rows"]),
        )
    out.print(table)
    skipped = result["tables"].get("images", {}).get("images_skipped", 0)
    if skipped:
        console.print(
            f"[yellow]{skipped} image file(s) in the store could not be read or do not match "
            "their sha256: left out (named in their shard's done marker, meta.skipped)[/]"
        )
    if result["stale_shards_removed"]:
        out.print(f"removed {result['stale_shards_removed']} shard(s) left by a longer export")


@lake_app.command("import")
def import_command(
    from_root: Annotated[
        str, typer.Option("--from", help="Lake root: a folder or an fsspec URL (s3://bucket/lake).")
    ],
    store: StoreArg,
    subset: Annotated[
        str,
        typer.Option(
            "--subset",
            help="kept (posts kept by collect and, when the lake has a selection, the filter) "
            "or all.",
        ),
    ] = "kept",
    storage_option: StorageOpt = None,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Read a lake into a store (created if new), checking every shard; run it again safely.

    Malformed or unfinished shards are skipped and listed with their reason.
    """
    from mmner_data.lake import Lake, import_store

    with user_errors():
        lake = Lake(from_root, _storage_options(storage_option)).require()
        with open_store(None, store) as st, progress_bars(progress and not json_out) as bar:
            result = import_store(
                lake, st, subset=subset, progress=_advance(bar, "lake import (posts)")
            )
    if json_out:
        print_json(result)
        return
    new = result["new"]
    out.print(
        f"imported from {escape(result['root'])} ({result['subset']}): "
        f"{result['posts_selected']} of {result['posts_in_lake']} post(s) selected in "
        f"{result['shards_imported']}/{result['posts_shards']} shard(s)"
        + ("; filter selection applied" if result["filter_applied"] else ""),
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        "new rows: " + ", ".join(f"{name} {count}" for name, count in new.items()),
        highlight=False,
        soft_wrap=True,
    )
    if result["post_conflicts"]:
        out.print(
            f"[yellow]{result['post_conflicts']} post(s) left out: the store already has another "
            "post with the same source and source_id[/]"
        )
    if result["shards_skipped"]:
        console.print(f"[yellow]{result['shards_skipped']} shard(s) skipped:[/]")
        for item in result["skipped"][:10]:
            console.print(
                f"  {escape(item['table'])} shard {item['shard']}: {escape(item['reason'])}",
                highlight=False,
                soft_wrap=True,
            )
        if result["shards_skipped"] > 10:
            console.print(f"  … {result['shards_skipped'] - 10} more (see --json)")
