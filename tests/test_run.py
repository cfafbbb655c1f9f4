"""``run``: every stage in order on the sample recipe, resumable, ending with the export."""

from __future__ import annotations

import json

from export_helpers import SAMPLE_RECIPE, insert_predictions
from typer.testing import CliRunner

from mmner_data.cli import app
from mmner_data.pipeline import STAGES, run_pipeline
from mmner_data.store import CorpusStore


def _statuses(result) -> dict[str, str]:
    return {s.stage: s.status for s in result.stages}


def test_run_on_the_sample_resumes_and_exports_marked_silver(sample_store, tmp_path):
    from datasets import load_from_disk

    with CorpusStore(sample_store) as st:
        n_posts = st.query("SELECT COUNT(*) FROM posts")[0][0]
        # an earlier pre-annotation run (the bundled model may not be there in this checkout)
        insert_predictions(st, "earlier-run")
    seen: list[str] = []
    bars: dict[str, int] = {}

    def progress(name: str, advance: int, total: int | None) -> None:
        bars[name] = bars.get(name, 0) + advance

    out = tmp_path / "export"
    result = run_pipeline(
        SAMPLE_RECIPE,
        sample_store,
        export_out=out,
        progress=progress,
        on_stage=lambda s: seen.append(s.stage),
    )
    status = _statuses(result)
    assert seen == list(STAGES) and result.failed is None
    assert status["collect"] == "done" and status["export"] == "done" and status["stats"] == "done"
    assert status["filter"] == "skipped"  # the sample recipe has no `filter:` section
    assert status["annotate"] == "skipped" and status["agreement"] == "skipped"
    assert status["preannotate"] in {"done", "skipped"}
    details = {s.stage: s.detail for s in result.stages}
    assert "filter:" in details["filter"] and "Label Studio" in details["annotate"]
    # one bar per stage
    assert all(bars.get(f"{i}/{len(STAGES)} {s}") == 1 for i, s in enumerate(STAGES, start=1))
    assert result.export_path == out.resolve()
    dd = load_from_disk(str(out))
    assert sum(len(ds) for ds in dd.values()) == 124
    assert {x for ds in dd.values() for x in ds["label_source"]} == {"silver"}
    assert "carry silver labels" in (out / "README.md").read_text()
    assert (sample_store / "reports" / "stats.png").exists()
    with CorpusStore(sample_store) as st:
        assert st.query("SELECT COUNT(*) FROM posts")[0][0] == n_posts  # collect resumed
    first = {r: s for s, ds in dd.items() for r in ds["id"]}

    again = run_pipeline(SAMPLE_RECIPE, sample_store, export_out=out, skip=["preannotate"])
    assert again.failed is None and _statuses(again)["preannotate"] == "skipped"
    dd2 = load_from_disk(str(out))
    assert {r: s for s, ds in dd2.items() for r in ds["id"]} == first


def test_cli_run_json_skip_and_failures(sample_store, tmp_path, monkeypatch):
    runner = CliRunner()
    r = runner.invoke(app, ["run", "-r", str(SAMPLE_RECIPE), "--skip", "nope"])
    assert r.exit_code == 1 and "unknown stage" in r.output
    with CorpusStore(sample_store) as st:
        insert_predictions(st)
    args = ["run", "-r", str(SAMPLE_RECIPE), "--store", str(sample_store)]
    r = runner.invoke(
        app, [*args, "--skip", "collect", "--skip", "preannotate", "--json"], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["export_path"] and data["stages"][0]["status"] == "skipped"
    r = runner.invoke(app, [*args, "--skip", "collect", "--out", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    assert r.output.rstrip().splitlines()[-1] == f"export: {(tmp_path / 'e').resolve()}"

    # a configured stage that fails stops the run with a one-line error
    recipe = tmp_path / "r.yaml"
    recipe.write_text(SAMPLE_RECIPE.read_text() + "\nannotate:\n  url: http://127.0.0.1:9\n")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "x")
    r = runner.invoke(
        app,
        [
            "run",
            "-r",
            str(recipe),
            "--store",
            str(sample_store),
            "--skip",
            "collect",
            "--skip",
            "preannotate",
            "--no-progress",
        ],
    )
    assert r.exit_code == 1
    assert "error: stage annotate failed" in r.output
    assert "agreement" not in r.output  # the run stopped at the failed stage
