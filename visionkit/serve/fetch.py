"""Image downloads on behalf of a request, without server-side request forgery: whoever can post a task to /predict
must not be able to make the server fetch from its own network (cloud metadata at 169.254.169.254, loopback ports,
private ranges).

Rules, checked for the first address and again for every redirect (followed here, one hop at a time, at most
``max_redirects``):

- the first URL's host must be Label Studio's (the origin from ``url=`` or ``/setup``) or named in ``allow_hosts``;
- a host is resolved once and the connection goes to the address that was checked (no second lookup that a
  rebinding DNS server could answer differently); an address that is private, loopback, link-local, multicast,
  reserved or otherwise not public is refused unless the host (or a network holding the address) is allowed;
- a redirect may lead to any public address (Label Studio answers cloud-storage images with a redirect to a
  presigned URL), never to a private one that is not allowed; only http and https;
- the Label Studio token goes to Label Studio's origin only, never to another host or through a redirect to one.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable
from typing import Any

from visionkit.data.labelstudio.images import read_bounded, same_origin
from visionkit.errors import DataError, UsageError
from visionkit.limits import MAX_IMAGE_BYTES

REDIRECTS = (301, 302, 303, 307, 308)
DEFAULT_PORTS = {"http": 80, "https": 443}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedURL(DataError):
    """A URL the server will not fetch: its host is not allowed, or it resolves to an address that is not public."""


# IPv6 prefixes that carry an IPv4 address in their last 32 bits and reach it through a translator (RFC 6052 NAT64)
NAT64_PREFIXES = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for, or None: IPv4-mapped (::ffff:a.b.c.d), 6to4 (2002::/16), Teredo
    (2001::/32, its client), NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible ::a.b.c.d. A tunnel or
    translator on the way would deliver to that IPv4 address, so it is what must be public."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in NAT64_PREFIXES):
        return low32
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d (not :: or ::1, judged as themselves)
        return low32
    return None


def address_kind(address: IPAddress) -> str | None:
    """Why ``address`` is not a public one ('loopback', 'private', ...), or None when it is public."""
    inner = embedded_ipv4(address)
    if inner is not None:
        kind = address_kind(inner)
        if kind:
            return kind
        if any(address in net for net in NAT64_PREFIXES):
            return None  # DNS64 on an IPv6-only network: the translator's prefix is public when what it wraps is
    # the narrow kinds first: Python counts loopback, link-local and reserved as private too
    for kind in ("loopback", "link-local", "multicast", "unspecified", "reserved", "private"):
        if getattr(address, f"is_{kind.replace('-', '_')}"):
            return kind
    if not address.is_global:  # 100.64.0.0/10 (carrier-grade NAT) and the like
        return "non-public"
    return None


class AllowList:
    """``allow_hosts=``: host names (``images.example.com``, any port), ``host:port``, ``*.example.com`` (the domain
    and its subdomains), IP addresses and networks (``10.0.0.0/8``), and ``*`` (any host whose addresses are
    public)."""

    def __init__(self, entries: str | Iterable[Any] | None = None):
        if entries is None:
            items: list[str] = []
        elif isinstance(entries, str):
            items = [e.strip() for e in entries.split(",")]
        else:
            items = [str(e).strip() for e in entries]
        self.any_public = False
        self.hosts: set[tuple[str, int | None]] = set()
        self.suffixes: list[str] = []
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in filter(None, items):
            self._add(entry)

    def _add(self, entry: str) -> None:
        if entry == "*":
            self.any_public = True
            return
        try:
            self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            return
        except ValueError:
            pass
        if entry.startswith("*."):
            self.suffixes.append(entry[2:].lower().rstrip("."))
            return
        parts = urllib.parse.urlsplit(f"//{entry}")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host = None
        if not host or parts.path or parts.query or parts.username:
            raise UsageError(
                f"allow_hosts entry '{entry}' is not a host name, host:port, *.domain, IP address or network "
                f"(e.g. allow_hosts=images.example.com,10.0.0.0/8)"
            )
        self.hosts.add((host.lower().rstrip("."), port))

    def names(self, host: str, port: int) -> bool:
        """True when ``host`` (with ``port``) is named: its addresses are then not checked."""
        host = host.lower().rstrip(".")
        if (host, None) in self.hosts or (host, port) in self.hosts:
            return True
        return any(host == s or host.endswith("." + s) for s in self.suffixes)

    def holds(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks)

    def __bool__(self) -> bool:
        return bool(self.any_public or self.hosts or self.suffixes or self.networks)


def resolve(host: str, port: int, timeout: float = 10.0) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself), within ``timeout`` seconds: the
    system resolver has no timeout of its own, and a stalled DNS server must not hold a request for minutes."""
    done: dict[str, Any] = {}

    def lookup() -> None:
        try:
            done["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except BaseException as e:  # handed to the waiting thread
            done["error"] = e

    # a daemon thread: a lookup that never returns is abandoned, not waited for at exit
    worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(max(timeout, 0.0))
    if worker.is_alive():
        raise DataError(f"could not resolve host '{host}': no answer from DNS within {timeout:g} s")
    error = done.get("error")
    if isinstance(error, (socket.gaierror, UnicodeError)):
        raise DataError(f"could not resolve host '{host}': {error}") from error
    if error is not None:
        raise error
    infos = done["infos"]
    out: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 scope id
        if address not in out:
            out.append(address)
    if not out:
        raise DataError(f"host '{host}' has no address")
    return out


class Fetcher:
    """``fetch(url, headers, timeout, trusted)``: the same call as :func:`visionkit.data.labelstudio.images.fetch`,
    with the rules of this module. ``trusted`` is Label Studio's address (its origin is allowed, and the only
    place ``headers`` go)."""

    def __init__(self, allow_hosts: str | Iterable[Any] | None = None, max_redirects: int = 5):
        self.allow = AllowList(allow_hosts)
        self.max_redirects = max_redirects

    def fetch(
        self,
        url: str,
        headers: dict[str, str],
        timeout: float = 30.0,
        trusted: str | None = None,
        max_bytes: int = MAX_IMAGE_BYTES,
    ) -> bytes:
        deadline = time.monotonic() + timeout
        first = url
        for hop in range(self.max_redirects + 1):
            address, split = self._check(url, trusted, hop > 0, first, deadline - time.monotonic())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DataError(f"'{first}' took longer than {timeout:g} s to download; refused")
            send = dict(headers) if same_origin(url, trusted) else {}  # the token: Label Studio's origin only
            conn = _connection(split, address, remaining)
            try:
                path = split.path or "/"
                conn.request("GET", path + (f"?{split.query}" if split.query else ""), headers=send)
                r = conn.getresponse()
                if r.status in REDIRECTS:
                    location = r.getheader("Location")
                    if not location:
                        raise DataError(f"could not download '{url}': HTTP {r.status} without a Location")
                    url = urllib.parse.urljoin(url, location.strip())
                    continue
                if r.status != 200:
                    raise DataError(f"could not download '{url}': HTTP {r.status} {r.reason}")
                return _read(r, url, max_bytes, deadline, timeout)
            except DataError:
                raise
            except Exception as e:  # network errors of every kind become one clear error
                raise DataError(f"could not download '{url}': {type(e).__name__}: {e}") from e
            finally:
                conn.close()
        raise RefusedURL(f"refused '{first}': more than {self.max_redirects} redirects")

    def _check(
        self, url: str, trusted: str | None, redirected: bool, first: str, timeout: float
    ) -> tuple[IPAddress, urllib.parse.SplitResult]:
        """The address to connect to for ``url``, or RefusedURL saying why not."""
        via = f" (redirected from '{first}')" if redirected else ""
        split = urllib.parse.urlsplit(url)
        if split.scheme not in DEFAULT_PORTS:
            raise RefusedURL(f"refused '{url}'{via}: only http and https URLs are fetched")
        try:
            host, port = split.hostname, split.port or DEFAULT_PORTS[split.scheme]
        except ValueError as e:
            raise RefusedURL(f"refused '{url}'{via}: {e}") from e
        if not host:
            raise RefusedURL(f"refused '{url}'{via}: it names no host")
        if split.username is not None or split.password is not None:
            raise RefusedURL(f"refused '{url}'{via}: credentials in a URL are not sent")
        named = same_origin(url, trusted) or self.allow.names(host, port)
        addresses = resolve(host, port, timeout)
        if not named and not redirected and not self.allow.any_public:
            if not all(self.allow.holds(a) for a in addresses):
                where = f"Label Studio at '{trusted}'" if trusted else "no Label Studio server (no url= or /setup)"
                raise RefusedURL(
                    f"refused '{url}': host '{host}' is not the Label Studio server ({where}) and not in "
                    f"allow_hosts=; start the server with allow_hosts={host} if images may come from there"
                )
        if not named:
            for a in addresses:
                kind = address_kind(a)
                if kind and not self.allow.holds(a):
                    inner = embedded_ipv4(a)
                    shown = f"{a} (IPv4 {inner})" if inner is not None else str(a)
                    raise RefusedURL(
                        f"refused '{url}'{via}: host '{host}' resolves to {shown}, a {kind} address; only public "
                        f"addresses are fetched unless the host is in allow_hosts="
                    )
        return addresses[0], split


def _connection(split: urllib.parse.SplitResult, address: IPAddress, timeout: float) -> http.client.HTTPConnection:
    """A connection to ``split``'s host (its name in Host and in the TLS check) that opens to ``address``, the one
    checked: a second DNS lookup could answer differently."""
    port = split.port or DEFAULT_PORTS[split.scheme]
    if split.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            split.hostname, port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(split.hostname, port, timeout=timeout)

    def pinned(_address, timeout=None, source_address=None, **kw):
        return socket.create_connection((str(address), port), timeout, source_address)

    conn._create_connection = pinned  # http.client opens its socket through this attribute (HTTPS wraps it after)
    return conn


def _read(r: http.client.HTTPResponse, url: str, max_bytes: int, deadline: float, timeout: float) -> bytes:
    length = r.getheader("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise DataError(f"'{url}' is larger than {max_bytes} bytes; refused")
    return read_bounded(r, url, max_bytes, deadline, timeout)
