"""Fetching an image URL an API client sent, when CHAT_API_FETCH_IMAGE_URLS allows it, guarded
against server-side request forgery (docs/security.md, "The API's image URLs").

The host is resolved once, every address it resolves to is checked, and the connection is made to
the checked address itself (httpcore's network backend is ours): a DNS answer that changes between
a check and a connection (DNS rebinding) never reaches a private address. Each redirect is a new
request through the same guard, at most MAX_REDIRECTS of them; the body is read up to a size
limit and the whole fetch has a deadline. No proxy from the environment is used (it would make the
connection instead of us)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore2 as httpcore
import httpx2 as httpx

MAX_REDIRECTS = 3

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Ranges Python's `is_global` lets through (3.11) or that carry another address inside.
_MULTICAST_OR_RESERVED = (
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("240.0.0.0/4"),
    ipaddress.ip_network("ff00::/8"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class FetchRefused(Exception):
    """An image URL that was not fetched, and why, in words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _translated(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a connection to `ip` reaches: IPv4-mapped, IPv4-compatible, NAT64."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _IPV4_COMPATIBLE or ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _tunnelled(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a tunnel address carries (6to4; Teredo's server and client)."""
    inner: list[ipaddress.IPv4Address] = []
    if ip.sixtofour is not None:
        inner.append(ip.sixtofour)
    if ip.teredo is not None:
        inner.extend(ip.teredo)
    return inner


def address_refused(value: str | Address) -> str | None:
    """Why a fetch may not connect to this address (private, loopback, link-local, CGNAT,
    reserved, multicast, or a public-looking IPv6 form carrying one of those), or None."""
    try:
        ip = ipaddress.ip_address(str(value).split("%", 1)[0])  # an IPv6 zone id is not an address
    except ValueError:
        return "it is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return "it is a local NAT64 address"
        if (translated := _translated(ip)) is not None:
            # Decided by the IPv4 address it reaches (::ffff:127.0.0.1 is loopback).
            reason = address_refused(translated)
            return f"it carries {translated}, and {reason}" if reason else None
        for inner in _tunnelled(ip):
            if reason := address_refused(inner):
                return f"it carries {inner}, and {reason}"
    if ip.is_loopback:
        return "it is a loopback address"
    if ip.is_link_local or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local):
        return "it is a link-local address"
    if ip.is_multicast or any(ip in network for network in _MULTICAST_OR_RESERVED):
        return "it is a multicast or reserved address"
    if ip.is_unspecified or ip.is_reserved:
        return "it is a reserved address"
    if ip.is_private or not ip.is_global:
        return "it is a private address"
    return None


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (a name or any numeric form)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to checked addresses: the host resolved
    once, every address checked, then the connection made to the first of them (TLS still checks
    the certificate against the host name)."""

    def __init__(
        self, resolve: Resolver = system_resolve, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._resolve = resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._resolve(host.strip("[]"), port)
        except OSError:
            raise FetchRefused(f"the host {host} could not be resolved") from None
        if not addresses:
            raise FetchRefused(f"the host {host} could not be resolved")
        for address in addresses:
            if reason := address_refused(address):
                raise FetchRefused(f"{host} resolves to {address}: {reason}")
        return await self._inner.connect_tcp(
            addresses[0],
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise FetchRefused("unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _checked_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise FetchRefused("the URL is not valid") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchRefused("only http and https URLs are fetched")
    if parsed.userinfo:
        raise FetchRefused("URLs with a user name or password are not fetched")
    return parsed


async def fetch_image(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    resolve: Resolver = system_resolve,
    inner: httpcore.AsyncNetworkBackend | None = None,
) -> bytes:
    """The bytes at `url` (at most `max_bytes`, within `timeout` seconds, through at most
    MAX_REDIRECTS redirects), or FetchRefused saying why not."""
    backend = GuardedBackend(resolve, inner)
    try:
        async with (
            asyncio.timeout(timeout),
            httpcore.AsyncConnectionPool(network_backend=backend, retries=0) as pool,
        ):
            return await _follow(pool, _checked_url(url), max_bytes)
    except TimeoutError:
        raise FetchRefused(f"it did not answer within {timeout:g} seconds") from None
    except httpcore.TimeoutException:
        raise FetchRefused(f"it did not answer within {timeout:g} seconds") from None
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, OSError):
        raise FetchRefused("the connection to it failed") from None


async def _follow(pool: httpcore.AsyncConnectionPool, url: httpx.URL, max_bytes: int) -> bytes:
    for _hop in range(MAX_REDIRECTS + 1):
        headers = [(b"Accept", b"image/*"), (b"User-Agent", b"chatsite-image-fetch")]
        async with pool.stream("GET", str(url), headers=headers) as response:
            status = response.status
            if status in (301, 302, 303, 307, 308):
                location = _header(response.headers, b"location")
                if not location:
                    raise FetchRefused(f"it answered {status} without a Location")
                url = _checked_url(str(url.join(location)))
                continue
            if status != 200:
                raise FetchRefused(f"it answered HTTP {status}")
            declared = _header(response.headers, b"content-length")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchRefused(f"it is larger than {max_bytes:,} bytes")
            data = bytearray()
            async for chunk in response.aiter_stream():
                data += chunk
                if len(data) > max_bytes:
                    raise FetchRefused(f"it is larger than {max_bytes:,} bytes")
            return bytes(data)
    raise FetchRefused(f"it redirected more than {MAX_REDIRECTS} times")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return ""
