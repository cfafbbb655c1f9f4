"""The URL policy: which URLs that come from crawled content may be read, and from where.

Every URL a source yields (media attachments, enclosures, ``<img>``, ``og:image``, and every
redirect hop on the way) is judged here before a byte is read (see ``docs/security.md``):

* **Schemes.** ``http`` and ``https`` only. ``file://`` URLs and bare paths are local files:
  they are read only for sources that the recipe names as local (``jsonl``/``csv`` files, ``hf``
  ``save_to_disk`` folders), and only below that source's folder or a ``url_policy.local_roots``
  folder (symlinks resolved first). ``~`` is never expanded.
* **Hosts.** The host is resolved once; every address must be public (not loopback, link-local,
  private, multicast, reserved, unspecified, shared or documentation space). The connection is then
  made to the address that was checked (:mod:`mmner_data.net`), so a DNS answer that changes between
  check and connect cannot reach another host. The origin of the source's own configured URL
  (``base_url``, feed ``url``) is trusted, since the user named it; other non-public hosts only when
  ``url_policy.allow_hosts`` names them (a host name, an address, a CIDR network, or an origin
  ``scheme://host:port``).

Pure: :func:`address_refusal` and :func:`classify` never touch the network; the resolver is a
parameter so that tests can make DNS answers change on loopback.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

__all__ = [
    "REFUSED",
    "AllowEntry",
    "UrlPolicy",
    "UrlRefused",
    "address_refusal",
    "classify",
    "origin_of",
    "parse_allow_entry",
    "policy_for_source",
    "system_resolve",
]

REFUSED = "url_refused"  # the stable reason slug of every refusal (post_images.error, drops)

Resolver = Callable[[str, int], Sequence[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(Exception):
    """The URL policy refuses a URL or a connection; ``str()`` is one line saying which rule."""

    reason = REFUSED

    def __init__(self, detail: str):
        detail = " ".join(str(detail).split())[:300]
        super().__init__(detail)
        self.detail = detail


def address_refusal(address: str | IPAddress) -> str | None:
    """Why ``address`` may not be reached from remote content, or ``None`` for a public address.

    IPv4-mapped and 6to4/Teredo-free IPv6 forms are judged by the IPv4 address they carry.
    """
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return f"not an IP address: {str(address)[:60]}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_reserved:
        return "reserved address"
    if ip.is_private:
        return "private address"
    if not ip.is_global:
        return "non-public address"
    return None


def system_resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an address literal resolves to itself)."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in out:
            out.append(addr)
    return out


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def origin_of(url: str) -> tuple[str, int] | None:
    """``(host, port)`` of an http(s) URL (host lower-cased, default port filled), else None."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            return None
        return parts.hostname.lower(), parts.port or _default_port(scheme)
    except ValueError:
        return None


@dataclass(frozen=True)
class AllowEntry:
    """One ``url_policy.allow_hosts`` entry: a host name, a network, or an origin."""

    host: str | None = None  # exact host name (lower case)
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    origin: tuple[str, int] | None = None

    def allows(self, host: str, port: int, address: IPAddress | None) -> bool:
        if self.origin is not None:
            return self.origin == (host, port)
        if self.host is not None:
            return self.host == host
        return address is not None and self.network is not None and address in self.network


def parse_allow_entry(entry: str) -> AllowEntry:
    """Parse an allow-list entry; raises ValueError with a readable message."""
    text = str(entry).strip()
    if not text:
        raise ValueError("empty allow_hosts entry")
    if "://" in text:
        origin = origin_of(text)
        if origin is None:
            raise ValueError(f"{text!r} is not an http(s) origin")
        return AllowEntry(origin=origin)
    try:
        return AllowEntry(network=ipaddress.ip_network(text.strip("[]"), strict=False))
    except ValueError:
        pass
    host = text.lower().rstrip(".")
    labels = host.split(".")
    if not all(lab and len(lab) <= 63 and lab.replace("-", "").replace("_", "").isalnum()
               for lab in labels):  # fmt: skip
        raise ValueError(f"{text!r} is not a host name, an address, a CIDR network or an origin")
    return AllowEntry(host=host)


