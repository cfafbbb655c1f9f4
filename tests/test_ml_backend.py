"""``mmner-data serve`` (the Label Studio ML backend) and ``annotate connect``.

The end-to-end test runs against a real Label Studio 1.23.2 server started with
``scripts/label-studio.sh``: a *dedicated* one (own data folder and port, started once for this
module), because Label Studio refuses ML backends and webhooks on loopback addresses unless it is
started with ``ML_BLOCK_LOCAL_IP=false`` and ``SSRF_PROTECTION_ENABLED=false`` — the shared test
server is not (and must not be restarted under other tests). The backend serves a tiny
random-weight 2M-NER checkpoint written to a temp folder, on 127.0.0.1 with a free port, in a
thread. Nothing reaches the internet.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ls_fixture import LabelStudioServer, ls_script
from tiny_models import write_tiny_2m_ner
from typer.testing import CliRunner

from mmner_data.annotate.ml_backend import EVENTS_FILE, BackendServer, MLBackend
from mmner_data.cli import app

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "sample.yaml"
runner = CliRunner()

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight 2M-NER checkpoint that predicts some entities."""
    return write_tiny_2m_ner(tmp_path_factory.mktemp("tiny-ml-backend"))["ner"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ls_ml(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """A Label Studio server of its own that may call a backend on 127.0.0.1."""
    data = tmp_path_factory.mktemp("ls-ml-data")
    env = {
        "LS_DATA": str(data),
        "LABEL_STUDIO_PORT": str(_free_port()),
        "ML_BLOCK_LOCAL_IP": "false",
        "SSRF_PROTECTION_ENABLED": "false",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for step in ("install", "start"):  # install: a no-op when .ls-venv is there
            res = ls_script(step)
            if res.returncode != 0:
                pytest.fail(f"scripts/label-studio.sh {step} failed:\n{res.stdout}\n{res.stderr}")
        server = LabelStudioServer(
            url=ls_script("url").stdout.strip(),
            token=ls_script("token").stdout.strip(),
            data_dir=data,
            files_root=REPO,
        )
        yield server
    finally:
        ls_script("stop")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def backend_for(tiny_model: Path, tmp_path: Path) -> Iterator:
    """Start backends on free ports; all stopped after the test."""
    servers: list[BackendServer] = []

    def start(model: str | None = None, store: Path | None = None, **kw) -> BackendServer:  # type: ignore[no-untyped-def]
        backend = MLBackend(
            model or str(tiny_model),
            store=store,
            models_dir=tmp_path / f"ml-{len(servers)}",
            device="cpu",
            **kw,
        )
        srv = BackendServer(backend, "127.0.0.1", 0).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


def _wait(cond, timeout: float = 60.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _preds(task) -> list[dict]:  # type: ignore[no-untyped-def]
    return [p if isinstance(p, dict) else p.model_dump() for p in task.predictions or []]


def _cli(*args: str) -> dict:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


# -- end to end against Label Studio ----------------------------------------------------------


@pytest.mark.labelstudio
def test_backend_in_the_loop_predicts_records_annotations_and_serves_a_retrained_model(
    ls_ml: LabelStudioServer,
    sample_store: Path,
    backend_for,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from label_studio_sdk import LabelStudio

    monkeypatch.setenv("LABEL_STUDIO_URL", ls_ml.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_ml.token)
    ls = LabelStudio(base_url=ls_ml.url, api_key=ls_ml.token)
    http = httpx.Client(
        base_url=ls_ml.url, headers={"Authorization": f"Token {ls_ml.token}"}, timeout=120
    )
    title = f"mmner-ml-{uuid.uuid4().hex[:8]}"

    # Tasks without predictions (the backend brings them), then the backend, then connect.
    pushed = _cli(
        "annotate", "push", "-r", str(RECIPE), "--store", str(sample_store), "--project", title,
        "--images", "none", "--no-predictions", "--limit", "4", "--no-progress",
    )  # fmt: skip
    assert pushed["imported"] == 4
    pid = pushed["project_id"]
    srv = backend_for(store=sample_store, retrain_after=1)
    v1 = srv.backend.model_version
    assert v1 and v1.startswith("tiny-2m-ner@")

    # A backend that is not there: one line saying why, nothing registered.
    dead = f"http://127.0.0.1:{_free_port()}"
    res = runner.invoke(
        app, ["annotate", "connect", "-r", str(RECIPE), "--project", title, "--url", dead]
    )
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert "is `mmner-data serve` running" in " ".join(res.output.split())
    assert ls.ml.list(project=pid) == []

    connected = _cli("annotate", "connect", "-r", str(RECIPE), "--project", title, "--url", srv.url)
    assert connected["created"] and connected["state"] == "CO"
    assert connected["model_version"] == v1
    backends = ls.ml.list(project=pid)
    assert [b.url for b in backends] == [srv.url]
    hooks = http.get("/api/webhooks/", params={"project": pid}).json()
    assert srv.url + "/webhook" in [h["url"] for h in hooks]
    again = _cli("annotate", "connect", "-r", str(RECIPE), "--project", title, "--url", srv.url)
    assert not again["created"] and len(ls.ml.list(project=pid)) == 1

    # Label Studio asks the backend for predictions ("Retrieve predictions" on all tasks).
    r = http.post(
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": pid},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    assert r.status_code == 200, r.text
    tasks = list(ls.tasks.list(project=pid, fields="all", page_size=100))
    assert len(tasks) == 4
    direct = srv.backend.predict([{"data": t.data} for t in tasks])
    for t, want in zip(tasks, direct, strict=True):
        preds = [p for p in _preds(t) if p["model_version"] == v1]
        assert len(preds) == 1, _preds(t)
        assert preds[0]["result"] == want["result"]
        assert preds[0]["score"] == pytest.approx(want["score"])
    assert sum(len(w["result"]) for w in direct) > 0  # spans with a score each
    assert all("score" in item for w in direct for item in w["result"])

    # An annotation submitted in Label Studio reaches the backend's /webhook ...
    task = tasks[0]
    text = task.data["text"]
    end = text.index(" ") if " " in text else len(text)
    result = [
        {
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 0, "end": end, "text": text[:end], "labels": ["ORG"]},
        }
    ]
    r = http.post(f"/api/tasks/{task.id}/annotations/", json={"result": result, "lead_time": 1})
    assert r.status_code == 201, r.text
    _wait(lambda: srv.backend.events >= 1, 30, "the annotation webhook")
    events = [
        json.loads(line) for line in (srv.backend.models_dir / EVENTS_FILE).read_text().splitlines()
    ]
    assert events[0]["action"] == "ANNOTATION_CREATED"
    assert events[0]["post_id"] == task.data["post_id"] and events[0]["result"] == result

    # ... which (retrain_after=1) fine-tunes in the background; the new version is served.
    health = _wait(
        lambda: (
            (h := httpx.get(srv.url + "/health").json())["training"]["state"] in ("ok", "failed")
            and h
        ),
        120,
        "the fine-tune",
    )
    assert health["training"]["state"] == "ok", health
    assert health["training"]["examples"] == 1
    v2 = health["model_version"]
    assert v2 != v1 and v2.startswith("ft-")
    answer = httpx.post(srv.url + "/predict", json={"tasks": [{"data": task.data}]}).json()
    assert answer["results"][0]["model_version"] == v2
    setup = httpx.post(srv.url + "/setup", json={"project": f"{pid}.1", "schema": ""}).json()
    assert setup == {"model_version": v2}

    # Label Studio gets the new version's predictions for a task without them.
    r = http.post(
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": pid},
        json={"selectedItems": {"all": False, "included": [tasks[1].id]}},
    )
    assert r.status_code == 200, r.text
    versions = {p["model_version"] for p in _preds(ls.tasks.get(id=tasks[1].id))}
    assert versions == {v1, v2}
    ls.projects.delete(id=pid)


# -- protocol and bad input (no Label Studio needed) ------------------------------------------


def test_protocol_shapes_and_malformed_requests_are_4xx_json(backend_for, sample_store) -> None:  # type: ignore[no-untyped-def]
    srv = backend_for(store=sample_store)
    url = srv.url
    h = httpx.get(url + "/health")
    assert h.status_code == 200 and h.json()["status"] == "UP"
    assert h.json()["model_version"] == srv.backend.model_version

    ok = httpx.post(
        url + "/predict",
        json={"tasks": [{"id": 1, "data": {"text": "Angela Merkel visited Paris today."}}]},
    )
    assert ok.status_code == 200
    (res,) = ok.json()["results"]
    assert set(res) >= {"result", "model_version"}

    cases = [
        ("/predict", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}),
        ("/predict", {"json": {"no_tasks": []}}),
        ("/predict", {"json": {"tasks": "x"}}),
        ("/predict", {"json": {"tasks": []}}),
        ("/predict", {"json": {"tasks": [{"id": 1}]}}),
        ("/predict", {"json": {"tasks": [{"data": {"post_id": 5}}]}}),
        ("/predict", {"json": {"tasks": [{"data": {"post_id": "nope"}}]}}),
        ("/predict", {"json": {"tasks": [{"data": {"text": "x"}}], "label_config": "<View"}}),
        ("/predict", {"json": [1, 2]}),
        ("/setup", {"json": {"schema": "<View/>"}}),
        ("/webhook", {"json": {"project": {"id": 1}}}),
        ("/webhook", {"json": {"action": "ANNOTATION_CREATED"}}),
        ("/webhook", {"content": b"", "headers": {"Content-Type": "application/json"}}),
    ]
    for path, kw in cases:
        r = httpx.post(url + path, **kw)
        assert 400 <= r.status_code < 500, (path, kw, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["error"] and "Traceback" not in r.text, r.text
    for method, path, code in (("GET", "/predict", 405), ("GET", "/nowhere", 404)):
        r = httpx.request(method, url + path)
        assert r.status_code == code and r.json()["error"]
    ignored = httpx.post(url + "/webhook", json={"action": "PROJECT_UPDATED", "project": {}})
    assert ignored.status_code == 201 and ignored.json()["status"] == "ignored"
    assert httpx.get(url + "/health").json()["status"] == "UP"  # still serving


def test_a_model_that_fails_to_load_keeps_the_server_up(backend_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{ this is not a model")
    for model in (str(tmp_path / "missing-model"), str(broken)):
        srv = backend_for(model=model)
        h = httpx.get(srv.url + "/health")
        assert h.status_code == 503
        body = h.json()
        assert body["status"] != "UP" and model in body["error"], body
        p = httpx.post(srv.url + "/predict", json={"tasks": [{"data": {"text": "Hello Bob"}}]})
        assert p.status_code == 503 and "cannot load model" in p.json()["error"]
        s = httpx.post(srv.url + "/setup", json={"project": "1.1"})
        assert s.status_code == 503
        assert httpx.get(srv.url + "/health").status_code == 503  # still answering


def test_train_endpoint_without_labels_fails_on_health_and_keeps_serving(
    backend_for,  # type: ignore[no-untyped-def]
    sample_store: Path,
) -> None:
    srv = backend_for(store=sample_store)
    r = httpx.post(srv.url + "/train")
    assert r.status_code == 201 and r.json()["training"]["started"]
    status = srv.backend.wait_for_training(60)
    assert status.state == "failed" and "no gold or submitted annotations" in status.error
    h = httpx.get(srv.url + "/health").json()
    assert h["status"] == "UP" and h["training"]["state"] == "failed"


def test_serve_and_connect_are_commands() -> None:
    for args in (["serve", "--help"], ["annotate", "connect", "--help"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output


def _hook(action: str, ann_id: int, post_id: str, text: str, label: str) -> dict:
    end = text.index(" ")
    result = [
        {
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 0, "end": end, "text": text[:end], "labels": [label]},
        }
    ]
    return {
        "action": action,
        "project": {"id": 1},
        "annotation": {"id": ann_id, "result": result, "completed_by": 1},
        "task": {"id": 10 + ann_id, "data": {"post_id": post_id, "text": text}},
    }


def test_webhook_events_drive_a_fine_tune_and_reload_picks_up_the_newest_model(
    backend_for,  # type: ignore[no-untyped-def]
    sample_store: Path,
) -> None:
    import shutil
    import sqlite3

    with sqlite3.connect(sample_store / "corpus.sqlite") as db:
        (p1, t1), (p2, t2) = db.execute(
            "SELECT post_id, text FROM posts WHERE status = 'kept' AND text LIKE '% %' "
            "ORDER BY post_id LIMIT 2"
        ).fetchall()
    srv = backend_for(store=sample_store)
    v1 = srv.backend.model_version
    send = [
        _hook("ANNOTATION_CREATED", 1, p1, t1, "PER"),
        _hook("ANNOTATION_UPDATED", 1, p1, t1, "ORG"),  # the update wins
    ]
    bulk = _hook("ANNOTATIONS_CREATED", 2, p2, t2, "LOC")
    bulk["annotation"], bulk["task"] = [bulk["annotation"]], [bulk["task"]]
    send += [bulk, {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 2}]}]
    for body in send:
        r = httpx.post(srv.url + "/webhook", json=body)
        assert r.status_code == 201 and r.json()["status"] == "ok", r.text
    assert srv.backend.events == 4
    hooked = srv.backend.webhook_annotations()
    assert list(hooked) == [p1] and [s.label for s in hooked[p1]] == ["ORG"]
    (ex,) = srv.backend.training_examples()
    assert ex.id == p1 and ex.tags[0] == "B-ORG"

    r = httpx.post(srv.url + "/webhook", json={"action": "START_TRAINING", "project": {}})
    assert r.status_code == 201 and r.json()["training"]["started"]
    assert httpx.get(srv.url + "/health").status_code == 200  # answered while training
    status = srv.backend.wait_for_training(120)
    assert status.state == "ok", status
    v2 = httpx.get(srv.url + "/health").json()["model_version"]
    assert v2 == status.model_version and v2 != v1 and v2.startswith("ft-")

    # A model written into the models folder by someone else is served after /reload.
    newer = srv.backend.models_dir / "ft-99990101T000000000000"
    shutil.copytree(Path(srv.backend.model_path), newer)
    r = httpx.post(srv.url + "/reload").json()
    assert r["switched"] and r["model_version"].startswith("ft-99990101T000000000000@")
    answer = httpx.post(srv.url + "/predict", json={"tasks": [{"data": {"post_id": p1}}]})
    assert answer.json()["results"][0]["model_version"] == r["model_version"]
