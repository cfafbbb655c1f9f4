"""Build and check the bundled sample corpus.

``posts.jsonl`` (hand-written) and ``images.json`` (one recipe per image) are the sources; this
module renders the images from real photographs shipped with scikit-image and scikit-learn and
writes ``local.jsonl`` (the local-JSONL channel, malformed lines included). The outputs are
committed, so the toolkit and its tests never need scikit-image at run time.

Run ``python -m mmner_data.sample.build`` to regenerate (needs scikit-image and scikit-learn) and
``python -m mmner_data.sample.build --check`` to verify the committed files only.

A recipe is either a crop of a photograph::

    {"file": "en-001.jpg", "source": "skimage:astronaut.png", "box": [l, t, r, b],
     "flip": false, "rotate": 0, "long_side": 400, "quality": 85, "alt": "..."}

(``box`` in fractions of the source size, ``rotate`` in degrees counter-clockwise) or a
re-encoded copy of another image::

    {"file": "en-034.jpg", "copy_of": "en-005.jpg", "scale": 0.9, "quality": 80, "alt": "..."}
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable
from itertools import combinations
from pathlib import Path
from typing import Any

from PIL import Image

DATA_DIR = Path(__file__).resolve().parent / "data"
POSTS_FILE = "posts.jsonl"
RECIPES_FILE = "images.json"
LOCAL_FILE = "local.jsonl"
IMAGES_SUBDIR = "images"

TARGET_LANGS = ("en", "fr", "de", "es")
LABELS = frozenset({"PER", "ORG", "LOC", "MISC"})
CHANNELS = frozenset({"mastodon", "rss", "bluesky", "jsonl"})
BROKEN_IMAGES = frozenset(
    {"broken/truncated.jpg", "broken/html.jpg", "broken/bomb.png", "broken/missing.jpg",
     "broken/huge.jpg", "broken/slow.jpg"}
)  # fmt: skip
EXPECTS = frozenset(
    {"kept", "malformed_record", "lang_other", "reblog", "image_failed", "exact_dup_text",
     "near_dup_text", "exact_dup_image", "near_dup_image"}
)  # fmt: skip
# kind -> the outcome the pipeline must reach for it
KIND_EXPECT = {
    "normal": "kept",
    "mismatch": "kept",
    "exact_dup": "exact_dup_text",
    "near_dup_text": "near_dup_text",
    "image_reuse": "exact_dup_image",
    "near_dup_image": "near_dup_image",
    "broken_image": "image_failed",
    "other_lang": "lang_other",
    "reblog": "reblog",
    "malformed_json": "malformed_record",
    "malformed_missing_text": "malformed_record",
}

# Thresholds the pipeline uses, and the margins the corpus keeps from them.
NEAR_TEXT_JACCARD = 0.7  # pipeline: near-duplicate text at or above this
NEAR_TEXT_MIN = 0.8  # corpus: every near_dup_text edit keeps at least this
UNRELATED_TEXT_MAX = 0.3  # corpus: every unrelated pair stays below this
NEAR_IMAGE_HAMMING = 6  # pipeline: near-duplicate image at or below this
NEAR_IMAGE_MAX = 4  # corpus: every re-encoded copy is at most this far from its original
DISTINCT_IMAGE_MIN = 16  # corpus: every pair of unrelated images is at least this far apart
MAX_IMAGE_BYTES = 60_000
MAX_IMAGES_DIR_BYTES = 6_000_000
LONG_SIDE_RANGE = (320, 480)

_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION_RE = re.compile(r"(?<![\w@])@[\w.\-]+(?:@[\w.\-]+)?")
_RT_RE = re.compile(r"^\s*RT\s+@[\w.\-]+(?:@[\w.\-]+)?\s*:\s*", re.IGNORECASE)


# -- text keys ---------------------------------------------------------------------------------


def text_key(text: str) -> str:
    """The lossy dedup key the corpus is designed against.

    NFKC, ``RT @x:`` prefix, URLs and @mentions removed, case-folded, punctuation and symbols
    (emoji included) removed, whitespace collapsed.
    """
    t = unicodedata.normalize("NFKC", text)
    t = _RT_RE.sub("", t)
    t = _URL_RE.sub(" ", t)
    t = _MENTION_RE.sub(" ", t)
    t = t.casefold()
    t = "".join(" " if unicodedata.category(c)[0] in "PSC" else c for c in t)
    return " ".join(t.split())


def shingles(text: str, k: int = 5) -> set[str]:
    """Character ``k``-grams of :func:`text_key`."""
    key = text_key(text)
    if len(key) < k:
        return {key} if key else set()
    return {key[i : i + k] for i in range(len(key) - k + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


# -- files -------------------------------------------------------------------------------------


def load_posts(data_dir: Path = DATA_DIR) -> list[dict[str, Any]]:
    """The hand-written posts, in file order."""
    with (data_dir / POSTS_FILE).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_recipes(data_dir: Path = DATA_DIR) -> list[dict[str, Any]]:
    """The image recipes, in order (a copy comes after its original)."""
    return json.loads((data_dir / RECIPES_FILE).read_text(encoding="utf-8"))


def order_key(post: dict[str, Any]) -> tuple[str, str, str]:
    """The pipeline's processing order: created_at, then channel (source), then id."""
    return (post["created_at"], post["channel"], post["id"])


