"""Open a recipe for a stage: with the bundled sample's loopback server when the recipe asks.

A recipe with ``sample_server: true`` names ``${SAMPLE_SERVER}`` in its source URLs; stages that
crawl (``collect``, ``run``) serve the bundled sample while the recipe is open, and stages that only
read the store get a placeholder address that is never contacted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from mmner_data.config import Recipe, build_recipe, load_recipe, read_recipe_yaml

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
