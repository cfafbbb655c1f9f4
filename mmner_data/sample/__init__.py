"""The bundled sample corpus and the loopback server that serves it.

``posts.jsonl`` holds a few dozen hand-written posts per target language (EN/FR/DE/ES) plus some in
other languages, with gold NER spans and the outcome the ``collect`` stage must reach for each
(``expect``): kept, or a drop-reason slug. :class:`SampleServer` serves them as a Mastodon API, an
RSS feed and a Bluesky search endpoint; ``local.jsonl`` is the local-JSONL channel.
"""

from mmner_data.sample.server import (
    SAMPLE_DIR,
    SampleServer,
    bluesky_uri,
    load_sample_posts,
    mastodon_status_id,
    rss_guid,
    source_id,
)

__all__ = [
    "SAMPLE_DIR",
    "SampleServer",
    "bluesky_uri",
    "load_sample_posts",
    "mastodon_status_id",
    "rss_guid",
    "source_id",
]
