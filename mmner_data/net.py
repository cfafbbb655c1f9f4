"""HTTP helpers shared by the API connectors and the image fetcher (one policy, one place).

Pure functions of header values (how long a server asked us to wait), and the guarded clients:
every connection checked by the URL policy and pinned to the checked address, with an overall
deadline per request.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import math
import ssl
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx

from mmner_data.collect.urlpolicy import UrlPolicy, UrlRefused

__all__ = [
    "AsyncGuardedBackend",
    "GuardedBackend",
    "deadline",
    "guarded_async_client",
    "guarded_client",
    "parse_ratelimit_reset",
    "parse_retry_after",
]


def _seconds_until(when: datetime, now: float | None) -> float:
    if when.tzinfo is None:  # "-0000" dates come back naive; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - (time.time() if now is None else now)


def _cap(secs: float, cap: float) -> float | None:
    if math.isnan(secs):
        return None
    return max(0.0, min(secs, cap))


def parse_retry_after(value: str | None, cap: float, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), in ``[0, cap]``.

    ``None`` when the header is absent or unreadable; ``now`` (epoch seconds) is for tests.
    """
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        secs = _seconds_until(when, now)
    return _cap(secs, cap)


def parse_ratelimit_reset(value: str | None, cap: float, now: float | None = None) -> float | None:
    """Seconds until Mastodon's ``X-RateLimit-Reset`` (an ISO 8601 time), in ``[0, cap]``."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return _cap(_seconds_until(when, now), cap)


# ---------------------------------------------------------------------------------------------
# Guarded connections: the URL policy at the socket, and an overall deadline per request
# ---------------------------------------------------------------------------------------------
#
# httpx hands every new TCP connection to an httpcore "network backend" with the URL's host and
# port. Ours asks the URL policy (resolve once, check every address) and connects to the address
# that was checked, so there is no window between check and connect (DNS rebinding), and every
# redirect hop, being a new connection, is checked the same way. TLS still verifies the host name
# (httpcore passes it as server_hostname). Proxies from the environment are not used
# (``trust_env=False``): a proxy would resolve the name itself and defeat the check.


_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "mmner_http_deadline", default=None
)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every socket operation of the sync guarded client inside must end ``seconds`` from now.

    Per-read timeouts alone let a server that drips one byte a second hold a request forever.
    """
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _bounded(timeout: float | None) -> float | None:
    end = _DEADLINE.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("overall deadline of the request passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout))
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _connect_checked(
    policy: UrlPolicy, host: str, port: int, connect: Any, timeout: float | None
) -> Any:
    try:
        addresses = policy.check_host(host, port)
    except UrlRefused:
        raise
    except OSError as exc:  # name does not resolve
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
    last: Exception | None = None
    for addr in addresses:
        try:
            return connect(addr, timeout)
        except httpcore.ConnectError as exc:
            last = exc
    assert last is not None
    raise last


class GuardedBackend(httpcore.SyncBackend):
    """The sync network backend: policy-checked, pinned connects and the overall deadline."""

    def __init__(self, policy: UrlPolicy):
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        def connect(addr: str, t: float | None) -> httpcore.NetworkStream:
            return super(GuardedBackend, self).connect_tcp(
                addr, port, _bounded(t), local_address, socket_options
            )

        return _DeadlineStream(_connect_checked(self.policy, host, port, connect, timeout))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise UrlRefused("unix sockets are never used")


class AsyncGuardedBackend(httpcore.AsyncNetworkBackend):
    """The asyncio network backend: policy-checked, pinned connects (resolution in a thread)."""

    def __init__(self, policy: UrlPolicy):
        self.policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        import asyncio

        try:
            addresses = await asyncio.to_thread(self.policy.check_host, host, port)
        except UrlRefused:
            raise
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        last: Exception | None = None
        for addr in addresses:
            try:
                return await self._inner.connect_tcp(
                    addr, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise UrlRefused("unix sockets are never used")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _pool_kwargs(limits: httpx.Limits) -> dict[str, Any]:
    return {
        "ssl_context": httpx.create_ssl_context(),
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
    }


def guarded_client(
    policy: UrlPolicy, *, limits: httpx.Limits | None = None, **kwargs: Any
) -> httpx.Client:
    """An ``httpx.Client`` whose every connection (redirects included) obeys ``policy``."""
    limits = limits or httpx.Limits()
    transport = httpx.HTTPTransport(limits=limits, trust_env=False)
    transport._pool = httpcore.ConnectionPool(  # the documented hook: a custom network backend
        network_backend=GuardedBackend(policy), **_pool_kwargs(limits)
    )
    return httpx.Client(transport=transport, trust_env=False, **kwargs)


def guarded_async_client(
    policy: UrlPolicy, *, limits: httpx.Limits | None = None, **kwargs: Any
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every connection (redirects included) obeys ``policy``."""
    limits = limits or httpx.Limits()
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        network_backend=AsyncGuardedBackend(policy), **_pool_kwargs(limits)
    )
    return httpx.AsyncClient(transport=transport, trust_env=False, **kwargs)
