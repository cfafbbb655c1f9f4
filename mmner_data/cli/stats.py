"""``mmner-data stats``: counts per stage, language and reason."""

from __future__ import annotations

import json
from pathlib import Path

from mmner_data.cli._util import (
    JsonOpt,
    StoreOpt,
    UserError,
    load_stage_recipe,
    recipe_option,
    user_errors,
)
from mmner_data.cli._util import out as stdout

RecipeOpt = recipe_option("export")


def stats_command(
    recipe: RecipeOpt,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Counts per stage, language and reason (kept, dropped and why, labelled, exported).

    Writes reports/stats.json, stats.md and stats.png in the store.
    """
    from rich.table import Table

    from mmner_data.stats import compute_stats, rows, write_stats
    from mmner_data.store import DB_NAME, CorpusStore

    with user_errors():
        rcp = load_stage_recipe(recipe)
        root = store or Path(rcp.store)
        if not (root / DB_NAME).exists():
            raise UserError(f"no store at {root} (run `mmner-data collect` first)")
        with CorpusStore(root) as st:
            stats = compute_stats(st)
            paths = write_stats(st, stats)
        if json_out:
            stdout.print_json(json.dumps({**stats, "files": [str(p) for p in paths]}))
            return
        table = Table(title="mmner-data stats")
        for col in ("stage", "item", *stats["languages"], "total"):
            table.add_column(col, justify="left" if col in ("stage", "item") else "right")
        last = None
        for row in rows(stats):
            stage = row[0] if row[0] != last else ""
            last = row[0]
            table.add_row(stage, *[str(x) for x in row[1:]])
        stdout.print(table)
        stdout.print("report: " + ", ".join(str(p) for p in paths))
