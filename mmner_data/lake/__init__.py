"""The lake: a sharded exchange format for a corpus store on any fsspec root.

Layout (``docs/lake.md``)::

    <root>/_lake.json                       format + version, written once
    <root>/posts/part-00000.parquet         store rows, shard k = rows [k*N, (k+1)*N) of the export
    <root>/posts/part-00000.done            the done marker (JSON), written last
    <root>/post_images/…  drops/…  selection/…
    <root>/images/part-00000.tar            members <sha256>.<ext>
    <root>/images/part-00000.parquet        the index: sha256, member, offset, size + image columns
    <root>/scores/<model-slug>/part-…       relevance rows of one CLIP model
    <root>/predictions/<model-slug>/part-…  predictions of one model version

``export_store`` writes a store's subset (resumable: done shards are skipped), ``import_store``
reads a lake back into a store, checking everything. Engines (e.g. a Ray engine) read and write
shards with :class:`Lake` directly.
"""

from __future__ import annotations

from mmner_data.lake.exporter import export_store
from mmner_data.lake.importer import import_store
from mmner_data.lake.lake import Lake
from mmner_data.lake.layout import FORMAT_VERSION, LakeError, digest_ids, model_slug, shard_of

__all__ = [
    "FORMAT_VERSION",
    "Lake",
    "LakeError",
    "digest_ids",
    "export_store",
    "import_store",
    "model_slug",
    "shard_of",
]
