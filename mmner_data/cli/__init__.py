"""The ``mmner-data`` command line: a leaf over the stages.

One module per command, each only parsing options, calling one stage and printing its result;
``_util`` holds the app, consoles, progress bars, shared options and ``user_errors()``. Stage
packages never import this package (tests/test_architecture.py checks it).
"""

from __future__ import annotations

import sys

from mmner_data.cli import (
    agreement,
    annotate,
    collect,
    evaluate,
    export,
    lake,
    preannotate,
    run_stages,
    sample,
    serve,
    stats,
    train,
)
from mmner_data.cli import filter as filter_cmd
from mmner_data.cli._util import app

# registered in pipeline order (collect and dedup register themselves in cli/collect.py)
app.command("filter")(filter_cmd.filter_command)
app.command("preannotate")(preannotate.preannotate_command)
app.add_typer(annotate.annotate_app, name="annotate")
app.command("serve")(serve.serve_command)
app.command("agreement")(agreement.agreement_command)
app.command("export")(export.export_command)
app.command("train")(train.train_command)
app.command("evaluate")(evaluate.evaluate_command)
app.command("run")(run_stages.run_command)
app.command("stats")(stats.stats_command)
app.add_typer(sample.sample_app, name="sample")
app.add_typer(lake.lake_app, name="lake")

__all__ = ["app", "collect", "run"]


def run() -> None:  # pragma: no cover - console-script shim
    sys.exit(app())
