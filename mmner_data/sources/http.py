"""The HTTP client the API connectors share: timeouts, retries with backoff, 429 + Retry-After."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)

from mmner_data import __version__
from mmner_data.net import parse_ratelimit_reset, parse_retry_after
from mmner_data.sources.base import SourceError

log = logging.getLogger(__name__)
USER_AGENT = f"mmner-data/{__version__} (research dataset builder)"


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
    ):
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json, */*;q=0.5"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            headers=headers,
            follow_redirects=True,
        )
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

    def get(self, url: str, params: dict[str, Any] | None = None) -> httpx.Response:
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

    def get_json(
        self, url: str, params: dict[str, Any] | None = None
    ) -> tuple[Any, httpx.Response]:
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

    def _get_once(self, url: str, params: dict[str, Any] | None) -> httpx.Response:
        try:
            resp = self._client.get(url, params=params)
        except httpx.TimeoutException as exc:
            raise _Retryable("timeout", f"{url}: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise _Retryable("connection_error", f"{url}: {exc}") from None
        except httpx.InvalidURL as exc:
            raise SourceError(f"invalid URL {url!r}: {exc}") from None
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
        return resp
