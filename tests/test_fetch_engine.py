"""fetch_images as an engine building block: host_key, repeated calls, decode worker processes.

Real loopback servers, real worker processes; nothing here depends on timing.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_images import FAST, LOOPBACK_AND_FILES, LoopbackServer, _encode, _photo, serve

from mmner_data.collect.images import (
    ImageLimits,
    ImageRejected,
    ImageRequest,
    ProcessedImage,
    fetch_images,
    host_key,
    process_image_bytes,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def crops() -> list[bytes]:
    base = _photo("astronaut", (512, 512))
    return [
        _encode(base.crop((i * 9, i * 7, i * 9 + 320, i * 7 + 240)), quality=85) for i in range(12)
    ]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    srv = LoopbackServer()
    yield srv
    srv.close()


def _children() -> set[int]:
    """Live child processes of this process (Linux /proc)."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            with (task / "children").open() as fh:
                pids.update(int(p) for p in fh.read().split())
        except FileNotFoundError:  # the thread ended while we listed them
            continue
    return pids


def _workers() -> list[int]:
    """The decode worker processes among this process's children."""
    found = []
    for pid in _children():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"_decode_worker" in cmdline:
            found.append(pid)
    return found


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to see child processes"
)


def _fetch(
    urls: list[str], limits: ImageLimits = FAST
) -> dict[int, ProcessedImage | ImageRejected]:
    results: dict[int, ProcessedImage | ImageRejected] = {}

    def on_result(req: ImageRequest, res: ProcessedImage | ImageRejected) -> None:
        results[int(req.key)] = res

    fetch_images(
        [ImageRequest(i, u) for i, u in enumerate(urls)],
        limits,
        on_result,
        policy=LOOPBACK_AND_FILES,
    )
    return results


def test_host_key() -> None:
    assert host_key("https://CDN.Example/a.jpg?x=1") == "https://cdn.example:443"
    assert host_key("http://cdn.example/a.jpg") == "http://cdn.example:80"
    assert host_key("HTTP://cdn.example:80/b.jpg") == "http://cdn.example:80"
    assert host_key("  http://cdn.example.:8080/x  ") == "http://cdn.example:8080"
    assert host_key("https://user:secret@cdn.example/a") == "https://cdn.example:443"
    assert host_key("https://[2001:DB8::1]/a") == "https://[2001:db8::1]:443"
    assert host_key("http://127.0.0.1:9/a") == "http://127.0.0.1:9"
    assert host_key("https://bücher.example/a") == "https://xn--bcher-kva.example:443"
    # the scheme is part of the origin
    assert host_key("http://cdn.example/a") != host_key("https://cdn.example/a")
    for bad in (
        "",
        "cdn.example/a.jpg",
        "/srv/images/a.jpg",
        "file:///srv/a.jpg",
        "ftp://cdn.example/a.jpg",
        "data:image/png;base64,AAAA",
        "http:///nohost.jpg",
        "http://cdn.example:99999/a",
        "http://[::1/a",
        None,
    ):
        assert host_key(bad) == "", bad  # type: ignore[arg-type]


def test_spellings_of_one_host_share_its_per_host_limit(
    server: LoopbackServer, crops: list[bytes]
) -> None:
    for i, body in enumerate(crops):
        server.add(f"/c/{i}.jpg", serve(body, delay=0.1))
    port = server.httpd.server_address[1]
    spellings = [
        f"http://127.0.0.1:{port}",
        f"HTTP://127.0.0.1:{port}",
        f"http://127.0.0.1.:{port}",
    ]
    urls = [spellings[i % 3] + f"/c/{i}.jpg" for i in range(len(crops))]
    assert len({host_key(u) for u in urls}) == 1
    limits = ImageLimits(**{**FAST.__dict__, "concurrency": 8, "per_host": 2})
    results = _fetch(urls, limits)
    assert all(isinstance(r, ProcessedImage) for r in results.values())
    assert server.max_inflight <= 2  # one host to the fetcher, however it is spelled


