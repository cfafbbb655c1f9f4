"""What a worker does with one shard, for any engine (no Ray import here).

Each function or class takes one *task* (a dict the driver planned: the lake root, the shard
number, the items) and reads its inputs from the lake, runs a stage's pure batch core and writes
its output shard with a done marker last (:class:`mmner_data.lake.Lake`). The stage's own core
does the work, so a shard's rows are what the local engine computes for the same items.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "FetchShard",
    "PredictShard",
    "ScoreShard",
    "read_shard_images",
    "text_bucket_rows",
    "verified_text_pairs",
]


def _lake(root: str) -> Any:
    from mmner_data.lake import Lake

    return Lake(root)


# --------------------------------------------------------------------------- image fetch


class FetchShard:
    """Fetch + validate one host partition's images (``collect.images.fetch_images``, so
    per-host concurrency and ``Retry-After`` hold: a host's URLs are all in one partition) and
    write the images (tar shard) and one result row per request (Parquet) to the lake."""

    def __init__(self, limits: Any) -> None:
        import dataclasses

        # Decoding threads, not the fetcher's decode processes: a Ray task holds a fraction of a
        # CPU, and the cluster runs several tasks per machine (processes would oversubscribe it
        # and each task would pay their start-up). Same bytes either way.
        self.limits = dataclasses.replace(limits, decode_processes=False)

    def __call__(self, task: dict[str, Any]) -> dict[str, Any]:
        import pyarrow as pa

        from mmner_data.collect.images import ImageRejected, ImageRequest, fetch_images

        lake = _lake(task["lake"])
        shard, table = task["shard"], task["table"]
        rows: list[dict[str, Any]] = []
        images: dict[str, tuple[dict[str, Any], bytes]] = {}

        def on_result(req: Any, result: Any) -> None:
            post_id, pos = req.key
            if isinstance(result, ImageRejected):
                rows.append(_fetch_row(post_id, pos, "failed", None, result.reason, result.detail))
                return
            im = result.image
            images.setdefault(im.sha256, (_image_row(im), result.data))
            rows.append(_fetch_row(post_id, pos, "ok", im.sha256, None, None))

        requests = [
            ImageRequest(key=(post_id, pos), url=url, policy=policy)
            for post_id, pos, url, policy in task["requests"]
        ]
        stats = fetch_images(requests, self.limits, on_result)
        lake.write_images(f"{table}/images", shard, images.values(), meta={"rows": len(rows)})
        rows.sort(key=lambda r: (r["post_id"], r["position"]))
        lake.write_rows(
            f"{table}/results",
            shard,
            pa.Table.from_pylist(rows, schema=FETCH_SCHEMA()),
            id_columns=["post_id", "position"],
            meta={"seconds": round(stats.seconds, 3)},
        )
        return {"shard": shard, "requests": len(rows), "ok": len(images)}


def FETCH_SCHEMA() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("post_id", pa.string()),
            ("position", pa.int64()),
            ("status", pa.string()),
            ("sha256", pa.string()),
            ("reason", pa.string()),
            ("detail", pa.string()),
        ]
    )


def _fetch_row(
    post_id: str, pos: int, status: str, sha: str | None, reason: str | None, detail: str | None
) -> dict[str, Any]:
    return {
        "post_id": post_id,
        "position": int(pos),
        "status": status,
        "sha256": sha,
        "reason": reason,
        "detail": detail,
    }


def _image_row(im: Any) -> dict[str, Any]:
    """A ``schema.Image`` as an index row (its fields, as ``schema.Image(**row)`` takes them)."""
    import dataclasses

    return dataclasses.asdict(im)


# --------------------------------------------------------------------------- shared reads


def read_shard_images(lake_root: str, table: str, shard: int, wanted: set[str]) -> dict[str, bytes]:
    """The bytes of the ``wanted`` images of one image shard (ranged reads; each member's sha256
    is checked against its name)."""
    import hashlib

    lake = _lake(lake_root)
    index = lake.read_rows(table, shard, columns=["sha256", "offset", "size"]).to_pylist()
    out: dict[str, bytes] = {}
    for row in index:
        sha = row["sha256"]
        if sha in wanted and sha not in out:
            data = lake.read_image(table, shard, int(row["offset"]), int(row["size"]))
            if hashlib.sha256(data).hexdigest() == sha:
                out[sha] = data
    return out


# --------------------------------------------------------------------------- CLIP scoring


def decode_for_scoring(task: dict[str, Any]) -> bytes:
    """CPU step ahead of the scoring actors: the task's images decoded to RGB arrays.

    Returns a pickled list of ``(post_id, rgb uint8 array | None, error | None)``; an image that
    cannot be read carries the same error text the local engine records.
    """
    from mmner_data.filter.scoring import load_rgb

    wanted = {sha for _, _, _, sha in task["items"]}
    data = read_shard_images(task["lake"], task["images_table"], task["images_shard"], wanted)
    out: list[tuple[str, Any, str | None]] = []
    for post_id, _lang, _text, sha in task["items"]:
        try:
            if sha not in data:
                raise FileNotFoundError(f"image {sha} is not in the lake shard")
            rgb = np.asarray(load_rgb(io.BytesIO(data[sha])))
            out.append((post_id, rgb, None))
        except Exception as exc:  # any decoder failure is data, not a crash (as the local engine)
            out.append((post_id, None, f"{type(exc).__name__}: {exc}"[:300]))
    return pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)


class ScoreShard:
    """A CLIP model loaded once per actor; scores one shard's pairs in ``batch_size`` batches
    (``filter.model.ClipScorer.score``) and writes ``scores/<model>`` rows to the lake."""

    def __init__(
        self,
        spec: Any,
        device: str,
        precision: str,
        cache_dir: Any,
        batch_size: int,
        threads: int | None = None,
    ) -> None:
        import torch

        from mmner_data.filter.model import load_scorer

        if threads:
            torch.set_num_threads(threads)
        self.scorer = load_scorer(spec, device, precision, cache_dir)
        self.batch_size = batch_size

    def __call__(self, task: dict[str, Any], payload: bytes) -> dict[str, Any]:
        import pyarrow as pa
        import torch
        from PIL import Image

        decoded = {pid: (rgb, err) for pid, rgb, err in pickle.loads(payload)}
        model_id = self.scorer.spec.model_id
        rows: list[dict[str, Any]] = []
        ok: list[tuple[list[Any], Any, Any]] = []
        for post_id, _lang, text, sha in task["items"]:
            rgb, err = decoded[post_id]
            row = {
                "post_id": post_id,
                "model_id": model_id,
                "image_sha256": sha,
                "score": None,
                "error": err,
            }
            rows.append(row)
            if err is None:
                image = self.scorer.preprocess(Image.fromarray(rgb))
                ok.append((row, image, self.scorer.tokenizer([text])[0]))
        for i in range(0, len(ok), self.batch_size):
            chunk = ok[i : i + self.batch_size]
            scores = self.scorer.score(
                torch.stack([c[1] for c in chunk]), torch.stack([c[2] for c in chunk])
            ).tolist()
            for (row, _, _), score in zip(chunk, scores, strict=True):
                row["score"] = float(score)
        _lake(task["lake"]).write_rows(
            task["table"],
            task["shard"],
            pa.Table.from_pylist(rows, schema=SCORE_SCHEMA()),
            id_columns=["post_id"],
            meta={"model_id": model_id, "input": task["input"]},
        )
        return {"shard": task["shard"], "scored": len(ok), "unreadable": len(rows) - len(ok)}


def SCORE_SCHEMA() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("post_id", pa.string()),
            ("model_id", pa.string()),
            ("image_sha256", pa.string()),
            ("score", pa.float64()),
            ("error", pa.string()),
        ]
    )


# --------------------------------------------------------------------------- pre-annotation


def fetch_for_predict(task: dict[str, Any]) -> bytes:
    """CPU step ahead of the prediction actors: the image bytes each item needs (pickled
    ``{sha256: bytes}``); the predictor's ``prepare`` decodes them."""
    wanted = {sha for _, _, _, sha in task["items"] if sha}
    data = read_shard_images(task["lake"], task["images_table"], task["images_shard"], wanted)
    return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)


