"""Invariants of the bundled sample corpus (posts.jsonl, images, local.jsonl)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import unicodedata
from collections import Counter
from itertools import combinations
from pathlib import Path

import imagehash
import pytest
from PIL import Image

from mmner_data.sample import SAMPLE_DIR, load_sample_posts
from mmner_data.sample import build as B

TARGET = ("en", "fr", "de", "es")
IMAGES = SAMPLE_DIR / "images"


@pytest.fixture(scope="module")
def posts() -> list[dict]:
    return load_sample_posts()


@pytest.fixture(scope="module")
def by_id(posts: list[dict]) -> dict[str, dict]:
    return {p["id"]: p for p in posts}


@pytest.fixture(scope="module")
def recipes() -> dict[str, dict]:
    return {r["file"]: r for r in json.loads((SAMPLE_DIR / "images.json").read_text())}


@pytest.fixture(scope="module")
def hashes() -> dict[str, imagehash.ImageHash]:
    out = {}
    for path in sorted(IMAGES.glob("*")):
        with Image.open(path) as im:
            out[path.name] = imagehash.phash(im.convert("RGB"))
    return out


# An independent re-implementation of the dedup key the corpus is designed against.
_URL = re.compile(r"(?:https?://|www\.)\S+", re.I)
_MENTION = re.compile(r"(?<![\w@])@[\w.\-]+(?:@[\w.\-]+)?")


def _key(text: str) -> str:
    t = unicodedata.normalize("NFKC", text)
    t = re.sub(r"^\s*RT\s+@\S+\s*:\s*", "", t)
    t = _MENTION.sub(" ", _URL.sub(" ", t)).casefold()
    t = "".join(c if c.isalnum() or c.isspace() or c == "_" else " " for c in t)
    return " ".join(t.split())


def _grams(text: str) -> set[str]:
    k = _key(text)
    return {k[i : i + 5] for i in range(len(k) - 4)}


def _jac(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b)


def _root(post: dict, by_id: dict[str, dict]) -> str:
    if post["kind"] in ("exact_dup", "near_dup_text", "reblog"):
        return _root(by_id[post["dup_of"]], by_id)
    return post["id"]


def test_fields_and_counts(posts: list[dict]) -> None:
    keys = {"id", "lang", "channel", "text", "author", "created_at", "image", "kind", "dup_of"}
    keys |= {"expect", "mismatch", "entities"}
    assert all(set(p) == keys for p in posts)
    assert len({p["id"] for p in posts}) == len(posts)
    for lang in TARGET:
        mine = [p for p in posts if p["lang"] == lang]
        kinds = Counter(p["kind"] for p in mine)
        assert sum(p["expect"] == "kept" for p in mine) >= 30, lang
        assert kinds["normal"] >= 30
        assert kinds["exact_dup"] == 2 and kinds["near_dup_text"] == 2, (lang, kinds)
        assert kinds["image_reuse"] == 1 and kinds["near_dup_image"] == 1, (lang, kinds)
        assert kinds["mismatch"] == 1 and 1 <= kinds["broken_image"] <= 2, (lang, kinds)
        assert {p["channel"] for p in mine} == {"mastodon", "rss", "bluesky", "jsonl"}
        assert all(p["expect"] == B.KIND_EXPECT[p["kind"]] for p in mine)
    other = [p for p in posts if p["lang"] not in TARGET]
    assert len(other) >= 8 and len({p["lang"] for p in other}) >= 5
    assert all(p["expect"] == "lang_other" for p in other)
    reblogs = [p for p in posts if p["expect"] == "reblog"]
    assert len(reblogs) == 2 and all(p["channel"] == "mastodon" for p in reblogs)
    assert sum(p["expect"] == "malformed_record" for p in posts) >= 1
    channels = Counter(p["channel"] for p in posts)
    assert channels["mastodon"] > channels["bluesky"] and channels["rss"] > channels["jsonl"]
    assert [p["mismatch"] for p in posts] == [p["kind"] == "mismatch" for p in posts]


def test_entity_offsets_point_into_the_text(posts: list[dict]) -> None:
    labels: dict[str, Counter] = {lang: Counter() for lang in TARGET}
    for p in posts:
        last = 0
        for e in p["entities"]:
            assert p["text"][e["start"] : e["end"]] == e["text"], (p["id"], e)
            assert e["label"] in {"PER", "ORG", "LOC", "MISC"}
            assert last <= e["start"] < e["end"]
            last = e["end"]
        if p["lang"] in TARGET and p["expect"] != "malformed_record":
            assert p["entities"], f"{p['id']} has no named entity"
            labels[p["lang"]].update(e["label"] for e in p["entities"])
    for lang, counts in labels.items():
        assert min(counts[label] for label in ("PER", "ORG", "LOC", "MISC")) >= 5, (lang, counts)


def test_texts_are_varied_social_media(posts: list[dict]) -> None:
    texts = [p["text"] for p in posts if p["lang"] in TARGET]
    assert sum("#" in t for t in texts) >= 30
    assert sum("http" in t for t in texts) >= 4
    assert sum(re.search(r"(?<!\w)@\w", t) is not None for t in texts) >= 1
    assert sum(any(ord(c) > 0x2600 for c in t) for t in texts) >= 60  # emoji
    assert len({t.split()[0] for t in texts}) > 80  # not templated


def test_duplicates_follow_their_originals(posts: list[dict], by_id: dict[str, dict]) -> None:
    def order(p: dict) -> tuple[str, str, str]:
        return (p["created_at"], p["channel"], p["id"])

    for p in posts:
        if p["dup_of"] is None:
            continue
        orig = by_id[p["dup_of"]]
        assert orig["expect"] == "kept" and order(orig) < order(p), p["id"]
        if p["kind"] == "exact_dup":
            assert _key(p["text"]) == _key(orig["text"])
            assert p["image"] == orig["image"]
        if p["kind"] == "exact_dup":
            assert p["channel"] != orig["channel"]
        if p["kind"] in ("image_reuse", "reblog"):
            a = (IMAGES / p["image"]).read_bytes()
            assert (
                hashlib.sha256(a).digest()
                == hashlib.sha256((IMAGES / orig["image"]).read_bytes()).digest()
            )


def test_text_similarity_thresholds(posts: list[dict], by_id: dict[str, dict]) -> None:
    live = [p for p in posts if p["expect"] != "malformed_record"]
    grams = {p["id"]: _grams(p["text"]) for p in live}
    worst_unrelated = 0.0
    for a, b in combinations(live, 2):
        sim = _jac(grams[a["id"]], grams[b["id"]])
        if _root(a, by_id) == _root(b, by_id):
            assert sim >= 0.8, (a["id"], b["id"], sim)
        else:
            worst_unrelated = max(worst_unrelated, sim)
    assert worst_unrelated < 0.3
    for p in posts:
        if p["kind"] == "near_dup_text":
            orig = by_id[p["dup_of"]]
            assert _key(p["text"]) != _key(orig["text"]), p["id"]  # not an exact duplicate
            assert _jac(grams[p["id"]], grams[orig["id"]]) >= 0.7


def test_thresholds_hold_for_the_pipeline_normaliser(
    posts: list[dict], by_id: dict[str, dict]
) -> None:
    normalise = pytest.importorskip("mmner_data.collect.normalise")
    live = [p for p in posts if p["expect"] != "malformed_record"]
    keys = {p["id"]: normalise.text_key(p["text"]) for p in live}
    grams = {k: {v[i : i + 5] for i in range(len(v) - 4)} for k, v in keys.items()}
    for a, b in combinations(live, 2):
        sim = _jac(grams[a["id"]], grams[b["id"]])
        if _root(a, by_id) != _root(b, by_id):
            assert sim < 0.3, (a["id"], b["id"])
        elif a["kind"] == "near_dup_text" or b["kind"] == "near_dup_text":
            assert 0.7 <= sim < 1.0 and keys[a["id"]] != keys[b["id"]], (a["id"], b["id"])
        elif "exact_dup" in (a["kind"], b["kind"]):
            assert keys[a["id"]] == keys[b["id"]], (a["id"], b["id"])


def test_image_files(posts: list[dict], recipes: dict[str, dict]) -> None:
    files = {p.name for p in IMAGES.iterdir()}
    assert files == set(recipes)
    used = {p["image"] for p in posts if p["image"] and not p["image"].startswith("broken/")}
    assert used == files
    assert {p["image"] for p in posts if p["kind"] == "broken_image"} <= B.BROKEN_IMAGES
    total = 0
    for name in files:
        data = (IMAGES / name).read_bytes()
        total += len(data)
        assert len(data) < 60_000, name
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            if "copy_of" not in recipes[name]:
                assert 320 <= max(im.size) <= 480, (name, im.size)
                assert recipes[name]["source"].split(":")[0] in ("skimage", "sklearn")
    assert total < 6_000_000


def test_perceptual_hash_thresholds(
    posts: list[dict], by_id: dict[str, dict], recipes: dict[str, dict], hashes: dict
) -> None:
    def group(name: str) -> str:
        return group(recipes[name]["copy_of"]) if "copy_of" in recipes[name] else name

    closest = 64
    for a, b in combinations(sorted(hashes), 2):
        dist = hashes[a] - hashes[b]
        if group(a) == group(b):
            assert dist <= 4, (a, b, dist)
        else:
            closest = min(closest, dist)
    assert closest >= 16
    for p in posts:
        if p["kind"] in ("near_dup_text", "near_dup_image"):
            orig = by_id[p["dup_of"]]["image"]
            assert p["image"] != orig and recipes[p["image"]]["copy_of"] == orig
            assert hashes[p["image"]] - hashes[orig] <= 4
            assert (IMAGES / p["image"]).read_bytes() != (IMAGES / orig).read_bytes()
        if p["kind"] == "near_dup_image":
            assert recipes[p["image"]]["scale"] == 0.8 and recipes[p["image"]]["quality"] == 70


def test_local_jsonl(posts: list[dict]) -> None:
    lines = (SAMPLE_DIR / "local.jsonl").read_text(encoding="utf-8").splitlines()
    jsonl_posts = [p for p in posts if p["channel"] == "jsonl"]
    assert len(lines) == len(jsonl_posts)
    good, bad = [], 0
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(record.get("text"), str):
            bad += 1
            continue
        good.append(record)
    assert bad == sum(p["expect"] == "malformed_record" for p in posts) >= 1
    expected = {p["id"]: p for p in jsonl_posts}
    for record in good:
        post = expected[record["id"]]
        assert set(record) == {"id", "text", "lang", "author", "created_at", "image", "url"}
        assert record["text"] == post["text"] and record["lang"] == post["lang"]
        assert (SAMPLE_DIR / record["image"]).is_file()


def test_build_check_passes_and_catches_corruption(posts: list[dict]) -> None:
    assert B.check() == []
    broken = copy.deepcopy(posts)
    near = next(p for p in broken if p["kind"] == "near_dup_text")
    near["text"] = "Something else entirely, nothing like the post it claims to copy."
    first = next(p for p in broken if p["entities"])
    first["entities"][0]["start"] += 1
    problems = "\n".join(B.check_posts(broken))
    pair = sorted([near["id"], near["dup_of"]], key=lambda i: [p["id"] for p in broken].index(i))
    assert f"{pair[0]} ~ {pair[1]}: duplicate texts too far apart" in problems
    assert f"{first['id']}: entity" in problems


def test_checker_rejects_close_images() -> None:
    posts = B.load_posts()
    recipes = B.load_recipes()
    images = B.read_images()
    normal = [p["image"] for p in posts if p["kind"] == "normal"]
    a, b = normal[0], normal[1]
    images[b] = images[a]  # two unrelated posts now share one picture
    problems = "\n".join(B.check_images(posts, recipes, images))
    assert f"{min(a, b)} ~ {max(a, b)}: distinct images only 0 bits apart" in problems


def test_build_is_reproducible(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    rendered = B.build(out_dir=tmp_path)
    committed = B.read_images()
    assert set(rendered) == set(committed)
    for name, data in rendered.items():
        if data == committed[name]:
            continue
        with Image.open(io.BytesIO(data)) as x, Image.open(io.BytesIO(committed[name])) as y:
            assert x.size == y.size
            assert imagehash.phash(x) - imagehash.phash(y) <= 2, name
    assert (tmp_path / "local.jsonl").read_text() == (SAMPLE_DIR / "local.jsonl").read_text()
