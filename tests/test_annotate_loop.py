"""The model-in-the-loop push options and the fixes from the end-to-end walkthrough.

Against the real local Label Studio server (tests/ls_fixture.py): ``push --order uncertainty`` is
the order Label Studio lists, ``--sample-uncertain``, ``push --refresh-predictions`` reaches only
unannotated tasks once per version, ``pull`` fails on the server check (wrong URL, HTML page), a
dry run counts the predictions the push attaches, and each queue's pull keeps its own report.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ls_fixture import LabelStudioServer, served_tmp_dir
from test_annotate_push_pull import _cli, _db
from typer.testing import CliRunner

from mmner_data.annotate.pull import PullResult, write_pull_report
from mmner_data.annotate.push import PostItem, order_items
from mmner_data.cli import app
from mmner_data.schema import EntitySpan
from mmner_data.store import CorpusStore

pytest_plugins = ["ls_fixture"]
pytestmark = pytest.mark.labelstudio

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "sample.yaml"
runner = CliRunner()


def _score(i: int, n: int) -> float:
    return round(((i * 37) % n) / n, 4)  # distinct, not in ingest order


@pytest.fixture
def loop_store(ls_env: LabelStudioServer, sample_store: Path) -> Iterator[Path]:
    """The sample store under the document root with two model versions of predictions.

    ``m-old`` predicts nothing for every post; ``m-new`` (the latest) predicts one span per post
    with a distinct item score, and nothing at all for every fifth post.
    """
    folder = served_tmp_dir(ls_env)
    dest = folder / "store"
    shutil.copytree(sample_store, dest)
    with CorpusStore(dest) as st, st.transaction() as conn:
        rows = conn.execute(
            "SELECT post_id, text FROM posts WHERE status='kept' ORDER BY ingest_seq"
        ).fetchall()
        for i, r in enumerate(rows):
            conn.execute(
                "INSERT INTO predictions VALUES(?, 'm-old', '[]', 0.5, '2026-01-01T00:00:00')",
                (r["post_id"],),
            )
            if i % 5 == 4:
                continue
            end = len(r["text"].split(" ")[0]) or 1
            spans = [{"start": 0, "end": end, "label": "MISC", "score": 0.5}]
            conn.execute(
                "INSERT INTO predictions VALUES(?, 'm-new', ?, ?, '2026-02-01T00:00:00')",
                (r["post_id"], json.dumps(spans), _score(i, len(rows))),
            )
    try:
        yield dest
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def title(ls_client) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"mmner-loop-{uuid.uuid4().hex[:8]}"
    yield name
    for p in ls_client.projects.list(page_size=1000):
        if p.title.startswith(name):
            ls_client.projects.delete(id=p.id)


def _push(store: Path, title: str, *extra: str) -> dict:
    return _cli(
        "annotate", "push", "-r", str(RECIPE), "--store", str(store), "--project", title,
        "--images", "none", *extra,
    )  # fmt: skip


def _expected_order(store: Path) -> list[str]:
    """Kept posts, least certain m-new prediction first, posts without one last."""
    with _db(store) as db:
        rows = db.execute(
            "SELECT p.post_id, pr.score FROM posts p LEFT JOIN predictions pr "
            "ON pr.post_id = p.post_id AND pr.model_version = 'm-new' "
            "WHERE p.status='kept' ORDER BY p.ingest_seq"
        ).fetchall()
    scored = [r for r in rows if r["score"] is not None]
    unscored = [r["post_id"] for r in rows if r["score"] is None]
    return [r["post_id"] for r in sorted(scored, key=lambda r: r["score"])] + unscored


def _listed(ls_client, project_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    """The project's tasks as Label Studio lists them (the default view, no ordering asked)."""
    return [t.data["post_id"] for t in ls_client.tasks.list(project=project_id, page_size=1000)]


# -- pure ordering ----------------------------------------------------------------------------