class PredictShard:
    """A predictor loaded once per actor (``preannotate.predict.load_predictor``); one shard's
    items through ``prepare → forward → finish`` in ``batch_size`` batches of similar length,
    as the local engine orders them; ``predictions/<model>`` rows to the lake."""

    def __init__(
        self,
        model: str,
        device: str | None,
        batch_size: int,
        entity_types: Sequence[str] | None,
        label_map: dict[str, str] | None,
        threads: int | None = None,
    ) -> None:
        import torch

        from mmner_data.preannotate.predict import load_predictor, type_mapper

        if threads:
            torch.set_num_threads(threads)
        self.pred = load_predictor(model, device)
        self.types = list(entity_types or self.pred.entity_types)
        self.mapper = type_mapper(self.types, label_map)
        self.batch_size = batch_size

    def __call__(self, task: dict[str, Any], payload: bytes) -> dict[str, Any]:
        import pyarrow as pa

        from mmner_data.preannotate.predict import Item
        from mmner_data.schema import spans_to_json

        images = pickle.loads(payload)
        items = [
            Item(post_id, text, images.get(sha) if sha else None, lang)
            for post_id, lang, text, sha in task["items"]
        ]
        items.sort(key=lambda it: len(it.text))
        rows: list[dict[str, Any]] = []
        for i in range(0, len(items), self.batch_size):
            chunk = items[i : i + self.batch_size]
            examples, batch = self.pred.prepare(chunk)
            preds = self.pred.finish(examples, self.pred.forward(batch), self.mapper)
            has_image = (
                batch["has_image"].tolist()
                if self.pred.uses_images and "has_image" in batch
                else [False] * len(chunk)
            )
            for it, p, img in zip(chunk, preds, has_image, strict=True):
                rows.append(
                    {
                        "post_id": it.post_id,
                        "model_version": self.pred.model_version,
                        "spans_json": spans_to_json(p.spans),
                        "score": p.score,
                        "n_words": p.n_words,
                        "unmapped": p.unmapped,
                        "has_image": bool(img),
                    }
                )
        rows.sort(key=lambda r: r["post_id"])
        _lake(task["lake"]).write_rows(
            task["table"],
            task["shard"],
            pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA()),
            id_columns=["post_id"],
            meta={
                "model_version": self.pred.model_version,
                "entity_types": self.types,
                "input": task["input"],
            },
        )
        return {"shard": task["shard"], "predicted": len(rows)}


