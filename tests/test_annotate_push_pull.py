"""``annotate push`` / ``annotate pull`` against the real local Label Studio server.

Marked ``labelstudio``; the server is shared per session (tests/ls_fixture.py). Each test works
in its own project (unique title, deleted afterwards) on a private copy of the collected sample
placed under the server's local-files document root, with predictions made from the sample's
gold entities.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ls_fixture import LabelStudioServer, invite_annotator, served_tmp_dir
from typer.testing import CliRunner

from mmner_data.annotate.client import LSClient
from mmner_data.annotate.push import PushError, run_push
from mmner_data.annotate.settings import build_annotate_settings
from mmner_data.cli import app
from mmner_data.schema import EntitySpan
from mmner_data.store import CorpusStore
from mmner_data.text.spans import spans_to_tags
from mmner_data.text.tokenize import tokenize

pytest_plugins = ["ls_fixture"]
pytestmark = pytest.mark.labelstudio

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "sample.yaml"
GOLD = REPO / "mmner_data" / "sample" / "data" / "posts.jsonl"
runner = CliRunner()


# -- fixtures ---------------------------------------------------------------------------------


def _gold_by_text() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for line in GOLD.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        out.setdefault(d["text"], d["entities"])
    return out


@pytest.fixture
def store_dir(ls_env: LabelStudioServer, sample_store: Path) -> Iterator[Path]:
    """The sample store under the document root, with predictions from two model versions.

    ``m-old`` predicts nothing; ``m-new`` (the latest) predicts the gold entities with scores.
    """
    folder = served_tmp_dir(ls_env)
    dest = folder / "store"
    shutil.copytree(sample_store, dest)
    gold = _gold_by_text()
    with CorpusStore(dest) as st, st.transaction() as conn:
        for r in conn.execute("SELECT post_id, text FROM posts WHERE status='kept'").fetchall():
            spans = [
                {"start": e["start"], "end": e["end"], "label": e["label"], "score": 0.9}
                for e in gold[r["text"]]
            ]
            conn.execute(
                "INSERT INTO predictions VALUES(?, 'm-old', '[]', 0.1, '2026-01-01T00:00:00')",
                (r["post_id"],),
            )
            conn.execute(
                "INSERT INTO predictions VALUES(?, 'm-new', ?, 0.8, '2026-02-01T00:00:00')",
                (r["post_id"], json.dumps(spans)),
            )
    try:
        yield dest
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def title(ls_client) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A unique project title; every project with it (and its review twin) is deleted after."""
    name = f"mmner-annotate-{uuid.uuid4().hex[:8]}"
    yield name
    for p in ls_client.projects.list(page_size=1000):
        if p.title.startswith(name):
            ls_client.projects.delete(id=p.id)


