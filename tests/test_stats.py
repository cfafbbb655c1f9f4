"""``stats``: counts per stage, language and reason from the store, as table, JSON, MD and PNG."""

from __future__ import annotations

import json

from export_helpers import SAMPLE_RECIPE, insert_gold, sample_recipe
from PIL import Image
from typer.testing import CliRunner

from mmner_data.cli import app
from mmner_data.export.pipeline import run_export
from mmner_data.export.settings import build_export_settings
from mmner_data.stats import compute_stats, rows, write_stats
from mmner_data.store import CorpusStore, utcnow


def test_counts_match_the_store(sample_store, tmp_path):
    with CorpusStore(sample_store) as st:
        insert_gold(st)
        run_export(st, sample_recipe(), build_export_settings({}, {}), out=tmp_path / "x")
        some = st.query("SELECT post_id FROM posts WHERE status='kept' AND lang='de' LIMIT 3")
        with st.transaction() as conn:
            for r in some:
                conn.execute(
                    "INSERT INTO predictions VALUES(?, 'm1', '[]', NULL, ?)",
                    (r["post_id"], utcnow()),
                )
        stats = compute_stats(st)
        by_reason = {
            r["drop_reason"]: r["n"]
            for r in st.query(
                "SELECT drop_reason, COUNT(*) n FROM posts WHERE status='dropped' GROUP BY 1"
            )
        }
        fetch = st.query("SELECT COUNT(*) FROM drops WHERE stage='fetch'")[0][0]
        paths = write_stats(st, stats)
    s = stats["stages"]
    assert list(s) == ["collect", "fetch", "preannotate", "agreement", "export"]
    assert s["collect"]["kept"] == {"de": 31, "en": 31, "es": 31, "fr": 31}
    for reason, n in by_reason.items():
        assert sum(s["collect"][f"dropped: {reason}"].values()) >= n
    assert sum(sum(c.values()) for c in s["fetch"].values()) == fetch
    assert s["preannotate"]["posts with predictions"] == {"de": 3}
    assert sum(s["agreement"]["adjudicated gold"].values()) == 124
    assert sum(sum(c.values()) for c in s["export"].values()) == 124
    assert stats["last_export"]["out"] == str((tmp_path / "x").resolve())
    # one row per stage/item with a total column
    table = rows(stats)
    langs = stats["languages"]
    assert {"de", "en", "es", "fr"} <= set(langs)
    assert table[0][:2] == ["collect", "kept"] and table[0][-1] == 124
    assert [table[0][2 + langs.index(x)] for x in ("de", "en", "es", "fr")] == [31] * 4
    assert [p.name for p in paths] == ["stats.json", "stats.md", "stats.png"]
    assert json.loads(paths[0].read_text())["stages"]["collect"]["kept"]["fr"] == 31
    assert "| collect | kept | " in paths[1].read_text()
    with Image.open(paths[2]) as im:
        assert im.format == "PNG" and im.size[0] > 500


def test_cli_stats_table_json_and_missing_store(sample_store, tmp_path):
    runner = CliRunner(env={"COLUMNS": "200"})
    r = runner.invoke(app, ["stats", "-r", str(SAMPLE_RECIPE), "--store", str(sample_store)])
    assert r.exit_code == 0, r.output
    assert "│ collect │ kept " in r.output and "near_dup_text" in r.output
    assert "stats.png" in r.output.replace("\n", "")
    r = runner.invoke(
        app, ["stats", "-r", str(SAMPLE_RECIPE), "--store", str(sample_store), "--json"]
    )
    assert json.loads(r.output)["stages"]["collect"]["kept"]["en"] == 31
    r = runner.invoke(app, ["stats", "-r", str(SAMPLE_RECIPE), "--store", str(tmp_path / "none")])
    assert r.exit_code == 1 and "error: no store at" in r.output
    assert not (tmp_path / "none").exists()
