"""A thin Label Studio client on ``label-studio-sdk`` (``LabelStudio``) with one-line errors.

Every call goes through :meth:`LSClient._call`, which turns network failures and HTTP errors into
:class:`LabelStudioError` with a message a user can act on (which server, which call, what it
said). The API key is handed to the SDK and nowhere else: it is never logged, stored or put into
an error message.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mmner_data.errors import MmnerError

log = logging.getLogger(__name__)

# Listing tasks: large pages keep a 10k-task project to a few requests.
LIST_PAGE_SIZE = 1000


class LabelStudioError(MmnerError):
    """A Label Studio call failed; the message is one line and names the server."""


@dataclass(frozen=True)
class LSProject:
    id: int
    title: str
    label_config: str
    maximum_annotations: int | None
    overlap_cohort_percentage: int | None


def _detail(body: Any) -> str:
    """A short, single-line reading of an error body (JSON or HTML)."""
    if isinstance(body, dict):
        for key in ("detail", "validation_errors", "message", "error"):
            if body.get(key):
                text = body[key] if isinstance(body[key], str) else json.dumps(body[key])
                break
        else:
            text = json.dumps(body, default=str)
    elif isinstance(body, str) and body.lstrip().startswith("<"):
        text = "an HTML page, not the API"
    else:
        text = str(body)
    text = " ".join(text.split())
    return text[:300] + ("…" if len(text) > 300 else "")


class LSClient:
    """Label Studio at ``url``, authenticated with ``api_key`` (read from ``api_key_env``)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        api_key_env: str = "LABEL_STUDIO_API_KEY",
        timeout: float = 120.0,
    ) -> None:
        from label_studio_sdk import LabelStudio

        self.url = url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.sdk = LabelStudio(base_url=self.url, api_key=api_key, timeout=timeout)

    # -- errors ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _call(self, what: str) -> Iterator[None]:
        from label_studio_sdk.core.api_error import ApiError

        where = f"Label Studio at {self.url}"
        try:
            yield
        except ApiError as exc:
            code = exc.status_code
            if code in (401, 403):
                raise LabelStudioError(
                    f"{where} refused the API key from ${self.api_key_env} (HTTP {code}: "
                    f"{_detail(exc.body)}) while trying to {what}"
                ) from None
            if code == 404 and isinstance(exc.body, str):
                raise LabelStudioError(
                    f"{where}: {what} → HTTP 404 (an HTML page): is this the server's base URL?"
                ) from None
            raise LabelStudioError(
                f"{where} answered HTTP {code} to '{what}': {_detail(exc.body)}"
            ) from None
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise LabelStudioError(
                f"cannot reach {where} ({what}): {_reason(exc)}; is the server running?"
            ) from None
        except httpx.TimeoutException:
            raise LabelStudioError(
                f"{where} did not answer within {self.timeout:g}s ({what})"
            ) from None
        except httpx.HTTPError as exc:
            raise LabelStudioError(
                f"the connection to {where} broke ({what}): {_reason(exc)}"
            ) from None
        except (json.JSONDecodeError, ValueError) as exc:
            if isinstance(exc, LabelStudioError):
                raise
            raise LabelStudioError(
                f"{where} sent something that is not the Label Studio API ({what}): "
                f"{type(exc).__name__}"
            ) from None

    # -- identity --------------------------------------------------------------------------
    def whoami(self) -> int:
        """Check URL and key; the id of the key's user."""
        with self._call("connect and check the API key"):
            user = self.sdk.users.whoami()
        return int(user.id)

    # -- projects --------------------------------------------------------------------------
    def find_project(self, title: str) -> LSProject | None:
        """The project titled ``title`` (the oldest if several), or None."""
        with self._call("list projects"):
            found = [
                p for p in self.sdk.projects.list(title=title, page_size=100) if p.title == title
            ]
        if not found:
            return None
        return self.get_project(min(p.id for p in found))

    def get_project(self, project_id: int) -> LSProject:
        with self._call(f"read project {project_id}"):
            p = self.sdk.projects.get(id=project_id)
        return LSProject(
            id=int(p.id),
            title=str(p.title),
            label_config=str(p.label_config or ""),
            maximum_annotations=p.maximum_annotations,
            overlap_cohort_percentage=p.overlap_cohort_percentage,
        )

    def create_project(
        self, title: str, label_config: str, maximum_annotations: int, overlap_percentage: int
    ) -> LSProject:
        with self._call(f"create project {title!r}"):
            p = self.sdk.projects.create(
                title=title,
                label_config=label_config,
                maximum_annotations=maximum_annotations,
                overlap_cohort_percentage=overlap_percentage,
                show_overlap_first=maximum_annotations > 1,
                show_collab_predictions=True,
            )
        return self.get_project(int(p.id))

    def set_overlap(
        self, project_id: int, maximum_annotations: int, overlap_percentage: int
    ) -> None:
        with self._call(f"set the overlap of project {project_id}"):
            self.sdk.projects.update(
                id=project_id,
                maximum_annotations=maximum_annotations,
                overlap_cohort_percentage=overlap_percentage,
                show_overlap_first=maximum_annotations > 1,
            )

    def delete_project(self, project_id: int) -> None:
        with self._call(f"delete project {project_id}"):
            self.sdk.projects.delete(id=project_id)

    # -- storage ---------------------------------------------------------------------------
    def ensure_local_storage(self, project_id: int, folder: Path) -> int:
        """A local-files import storage on ``folder`` (grants access; nothing is synced)."""
        path = str(folder.resolve())
        with self._call(f"list the local storages of project {project_id}"):
            for s in self.sdk.import_storage.local.list(project=project_id):
                if s.path == path:
                    return int(s.id)
        with self._call(f"add local-files storage {path} to project {project_id}"):
            s = self.sdk.import_storage.local.create(
                project=project_id, path=path, use_blob_urls=True, title="mmner-data images"
            )
        return int(s.id)

    # -- tasks -----------------------------------------------------------------------------
    def task_post_ids(self, project_id: int) -> dict[str, list[int]]:
        """``data.post_id`` → task ids of every task in the project (tasks without one skipped)."""
        out: dict[str, list[int]] = {}
        with self._call(f"list the tasks of project {project_id}"):
            # include=id,data: the server then skips annotations, predictions and counters (7×
            # faster on a 2,000-task project than the default serialisation).
            pages = self.sdk.tasks.list(
                project=project_id, include="id,data", page_size=LIST_PAGE_SIZE
            )
            for t in pages:
                post_id = (t.data or {}).get("post_id")
                if post_id is not None:
                    out.setdefault(str(post_id), []).append(int(t.id))
        return out

    def import_tasks(self, project_id: int, tasks: Sequence[dict]) -> list[int]:
        """Import ``tasks`` in one request; their new ids, in order. Never retried (not idempotent)."""
        with self._call(f"import {len(tasks)} task(s) into project {project_id}"):
            res = self.sdk.projects.import_tasks(
                id=project_id,
                request=list(tasks),
                return_task_ids=True,
                request_options={"max_retries": 0, "timeout_in_seconds": max(self.timeout, 300)},
            )
        ids = [int(i) for i in (res.task_ids or [])]
        if len(ids) != len(tasks):
            raise LabelStudioError(
                f"Label Studio at {self.url} imported {res.task_count} of {len(tasks)} task(s) "
                f"into project {project_id} and returned {len(ids)} id(s)"
            )
        return ids

    def export_tasks(self, project_id: int, timeout: float = 600.0) -> list[dict]:
        """Every annotated task of the project with its annotations (skipped ones too), as JSON.

        Tasks without any annotation are left out of the export (``download_all_tasks=false``):
        they carry nothing to pull, and leaving them out keeps a pull fast on large projects.
        """
        with self._call(f"export project {project_id}"):
            edition = self.sdk.versions.get().edition
            if edition == "Enterprise":
                data = self.sdk.projects.exports.as_json(project_id, timeout=int(timeout))
            else:  # Community exports synchronously
                stream = self.sdk.projects.exports.download_sync(
                    project_id,
                    export_type="JSON",
                    download_all_tasks=False,
                    download_resources=False,
                    request_options={"timeout_in_seconds": int(timeout)},
                )
                data = json.loads(b"".join(stream))
        if not isinstance(data, list):
            raise LabelStudioError(f"Label Studio at {self.url}: the export is not a task list")
        return data


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:200]
