"""The URL policy as pure functions: address classes, host checks with a fake resolver, local paths.

No test here opens a connection: private, link-local and public addresses are judged by
:func:`address_refusal` and by :meth:`UrlPolicy.check_host` with an injected resolver.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmner_data.collect.urlpolicy import (
    UrlPolicy,
    UrlRefused,
    address_refusal,
    classify,
    parse_allow_entry,
    policy_for_source,
)
from mmner_data.config import RecipeError, build_recipe


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.5.6.7", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("192.0.2.1", "private"),  # documentation
        ("not-an-ip", "not an IP"),
    ],
)
def test_non_public_addresses_are_refused(address: str, why: str) -> None:
    reason = address_refusal(address)
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(address) is None


def _resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return table[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def test_check_host_resolves_once_and_judges_every_address() -> None:
    resolve = _resolver(
        {
            "cdn.example": ["93.184.216.34"],
            "evil.example": ["93.184.216.34", "10.0.0.5"],  # one bad answer is enough
            "metadata.example": ["169.254.169.254"],
            "localhost": ["127.0.0.1", "::1"],
        }
    )
    policy = UrlPolicy.build(resolve=resolve)
    assert policy.check_host("cdn.example", 443) == ["93.184.216.34"]
    for host in ("evil.example", "metadata.example", "localhost"):
        with pytest.raises(UrlRefused, match="only the source's own origin"):
            policy.check_host(host, 80)
    assert resolve.calls == ["cdn.example", "evil.example", "metadata.example", "localhost"]


def test_trusted_origin_and_allow_list() -> None:
    resolve = _resolver(
        {
            "127.0.0.1": ["127.0.0.1"],
            "intranet": ["10.1.1.1"],
            "nas.lan": ["192.168.1.20"],
            "other.lan": ["192.168.2.20"],
        }
    )
    policy = UrlPolicy.build(
        trusted_urls=["http://127.0.0.1:8765/api"],
        allow_hosts=["intranet", "192.168.1.0/24", "http://other.lan:8080"],
        resolve=resolve,
    )
    assert policy.check_host("127.0.0.1", 8765)  # the configured origin
    with pytest.raises(UrlRefused):
        policy.check_host("127.0.0.1", 8766)  # same host, another port: not the origin
    assert policy.check_host("INTRANET", 80)  # by name, case-insensitive
    assert policy.check_host("nas.lan", 80)  # by network
    assert policy.check_host("other.lan", 8080)  # by origin
    with pytest.raises(UrlRefused):
        policy.check_host("other.lan", 80)


@pytest.mark.parametrize(
    "entry", ["", "http://", "ftp://x.org", "bad host!", "a..b", "http://h:99999"]
)
def test_bad_allow_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_allow_entry(entry)


def test_remote_sources_never_name_local_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"\xff\xd8\xff")
    remote = UrlPolicy()
    for url in (secret.as_uri(), str(secret), "~/secret.jpg", "secret.jpg", "file://localhost/x"):
        with pytest.raises(UrlRefused, match=r"remote source|relative"):
            classify(url, remote)
    with pytest.raises(UrlRefused, match="remote file URL"):
        classify("file://fileserver/share/x.jpg", remote)
    for url in ("ftp://x.org/a.jpg", "data:image/png;base64,AAAA", "http:///x", "", "gopher://x"):
        with pytest.raises(ValueError):
            classify(url, remote)
    assert classify("https://cdn.example/a.jpg", remote) == ("http", "https://cdn.example/a.jpg")


def test_local_sources_read_only_below_their_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "a.jpg").write_bytes(b"x")
    (tmp_path / "outside.jpg").write_bytes(b"x")
    (data / "images" / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    policy = UrlPolicy.build(local_roots=[data])
    assert classify(str(data / "images" / "a.jpg"), policy)[0] == "file"
    assert classify((data / "images" / "a.jpg").as_uri(), policy)[0] == "file"
    for bad in (
        str(tmp_path / "outside.jpg"),
        str(data / ".." / "outside.jpg"),
        str(data / "images" / "link.jpg"),  # a symlink out of the folder
        "/etc/passwd",
    ):
        with pytest.raises(UrlRefused, match="outside the source's folder"):
            classify(bad, policy)


def test_policy_for_each_source_type(tmp_path: Path) -> None:
    recipe = build_recipe(
        {
            "sources": [
                {"name": "m", "type": "mastodon", "base_url": "https://masto.example:8443/"},
                {"name": "r", "type": "rss", "url": "http://feeds.example/news.xml"},
                {"name": "j", "type": "jsonl", "path": str(tmp_path / "x.jsonl")},
                {"name": "h", "type": "hf", "dataset": "someone/hub-dataset"},
            ],
            "url_policy": {"allow_hosts": ["10.0.0.0/8"], "local_roots": [str(tmp_path / "imgs")]},
        },
        recipe_dir=tmp_path,
    )
    m, r, j, h = (
        policy_for_source(s, recipe.url_policy.allow_hosts, recipe.url_policy.local_roots)
        for s in recipe.sources
    )
    assert m.trusted_origins == {("masto.example", 8443)} and not m.local_roots
    assert r.trusted_origins == {("feeds.example", 80)} and not r.local_roots
    assert j.local_roots == (tmp_path.resolve(), (tmp_path / "imgs").resolve())
    assert not h.local_roots  # a hub dataset is remote content
    assert all(len(p.allow) == 1 for p in (m, r, j, h))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"type": "mastodon", "base_url": "mastodon.social"}, "base_url"),
        ({"type": "bluesky", "base_url": "file:///etc", "query": "x"}, "base_url"),
        ({"type": "rss", "url": "/feeds/news.xml"}, "url"),
        ({"type": "rss", "url": "http://h:notaport/"}, "url"),
    ],
)
def test_recipe_urls_need_a_scheme_and_host(source: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=rf"sources\.0\.\w+\.{message}"):
        build_recipe({"sources": [{"name": "s", **source}]}, recipe_dir=tmp_path)


def test_recipe_allow_list_is_validated(tmp_path: Path) -> None:
    src = {"name": "s", "type": "rss", "url": "http://x.org/f"}
    with pytest.raises(RecipeError, match=r"url_policy\.allow_hosts"):
        build_recipe(
            {"sources": [src], "url_policy": {"allow_hosts": ["not a host"]}}, recipe_dir=tmp_path
        )
    with pytest.raises(RecipeError, match="unknown key"):
        build_recipe({"sources": [src], "url_policy": {"allow": ["x"]}}, recipe_dir=tmp_path)


def test_the_sample_recipe_states_its_allowance() -> None:
    import yaml

    from tests.conftest import SAMPLE_RECIPE

    raw = yaml.safe_load(SAMPLE_RECIPE.read_text(encoding="utf-8"))
    assert raw["url_policy"]["allow_hosts"] == ["${SAMPLE_SERVER}"]