def PREDICTION_SCHEMA() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("post_id", pa.string()),
            ("model_version", pa.string()),
            ("spans_json", pa.string()),
            ("score", pa.float64()),
            ("n_words", pa.int64()),
            ("unmapped", pa.int64()),
            ("has_image", pa.bool_()),
        ]
    )


# --------------------------------------------------------------------------- dedup link finding


def text_bucket_rows(keys: Sequence[str], offset: int, settings: Any) -> dict[str, np.ndarray]:
    """Map step of the text link finding: the LSH bucket of every (key, band), keys numbered
    from ``offset`` (``collect.dedup.text_signatures`` → ``band_hashes``)."""
    from mmner_data.collect.dedup import band_hashes, text_signatures

    hashes = band_hashes(text_signatures(keys, settings), settings)
    n, bands = hashes.shape
    idx = np.repeat(np.arange(offset, offset + n, dtype=np.int64), bands)
    return {"bucket": hashes.reshape(-1), "idx": idx}


def verified_text_pairs(pairs: np.ndarray, keys: Sequence[str], settings: Any) -> np.ndarray:
    """Verify step: the candidate ``pairs`` (global key numbers) whose exact Jaccard reaches the
    threshold. Signatures of the keys involved are recomputed here (a key's row depends on the
    key alone), so workers need only the keys."""
    from mmner_data.collect.dedup import text_signatures, verify_pairs

    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if not len(pairs):
        return pairs
    uniq = np.unique(pairs)
    local = np.searchsorted(uniq, pairs)
    sub = [keys[i] for i in uniq.tolist()]
    ok = verify_pairs(local, sub, text_signatures(sub, settings), settings)
    return uniq[np.asarray(ok, dtype=np.int64).reshape(-1, 2)]
