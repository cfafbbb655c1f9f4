"""The ``collect`` and ``dedup`` commands as a user runs them: exit codes, one-line errors,
``--dry-run``, ``--json``, and a ``dedup`` re-run that recomputes the same result.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mmner_data.cli import app
from mmner_data.config import SAMPLE_DATA_DIR

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RECIPE = REPO / "recipes" / "sample.yaml"
SALT = os.environ.setdefault("MMNER_PSEUDONYM_SALT", "test-salt")


def mmner(*args: str, columns: int = 250, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess (stdout/stderr as a user sees them)."""
    env = {**os.environ, "MMNER_PSEUDONYM_SALT": SALT, "COLUMNS": str(columns)}
    code = "import sys; from mmner_data.cli import run; sys.argv[0] = 'mmner-data'; run()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def _assert_one_error_line(
    proc: subprocess.CompletedProcess, *needles: str, alone: bool = True
) -> str:
    """Exit code 1 and a last stderr line ``error: …`` (with ``alone``, the only line)."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip("\n").split("\n")
    if alone:
        assert len(lines) == 1, proc.stderr
    assert lines[-1].startswith("error: "), lines[-1]
    for needle in needles:
        assert needle in lines[-1], lines[-1]
    return lines[-1]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


BAD_RECIPES = {
    "unknown key": (
        "name: x\nsourcez: []\nsources:\n  - {name: a, type: jsonl, path: a.jsonl}\n",
        ("invalid recipe", "sourcez: unknown key"),
    ),
    "misspelt source key": (
        "sources:\n  - {name: a, type: jsonl, pth: a.jsonl}\n",
        ("sources.0.jsonl.pth: unknown key", "sources.0.jsonl.path: Field required"),
    ),
    "not yaml": ("sources: [unclosed\n", ("not valid YAML",)),
    "bad language": (
        "languages: [english]\nsources:\n  - {name: a, type: jsonl, path: a.jsonl}\n",
        ("'english' is not an ISO 639-1 code",),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipe_is_one_error_line_and_exit_1(case: str, tmp_path: Path) -> None:
    text, needles = BAD_RECIPES[case]
    recipe = _write(tmp_path / "bad.yaml", text)
    proc = mmner("collect", "--recipe", str(recipe), "--store", str(tmp_path / "store"))
    _assert_one_error_line(proc, *needles)
    assert not (tmp_path / "store").exists()  # nothing written


def test_missing_recipe_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    _assert_one_error_line(mmner("collect", "-r", str(missing)), f"recipe not found: {missing}")
    _assert_one_error_line(mmner("dedup", "-r", str(missing)), "recipe not found")


def test_long_error_stays_one_line_on_an_80_column_terminal(tmp_path: Path) -> None:
    missing = tmp_path / ("a-rather-long-folder-name-for-a-recipe" * 2) / "recipe.yaml"
    _assert_one_error_line(mmner("collect", "-r", str(missing), columns=80), "recipe not found")


def test_no_readable_source_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recipe = _write(
        tmp_path / "dead.yaml",
        f"sources:\n  - {{name: dead, type: mastodon, base_url: 'http://127.0.0.1:{port}', "
        "retries: 0}\n",
    )
    proc = mmner("collect", "-r", str(recipe), "--store", str(tmp_path / "s"), "--no-progress")
    line = _assert_one_error_line(
        proc, "no source could be read", "connection_error after 1 attempt:", str(port), alone=False
    )
    # before it, only the summary's one line per stopped source: no log records, no traceback
    assert proc.stderr.strip("\n").split("\n") == [
        line.replace("error: no source could be read:", "source dead stopped:"),
        line,
    ]


def test_dry_run_json_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = mmner("collect", "-r", str(SAMPLE_RECIPE), "--store", str(store), "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan == {
        "recipe": "sample",
        "store": str(store),
        "languages": ["en", "fr", "de", "es"],
        "quotas": {},
        "sources": [
            {"name": "mastodon", "type": "mastodon"},
            {"name": "bluesky", "type": "bluesky"},
            {"name": "news", "type": "rss"},
            {"name": "local", "type": "jsonl"},
        ],
    }
    assert not store.exists()


# -- a small real collect through the console script -------------------------------------------


def _small_recipe(tmp_path: Path) -> Path:
    """Three local posts with bundled images and one malformed line; the fast lingua mode."""
    sample = [
        json.loads(line)
        for line in (SAMPLE_DATA_DIR / "local.jsonl").read_text(encoding="utf-8").splitlines()
        if line.startswith('{"id": "en-') or line.startswith('{"id": "fr-')
    ][:3]
    for rec in sample:
        rec["image"] = str(SAMPLE_DATA_DIR / rec["image"])
    lines = [json.dumps(r, ensure_ascii=False) for r in sample] + ['{"id": "broken", "te']
    _write(tmp_path / "posts.jsonl", "\n".join(lines) + "\n")
    return _write(
        tmp_path / "small.yaml",
        "name: small\nsources:\n  - {name: mine, type: jsonl, path: '${RECIPE_DIR}/posts.jsonl'}\n"
        # the images live in the bundled sample's folder, outside the posts file's own folder
        "url_policy: {local_roots: ['${SAMPLE_DATA}']}\n"
        "langid: {low_accuracy: true}\n",
    )


def test_json_summary_parses_and_tables_print(tmp_path: Path) -> None:
    recipe = _small_recipe(tmp_path)
    store = tmp_path / "store"
    proc = mmner("collect", "-r", str(recipe), "--store", str(store), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # stdout is the JSON document and nothing else
    assert out["summary"]["ingested"] == {"mine": 3}
    assert out["summary"]["images"] == {"ok": 3}
    assert out["report"]["kept_total"] == 3
    assert out["report"]["dropped"] == {"malformed_record": {"und": 1}}
    assert json.loads((store / "reports" / "collect_report.json").read_text()) == out["report"]
    assert (store / "reports" / "collect_report.md").is_file()

    again = mmner("collect", "-r", str(recipe), "--store", str(store), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "kept" in again.stdout and "malformed_record" in again.stdout
    assert "report: " in again.stdout


# -- dedup re-runs ---------------------------------------------------------------------------


def _outcomes(store: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(store / "corpus.sqlite")
    rows = conn.execute(
        "SELECT post_id, status, drop_reason, dup_of, cluster_id FROM posts ORDER BY post_id"
    ).fetchall()
    conn.close()
    return rows


def _dedup(recipe: Path, store: Path) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["dedup", "-r", str(recipe), "--store", str(store), "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_dedup_rerun_keeps_the_same_result(sample_store: Path, tmp_path: Path) -> None:
    before = _outcomes(sample_store)
    first = _dedup(SAMPLE_RECIPE, sample_store)
    assert _outcomes(sample_store) == before  # same thresholds: nothing moves
    second = _dedup(SAMPLE_RECIPE, sample_store)
    assert _outcomes(sample_store) == before
    assert first["report"] == second["report"]
    assert first["summary"]["ingested"] == {} and first["summary"]["images"] == {}

    # Other thresholds recompute from scratch; the original ones bring back the same result.
    loose = SAMPLE_RECIPE.read_text(encoding="utf-8").replace(
        "text_threshold: 0.7", "text_threshold: 0.7\n  near_text: false\n  near_image: false"
    )
    loose_recipe = _write(tmp_path / "loose.yaml", loose)
    out = _dedup(loose_recipe, sample_store)
    dropped = second["report"]["dropped"]
    assert set(out["report"]["dropped"]) == set(dropped) - {"near_dup_text", "near_dup_image"}
    n_near = sum(dropped["near_dup_text"].values()) + sum(dropped["near_dup_image"].values())
    assert n_near == 12
    assert out["report"]["kept_total"] == second["report"]["kept_total"] + n_near
    assert _dedup(SAMPLE_RECIPE, sample_store)["report"] == second["report"]
    assert _outcomes(sample_store) == before
