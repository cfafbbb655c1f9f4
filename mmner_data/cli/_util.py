"""What every command shares: the Typer app, the consoles, progress bars, option types and the
one place where user-fixable errors become one line and exit code 1.

Exit codes: 0 ok, 1 a user error (one line on stderr saying why), 2 a usage error (Typer),
130 interrupted. Any other exception is a bug: its traceback is shown with a line saying how to
report it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mmner_data import __version__
from mmner_data.errors import MmnerError, UserError
from mmner_data.recipes import load_stage_recipe, open_recipe

__all__ = [
    "JsonOpt",
    "ProgressOpt",
    "StoreOpt",
    "UserError",
    "app",
    "console",
    "fail",
    "load_stage_recipe",
    "open_recipe",
    "open_store",
    "out",
    "print_json",
    "progress_bars",
    "quiet_transformers",
    "recipe_option",
    "user_errors",
]

ISSUES_URL = "https://github.com/mmner-data/mmner-data/issues"

app = typer.Typer(
    name="mmner-data",
    help="Build multilingual, multimodal NER datasets: crawl, dedup, filter, annotate, export, train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console(stderr=True)
out = Console()


# -- options shared by the commands -----------------------------------------------------------
def recipe_option(section: str) -> Any:
    """``--recipe/-r``, saying which section of the recipe gives the command's defaults."""
    return Annotated[
        Path,
        typer.Option(
            "--recipe", "-r", help=f"Recipe YAML; its `{section}:` section gives the defaults."
        ),
    ]


StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Corpus store folder; overrides the recipe's `store`."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print a machine-readable JSON summary on stdout.")
]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="Where the heavy work runs: local (this process, default) or ray (a Ray cluster; "
        "pip install 'mmner-data[ray]'). Recipe: engine:.",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray cluster to join (ray://host:10001 or host:6379; default RAY_ADDRESS, "
        "else a local cluster).",
    ),
]
LakeOpt = Annotated[
    str | None,
    typer.Option(
        "--lake",
        help="Folder or fsspec URL (s3://, gs://) the Ray workers exchange shards through "
        "(default <store>/lake).",
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="Ray workers per stage (default: one per CPU)."),
]


def engine_overrides(
    engine: str | None, ray_address: str | None, lake: str | None, workers: int | None
) -> dict[str, Any]:
    """The engine options as stage overrides (None: not given)."""
    return {"engine": engine, "ray_address": ray_address, "lake": lake, "workers": workers}


DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="auto (cuda if available), cpu, cuda, cuda:N, mps.")
]


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


def quiet_transformers() -> None:
    """Silence transformers' download bars and warnings (our own progress bars say enough)."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


# -- output -----------------------------------------------------------------------------------
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
            task = tasks[name]
            if total is not None:
                done = progress.tasks[task].completed + advance
                total = max(total, int(done))  # never "4/1": a total that grew is raised
            progress.update(task, advance=advance, total=total)

        yield update


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout (for ``--json``)."""
    out.print_json(json.dumps(data, default=str))


def fail(message: str) -> typer.Exit:
    """Print ``message`` as the one error line; return the exit to raise (code 1)."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix (:class:`MmnerError`) into one line and exit code 1.

    Anything else is a bug: it propagates with its traceback, after a line saying how to report it.
    """
    try:
        yield
    except MmnerError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        console.print("interrupted: finished work is saved; run the same command again to resume")
        raise typer.Exit(code=130) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception:
        console.print(
            f"[bold red]internal error[/] (a bug in mmner-data {__version__}): please report it "
            f"with the traceback below at {ISSUES_URL}",
            highlight=False,
            soft_wrap=True,
        )
        raise


def open_store(recipe: Any, store: Path | None, *, create: bool = True) -> Any:
    """The corpus store named by ``--store`` or the recipe's ``store``.

    ``create=False``: a missing store is a one-line error, not a new empty store.
    """
    from mmner_data.store import CorpusStore

    return CorpusStore(store or Path(recipe.store), create=create)