# -- images ------------------------------------------------------------------------------------


def source_path(source: str) -> Path:
    """File of a ``skimage:<file>`` or ``sklearn:<file>`` photograph."""
    kind, _, name = source.partition(":")
    if kind == "skimage":
        import skimage.data

        return Path(skimage.data.data_dir) / name
    if kind == "sklearn":
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images" / name
    raise ValueError(f"unknown image source {source!r}")


def _load_source(source: str, cache: dict[str, Image.Image]) -> Image.Image:
    if source not in cache:
        with Image.open(source_path(source)) as im:
            cache[source] = im.convert("RGB")
    return cache[source]


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """Baseline JPEG bytes, no metadata."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def render_crop(recipe: dict[str, Any], cache: dict[str, Image.Image]) -> bytes:
    """JPEG bytes for a crop recipe."""
    src = _load_source(recipe["source"], cache)
    w, h = src.size
    left, top, right, bottom = recipe["box"]
    im = src.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))
    if recipe.get("flip"):
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    rotate = recipe.get("rotate", 0) % 360
    if rotate:
        im = im.transpose(
            {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
             270: Image.Transpose.ROTATE_270}[rotate]
        )  # fmt: skip
    long_side = recipe["long_side"]
    scale = long_side / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    im = im.resize(size, Image.Resampling.LANCZOS)
    return encode_jpeg(im, recipe.get("quality", 85))


def render_copy(original: bytes, recipe: dict[str, Any]) -> bytes:
    """A resized, re-encoded copy of ``original`` (a near-duplicate image)."""
    with Image.open(io.BytesIO(original)) as im:
        im = im.convert("RGB")
        scale = recipe["scale"]
        size = (round(im.width * scale), round(im.height * scale))
        im = im.resize(size, Image.Resampling.LANCZOS)
    return encode_jpeg(im, recipe["quality"])


def render_images(recipes: Iterable[dict[str, Any]]) -> dict[str, bytes]:
    """All image files, name -> JPEG bytes, deterministically from the recipes."""
    cache: dict[str, Image.Image] = {}
    out: dict[str, bytes] = {}
    for recipe in recipes:
        if "copy_of" in recipe:
            out[recipe["file"]] = render_copy(out[recipe["copy_of"]], recipe)
        else:
            out[recipe["file"]] = render_crop(recipe, cache)
    return out


def phash_of(data: bytes) -> Any:
    """``imagehash.phash`` of encoded image bytes."""
    import imagehash

    with Image.open(io.BytesIO(data)) as im:
        return imagehash.phash(im.convert("RGB"))


# -- local JSONL channel -----------------------------------------------------------------------


def local_jsonl_lines(posts: Iterable[dict[str, Any]]) -> list[str]:
    """Lines of ``local.jsonl``: the ``jsonl`` channel, malformed records included."""
    lines = []
    for post in sorted((p for p in posts if p["channel"] == "jsonl"), key=order_key):
        record: dict[str, Any] = {
            "id": post["id"],
            "text": post["text"],
            "lang": post["lang"],
            "author": post["author"],
            "created_at": post["created_at"],
            "image": f"{IMAGES_SUBDIR}/{post['image']}" if post["image"] else None,
            "url": f"https://forum.example.net/t/{post['id']}",
        }
        if post["kind"] == "malformed_missing_text":
            del record["text"]
        line = json.dumps(record, ensure_ascii=False)
        if post["kind"] == "malformed_json":
            line = line[: len(line) // 2]  # cut mid-record: not valid JSON
        lines.append(line)
    return lines


# -- checks ------------------------------------------------------------------------------------


def check_posts(posts: list[dict[str, Any]]) -> list[str]:
    """Field, offset, count, ordering and text-similarity problems (empty when all is well)."""
    problems: list[str] = []
    by_id = {p["id"]: p for p in posts}
    if len(by_id) != len(posts):
        problems.append("duplicate post ids")
    for p in posts:
        pid = p["id"]
        if p["channel"] not in CHANNELS:
            problems.append(f"{pid}: channel {p['channel']!r}")
        if p["expect"] not in EXPECTS or KIND_EXPECT.get(p["kind"]) != p["expect"]:
            problems.append(f"{pid}: kind {p['kind']!r} with expect {p['expect']!r}")
        if p["mismatch"] != (p["kind"] == "mismatch"):
            problems.append(f"{pid}: mismatch flag")
        if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", p["created_at"]):
            problems.append(f"{pid}: created_at {p['created_at']!r}")
        image = p["image"]
        if p["kind"] == "broken_image" and image not in BROKEN_IMAGES:
            problems.append(f"{pid}: broken_image needs one of the broken endpoints")
        if p["kind"] == "reblog" and p["channel"] != "mastodon":
            problems.append(f"{pid}: reblogs are Mastodon statuses")
        if p["kind"].startswith("malformed") and p["channel"] != "jsonl":
            problems.append(f"{pid}: malformed records live in local.jsonl")
        last = 0
        for ent in p["entities"]:
            if ent["label"] not in LABELS:
                problems.append(f"{pid}: label {ent['label']!r}")
            if p["text"][ent["start"] : ent["end"]] != ent["text"]:
                problems.append(f"{pid}: entity {ent['text']!r} not at {ent['start']}:{ent['end']}")
            if ent["start"] < last or ent["start"] >= ent["end"]:
                problems.append(f"{pid}: entities overlap or are out of order")
            if ent["text"] != ent["text"].strip():
                problems.append(f"{pid}: entity {ent['text']!r} has surrounding whitespace")
            last = ent["end"]
        dup = p["dup_of"]
        if (dup is None) != (p["kind"] not in _DUP_KINDS):
            problems.append(f"{pid}: dup_of {dup!r} for kind {p['kind']!r}")
        if dup is not None:
            orig = by_id.get(dup)
            if orig is None:
                problems.append(f"{pid}: dup_of {dup} does not exist")
            elif orig["expect"] != "kept" or not order_key(orig) < order_key(p):
                problems.append(f"{pid}: original {dup} must be kept and come first")
            elif p["kind"] == "exact_dup" and (
                text_key(p["text"]) != text_key(orig["text"]) or p["image"] != orig["image"]
            ):
                problems.append(f"{pid}: not an exact duplicate of {dup}")
            elif p["kind"] in ("image_reuse", "reblog") and p["image"] != orig["image"]:
                problems.append(f"{pid}: must reuse the image of {dup}")
            elif p["kind"] == "reblog" and p["text"] != orig["text"]:
                problems.append(f"{pid}: a reblog carries the original text")
            elif p["kind"] == "near_dup_text" and text_key(p["text"]) == text_key(orig["text"]):
                problems.append(f"{pid}: near_dup_text is an exact duplicate of {dup}")

    kept = Counter(p["lang"] for p in posts if p["expect"] == "kept")
    for lang in TARGET_LANGS:
        if kept[lang] < 30:
            problems.append(f"{lang}: only {kept[lang]} kept posts")
        kinds = Counter(p["kind"] for p in posts if p["lang"] == lang)
        for kind, (low, high) in _KINDS_PER_LANG.items():
            if not low <= kinds[kind] <= high:
                problems.append(f"{lang}: {kinds[kind]} posts of kind {kind}")
    totals = Counter(p["kind"] for p in posts)
    if totals["reblog"] < 2 or totals["other_lang"] < 6 or totals["malformed_json"] < 1:
        problems.append(f"corpus needs reblogs, other languages and malformed lines: {totals}")
    problems.extend(_check_text_similarity(posts, by_id))
    return problems


_DUP_KINDS = frozenset({"exact_dup", "near_dup_text", "image_reuse", "near_dup_image", "reblog"})
_KINDS_PER_LANG = {
    "normal": (30, 40),
    "mismatch": (1, 2),
    "exact_dup": (2, 3),
    "near_dup_text": (2, 3),
    "image_reuse": (1, 2),
    "near_dup_image": (1, 2),
    "broken_image": (1, 2),
}


def text_group(post: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> str:
    """The id of the post whose text this one repeats (its own id when it repeats none)."""
    if post["kind"] in ("exact_dup", "near_dup_text", "reblog"):
        return text_group(by_id[post["dup_of"]], by_id)
    return post["id"]


def _check_text_similarity(
    posts: list[dict[str, Any]], by_id: dict[str, dict[str, Any]]
) -> list[str]:
    problems = []
    live = [p for p in posts if not p["kind"].startswith("malformed")]
    sh = {p["id"]: shingles(p["text"]) for p in live}
    for a, b in combinations(live, 2):
        sim = jaccard(sh[a["id"]], sh[b["id"]])
        same = text_group(a, by_id) == text_group(b, by_id)
        if not same and sim >= UNRELATED_TEXT_MAX:
            problems.append(f"{a['id']} ~ {b['id']}: unrelated texts too similar ({sim:.2f})")
        if same and sim < NEAR_TEXT_MIN:
            problems.append(f"{a['id']} ~ {b['id']}: duplicate texts too far apart ({sim:.2f})")
    return problems


def image_group(name: str, recipes: dict[str, dict[str, Any]]) -> str:
    """The original a copy was made from (the image itself when it is no copy)."""
    recipe = recipes[name]
    return image_group(recipe["copy_of"], recipes) if "copy_of" in recipe else name


def check_images(
    posts: list[dict[str, Any]], recipes: list[dict[str, Any]], images: dict[str, bytes]
) -> list[str]:
    """Recipe, size and perceptual-hash problems of the rendered images (empty when all is well)."""
    problems: list[str] = []
    by_name = {r["file"]: r for r in recipes}
    by_id = {p["id"]: p for p in posts}
    if len(by_name) != len(recipes):
        problems.append("duplicate recipe file names")
    if set(images) != set(by_name):
        problems.append(f"images and recipes differ: {sorted(set(images) ^ set(by_name))}")
        return problems
    used = {p["image"] for p in posts if p["image"] and p["image"] not in BROKEN_IMAGES}
    if used != set(by_name):
        problems.append(f"posts and recipes differ: {sorted(used ^ set(by_name))}")
    for p in posts:
        image, kind = p["image"], p["kind"]
        if kind in ("near_dup_text", "near_dup_image"):
            orig_image = by_id[p["dup_of"]]["image"]
            if by_name.get(image, {}).get("copy_of") != orig_image:
                problems.append(f"{p['id']}: image must be a copy of {orig_image}")
        elif (
            kind in ("normal", "mismatch", "other_lang")
            and image is not None
            and ("copy_of" in by_name.get(image, {}) or image != f"{p['id']}.jpg")
        ):
            problems.append(f"{p['id']}: needs its own image {p['id']}.jpg")
    total = 0
    for name, data in images.items():
        total += len(data)
        if len(data) >= MAX_IMAGE_BYTES:
            problems.append(f"{name}: {len(data)} bytes")
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                problems.append(f"{name}: format {im.format}")
            low, high = LONG_SIDE_RANGE
            if "copy_of" not in by_name[name] and not low <= max(im.size) <= high:
                problems.append(f"{name}: long side {max(im.size)}")
    if total >= MAX_IMAGES_DIR_BYTES:
        problems.append(f"images total {total} bytes")
    hashes = {name: phash_of(data) for name, data in images.items()}
    for a, b in combinations(sorted(images), 2):
        dist = hashes[a] - hashes[b]
        if image_group(a, by_name) == image_group(b, by_name):
            if dist > NEAR_IMAGE_MAX:
                problems.append(f"{a} ~ {b}: copy is {dist} bits from its original")
        elif dist < DISTINCT_IMAGE_MIN:
            problems.append(f"{a} ~ {b}: distinct images only {dist} bits apart")
    return problems


def read_images(data_dir: Path = DATA_DIR) -> dict[str, bytes]:
    """The committed image files, name -> bytes."""
    return {p.name: p.read_bytes() for p in sorted((data_dir / IMAGES_SUBDIR).glob("*.jpg"))}


def check(data_dir: Path = DATA_DIR) -> list[str]:
    """All problems of the committed corpus in ``data_dir`` (empty when all is well)."""
    posts = load_posts(data_dir)
    problems = check_posts(posts)
    problems += check_images(posts, load_recipes(data_dir), read_images(data_dir))
    local = (data_dir / LOCAL_FILE).read_text(encoding="utf-8").splitlines()
    if local != local_jsonl_lines(posts):
        problems.append(f"{LOCAL_FILE} is stale: rerun the build")
    return problems


# -- build -------------------------------------------------------------------------------------


def build(data_dir: Path = DATA_DIR, out_dir: Path | None = None) -> dict[str, bytes]:
    """Render the images and ``local.jsonl`` from ``data_dir`` into ``out_dir`` (default: same)."""
    out_dir = out_dir or data_dir
    posts = load_posts(data_dir)
    recipes = load_recipes(data_dir)
    images = render_images(recipes)
    problems = check_posts(posts) + check_images(posts, recipes, images)
    if problems:
        raise ValueError("sample corpus violates its invariants:\n  " + "\n  ".join(problems))
    img_dir = out_dir / IMAGES_SUBDIR
    img_dir.mkdir(parents=True, exist_ok=True)
    for stale in img_dir.glob("*.jpg"):
        if stale.name not in images:
            stale.unlink()
    for name, data in images.items():
        (img_dir / name).write_bytes(data)
    lines = local_jsonl_lines(posts)
    (out_dir / LOCAL_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return images


def main(argv: list[str] | None = None) -> int:
    """Command line: build (default) or ``--check`` the committed corpus."""
    parser = argparse.ArgumentParser(prog="python -m mmner_data.sample.build", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only verify the committed files")
    parser.add_argument("--out", type=Path, default=None, help="write outputs here instead")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for line in problems:
            print(line, file=sys.stderr)
        print("ok" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    images = build(out_dir=args.out)
    total = sum(len(b) for b in images.values())
    print(f"wrote {len(images)} images ({total / 1e6:.2f} MB) and {LOCAL_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
