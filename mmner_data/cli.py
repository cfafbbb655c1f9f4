"""The ``mmner-data`` command line: one thin function per command, each calling one stage.

Exit codes: 0 ok, 1 a user error (one line on stderr saying why), 2 a usage error (Typer).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmner_data import __version__
from mmner_data.cli_options import JsonOpt, ProgressOpt, StoreOpt
from mmner_data.config import Recipe, RecipeError, build_recipe, load_recipe, read_recipe_yaml

app = typer.Typer(
    name="mmner-data",
    help="Build multilingual, multimodal NER datasets: crawl, dedup, filter, annotate, export, train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sample_app = typer.Typer(
    help="The bundled sample corpus and its loopback server.", no_args_is_help=True
)
app.add_typer(sample_app, name="sample")

console = Console(stderr=True)
out = Console()

RecipeOpt = Annotated[
    Path,
    typer.Option("--recipe", "-r", help="Recipe YAML (sources, languages, quotas, thresholds)."),
]


class UserError(Exception):
    """An error the user can fix; printed as one line, exit code 1."""


def _version(value: bool) -> None:
    if value:
        out.print(f"mmner-data {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output.")
    ] = 0,
) -> None:
    """mmner-data: from raw crawl to a published multimodal NER dataset."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)]
    )
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))


NO_CRAWL_SERVER = "http://127.0.0.1:0"  # what ${SAMPLE_SERVER} means to a stage that never crawls


def load_stage_recipe(path: Path) -> Recipe:
    """The recipe for a stage that reads only the store: no sample server is started."""
    return load_recipe(path, extra_vars={"SAMPLE_SERVER": NO_CRAWL_SERVER})


@contextlib.contextmanager
def open_recipe(path: Path) -> Iterator[Recipe]:
    """Load a recipe; with ``sample_server: true``, serve the bundled sample while it is open."""
    raw = read_recipe_yaml(path)
    if raw.get("sample_server"):
        from mmner_data.sample.server import SampleServer

        with SampleServer() as server:
            yield build_recipe(
                raw, recipe_dir=path.parent, extra_vars={"SAMPLE_SERVER": server.url}
            )
    else:
        yield build_recipe(raw, recipe_dir=path.parent)


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[Any]:
    """A ``(task, advance, total)`` callback drawing rich progress bars, or None."""
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks: dict[str, Any] = {}

        def update(name: str, advance: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], advance=advance, total=total)

        yield update


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into one line and exit code 1."""
    from mmner_data.sources import SourceError
    from mmner_data.store import StoreError

    try:
        yield
    except (RecipeError, SourceError, StoreError, UserError) as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        console.print("interrupted: finished work is saved; run the same command again to resume")
        raise typer.Exit(code=130) from None


def _open_store(recipe: Recipe, store: Path | None) -> Any:
    from mmner_data.store import CorpusStore

    return CorpusStore(store or Path(recipe.store))


def _print_collect(summary: dict[str, Any], report: dict[str, Any], paths: list[Path]) -> None:
    table = Table(title="collect", show_lines=False)
    table.add_column("language")
    table.add_column("kept", justify="right")
    for lang, n in report["kept"].items():
        table.add_row(lang, str(n))
    out.print(table)
    drops = Table(title="dropped (whole store)")
    drops.add_column("reason")
    drops.add_column("count", justify="right")
    for reason, counts in report["dropped"].items():
        drops.add_row(reason, str(sum(counts.values())))
    out.print(drops)
    for name, err in summary.get("source_errors", {}).items():
        console.print(
            f"[yellow]source {name} stopped:[/] {escape(str(err))}", highlight=False, soft_wrap=True
        )
    out.print("report: " + ", ".join(str(p) for p in paths))


@app.command()
def collect(
    recipe: RecipeOpt,
    store: StoreOpt = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Crawl sources that an earlier run exhausted again.")
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Retry images that failed with a transient error."),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate the recipe and show the plan; fetch nothing."),
    ] = False,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Crawl sources, identify languages, fetch images safely, deduplicate; resumable."""
    from mmner_data.collect.pipeline import run_collect
    from mmner_data.collect.report import build_drop_report, write_drop_report

    with user_errors(), open_recipe(recipe) as rcp:
        if dry_run:
            plan = {
                "recipe": rcp.name,
                "store": str(store or rcp.store),
                "languages": list(rcp.languages),
                "quotas": rcp.quotas,
                "sources": [{"name": s.name, "type": s.type} for s in rcp.sources],
            }
            out.print_json(json.dumps(plan)) if json_out else out.print(plan)
            return
        with _open_store(rcp, store) as st, progress_bars(progress and not json_out) as bar:
            summary = run_collect(rcp, st, progress=bar, refresh=refresh, retry_failed=retry_failed)
            paths = list(write_drop_report(st))
            report = build_drop_report(st)
        if json_out:
            out.print_json(json.dumps({"summary": summary.to_dict(), "report": report}))
        else:
            _print_collect(summary.to_dict(), report, paths)
        if (
            summary.source_errors
            and not any(summary.ingested.values())
            and not report["kept_total"]
        ):
            raise _fail("no source could be read: " + "; ".join(summary.source_errors.values()))


@app.command()
def dedup(recipe: RecipeOpt, store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Re-run dedup and quotas over the store with the recipe's thresholds (no crawling)."""
    from mmner_data.collect.pipeline import run_collect
    from mmner_data.collect.report import build_drop_report, write_drop_report

    with user_errors():
        rcp = load_stage_recipe(recipe)
        with _open_store(rcp, store) as st:
            summary = run_collect(rcp, st, skip_crawl=True)
            paths = list(write_drop_report(st))
            report = build_drop_report(st)
        if json_out:
            out.print_json(json.dumps({"summary": summary.to_dict(), "report": report}))
        else:
            _print_collect(summary.to_dict(), report, paths)


@sample_app.command("serve")
def sample_serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 = any free port).")] = 8765,
) -> None:
    """Serve the bundled sample (Mastodon API, Bluesky XRPC, RSS, images) on 127.0.0.1."""
    import time

    from mmner_data.sample.server import SampleServer

    with SampleServer(port=port) as server:
        out.print(f"serving the sample at {server.url} (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


# -- the other stages' commands live next to their stage; registered here in pipeline order ----
from mmner_data.agreement.command import agreement_command  # noqa: E402
from mmner_data.annotate.command import annotate_app  # noqa: E402
from mmner_data.export.command import export_command, run_command, stats_command  # noqa: E402
from mmner_data.models.command import (  # noqa: E402
    evaluate_command,
    preannotate_command,
    train_command,
)
from mmner_data.relevance.command import filter_command  # noqa: E402

app.command("filter")(filter_command)
app.command("preannotate")(preannotate_command)
app.add_typer(annotate_app, name="annotate")
app.command("agreement")(agreement_command)
app.command("export")(export_command)
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("run")(run_command)
app.command("stats")(stats_command)


def run() -> None:  # pragma: no cover - console-script shim
    sys.exit(app())