@needs_proc
def test_successive_calls_in_one_process(server: LoopbackServer, crops: list[bytes]) -> None:
    urls = [server.add(f"/s/{i}.jpg", serve(body)) for i, body in enumerate(crops)]
    expected = {i: process_image_bytes(body, "image/jpeg", FAST) for i, body in enumerate(crops)}
    before = _children()

    class Stop(Exception):
        pass

    def stop(req: ImageRequest, res: ProcessedImage | ImageRejected) -> None:
        raise Stop

    for round_ in range(3):
        if round_ == 1:  # a call cut short by its caller leaves nothing behind either
            with pytest.raises(Stop):
                fetch_images(
                    [ImageRequest(i, u) for i, u in enumerate(urls)],
                    FAST,
                    stop,
                    policy=LOOPBACK_AND_FILES,
                )
        else:
            assert _fetch(urls) == expected
        assert not [t.name for t in threading.enumerate() if t.name.startswith("mmner-")]
        assert _children() <= before  # decode workers reaped


@needs_proc
def test_a_decode_worker_that_dies_costs_no_image(
    server: LoopbackServer, crops: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    urls = [server.add(f"/k/{i}.jpg", serve(body, delay=0.05)) for i, body in enumerate(crops)]
    expected = {i: process_image_bytes(body, "image/jpeg", FAST) for i, body in enumerate(crops)}
    # one worker: the next image surely meets the dead one
    limits = ImageLimits(**{**FAST.__dict__, "concurrency": 2, "per_host": 2, "workers": 1})
    results: dict[int, ProcessedImage | ImageRejected] = {}
    killed: list[int] = []

    def on_result(req: ImageRequest, res: ProcessedImage | ImageRejected) -> None:
        results[int(req.key)] = res
        if not killed:  # the next image meets a dead worker (idle or busy): it is replaced
            killed.extend(_workers())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    fetch_images(
        [ImageRequest(i, u) for i, u in enumerate(urls)],
        limits,
        on_result,
        policy=LOOPBACK_AND_FILES,
    )
    assert len(killed) == 1
    assert results == expected
    assert "image decoder process died" in caplog.text


def test_without_a_usable_interpreter_images_are_decoded_in_process(
    server: LoopbackServer, crops: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = [server.add(f"/t/{i}.jpg", serve(body)) for i, body in enumerate(crops[:4])]
    expected = {i: process_image_bytes(body, "image/jpeg", FAST) for i, body in enumerate(crops)}
    # an interpreter that does not exist, and a program that exits at once
    for executable in ("/nonexistent/python3", shutil.which("false") or "/bin/false"):
        monkeypatch.setattr(sys, "executable", executable)
        results = _fetch(urls)
        assert results == {i: expected[i] for i in range(4)}


@needs_proc
def test_decoding_in_threads_starts_no_process(server: LoopbackServer, crops: list[bytes]) -> None:
    urls = [server.add(f"/p/{i}.jpg", serve(body)) for i, body in enumerate(crops)]
    expected = {i: process_image_bytes(body, "image/jpeg", FAST) for i, body in enumerate(crops)}
    before = _children()
    seen: list[set[int]] = []

    def on_result(req: ImageRequest, res: ProcessedImage | ImageRejected) -> None:
        seen.append(_children())
        results[int(req.key)] = res

    results: dict[int, ProcessedImage | ImageRejected] = {}
    limits = ImageLimits(**{**FAST.__dict__, "decode_processes": False})
    fetch_images(
        [ImageRequest(i, u) for i, u in enumerate(urls)],
        limits,
        on_result,
        policy=LOOPBACK_AND_FILES,
    )
    assert results == expected
    assert all(children <= before for children in seen)


def test_many_hosts(crops: list[bytes]) -> None:
    """More hosts than pools kept: idle pools are closed and reopened, every image arrives."""
    servers = [LoopbackServer() for _ in range(10)]
    try:
        urls = [servers[i % 10].add(f"/m/{i}.jpg", serve(crops[i % len(crops)])) for i in range(30)]
        limits = ImageLimits(**{**FAST.__dict__, "concurrency": 2, "per_host": 1})
        results = _fetch(urls, limits)
        expected = {i: process_image_bytes(crops[i % len(crops)], None, FAST) for i in range(30)}
        assert results == expected
    finally:
        for srv in servers:
            srv.close()
