"""A real Label Studio server (scripts/label-studio.sh) driven through label-studio-sdk.

Run with ``pytest -m labelstudio``. The session fixture (``tests/ls_fixture.py``) installs Label
Studio into its own venv (``.ls-venv``, a no-op when present) and starts it when it is not
running; it stops the server again at the end only if it started it.
"""

from __future__ import annotations

import shutil
import uuid

import httpx
import pytest
from ls_fixture import LabelStudioServer, invite_annotator, ls_script

from mmner_data.schema import EntitySpan
from mmner_data.text.spans import align_to_text, spans_to_tags, tags_to_spans
from mmner_data.text.tokenize import tokenize

pytest_plugins = ["ls_fixture"]
pytestmark = pytest.mark.labelstudio

NER_CONFIG = """<View>
  <Image name="image" value="$image" maxWidth="400px"/>
  <Labels name="label" toName="text">
    <Label value="PER"/><Label value="LOC"/><Label value="ORG"/><Label value="MISC"/>
  </Labels>
  <Text name="text" value="$text" granularity="word"/>
</View>"""


@pytest.fixture
def project(ls_client):  # type: ignore[no-untyped-def]
    proj = ls_client.projects.create(
        title=f"mmner-test-{uuid.uuid4().hex[:8]}", label_config=NER_CONFIG
    )
    try:
        yield proj
    finally:
        ls_client.projects.delete(id=proj.id)


def test_script_is_idempotent_and_reports_state(label_studio: LabelStudioServer) -> None:
    again = ls_script("start", timeout=60)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    status = ls_script("status")
    assert status.returncode == 0 and status.stdout.startswith("running ")
    assert label_studio.url.startswith("http://127.0.0.1:")
    token_file = label_studio.data_dir / "token"
    assert token_file.read_text().strip() == label_studio.token
    assert token_file.stat().st_mode & 0o777 == 0o600


def test_health_and_token_auth(label_studio: LabelStudioServer) -> None:
    assert httpx.get(f"{label_studio.url}/health", timeout=10).json()["status"] == "UP"
    who = httpx.get(
        f"{label_studio.url}/api/current-user/whoami",
        headers={"Authorization": f"Token {label_studio.token}"},
        timeout=10,
    )
    assert who.status_code == 200
    bad = httpx.get(
        f"{label_studio.url}/api/current-user/whoami",
        headers={"Authorization": "Token not-the-token"},
        timeout=10,
    )
    assert bad.status_code == 401


def test_sdk_roundtrip_project_task_annotation(ls_client, project) -> None:  # type: ignore[no-untyped-def]
    assert project.id in [p.id for p in ls_client.projects.list()]

    text = "😀 Jean-Luc Mélenchon visite l'Élysée à Paris 🇫🇷"
    imported = ls_client.projects.import_tasks(
        id=project.id,
        request=[{"text": text, "image": "https://example.invalid/x.jpg", "post_id": "p1"}],
        return_task_ids=True,
    )
    assert imported.task_count == 1
    (task,) = list(ls_client.tasks.list(project=project.id))
    assert task.data["text"] == text  # emoji and accents survive the round trip

    tokens = tokenize(text)
    spans = [
        EntitySpan(text.index("Jean-Luc"), text.index(" visite"), "PER"),
        EntitySpan(text.index("Élysée"), text.index(" à"), "LOC"),
        EntitySpan(text.index("Paris"), text.index("Paris") + 5, "LOC"),
    ]
    result = [
        {
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": s.start, "end": s.end, "text": s.text_in(text), "labels": [s.label]},
        }
        for s in spans
    ]
    ls_client.annotations.create(id=task.id, result=result)

    (annotation,) = ls_client.annotations.list(id=task.id)
    pulled = []
    for region in annotation.result:
        value = region["value"]
        start, end = align_to_text(text, value["start"], value["end"], value["text"])
        pulled.append(EntitySpan(start, end, value["labels"][0]))
    assert sorted(pulled) == spans  # code-point offsets come back unchanged
    tags = spans_to_tags(text, tokens, pulled, snap="strict")
    assert [t.text for t, tag in zip(tokens, tags, strict=True) if tag != "O"] == [
        "Jean-Luc", "Mélenchon", "Élysée", "Paris",
    ]  # fmt: skip
    assert tags_to_spans(tokens, tags) == spans


