"""The HTTP base of the API connectors (Mastodon, Bluesky, RSS): one client, one paging helper.

:class:`ApiClient` is the one HTTP client: every connection obeys the source's URL policy (see
``mmner_data/collect/urlpolicy.py``: the configured origin trusted, other non-public hosts
refused, every redirect hop checked, at most ``MAX_REDIRECTS``), each attempt has an overall
deadline (``timeout_s``: connect, headers, body and redirects together), bodies are capped
(``max_body_bytes``), and retries use backoff (429 honours ``Retry-After``).
:class:`HttpSource` is the base of the connectors: token from the environment, the client, and
the per-record parse loop that turns a bad record into a ``malformed_record`` drop.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)

from mmner_data import __version__
from mmner_data.collect.urlpolicy import UrlPolicy, UrlRefused, policy_for_source
from mmner_data.net import deadline, guarded_client, parse_ratelimit_reset, parse_retry_after
from mmner_data.schema import Drop, Post
from mmner_data.sources.base import SourceError, malformed

log = logging.getLogger(__name__)
USER_AGENT = f"mmner-data/{__version__} (research dataset builder)"
MAX_REDIRECTS = 5
DEFAULT_MAX_BODY_BYTES = 20 * 2**20


@dataclass(frozen=True)
class Fetched:
    """A response read in full (within the size cap): final URL, status, headers, body."""

    url: str
    status_code: int
    headers: httpx.Headers
    content: bytes
    encoding: str | None = None

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding or "utf-8", errors="replace")


class _Retryable(Exception):
    def __init__(self, reason: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


def _attempts(n: int) -> str:
    return f"{n} attempt{'s' if n != 1 else ''}"


def backoff_s(attempt: int, initial: float, cap: float) -> float:
    """Exponential backoff with jitter before retry ``attempt`` (1-based), at most ``cap``."""
    return min(initial * 2 ** (attempt - 1) + random.uniform(0, initial), cap)


class ApiClient:
    """GET JSON/bytes with retries; raises :class:`SourceError` with a one-line reason."""

    def __init__(
        self,
        *,
        timeout_s: float = 20.0,
        retries: int = 4,
        backoff_max_s: float = 60.0,
        token: str | None = None,
        policy: UrlPolicy | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ):
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json, */*;q=0.5"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = guarded_client(
            policy or UrlPolicy(),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            headers=headers,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
        )
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        self.retries = retries
        self.backoff_max_s = backoff_max_s
        self.n_retries = 0

    def close(self) -> None:
        self._client.close()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return exc.retry_after
        return backoff_s(state.attempt_number, 0.5, self.backoff_max_s)

    def _before_sleep(self, state: RetryCallState) -> None:
        self.n_retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.warning("retrying after %s (attempt %d)", exc, state.attempt_number)

    def get(self, url: str, params: dict[str, Any] | None = None) -> Fetched:
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._get_once(url, params)
        except _Retryable as exc:
            raise SourceError(
                f"{exc.reason} after {_attempts(self.retries + 1)}: {exc.detail}"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> tuple[Any, Fetched]:
        """GET and decode JSON; a body that is not JSON is retried, then a SourceError."""
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=lambda state: backoff_s(state.attempt_number, 0.2, self.backoff_max_s),
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    resp = self.get(url, params)
                    try:
                        return json.loads(resp.content), resp
                    except ValueError as exc:
                        raise _Retryable("malformed_json", str(exc)) from None
        except _Retryable as exc:
            raise SourceError(
                f"malformed JSON from {url} after {_attempts(self.retries + 1)}: {exc.detail}"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _get_once(self, url: str, params: dict[str, Any] | None) -> Fetched:
        try:
            with deadline(self.timeout_s), self._client.stream("GET", url, params=params) as resp:
                self._check_status(url, resp)
                return Fetched(
                    url=str(resp.url),
                    status_code=resp.status_code,
                    headers=resp.headers,
                    content=self._read_capped(url, resp),
                    encoding=resp.charset_encoding,
                )
        except httpx.TimeoutException as exc:
            raise _Retryable("timeout", f"{url}: {type(exc).__name__}: {exc}") from None
        except httpx.TooManyRedirects:
            raise SourceError(f"more than {MAX_REDIRECTS} redirects from {url}") from None
        except httpx.UnsupportedProtocol as exc:
            raise SourceError(f"unsupported URL (redirect?) from {url}: {exc}") from None
        except httpx.DecodingError as exc:
            raise _Retryable("malformed_body", f"{url}: content encoding: {exc}") from None
        except httpx.TransportError as exc:
            raise _Retryable("connection_error", f"{url}: {exc}") from None
        except httpx.InvalidURL as exc:
            raise SourceError(f"invalid URL {url!r}: {exc}") from None
        except UrlRefused as exc:
            raise SourceError(f"refused by the URL policy: {exc}") from None

    def _read_capped(self, url: str, resp: httpx.Response) -> bytes:
        cap = self.max_body_bytes
        length = resp.headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > cap:
            raise SourceError(
                f"response from {url} declares {int(length)} bytes > max_body_bytes {cap}"
            )
        buf = bytearray()
        for chunk in resp.iter_bytes():
            buf += chunk
            if len(buf) > cap:
                raise SourceError(
                    f"response from {url} is over max_body_bytes {cap} (stopped reading)"
                )
        return bytes(buf)

    def _check_status(self, url: str, resp: httpx.Response) -> None:
        if resp.status_code == 429:
            wait = parse_retry_after(resp.headers.get("Retry-After"), self.backoff_max_s)
            if wait is None:
                wait = parse_ratelimit_reset(
                    resp.headers.get("X-RateLimit-Reset"), self.backoff_max_s
                )
            raise _Retryable("rate_limited", f"{url}: HTTP 429", retry_after=wait)
        if resp.status_code >= 500:
            raise _Retryable("server_error", f"{url}: HTTP {resp.status_code}")
        if resp.status_code in (401, 403):
            raise SourceError(
                f"HTTP {resp.status_code} from {url}: check the access token (token_env) and its scopes"
            )
        if resp.status_code >= 400:
            raise SourceError(f"HTTP {resp.status_code} from {url}")


class HttpSource:
    """The base of the HTTP connectors: settings, token, the guarded client, record parsing.

    Subclasses implement ``iter_pages``; ``policy`` defaults to the source's own: its configured
    origin trusted, nothing else non-public, no local files.
    """

    def __init__(self, settings: Any, policy: UrlPolicy | None = None, *, auth: bool = True):
        self.settings = settings
        self.name: str = settings.name
        token_env = getattr(settings, "token_env", None) if auth else None
        token = os.environ.get(token_env) if token_env else None
        if token_env and not token:
            raise SourceError(f"source {self.name}: environment variable {token_env} is not set")
        self.policy = policy or policy_for_source(settings)
        self.client = ApiClient(
            timeout_s=settings.timeout_s,
            retries=settings.retries,
            backoff_max_s=settings.backoff_max_s,
            token=token,
            policy=self.policy,
            max_body_bytes=getattr(settings, "max_body_bytes", DEFAULT_MAX_BODY_BYTES),
        )

    def close(self) -> None:
        self.client.close()

    def parse_items(
        self,
        items: Iterable[Any],
        parse: Callable[[Any], Post],
        item_id: Callable[[Any], Any],
        where: str,
        what: str,
    ) -> tuple[list[Post], list[Drop]]:
        """Parse every record of a page; a record that does not parse becomes a drop.

        ``item_id(record)`` names a record in its drop (``None`` → ``<where>#<index>``).
        """
        posts: list[Post] = []
        drops: list[Drop] = []
        for i, item in enumerate(items):
            try:
                posts.append(parse(item))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                ident = None
                try:
                    ident = item_id(item)
                except Exception:
                    ident = None
                name = str(ident) if ident not in (None, "") else f"{where}#{i}"
                drops.append(malformed(self.name, name, f"{what}: {type(exc).__name__}: {exc}"))
        return posts, drops
