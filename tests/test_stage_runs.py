"""Every stage writes exactly one ``runs`` row, from ``mmner-data <stage>`` and from ``run``.

(annotate push/pull against the real Label Studio: tests/test_annotate_push_pull.py.)
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
import yaml
from test_agreement_stage import insert_store, kept_posts, simulate
from tiny_clip import write_tiny_clip
from typer.testing import CliRunner

from mmner_data.cli import app

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RECIPE = REPO / "recipes" / "sample.yaml"
runner = CliRunner()


def runs(store: Path) -> Counter[str]:
    with sqlite3.connect(store / "corpus.sqlite") as db:
        return Counter(r[0] for r in db.execute("SELECT stage FROM runs"))


def cli(*args: str) -> None:
    res = runner.invoke(app, [*args, "--no-progress"] if args[0] != "dedup" else list(args))
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture
def recipe(tmp_path: Path, tiny: Path) -> Path:
    """The sample recipe with a `filter:` section (tiny CLIP) and the store under tmp_path."""
    raw = yaml.safe_load(SAMPLE_RECIPE.read_text(encoding="utf-8"))
    raw["store"] = str(tmp_path / "store")
    raw["filter"] = {"model": str(tiny), "device": "cpu", "num_workers": 0, "keep_top": 1.0}
    raw["export"] = {**raw.get("export", {}), "include_silver": True}
    for src in raw["sources"]:  # relative paths in the sample recipe stay valid from tmp_path
        if "path" in src and not Path(src["path"]).is_absolute():
            src["path"] = str((SAMPLE_RECIPE.parent / src["path"]).resolve())
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_each_command_writes_one_row_of_its_own_stage(
    sample_store: Path, recipe: Path, tmp_path: Path
) -> None:
    store = tmp_path / "copy"
    shutil.copytree(sample_store, store)
    insert_store(store, simulate(kept_posts(store)))
    steps = [
        ("dedup", ["dedup", "-r", str(recipe), "--store", str(store)]),
        ("filter", ["filter", "-r", str(recipe), "--store", str(store)]),
        ("preannotate", ["preannotate", "-r", str(recipe), "--store", str(store)]),
        ("agreement", ["agreement", "-r", str(recipe), "--store", str(store)]),
        ("export", ["export", "-r", str(recipe), "--store", str(store), "--include-silver"]),
    ]
    for stage, args in steps:
        before = runs(store)
        cli(*args)
        assert runs(store) - before == Counter({stage: 1}), stage
    before = runs(store)
    res = runner.invoke(app, ["export", "-r", str(recipe), "--store", str(store), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert runs(store) == before  # a dry run records nothing


def test_run_writes_one_row_per_stage_it_runs(
    sample_store: Path, recipe: Path, tmp_path: Path
) -> None:
    store = tmp_path / "copy"
    shutil.copytree(sample_store, store)
    insert_store(store, simulate(kept_posts(store)))
    before = runs(store)
    res = runner.invoke(
        app, ["run", "-r", str(recipe), "--store", str(store), "--json", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    statuses = {s["stage"]: s["status"] for s in json.loads(res.stdout)["stages"]}
    assert statuses["annotate"] == "skipped"  # no Label Studio in this recipe
    assert runs(store) - before == Counter(
        {"collect": 1, "filter": 1, "preannotate": 1, "agreement": 1, "export": 1}
    )


def test_collect_command_writes_one_collect_row(recipe: Path, tmp_path: Path) -> None:
    store = tmp_path / "fresh"
    cli("collect", "-r", str(recipe), "--store", str(store))
    assert runs(store) == Counter({"collect": 1})