def test_local_files_are_served(label_studio: LabelStudioServer, ls_client, project) -> None:  # type: ignore[no-untyped-def]
    folder = label_studio.data_dir / "test-files" / uuid.uuid4().hex[:8]
    if not folder.resolve().is_relative_to(label_studio.files_root):
        pytest.skip("LS_DATA lies outside LS_FILES_ROOT: no served folder to write to")
    folder.mkdir(parents=True)
    image = folder / "pixel.png"
    # The smallest valid PNG: 1x1, red.
    image.write_bytes(
        bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
            "0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082"
        )
    )
    rel = image.resolve().relative_to(label_studio.files_root).as_posix()
    url = f"{label_studio.url}/data/local-files/?d={rel}"
    auth = {"Authorization": f"Token {label_studio.token}"}

    try:
        # Not served until a local-files storage covering the folder exists (no sync needed).
        assert httpx.get(url, headers=auth, timeout=10).status_code == 404
        ls_client.import_storage.local.create(
            project=project.id, path=str(folder.resolve()), use_blob_urls=True, title="images"
        )
        served = httpx.get(url, headers=auth, timeout=10)
        assert served.status_code == 200
        assert served.content == image.read_bytes()
        assert httpx.get(url, timeout=10).status_code == 401  # not served to anonymous clients
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_overlap_with_maximum_annotations_on_community(
    label_studio: LabelStudioServer,
    ls_client,  # type: ignore[no-untyped-def]
) -> None:
    """Community has no overlap UI, but `maximum_annotations` set through the API is honoured.

    Each task goes to exactly two different annotators through the label stream; an annotator
    never gets a task twice, never sees the other's annotation there, and a third annotator
    gets nothing once every task has its two annotations.
    """
    proj = ls_client.projects.create(
        title=f"mmner-overlap-{uuid.uuid4().hex[:8]}",
        label_config=NER_CONFIG,
        maximum_annotations=2,
        show_overlap_first=True,
    )
    try:
        assert ls_client.projects.get(id=proj.id).maximum_annotations == 2
        ls_client.projects.import_tasks(
            id=proj.id, request=[{"text": f"Post {i} from Paris", "image": ""} for i in range(3)]
        )
        tag = uuid.uuid4().hex[:8]
        annotators = [
            invite_annotator(label_studio, f"{n}-{tag}@mmner.local", f"Pw-{tag}-{n}-long").client
            for n in ("a", "b", "c")
        ]
        seen: dict[int, list[int]] = {}
        for k, client in enumerate(annotators):
            seen[k] = []
            for _ in range(5):
                nxt = client.get(f"/api/projects/{proj.id}/next")
                if nxt.status_code == 404:  # nothing left for this annotator
                    break
                task = nxt.json()
                assert task["annotations"] == []  # blind: the other's annotation is not sent
                created = client.post(
                    f"/api/tasks/{task['id']}/annotations/",
                    json={"result": [], "lead_time": 1.0},
                )
                assert created.status_code == 201, created.text
                seen[k].append(task["id"])
        task_ids = sorted(t.id for t in ls_client.tasks.list(project=proj.id))
        assert sorted(seen[0]) == task_ids and sorted(seen[1]) == task_ids
        assert seen[2] == []
        for t in ls_client.tasks.list(project=proj.id):
            assert t.total_annotations == 2 and t.is_labeled
        for client in annotators:
            client.close()
    finally:
        ls_client.projects.delete(id=proj.id)


def test_personal_access_token_works_with_the_sdk(label_studio: LabelStudioServer) -> None:
    """PATs (JWT refresh tokens) are the other token kind; the SDK exchanges them itself."""
    sdk = pytest.importorskip("label_studio_sdk")
    email = f"pat-{uuid.uuid4().hex[:8]}@mmner.local"
    legacy = invite_annotator(label_studio, email, f"Pw-{uuid.uuid4().hex}").client
    created = legacy.post("/api/token/")  # one PAT per user; a fresh user has none
    legacy.close()
    assert created.status_code == 201, created.text
    pat = created.json()["token"]
    assert pat.count(".") == 2  # a JWT, not a legacy key
    client = sdk.LabelStudio(base_url=label_studio.url, api_key=pat)
    assert client.users.whoami().email == email
