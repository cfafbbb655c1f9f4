"""A Label Studio ML backend: ``/health``, ``/setup``, ``/predict``, ``/webhook`` (and ``/train``,
``/reload``), as ``label-studio-ml-backend`` defines them, over any model ``preannotate`` accepts.

* ``/predict`` answers ``{"results": [prediction per task]}``; each prediction is exactly what
  ``annotate push`` attaches (``prediction_result`` / ``item_score``: span results with a
  ``score`` each, the item score, ``model_version``). A task's text and image come from the store
  by ``data.post_id``; a task whose post the store does not know is labelled from ``data.text``.
* ``/webhook`` records annotation events (created, updated, deleted) in
  ``<models_dir>/events.jsonl``; ``START_TRAINING`` (Label Studio's *Start training*), ``POST
  /train``, or every ``retrain_after`` annotation events start a fine-tune in a background thread.
* A fine-tune starts from the current model (an mmner-data model folder), trains ``epochs`` on the
  store's gold + the annotations received by webhook + submitted annotations pulled into the
  store (in that order of precedence, per post), and writes a new model folder under
  ``models_dir``; its ``model_version`` is new. The backend switches to the newest model folder
  in ``models_dir`` without a restart (on ``/setup``, ``/predict`` and ``POST /reload``), so a
  model trained elsewhere into that folder is picked up too.
* Bad input is a 4xx JSON ``{"error": …}``; an unexpected failure a 500 JSON without a traceback.
  A model that does not load leaves the server up: ``/health`` answers 503 with the reason.

No typer or rich here (the CLI is ``mmner_data/cli/serve.py``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from mmner_data.annotate.label_config import FROM_NAME, LabelConfigError, config_labels
from mmner_data.annotate.push import item_score, prediction_result
from mmner_data.errors import MmnerError
from mmner_data.schema import EntitySpan

log = logging.getLogger(__name__)

# Label Studio 1.23 sends ANNOTATION_CREATED/UPDATED, ANNOTATIONS_CREATED (bulk) and
# ANNOTATIONS_DELETED (ids only); ANNOTATION_DELETED is what label-studio-ml-backend lists.
ANNOTATION_EVENTS = (
    "ANNOTATION_CREATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATION_DELETED",
    "ANNOTATIONS_DELETED",
)
TRAIN_EVENT = "START_TRAINING"
EVENTS_FILE = "events.jsonl"
FT_PREFIX = "ft-"


class BackendError(MmnerError):
    """The ML backend cannot start (port taken, bad folder); one line."""


class BadRequest(Exception):
    """A malformed request: answered 400 with the message."""


@dataclass
class TrainStatus:
    state: str = "idle"  # idle | running | ok | failed
    started_at: float | None = None
    finished_at: float | None = None
    examples: int = 0
    model_version: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _spans_from_result(result: Any, text: str) -> list[EntitySpan]:
    """Label Studio ``labels`` results → spans (others ignored)."""
    spans = []
    for r in result or []:
        if not isinstance(r, dict) or r.get("type") != "labels" or r.get("from_name") != FROM_NAME:
            continue
        v = r.get("value") or {}
        try:
            start, end, label = int(v["start"]), int(v["end"]), str(v["labels"][0])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if 0 <= start < end <= len(text):
            spans.append(EntitySpan(start, end, label))
    return sorted(spans, key=lambda s: (s.start, s.end))


def newest_model(models_dir: Path | None) -> Path | None:
    """The newest fine-tuned model folder (``ft-*``, by name: a UTC timestamp) or None."""
    from mmner_data.models.config import is_checkpoint

    if models_dir is None or not models_dir.is_dir():
        return None
    found = sorted(p for p in models_dir.glob(FT_PREFIX + "*") if p.is_dir() and is_checkpoint(p))
    return found[-1] if found else None


class MLBackend:
    """The model, the store and the training state behind the HTTP app."""

    def __init__(
        self,
        model: str,
        *,
        store: Path | None = None,
        models_dir: Path | None = None,
        device: str | None = None,
        retrain_after: int = 0,
        epochs: int = 1,
        batch_size: int = 8,
    ) -> None:
        self.base_model = model
        self.store_path = Path(store) if store else None
        self.models_dir = Path(models_dir) if models_dir else None
        self.device = device
        self.retrain_after = retrain_after
        self.epochs = epochs
        self.batch_size = batch_size
        self.predictor: Any = None
        self.model_path: str = model
        self.load_error: str | None = None
        self.events = 0
        self.events_since_train = 0
        self.train_status = TrainStatus()
        self._lock = threading.RLock()
        self._train_thread: threading.Thread | None = None
        newest = newest_model(self.models_dir)
        self.load(str(newest) if newest else model)

    # -- model --------------------------------------------------------------------------------
    def load(self, model: str) -> bool:
        """Load ``model``; on failure keep the previous one (if any) and record why."""
        from mmner_data.preannotate.predict import load_predictor

        try:
            pred = load_predictor(model, self.device)
        except Exception as exc:
            self.load_error = f"cannot load model {model!r}: {type(exc).__name__}: {exc}"[:1000]
            log.info("%s", self.load_error)
            return False
        with self._lock:
            self.predictor, self.model_path, self.load_error = pred, model, None
        log.info("serving %s (model_version %s)", model, pred.model_version)
        return True

    def refresh(self) -> bool:
        """Switch to the newest model folder in ``models_dir`` when it is not the one served."""
        newest = newest_model(self.models_dir)
        if newest is None or str(newest) == self.model_path:
            return False
        return self.load(str(newest))

    @property
    def model_version(self) -> str | None:
        return self.predictor.model_version if self.predictor is not None else None

    def health(self) -> tuple[dict[str, Any], int]:
        body: dict[str, Any] = {
            "status": "UP" if self.predictor is not None else "ERROR",
            "model_class": "mmner-data",
            "model": self.model_path,
            "model_version": self.model_version,
            "training": self.train_status.to_dict(),
            "events": self.events,
        }
        if self.load_error:
            body["error"] = self.load_error
        return body, 200 if self.predictor is not None else 503

    # -- predict ------------------------------------------------------------------------------
    def _posts(self, post_ids: Sequence[str]) -> dict[str, tuple[str, str | None, Path | None]]:
        """``post_id → (text, lang, image path)`` from the store (empty without one)."""
        if self.store_path is None or not post_ids:
            return {}
        from mmner_data.store import CorpusStore

        out: dict[str, tuple[str, str | None, Path | None]] = {}
        with CorpusStore(self.store_path, create=False) as st:
            marks = ",".join("?" * len(post_ids))
            for r in st.query(
                "SELECT p.post_id, p.text, p.lang, (SELECT i.path FROM post_images pi JOIN images i "
                " ON i.sha256 = pi.sha256 WHERE pi.post_id = p.post_id AND pi.status = 'ok' "
                " ORDER BY pi.position LIMIT 1) AS img FROM posts p "
                f"WHERE p.post_id IN ({marks})",
                list(post_ids),
            ):
                img = st.resolve_image(r["img"]) if r["img"] else None
                out[r["post_id"]] = (r["text"], r["lang"], img)
        return out

    def predict(self, tasks: Any, label_config: Any = None) -> list[dict[str, Any]]:
        from mmner_data.preannotate.predict import Item, type_mapper

        if not isinstance(tasks, list) or not tasks:
            raise BadRequest("'tasks' must be a non-empty list of Label Studio tasks")
        refs: list[tuple[str, dict]] = []
        for i, t in enumerate(tasks):
            data = t.get("data") if isinstance(t, dict) else None
            if not isinstance(data, dict):
                raise BadRequest(f"tasks[{i}] has no 'data' object")
            pid = data.get("post_id")
            if pid is not None and not isinstance(pid, str):
                raise BadRequest(f"tasks[{i}].data.post_id must be a string")
            if pid is None and not isinstance(data.get("text"), str):
                raise BadRequest(f"tasks[{i}].data has neither 'post_id' nor 'text'")
            refs.append((pid or "", data))
        with self._lock:
            pred = self.predictor
        if pred is None:
            raise RuntimeError(self.load_error or "no model loaded")
        labels = list(pred.entity_types)
        if isinstance(label_config, str) and label_config.strip():
            try:
                labels = config_labels(label_config) or labels
            except LabelConfigError as exc:
                raise BadRequest(str(exc)) from None
        posts = self._posts([p for p, _ in refs if p])
        items = []
        for i, (pid, data) in enumerate(refs):
            if pid in posts:
                text, lang, img = posts[pid]
            elif isinstance(data.get("text"), str):
                text, lang, img = data["text"], data.get("lang") or None, None
            else:
                raise BadRequest(f"tasks[{i}]: post {pid!r} is not in the store and has no text")
            items.append(Item(pid or f"task-{i}", text, img if pred.uses_images else None, lang))
        examples, batch = pred.prepare(items)
        raw = pred.forward(batch)
        outs = pred.finish(examples, raw, type_mapper(labels))
        results = []
        for it, p in zip(items, outs, strict=True):
            result, _dropped = prediction_result(it.text, p.spans, labels)
            entry: dict[str, Any] = {"model_version": pred.model_version, "result": result}
            score = item_score(p.spans, p.score)
            if score is not None:
                entry["score"] = score
            results.append(entry)
        return results

    # -- webhook and training -----------------------------------------------------------------
    def record_event(self, body: dict[str, Any]) -> dict[str, Any]:
        action = body.get("action")
        if not isinstance(action, str):
            raise BadRequest("a webhook body needs an 'action' string")
        if action == TRAIN_EVENT:
            return {"status": "ok", "training": self.start_training()}
        if action not in ANNOTATION_EVENTS:
            return {"status": "ignored", "action": action}
        project = body.get("project")
        base = {
            "action": action,
            "received_at": time.time(),
            "project": project.get("id") if isinstance(project, dict) else project,
        }
        events: list[dict[str, Any]] = []
        if action == "ANNOTATIONS_DELETED":  # Label Studio sends only the ids
            anns = body.get("annotations")
            if not isinstance(anns, list):
                raise BadRequest(f"{action} needs an 'annotations' list")
            ids = [a.get("id") for a in anns if isinstance(a, dict)]
            events.append({**base, "annotation_ids": ids})
        else:
            ann, task = body.get("annotation"), body.get("task")
            pairs = (
                list(zip(ann, task, strict=False))
                if isinstance(ann, list) and isinstance(task, list)  # ANNOTATIONS_CREATED
                else [(ann, task)]
            )
            for a, t in pairs:
                if not isinstance(a, dict) or not isinstance(t, dict):
                    raise BadRequest(f"{action} needs 'annotation' and 'task' objects")
                data = t.get("data") if isinstance(t.get("data"), dict) else {}
                events.append(
                    {
                        **base,
                        "task_id": t.get("id"),
                        "post_id": data.get("post_id"),
                        "text": data.get("text"),
                        "annotation_id": a.get("id"),
                        "annotator": a.get("completed_by"),
                        "was_cancelled": bool(a.get("was_cancelled")),
                        "result": a.get("result") or [],
                    }
                )
        with self._lock:
            if self.models_dir is not None:
                self.models_dir.mkdir(parents=True, exist_ok=True)
                with (self.models_dir / EVENTS_FILE).open("a", encoding="utf-8") as f:
                    for ev in events:
                        f.write(json.dumps(ev, ensure_ascii=False) + "\n")
            self.events += len(events)
            self.events_since_train += len(events)
            due = self.retrain_after > 0 and self.events_since_train >= self.retrain_after
        out: dict[str, Any] = {"status": "ok", "recorded": action, "events": self.events}
        if due:
            out["training"] = self.start_training()
        return out

    def webhook_annotations(self) -> dict[str, list[EntitySpan]]:
        """The latest annotation per post received by webhook (deleted or cancelled: none)."""
        latest: dict[str, Any] = {}
        deleted: set[Any] = set()
        path = self.models_dir / EVENTS_FILE if self.models_dir else None
        if path is None or not path.is_file():
            return {}
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            if ev.get("action") == "ANNOTATIONS_DELETED":
                deleted.update(ev.get("annotation_ids") or [])
            elif ev.get("action") == "ANNOTATION_DELETED":
                deleted.add(ev.get("annotation_id"))
            elif ev.get("post_id"):
                latest[ev["post_id"]] = ev
        return {
            pid: _spans_from_result(ev["result"], ev.get("text") or "")
            for pid, ev in latest.items()
            if ev.get("annotation_id") not in deleted and not ev.get("was_cancelled")
        }

    def start_training(self) -> dict[str, Any]:
        """Start a fine-tune in a background thread (one at a time)."""
        with self._lock:
            if self._train_thread is not None and self._train_thread.is_alive():
                return {"started": False, "reason": "a fine-tune is already running"}
            if self.store_path is None or self.models_dir is None:
                return {"started": False, "reason": "the backend was started without a store"}
            self.events_since_train = 0
            self.train_status = TrainStatus(state="running", started_at=time.time())
            self._train_thread = threading.Thread(
                target=self._train, name="mmner-ml-backend-train", daemon=True
            )
            self._train_thread.start()
        return {"started": True}

    def wait_for_training(self, timeout: float | None = None) -> TrainStatus:
        t = self._train_thread
        if t is not None:
            t.join(timeout)
        return self.train_status

    def training_examples(self) -> list[Any]:
        """Gold, else the newest submitted annotation (store or webhook), per eligible post."""
        from mmner_data.labels import eligible_posts, gold_rows
        from mmner_data.models.data import example_from_spans
        from mmner_data.schema import spans_from_json
        from mmner_data.store import CorpusStore
        from mmner_data.text.spans import SpanError

        assert self.store_path is not None
        hooked = self.webhook_annotations()
        out = []
        with CorpusStore(self.store_path, create=False) as st:
            gold = gold_rows(st)
            pulled: dict[str, str] = {}
            for r in st.query(
                "SELECT post_id, spans_json FROM annotations WHERE status = 'submitted' "
                "ORDER BY COALESCE(updated_at, created_at, pulled_at)"
            ):
                pulled[r["post_id"]] = r["spans_json"]
            for p in eligible_posts(st).posts:
                if p.post_id in gold:
                    spans = list(spans_from_json(gold[p.post_id]["spans_json"]))
                elif p.post_id in hooked:
                    spans = hooked[p.post_id]
                elif p.post_id in pulled:
                    spans = list(spans_from_json(pulled[p.post_id]))
                else:
                    continue
                image = st.resolve_image(p.image_path) if p.image_path else None
                try:
                    out.append(example_from_spans(p.post_id, p.text, p.lang, spans, image))
                except SpanError:
                    continue
        return out

    def _train(self) -> None:
        import shutil
        from datetime import datetime

        from mmner_data.models.config import is_checkpoint
        from mmner_data.models.model import NerModel
        from mmner_data.models.settings import TrainSettings
        from mmner_data.models.train import CKPT_DIR, fit

        status = self.train_status
        try:
            source = Path(self.model_path).expanduser()
            if not (source.is_dir() and is_checkpoint(source)):
                raise BackendError(
                    f"fine-tuning needs an mmner-data model folder; {self.model_path!r} is not one"
                )
            examples = self.training_examples()
            status.examples = len(examples)
            if not examples:
                raise BackendError("no gold or submitted annotations to train on yet")
            assert self.models_dir is not None
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            output = self.models_dir / f"{FT_PREFIX}{stamp}"
            tmp = self.models_dir / f".tmp-{FT_PREFIX}{stamp}"
            model = NerModel.from_pretrained(source)
            allowed = set(model.config.labels)
            examples = [ex for ex in examples if set(ex.tags or []) <= allowed]
            if not examples:
                raise BackendError("the annotations use labels the model does not have")
            settings = TrainSettings(
                epochs=self.epochs,
                batch_size=self.batch_size,
                patience=0,
                device=self.device or "auto",
                keep_checkpoints=1,
                warmup_ratio=0.0,
            )
            fit(model, examples, examples, settings, tmp)
            shutil.rmtree(tmp / CKPT_DIR, ignore_errors=True)
            tmp.rename(output)  # a complete folder appears at once: pollers never see half
            if not self.load(str(output)):
                raise BackendError(self.load_error or "the fine-tuned model did not load")
            status.model_version = self.model_version
            status.state = "ok"
        except Exception as exc:
            status.state = "failed"
            status.error = f"{type(exc).__name__}: {exc}"[:1000]
            log.error("fine-tune failed: %s", status.error)
        finally:
            status.finished_at = time.time()


# -- the HTTP app ------------------------------------------------------------------------------


def create_app(backend: MLBackend) -> Any:
    """The Flask app speaking Label Studio's ML backend protocol for ``backend``."""
    from flask import Flask, jsonify, request
    from werkzeug.exceptions import HTTPException

    app = Flask("mmner_data.ml_backend")

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise BadRequest(
                "the request body must be a JSON object (Content-Type: application/json)"
            )
        return data

    @app.errorhandler(BadRequest)
    def _bad(exc: BadRequest) -> Any:
        return jsonify({"error": str(exc)}), 400

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        return jsonify({"error": f"{exc.code} {exc.name}: {exc.description}"}), exc.code

    @app.errorhandler(Exception)
    def _crash(exc: Exception) -> Any:
        log.exception("ML backend request failed")
        return jsonify({"error": f"internal error: {type(exc).__name__}: {exc}"[:2000]}), 500

    @app.get("/")
    @app.get("/health")
    def health() -> Any:
        data, code = backend.health()
        return jsonify(data), code

    @app.post("/setup")
    def setup() -> Any:
        data = body()
        if not isinstance(data.get("project"), str | int):
            raise BadRequest("/setup needs 'project' (Label Studio sends '<id>.<created>')")
        backend.refresh()
        if backend.predictor is None:
            return jsonify({"error": backend.load_error or "no model loaded"}), 503
        return jsonify({"model_version": backend.model_version})

    @app.post("/predict")
    def predict() -> Any:
        data = body()
        if "tasks" not in data:
            raise BadRequest("/predict needs 'tasks'")
        backend.refresh()
        if backend.predictor is None:
            return jsonify({"error": backend.load_error or "no model loaded"}), 503
        results = backend.predict(data["tasks"], data.get("label_config"))
        return jsonify({"results": results, "model_version": backend.model_version})

    @app.post("/webhook")
    def webhook() -> Any:
        return jsonify(backend.record_event(body())), 201

    @app.post("/train")
    def train() -> Any:
        return jsonify({"status": "ok", "training": backend.start_training()}), 201

    @app.post("/reload")
    def reload() -> Any:
        switched = backend.refresh()
        return jsonify({"switched": switched, "model_version": backend.model_version})

    @app.get("/metrics")
    def metrics() -> Any:
        return jsonify({})

    return app


