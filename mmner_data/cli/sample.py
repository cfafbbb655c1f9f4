"""``mmner-data sample serve``: the bundled sample on a loopback server."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

from mmner_data.cli._util import (
    out,
)

sample_app = typer.Typer(
    help="The bundled sample corpus and its loopback server.", no_args_is_help=True
)


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