def _cli(*args: str) -> dict:
    res = runner.invoke(app, [*args, "--json", "--no-progress"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _push(store: Path, title: str, *extra: str) -> dict:
    return _cli(
        "annotate", "push", "-r", str(RECIPE), "--store", str(store), "--project", title, *extra
    )


def _pull(store: Path, title: str, *extra: str) -> dict:
    return _cli(
        "annotate", "pull", "-r", str(RECIPE), "--store", str(store), "--project", title, *extra
    )


def _db(store: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(store / "corpus.sqlite")
    conn.row_factory = sqlite3.Row
    return conn


def _project_tasks(ls_client, project_id: int) -> list:  # type: ignore[no-untyped-def]
    return list(ls_client.tasks.list(project=project_id, fields="all", page_size=1000))


def _assert_one_task_per_post(ls_client, store: Path, project_id: int) -> None:  # type: ignore[no-untyped-def]
    tasks = _project_tasks(ls_client, project_id)
    post_ids = [t.data["post_id"] for t in tasks]
    assert len(post_ids) == len(set(post_ids)), "duplicate tasks"
    with _db(store) as db:
        kept = {r[0] for r in db.execute("SELECT post_id FROM posts WHERE status='kept'")}
        recorded = dict(db.execute("SELECT post_id, task_id FROM ls_tasks").fetchall())
    assert set(post_ids) == kept
    assert recorded == {t.data["post_id"]: t.id for t in tasks}


# -- push -------------------------------------------------------------------------------------


def test_push_sample_with_predictions_and_images_then_rerun_adds_only_new(
    ls_env: LabelStudioServer,
    ls_client,  # type: ignore[no-untyped-def]
    store_dir: Path,
    title: str,
) -> None:
    with _db(store_dir) as db:  # hold one post back, as if collected later
        late = db.execute(
            "SELECT post_id FROM posts WHERE status='kept' ORDER BY ingest_seq DESC"
        ).fetchone()[0]
        db.execute("UPDATE posts SET status='candidate' WHERE post_id=?", (late,))
    first = _push(store_dir, title, "--batch-size", "50")
    n = first["selected"]
    assert first["created_project"] and first["imported"] == n and first["batches"] == 3
    assert first["model_version"] == "m-new" and first["with_predictions"] == n

    tasks = {t.data["post_id"]: t for t in _project_tasks(ls_client, first["project_id"])}
    assert len(tasks) == n
    gold = _gold_by_text()
    with _db(store_dir) as db:
        posts = {r["post_id"]: r for r in db.execute("SELECT * FROM posts WHERE status='kept'")}
        image = dict(
            db.execute(
                "SELECT pi.post_id, i.path FROM post_images pi JOIN images i USING(sha256) "
                "WHERE pi.status='ok' AND pi.position=0"
            ).fetchall()
        )
        project = db.execute("SELECT * FROM ls_projects").fetchone()
    assert project["project_key"] == f"{ls_env.url}#{first['project_id']}"
    assert project["kind"] == "annotate" and project["title"] == title
    for post_id, task in tasks.items():
        post = posts[post_id]
        assert task.data["text"] == post["text"] and task.data["lang"] == post["lang"]
        (pred,) = task.predictions
        assert pred.model_version == "m-new" and pred.score == pytest.approx(0.8)
        assert [
            (r["value"]["start"], r["value"]["end"], r["value"]["labels"][0], r["score"])
            for r in pred.result
        ] == [(e["start"], e["end"], e["label"], 0.9) for e in gold[post["text"]]]
    # Images come from the store itself through local-files storage.
    post_id = next(p for p in tasks if p in image)
    served = httpx.get(
        ls_env.url + tasks[post_id].data["image"],
        headers={"Authorization": f"Token {ls_env.token}"},
        timeout=30,
    )
    assert served.status_code == 200
    assert served.content == (store_dir / image[post_id]).read_bytes()

    again = _push(store_dir, title)
    assert (again["imported"], again["already_pushed"], again["created_project"]) == (0, n, False)
    with _db(store_dir) as db:
        db.execute("UPDATE posts SET status='kept' WHERE post_id=?", (late,))
    third = _push(store_dir, title)
    assert third["imported"] == 1 and third["selected"] == n + 1
    _assert_one_task_per_post(ls_client, store_dir, first["project_id"])

    other = _push(store_dir, title, "--model-version", "m-old", "--dry-run")
    assert other["to_push"] == 0 and other["model_version"] == "m-old"


def test_push_only_posts_kept_by_filter_with_overlap(
    ls_client,  # type: ignore[no-untyped-def]
    store_dir: Path,
    title: str,
) -> None:
    with _db(store_dir) as db:
        kept = [
            r[0]
            for r in db.execute("SELECT post_id FROM posts WHERE status='kept' ORDER BY post_id")
        ]
        for i, pid in enumerate(kept[:6]):
            db.execute(
                "INSERT INTO relevance_selection VALUES(?, 'clip', 'en', ?, ?, 0.3, 0.2, 'threshold', 'now')",
                (pid, "kept" if i % 2 == 0 else "dropped_low_relevance", int(i % 2 == 0)),
            )
    res = _push(store_dir, title, "--overlap", "2", "--overlap-fraction", "0.5", "--images", "none")
    assert res["imported"] == 3
    tasks = _project_tasks(ls_client, res["project_id"])
    assert sorted(t.data["post_id"] for t in tasks) == kept[:6:2]
    assert all(t.data["image"] == "" for t in tasks)
    proj = ls_client.projects.get(id=res["project_id"])
    assert (proj.maximum_annotations, proj.overlap_cohort_percentage) == (2, 50)
    assert sorted(t.overlap for t in tasks) in ([1, 2, 2], [1, 1, 2])


def test_push_killed_midway_then_rerun_leaves_no_duplicates(
    ls_env: LabelStudioServer,
    ls_client,  # type: ignore[no-untyped-def]
    store_dir: Path,
    title: str,
) -> None:
    cmd = [
        sys.executable, "-c", "from mmner_data.cli import app; app()", "annotate", "push", "-r", str(RECIPE),
        "--store", str(store_dir), "--project", title, "--batch-size", "4", "--no-progress",
        "--images", "none",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    recorded = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with _db(store_dir) as db:
                recorded = db.execute("SELECT COUNT(*) FROM ls_tasks").fetchone()[0]
        except sqlite3.OperationalError:
            recorded = 0
        if recorded >= 8:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with _db(store_dir) as db:
        recorded = db.execute("SELECT COUNT(*) FROM ls_tasks").fetchone()[0]
        total = db.execute("SELECT COUNT(*) FROM posts WHERE status='kept'").fetchone()[0]
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    assert 0 < recorded < total, "the push was not killed midway"
    res = _push(store_dir, title, "--images", "none")
    assert res["imported"] + res["already_pushed"] == total
    _assert_one_task_per_post(ls_client, store_dir, res["project_id"])


def test_crash_between_import_and_store_write_is_recovered(
    ls_client,  # type: ignore[no-untyped-def]
    store_dir: Path,
    title: str,
) -> None:
    """Tasks that reached Label Studio but not the store are found by post_id, not re-imported."""
    first = _push(store_dir, title, "--images", "none", "--limit", "20")
    with _db(store_dir) as db:
        db.execute("DELETE FROM ls_tasks WHERE rowid IN (SELECT rowid FROM ls_tasks LIMIT 7)")
    res = _push(store_dir, title, "--images", "none")
    assert res["recovered"] == 7 and res["imported"] == res["selected"] - 20
    _assert_one_task_per_post(ls_client, store_dir, first["project_id"])


class _Proxy:
    """A TCP proxy to the server that can be shut down (the server 'goes down')."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.open = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() call
        self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()


def test_server_down_mid_push_is_one_line_and_resumable(
    ls_env: LabelStudioServer,
    ls_client,  # type: ignore[no-untyped-def]
    store_dir: Path,
    title: str,
) -> None:
    port = int(ls_env.url.rsplit(":", 1)[1])
    proxy = _Proxy(port)
    url = f"http://127.0.0.1:{proxy.port}"
    settings = build_annotate_settings({"project": title, "batch_size": 10, "images": "none"})
    batches = []

    def stop_after_two(name: str, n: int, total: int | None) -> None:
        batches.append(n)
        if len(batches) == 2:
            proxy.close()

    with CorpusStore(store_dir) as st:
        client = LSClient(url, ls_env.token, timeout=20)
        with pytest.raises(PushError) as err:
            run_push(
                st,
                client,
                settings,
                ("PER", "ORG", "LOC", "MISC"),
                recipe_name="x",
                progress=stop_after_two,
            )
        message = str(err.value)
        assert (
            "\n" not in message and "20 of" in message and "run the same command again" in message
        )
        assert "Label Studio at http://127.0.0.1" in message and ls_env.token not in message
        assert st.query("SELECT COUNT(*) FROM ls_tasks")[0][0] == 20
        proxy = _Proxy(port, proxy.port)  # the server is back, at the same address
        try:
            res = run_push(st, client, settings, ("PER", "ORG", "LOC", "MISC"), recipe_name="x")
        finally:
            proxy.close()
    assert res.imported == res.selected - 20 and res.recovered == 0
    _assert_one_task_per_post(ls_client, store_dir, res.project_id)


# -- errors -----------------------------------------------------------------------------------


def _store_state(store: Path) -> tuple:
    with _db(store) as db:
        return tuple(
            db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("ls_projects", "ls_tasks", "annotations")
        )


def _fails(args: list[str], *phrases: str, env: dict | None = None) -> str:
    res = runner.invoke(app, args, env=env)
    assert res.exit_code == 1, res.output
    line = " ".join(res.stderr.split())
    assert line.startswith("error: ") and line.count("error:") == 1 and "Traceback" not in line
    for phrase in phrases:
        assert phrase in line, line
    return line


def test_bad_url_token_and_label_config_are_one_line_errors(
    ls_env: LabelStudioServer,
    ls_client,  # type: ignore[no-untyped-def]
    store_dir: Path,
    title: str,
    tmp_path: Path,
) -> None:
    base = ["annotate", "push", "-r", str(RECIPE), "--store", str(store_dir), "--project", title]
    before = _store_state(store_dir)
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    _fails(base, "cannot reach Label Studio", env={"LABEL_STUDIO_URL": f"http://127.0.0.1:{free}"})
    line = _fails(
        base,
        "refused the API key from $LABEL_STUDIO_API_KEY",
        env={"LABEL_STUDIO_API_KEY": "x" * 40},
    )
    assert "x" * 40 not in line
    _fails(base, "is this the server's base URL", env={"LABEL_STUDIO_URL": ls_env.url + "/nothing"})
    _fails(base, "set LABEL_STUDIO_API_KEY", env={"LABEL_STUDIO_API_KEY": ""})
    _fails([*base, "--images", "url"], "--image-url-base")
    assert _store_state(store_dir) == before
    assert not [p for p in ls_client.projects.list(page_size=1000) if p.title == title]

    # A project with this title but other labels.
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.read_text() + "\nentity_types: [PER, LOC]\n")
    ls_client.projects.create(
        title=title, label_config=(REPO / "label_configs" / "ner_text_image.xml").read_text()
    )
    _fails(
        ["annotate", "push", "-r", str(recipe), "--store", str(store_dir), "--project", title],
        "does not match the recipe",
        "its labels are PER, ORG, LOC, MISC but the recipe's entity_types are PER, LOC",
    )
    assert _store_state(store_dir) == before
    _fails(
        ["annotate", "pull", "-r", str(recipe), "--store", str(store_dir), "--project", title],
        "run 'mmner-data annotate push' first",
    )


# -- pull -------------------------------------------------------------------------------------


def _submit(annotator, task_id: int, text: str, spans: list[EntitySpan], lead: float = 2.0) -> int:  # type: ignore[no-untyped-def]
    result = [
        {
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {
                "start": s.start,
                "end": s.end,
                "text": text[s.start : s.end],
                "labels": [s.label],
            },
        }
        for s in spans
    ]
    r = annotator.client.post(
        f"/api/tasks/{task_id}/annotations/", json={"result": result, "lead_time": lead}
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_two_annotators_pull_bio_and_repull_updates_one(
    ls_env: LabelStudioServer,
    ls_client,  # type: ignore[no-untyped-def]
    store_dir: Path,
    title: str,
) -> None:
    pushed = _push(store_dir, title, "--overlap", "2", "--images", "none", "--limit", "4")
    tasks = _project_tasks(ls_client, pushed["project_id"])
    gold = _gold_by_text()
    tag = uuid.uuid4().hex[:8]
    alice, bob = (
        invite_annotator(ls_env, f"{n}-{tag}@mmner.local", f"Pw-{tag}-{n}-long")
        for n in ("alice", "bob")
    )
    expected: dict[tuple[str, str], list[str] | None] = {}
    alice_ids = {}
    for k, task in enumerate(tasks):
        text = task.data["text"]
        spans = [EntitySpan(e["start"], e["end"], e["label"]) for e in gold[text]]
        alice_ids[task.data["post_id"]] = _submit(alice, task.id, text, spans, lead=3.5)
        expected[(task.data["post_id"], f"ls:{alice.id}")] = spans_to_tags(
            text, tokenize(text), spans
        )
        if k == 3:  # bob skips the last task
            r = bob.client.post(
                f"/api/tasks/{task.id}/annotations/", json={"result": [], "was_cancelled": True}
            )
            assert r.status_code == 201, r.text
            expected[(task.data["post_id"], f"ls:{bob.id}")] = None
            continue
        # bob drops the last entity and cuts the first one short by a character
        first = spans[0]
        bob_spans = [EntitySpan(first.start, first.end - 1, first.label), *spans[1:-1]]
        _submit(bob, task.id, text, bob_spans)
        snapped = [EntitySpan(first.start, first.end, first.label), *spans[1:-1]]
        expected[(task.data["post_id"], f"ls:{bob.id}")] = spans_to_tags(
            text, tokenize(text), snapped
        )

    res = _pull(store_dir, title)
    assert (res["annotations"], res["new"], res["updated"], res["unchanged"]) == (8, 8, 0, 0)
    assert res["skipped"] == 1 and res["snapped_spans"] == 3 and not res["problems"]
    assert res["annotators"] == {f"ls:{alice.id}": 4, f"ls:{bob.id}": 4}
    with _db(store_dir) as db:
        rows = db.execute("SELECT * FROM annotations").fetchall()
        dump = json.dumps([dict(r) for r in rows])
    assert {(r["post_id"], r["annotator"]) for r in rows} == set(expected)
    for r in rows:
        want = expected[(r["post_id"], r["annotator"])]
        if want is None:
            assert r["status"] == "skipped" and json.loads(r["spans_json"]) == []
        else:
            assert r["status"] == "submitted" and json.loads(r["tags_json"]) == want
        assert r["origin"] == "label-studio" and r["project_key"] == pushed["project_key"]
        assert r["updated_at"] and r["created_at"]
        if r["annotator"] == f"ls:{alice.id}":
            assert r["lead_time"] == pytest.approx(3.5)
        else:
            spans = json.loads(r["spans_json"])
            if spans:  # bob's short span is stored as given, with its snapped offsets
                assert spans[0]["end"] + 1 == spans[0]["snapped"][1]
    assert "@mmner.local" not in dump and tag not in dump  # no e-mails stored

    # Alice corrects one annotation: a re-pull rewrites exactly that row.
    _post_id, ann_id = next(iter(alice_ids.items()))
    time.sleep(1.1)
    r = alice.client.patch(f"/api/annotations/{ann_id}/", json={"result": []})
    assert r.status_code == 200, r.text
    again = _pull(store_dir, title)
    assert (again["new"], again["updated"], again["unchanged"]) == (0, 1, 7)
    with _db(store_dir) as db:
        tags = db.execute(
            "SELECT tags_json FROM annotations WHERE annotation_key = ?",
            (f"{pushed['project_key']}#{ann_id}",),
        ).fetchone()[0]
    assert set(json.loads(tags)) == {"O"}
    assert (store_dir / "reports" / "annotate_pull.md").exists()
    for a in (alice, bob):
        a.client.close()


def test_review_queue_shows_each_annotators_spans(
    ls_env: LabelStudioServer,
    ls_client,  # type: ignore[no-untyped-def]
    store_dir: Path,
    title: str,
) -> None:
    with _db(store_dir) as db:
        posts = db.execute(
            "SELECT post_id, text FROM posts WHERE status='kept' ORDER BY post_id LIMIT 3"
        ).fetchall()
        for i, (post_id, _) in enumerate(posts[:2]):
            db.execute(
                "INSERT INTO adjudication VALUES(?, 'review', '[]', 'majority', 'disagreement', '{}', 'now')",
                (post_id,),
            )
            for who, spans in (("ls:1", [{"start": 0, "end": 1, "label": "PER"}]), ("ls:2", [])):
                db.execute(
                    "INSERT INTO annotations(annotation_key, post_id, annotator, origin, status, spans_json, "
                    "pulled_at) VALUES(?, ?, ?, 'label-studio', 'submitted', ?, 'now')",
                    (f"k#{i}{who}", post_id, who, json.dumps(spans)),
                )
        db.execute(
            "INSERT INTO adjudication VALUES(?, 'gold', '[]', 'unanimous', NULL, '{}', 'now')",
            (posts[2][0],),
        )
    res = _push(store_dir, title, "--queue", "review", "--images", "none")
    assert res["title"] == f"{title} — review" and res["imported"] == 2
    tasks = _project_tasks(ls_client, res["project_id"])
    assert sorted(t.data["post_id"] for t in tasks) == sorted(p[0] for p in posts[:2])
    for t in tasks:
        assert t.data["review_reason"] == "disagreement"
        versions = {p.model_version: p.result for p in t.predictions}
        assert set(versions) == {"ls:1", "ls:2"} and versions["ls:2"] == []
        assert versions["ls:1"][0]["value"]["labels"] == ["PER"]
    config = ls_client.projects.get(id=res["project_id"]).label_config
    assert "Review" in config and 'value="MISC"' in config
    with _db(store_dir) as db:
        assert db.execute("SELECT kind FROM ls_projects").fetchone()[0] == "review"
    pulled = _pull(store_dir, title, "--queue", "review")
    assert (pulled["annotations"], pulled["tasks"], pulled["new"]) == (0, 0, 0)

    # A reviewer decides one item: pulling the review queue makes that decision the gold.
    tag = uuid.uuid4().hex[:8]
    reviewer = invite_annotator(ls_env, f"rev-{tag}@mmner.local", f"Pw-{tag}-rev-long")
    task = next(t for t in tasks if t.data["post_id"] == posts[0][0])
    text = posts[0][1]
    first = tokenize(text)[0]
    _submit(reviewer, task.id, text, [EntitySpan(first.start, first.end, "ORG")])
    pulled = _pull(store_dir, title, "--queue", "review")
    assert (pulled["new"], pulled["reviewed_gold"]) == (1, 1)
    with _db(store_dir) as db:
        rows = dict(
            db.execute("SELECT post_id, status || '/' || method FROM adjudication").fetchall()
        )
        gold = json.loads(
            db.execute(
                "SELECT spans_json FROM adjudication WHERE post_id=?", (posts[0][0],)
            ).fetchone()[0]
        )
    assert rows[posts[0][0]] == "gold/reviewed"
    assert rows[posts[1][0]] == "review/majority"  # not decided yet
    assert [(g["start"], g["end"], g["label"]) for g in gold] == [(first.start, first.end, "ORG")]
    reviewer.client.close()
