"""Source connectors: one module per network or file type, one interface (:class:`Source`)."""

from __future__ import annotations

from mmner_data.collect.urlpolicy import UrlPolicy
from mmner_data.config import SourceSettings
from mmner_data.sources.base import Page, Source, SourceError


def make_source(settings: SourceSettings, policy: UrlPolicy | None = None) -> Source:
    """The connector for a recipe's source entry.

    ``policy`` governs the HTTP connectors' own requests (pages, redirects, ``og:image`` pages);
    by default the source's configured origin is trusted and nothing else non-public.
    """
    kind = settings.type
    if kind == "mastodon":
        from mmner_data.sources.mastodon import MastodonTimeline

        return MastodonTimeline(settings, policy)  # type: ignore[arg-type]
    if kind == "bluesky":
        from mmner_data.sources.bluesky import BlueskySearch

        return BlueskySearch(settings, policy)  # type: ignore[arg-type]
    if kind == "rss":
        from mmner_data.sources.rss import RssFeed

        return RssFeed(settings, policy)  # type: ignore[arg-type]
    if kind in ("jsonl", "csv"):
        from mmner_data.sources.local import LocalFile

        return LocalFile(settings)  # type: ignore[arg-type]
    if kind == "hf":
        from mmner_data.sources.hf import HFDataset

        return HFDataset(settings)  # type: ignore[arg-type]
    raise SourceError(f"unknown source type {kind!r}")


__all__ = ["Page", "Source", "SourceError", "make_source"]
