"""The local Label Studio server as a pytest plugin, shared by every test file that needs it.

Use it with ``pytest_plugins = ["ls_fixture"]`` in a test module: the session fixture
``label_studio`` installs Label Studio into its own venv (``.ls-venv``, a no-op when present) and
starts it with ``scripts/label-studio.sh`` when it is not running; it stops it again at the end
only if it started it, so one server serves the whole session (and a server started by hand stays
up between runs).

Test modules import helpers from here before pytest registers it as a plugin, so it opts out of
assertion rewriting (PYTEST_DONT_REWRITE) and raises explicitly instead of asserting.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "label-studio.sh"


@dataclass(frozen=True)
class LabelStudioServer:
    """How to reach the test server."""

    url: str
    token: str
    data_dir: Path
    files_root: Path


@dataclass
class Annotator:
    """A user created for a test, with an API client authenticated as them."""

    id: int
    email: str
    client: httpx.Client


def ls_script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/label-studio.sh`` with ``args``."""
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


@pytest.fixture(scope="session")
def label_studio() -> Iterator[LabelStudioServer]:
    """Install (if needed) and start the local server; stop it afterwards if we started it."""
    started_here = ls_script("status").returncode != 0
    if started_here:
        for step in ("install", "start"):
            res = ls_script(step)
            if res.returncode != 0:
                pytest.fail(f"scripts/label-studio.sh {step} failed:\n{res.stdout}\n{res.stderr}")
    url = ls_script("url").stdout.strip()
    token = ls_script("token").stdout.strip()
    data_dir = Path(os.environ.get("LS_DATA", REPO / ".ls-data")).resolve()
    files_root = Path(os.environ.get("LS_FILES_ROOT", REPO)).resolve()
    try:
        yield LabelStudioServer(url=url, token=token, data_dir=data_dir, files_root=files_root)
    finally:
        if started_here:
            ls_script("stop")


@pytest.fixture(scope="session")
def ls_client(label_studio: LabelStudioServer):  # type: ignore[no-untyped-def]
    """An SDK client authenticated as the admin."""
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=label_studio.url, api_key=label_studio.token)


@pytest.fixture
def ls_env(label_studio: LabelStudioServer, monkeypatch: pytest.MonkeyPatch) -> LabelStudioServer:
    """``LABEL_STUDIO_URL``, ``LABEL_STUDIO_API_KEY`` and the document root set for this test."""
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(label_studio.files_root))
    return label_studio


def served_tmp_dir(server: LabelStudioServer) -> Path:
    """A fresh folder under the server's local-files document root (caller removes it)."""
    folder = server.data_dir / "test-files" / uuid.uuid4().hex[:8]
    if not folder.resolve().is_relative_to(server.files_root):
        pytest.skip("LS_DATA lies outside LS_FILES_ROOT: no served folder to write to")
    folder.mkdir(parents=True)
    return folder


def invite_annotator(server: LabelStudioServer, email: str, password: str) -> Annotator:
    """Sign a new user up through the organisation's invite link; a client with their token."""
    invite = httpx.get(
        f"{server.url}/api/invite", headers={"Authorization": f"Token {server.token}"}, timeout=10
    ).json()["invite_url"]
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        browser.get(invite)
        form = {
            "email": email,
            "password": password,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        }
        signed_up = browser.post(invite, data=form, headers={"Referer": server.url + invite})
        if signed_up.status_code != 302:
            raise RuntimeError(f"sign-up of {email} failed: {signed_up.text[:500]}")
        token = browser.get("/api/current-user/token").json()["token"]
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Token {token}"}, timeout=30
    )
    user_id = int(client.get("/api/current-user/whoami").json()["id"])
    return Annotator(id=user_id, email=email, client=client)