class BackendServer:
    """The app on ``host:port`` (0: a free port) in a thread; ``url`` once started."""

    def __init__(self, backend: MLBackend, host: str = "127.0.0.1", port: int = 9090) -> None:
        from werkzeug.serving import make_server

        self.backend = backend
        try:
            self._server = make_server(host, port, create_app(backend), threaded=True)
        except OSError as exc:
            raise BackendError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.host = host
        self.port = int(self._server.server_port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> BackendServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mmner-ml-backend", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self, training_timeout: float | None = 600) -> None:
        """Stop serving; wait for a running fine-tune to finish (it writes a model folder)."""
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(10)
        self.backend.wait_for_training(training_timeout)


# -- registering the backend with a project ---------------------------------------------------


def register_backend(
    client: Any, title: str, url: str, *, name: str = "mmner-data", interactive: bool = False
) -> dict[str, Any]:
    """Connect the backend at ``url`` to the project titled ``title`` (reused when already there).

    ``client`` is an :class:`~mmner_data.annotate.client.LSClient`. Label Studio checks
    ``/health`` and ``/setup`` when it connects; a backend it cannot reach is an error that says
    why (a loopback backend needs the server started with ``ML_BLOCK_LOCAL_IP=false``).
    """
    from mmner_data.annotate.client import LabelStudioError

    client.whoami()
    project = client.find_project(title)
    if project is None:
        raise LabelStudioError(
            f"no project titled {title!r} at {client.url}; run `mmner-data annotate push` first"
        )
    url = url.rstrip("/")
    with client._call("list the project's ML backends"):
        existing = [m for m in client.sdk.ml.list(project=project.id) if m.url.rstrip("/") == url]
    created = not existing
    hint = (
        "is `mmner-data serve` running and reachable from the Label Studio server? A backend "
        "on localhost needs Label Studio started with ML_BLOCK_LOCAL_IP=false (and "
        "SSRF_PROTECTION_ENABLED=false for its webhooks)"
    )
    try:
        with client._call(f"connect the ML backend at {url}"):
            if existing:
                backend = client.sdk.ml.update(
                    id=existing[0].id, url=url, project=project.id, is_interactive=interactive
                )
            else:
                backend = client.sdk.ml.create(
                    project=project.id, url=url, title=name, is_interactive=interactive
                )
            if backend.state != "CO":
                backend = client.sdk.ml.get(id=backend.id)
    except LabelStudioError as exc:
        raise LabelStudioError(f"{exc}; {hint}") from None
    if backend.state != "CO":
        why = backend.error_message or "it did not answer /health and /setup"
        raise LabelStudioError(
            f"Label Studio at {client.url} registered {url} on project {title!r} but cannot use "
            f"it (state {backend.state}): {str(why)[:300]}; {hint}"
        )
    return {
        "project_id": project.id,
        "title": project.title,
        "ml_backend_id": backend.id,
        "url": url,
        "created": created,
        "state": backend.state,
        "model_version": backend.model_version,
        "interactive": interactive,
    }