@dataclass(frozen=True)
class UrlPolicy:
    """What one source's URLs may reach. The default refuses local files and non-public hosts."""

    local_roots: tuple[Path, ...] = ()  # folders local paths may be read from; () = none
    trusted_origins: frozenset[tuple[str, int]] = frozenset()  # the source's configured origin
    allow: tuple[AllowEntry, ...] = ()
    resolve: Resolver = system_resolve

    @classmethod
    def build(
        cls,
        *,
        local_roots: Iterable[str | Path] = (),
        trusted_urls: Iterable[str] = (),
        allow_hosts: Iterable[str] = (),
        resolve: Resolver | None = None,
    ) -> UrlPolicy:
        origins = {o for o in (origin_of(u) for u in trusted_urls) if o is not None}
        return cls(
            local_roots=tuple(Path(r).resolve() for r in local_roots),
            trusted_origins=frozenset(origins),
            allow=tuple(parse_allow_entry(e) for e in allow_hosts),
            resolve=resolve or system_resolve,
        )

    # -- hosts ---------------------------------------------------------------------------------
    def check_host(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` and return the addresses a connection may use; raises UrlRefused.

        The caller must connect to one of the returned addresses, never resolve the name again.
        """
        name = host.strip("[]").lower().rstrip(".")
        trusted = (name, port) in self.trusted_origins or any(
            a.allows(name, port, None) for a in self.allow if a.network is None
        )
        addresses = list(self.resolve(name, port))
        if not addresses:
            raise OSError(f"{name} did not resolve")
        if trusted:
            return addresses
        for addr in addresses:
            why = address_refusal(addr)
            if why is None:
                continue
            ip = ipaddress.ip_address(addr)
            if any(a.allows(name, port, ip) for a in self.allow):
                continue
            shown = name if name == addr else f"{name} ({addr})"
            raise UrlRefused(
                f"{shown}:{port} is a {why}; only the source's own origin and the recipe's "
                "url_policy.allow_hosts may be non-public"
            )
        return addresses

    # -- local files ---------------------------------------------------------------------------
    def local_path(self, path: str) -> Path:
        """The resolved local file ``path`` may name; raises UrlRefused outside the roots."""
        if not self.local_roots:
            raise UrlRefused(
                f"local path {path[:100]!r} from a remote source (only jsonl/csv/hf-folder sources "
                "may name local files)"
            )
        p = Path(path)
        if not p.is_absolute():
            raise UrlRefused(f"relative local path {path[:100]!r}")
        resolved = p.resolve()
        for root in self.local_roots:
            if resolved == root or resolved.is_relative_to(root):
                return resolved
        raise UrlRefused(
            f"local path {path[:100]!r} is outside the source's folder "
            "(add its folder to url_policy.local_roots)"
        )


def classify(url: Any, policy: UrlPolicy) -> tuple[str, str]:
    """``("http", url)`` or ``("file", resolved path)`` for a URL the policy accepts.

    Raises :class:`UrlRefused` for a policy refusal and ``ValueError`` for a URL that is not one
    (empty, unparsable, an unsupported scheme such as ``ftp:`` or ``data:``). Hosts are checked
    later, when connecting (:meth:`UrlPolicy.check_host`).
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("empty URL")
    url = url.strip()
    if any(ord(c) < 32 for c in url):
        raise ValueError("control characters in URL")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        try:
            host = parts.hostname
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"invalid URL: {exc}") from None
        if not host:
            raise ValueError(f"no host in {url[:100]}")
        return "http", url
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UrlRefused(f"remote file URL {url[:100]}")
        return "file", str(policy.local_path(url2pathname(unquote(parts.path))))
    if scheme == "":
        return "file", str(policy.local_path(url))
    raise ValueError(f"scheme {scheme!r} in {url[:100]}")


def policy_for_source(
    settings: Any,
    allow_hosts: Iterable[str] = (),
    local_roots: Iterable[str | Path] = (),
    resolve: Resolver | None = None,
) -> UrlPolicy:
    """The policy for one recipe source: its own origin trusted, local files only if local."""
    kind = getattr(settings, "type", None)
    trusted: list[str] = []
    roots: list[str | Path] = []
    if kind in ("mastodon", "bluesky"):
        trusted.append(settings.base_url)
    elif kind == "rss":
        trusted.append(settings.url)
    elif kind in ("jsonl", "csv"):
        roots = [Path(settings.path).resolve().parent, *local_roots]
    elif kind == "hf":
        folder = Path(settings.dataset)
        if folder.is_dir():
            roots = [folder.resolve(), *local_roots]
    return UrlPolicy.build(
        local_roots=roots, trusted_urls=trusted, allow_hosts=allow_hosts, resolve=resolve
    )