def test_order_items_least_certain_first_unscored_last() -> None:
    items = [PostItem(f"p{i}", "t", "en", None) for i in range(5)]
    span = EntitySpan(0, 1, "PER", 0.2)
    preds = {"p0": ([], 0.9), "p1": ([], 0.1), "p3": ([span], None), "p4": ([], 0.1)}
    got = [it.post_id for it in order_items(items, preds, "uncertainty")]
    assert got == ["p1", "p4", "p3", "p0", "p2"]  # ties keep crawl order; p2 has no prediction
    assert [it.post_id for it in order_items(items, preds, "crawl")] == [f"p{i}" for i in range(5)]


def test_span_edits_definition() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "annotation_effort", REPO / "benchmarks" / "annotation_effort.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    gold = [(0, 5, "PER"), (10, 15, "ORG"), (20, 25, "LOC"), (30, 35, "MISC"), (40, 45, "PER")]
    shown = [(0, 5, "PER"), (10, 15, "LOC"), (19, 25, "LOC"), (30, 33, "ORG"), (50, 55, "PER")]
    e = mod.span_edits(shown, gold)
    # exact 0; label 1; boundary 1; boundary + label 2; a stray span 1; a missed span 1
    assert dict(e) == {"label": 2, "boundary": 2, "delete": 1, "insert": 1}
    assert sum(mod.span_edits([], gold).values()) == len(gold)


# -- uncertainty order ------------------------------------------------------------------------


def test_uncertainty_order_is_what_label_studio_lists_and_later_pushes_follow(
    ls_client,  # type: ignore[no-untyped-def]
    loop_store: Path,
    title: str,
) -> None:
    want = _expected_order(loop_store)
    first = _push(loop_store, title, "--order", "uncertainty", "--limit", "10")
    assert first["order"] == "uncertainty" and first["imported"] == 10
    assert _listed(ls_client, first["project_id"]) == want[:10]

    rest = _push(loop_store, title, "--order", "uncertainty")
    assert rest["imported"] == len(want) - 10
    assert any("keep their place" in n for n in rest["notes"])
    # the earlier tasks keep their ids; the new ones follow, least certain first among them
    assert _listed(ls_client, first["project_id"]) == want


def test_sample_uncertain_pushes_only_the_least_certain(
    ls_client,  # type: ignore[no-untyped-def]
    loop_store: Path,
    title: str,
) -> None:
    res = _push(loop_store, title, "--sample-uncertain", "7")
    assert res["order"] == "uncertainty" and res["imported"] == 7
    assert _listed(ls_client, res["project_id"]) == _expected_order(loop_store)[:7]


def test_order_uncertainty_without_predictions_is_a_one_line_error(
    ls_env: LabelStudioServer, loop_store: Path, title: str
) -> None:
    with _db(loop_store) as db:
        db.execute("DELETE FROM predictions")
    res = runner.invoke(
        app,
        ["annotate", "push", "-r", str(RECIPE), "--store", str(loop_store), "--project", title,
         "--order", "uncertainty", "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 1
    assert "run 'mmner-data preannotate' first" in res.output
    assert "Traceback" not in res.output


# -- refresh predictions ----------------------------------------------------------------------


def test_refresh_predictions_reaches_unannotated_tasks_once(
    ls_client,  # type: ignore[no-untyped-def]
    loop_store: Path,
    title: str,
) -> None:
    pushed = _push(loop_store, title, "--model-version", "m-old")
    pid = pushed["project_id"]
    with _db(loop_store) as db:
        tasks = dict(db.execute("SELECT post_id, task_id FROM ls_tasks").fetchall())
        new_preds = {
            r[0] for r in db.execute("SELECT post_id FROM predictions WHERE model_version='m-new'")
        }
    assert len(tasks) == pushed["selected"] > 10
    annotated_post = next(p for p in tasks if p in new_preds)
    ls_client.annotations.create(id=tasks[annotated_post], result=[], lead_time=1.0)
    expect = {p for p in tasks if p in new_preds and p != annotated_post}

    dry = _push(loop_store, title, "--refresh-predictions", "--dry-run")
    assert dry["refreshed"] == len(expect) and dry["refresh_skipped_annotated"] == 1
    human = runner.invoke(
        app,
        ["annotate", "push", "-r", str(RECIPE), "--store", str(loop_store), "--project", title,
         "--images", "none", "--refresh-predictions", "--dry-run", "--order", "uncertainty",
         "--no-progress"],
    )  # fmt: skip
    assert human.exit_code == 0, human.output
    text = " ".join(human.output.split())
    assert "least certain first" in text
    assert f"refresh: would send m-new predictions to {len(expect)} unannotated task(s)" in text

    res = _push(loop_store, title, "--refresh-predictions")
    assert res["model_version"] == "m-new" and res["imported"] == 0
    assert res["refreshed"] == len(expect)
    assert res["refresh_skipped_annotated"] == 1 and res["refresh_up_to_date"] == 0

    def versions_by_task() -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for p in ls_client.predictions.list(project=pid):
            out.setdefault(int(p.task), []).append(p.model_version)
        return {k: sorted(v) for k, v in out.items()}

    got = versions_by_task()
    for post, task in tasks.items():
        want = ["m-new", "m-old"] if post in expect else ["m-old"]
        assert got.get(task) == want, post
    with _db(loop_store) as db:
        recorded = dict(db.execute("SELECT post_id, model_version FROM ls_tasks").fetchall())
    assert {p for p, v in recorded.items() if v == "m-new"} == expect
    assert recorded[annotated_post] == "m-old"
    assert ls_client.projects.get(id=pid).model_version == "m-new"

    again = _push(loop_store, title, "--refresh-predictions")  # idempotent
    assert again["refreshed"] == 0 and again["refresh_up_to_date"] == len(expect)
    assert versions_by_task() == got


# -- fixes ------------------------------------------------------------------------------------


def test_dry_run_counts_the_predictions_the_push_attaches(
    ls_env: LabelStudioServer, loop_store: Path, title: str
) -> None:
    dry_new = _push(loop_store, title, "--dry-run")  # the project does not exist yet
    real = _push(loop_store, title, "--limit", "3")
    with _db(loop_store) as db:
        n_new = db.execute(
            "SELECT COUNT(*) FROM predictions WHERE model_version='m-new'"
        ).fetchone()
    assert dry_new["with_predictions"] == n_new[0] > 0
    dry_rest = _push(loop_store, title, "--dry-run")  # the project exists: the rest
    final = _push(loop_store, title)
    assert real["with_predictions"] + dry_rest["with_predictions"] == dry_new["with_predictions"]
    assert final["with_predictions"] == dry_rest["with_predictions"]


class _HtmlPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><html><body>not Label Studio</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pull_output(store: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LABEL_STUDIO_URL", url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-a-real-key")
    res = runner.invoke(
        app, ["annotate", "pull", "-r", str(RECIPE), "--store", str(store), "--no-progress"]
    )
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert "nothing was pushed" not in res.output and "run push first" not in res.output
    return " ".join(res.output.split())


def test_pull_fails_on_the_server_check_not_on_nothing_pushed(
    sample_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = f"http://127.0.0.1:{_free_port()}"
    assert "cannot reach Label Studio" in _pull_output(sample_store, closed, monkeypatch)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        html = f"http://127.0.0.1:{server.server_address[1]}"
        text = _pull_output(sample_store, html, monkeypatch)
        assert f"Label Studio at {html}" in text
    finally:
        server.shutdown()
        server.server_close()


def test_each_queue_pull_keeps_its_own_report(sample_store: Path) -> None:
    with CorpusStore(sample_store) as st:
        a = write_pull_report(st, PullResult("http://x", 1, "http://x#1", "t", "annotate"))
        r = write_pull_report(
            st, PullResult("http://x", 2, "http://x#2", "t — review", "review", reviewed_gold=3)
        )
    assert [Path(p).name for p in a] == ["annotate_pull.json", "annotate_pull.md"]
    assert [Path(p).name for p in r] == ["annotate_pull_review.json", "annotate_pull_review.md"]
    assert "(annotate)" in Path(a[1]).read_text(encoding="utf-8")
    review_md = Path(r[1]).read_text(encoding="utf-8")
    assert "(review)" in review_md and "3 reviewed post(s) stored as gold" in review_md
